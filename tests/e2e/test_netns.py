"""The namespace machines other e2e tests stand on: reachable from each other, cut off
by each partition helper and joined again, and gone without a trace afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.support.netns import PREFIX, Network, network
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox"),
]


def _status(net: Network, client: str, server: str) -> int:
    """HTTP status ``client`` gets from ``server``'s httpd (0: no answer within 1s)."""
    url = f"http://{net[server].ip}:8080/"
    result = net.run(
        client, ["curl", "-s", "-m", "1", "-o", "/dev/null", "-w", "%{http_code}", url]
    )
    return int(result.stdout or 0)


def test_hosts_partitions_and_cleanup(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("hello\n")
    with network(["a", "b"]) as net:
        assert net.run("a", ["hostname"]).stdout.strip() == "a"
        httpd = ["busybox", "httpd", "-f", "-p", "8080", "-h", str(tmp_path)]
        server = net.popen("a", httpd, log_path=tmp_path / "httpd.log")
        wait_until(lambda: _status(net, "b", "a") == 200, what="httpd on a")
        namespaces = [h.ns for h in net.hosts.values()]
        run_id = net.run_id

        net.drop("a", "b")
        assert _status(net, "b", "a") == 0
        net.drop("a", "b", add=False)
        assert _status(net, "b", "a") == 200

        net.blackhole("b", "a")
        assert _status(net, "b", "a") == 0
        net.unblackhole("b", "a")
        assert _status(net, "b", "a") == 200

        net.link_down("a")
        assert _status(net, "b", "a") == 0
        net.link_up("a")
        wait_until(lambda: _status(net, "b", "a") == 200, what="a back on the bridge")

        net.crash("a")
        assert server.wait(timeout=10) != 0

    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listed for ns in namespaces)
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert f"{PREFIX}{run_id}" not in links
