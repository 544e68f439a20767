"""Running etcd for Steppe servers: one supervised member process per server, and the
membership operations that grow and shrink the cluster as servers join and leave."""

from steppe.etcdmember._cluster import (
    EtcdCluster,
    MemberInfo,
    find_leader,
    initial_cluster,
    member_status,
    move_leader,
)
from steppe.etcdmember._member import ETCD_BINARY, EtcdMember

__all__ = [
    "ETCD_BINARY",
    "EtcdCluster",
    "EtcdMember",
    "MemberInfo",
    "find_leader",
    "initial_cluster",
    "member_status",
    "move_leader",
]
