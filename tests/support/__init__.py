"""Shared test helpers: real daemons (dockerd, etcd, agents) started and cleaned up by fixtures."""
