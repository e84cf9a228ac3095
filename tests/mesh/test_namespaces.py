"""Two network namespaces joined by a veth pair, made by this test: a node in each finds the
other by mDNS multicast over the veth and gossips with it. Needs root and `ip netns`; skipped
otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import cli_command, node_env
from tests.mesh.harness import DEAD_AFTER_S, KEEPALIVE_S, toml_document

pytestmark = pytest.mark.netns

SUBNET = "10.77.0"


def _can_make_namespaces() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`)"
    probe = f"lnprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    reason = _can_make_namespaces()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    a, b = f"lna{tag}", f"lnb{tag}"
    ip("netns", "add", a)
    ip("netns", "add", b)
    try:
        ip("link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}")
        ip("link", "set", f"va{tag}", "netns", a)
        ip("link", "set", f"vb{tag}", "netns", b)
        for ns, dev, host in ((a, f"va{tag}", 1), (b, f"vb{tag}", 2)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{SUBNET}.{host}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up", "multicast", "on")
        yield a, b
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


class NamespacedNode:
    def __init__(self, namespace: str, root: Path, host: str, *, found: bool) -> None:
        self.namespace = namespace
        self.data_dir = root / namespace
        self.data_dir.mkdir()
        self.status_port = 8470
        config = {
            "node": {"data_dir": str(self.data_dir), "name": namespace},
            "mesh": {
                "host": host,
                "port": 8471,
                "keepalive_s": KEEPALIVE_S,
                "dead_after_s": DEAD_AFTER_S,
            },
            "discovery": {"mdns": True, "interfaces": [host], "bootstrap": []},
            "status": {"port": self.status_port},
            "ledger": {"genesis": "found" if found else "join"},
        }
        self.config = self.data_dir / "config.toml"
        self.config.write_text(toml_document(config))
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, *cli_command("run", "--config", str(self.config))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=node_env(),
        )

    def cli(self, *args: str) -> dict[str, object]:
        result = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.namespace,
                *cli_command(*args, "--status-port", str(self.status_port), "--json"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=node_env(),
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip())
        return dict(json.loads(result.stdout))

    def stop(self) -> tuple[int, str]:
        self.process.terminate()
        try:
            _, err = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


def wait_for(condition, within: float, what: str) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except RuntimeError as exc:  # the node is not answering yet
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} ({last})")


def test_nodes_in_two_namespaces_find_each_other_by_mdns(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    a_ns, b_ns = namespaces
    a = NamespacedNode(a_ns, tmp_path, f"{SUBNET}.1", found=True)
    b = NamespacedNode(b_ns, tmp_path, f"{SUBNET}.2", found=False)
    try:
        wait_for(lambda: a.cli("status")["network_id"], 30, "node A's genesis")
        wait_for(lambda: b.cli("status")["peers"] == 1, 60, "node B to find A by mDNS")
        assert b.cli("status")["network_id"] == a.cli("status")["network_id"]
        peers = b.cli("status")
        assert peers["peers"] == 1
        posted = a.cli("post", "across the veth")
        wait_for(
            lambda: any(m["id"] == posted["id"] for m in b.cli("messages")["messages"]),  # type: ignore[index, union-attr]
            20,
            "the post to cross",
        )
    finally:
        code_a, err_a = a.stop()
        code_b, err_b = b.stop()
    assert (code_a, code_b) == (0, 0), (err_a, err_b)
