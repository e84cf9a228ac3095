"""Real nodes for multi-node tests: in-process (`Node`) and as subprocesses (`liberation-node run`).

Every node has its own data directory, its own loopback address for signalling and mDNS
(127.0.0.N: distinct addresses let each answer mDNS on its own socket) and OS-chosen ports.
Inside the test network namespace WebRTC uses the namespace's veth addresses; outside it, ICE is
pinned to 127.0.0.1 so that no traffic leaves loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from node.daemon import Node
from node.datadir import DataDir
from tests.conftest import cli_command, free_port, make_config, node_env, wait_until

IN_TEST_NETNS = os.environ.get("LIBERATION_TEST_NETNS") == "1"
#: Fast failure detection for tests (the product defaults are 5 s and 15 s).
KEEPALIVE_S = 1.0
DEAD_AFTER_S = 5.0
#: Seconds a node may take to stop before the test fails.
STOP_BOUND_S = 10.0


def loopback(index: int) -> str:
    return f"127.0.0.{20 + index}"


def ice_addresses() -> tuple[str, ...]:
    return () if IN_TEST_NETNS else ("127.0.0.1",)


def mesh_sections(index: int, **extra: Any) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {
        "mesh": {
            "host": loopback(index),
            "keepalive_s": KEEPALIVE_S,
            "dead_after_s": DEAD_AFTER_S,
            "ice_addresses": ice_addresses(),
        },
        "ledger": {"genesis": "found" if index == 0 else "join"},
    }
    for section, values in extra.items():
        sections.setdefault(section, {}).update(values)
    return sections


async def start_node(root: Path, index: int, **extra: Any) -> Node:
    node = Node(make_config(root / f"node{index}", **mesh_sections(index, **extra)))
    await node.start()
    await wait_until(lambda: node.peers is not None, within=20, what=f"node {index}'s mesh")
    return node


def node_ids(root: Path, count: int) -> list[bytes]:
    """Create the keys of nodes 0..count-1 under ``root`` ahead of time (for allow-lists)."""
    ids = []
    for index in range(count):
        data = DataDir(root / f"node{index}")
        data.ensure()
        key, _ = data.node_key(create=True)
        ids.append(key.public)
    return ids


def mesh_address(node: Node, index: int) -> str:
    return f"{loopback(index)}:{node.mesh_port}"


@asynccontextmanager
async def running(nodes: list[Node]) -> AsyncIterator[list[Node]]:
    """Stop every node at the end, each within STOP_BOUND_S."""
    try:
        yield nodes
    finally:
        for node in nodes:
            await asyncio.wait_for(node.stop(), STOP_BOUND_S)


def peer_ids(node: Node) -> set[bytes]:
    return set(node.gossip.by_peer) if node.gossip else set()


class ProcessNode:
    """A node in its own process, driven like a user would: config file, signals, CLI, HTTP."""

    def __init__(self, root: Path, index: int, **extra: dict[str, Any]) -> None:
        self.index = index
        self.data_dir = root / f"proc{index}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.status_port = free_port()
        self.mesh_port = free_port(loopback(index))
        sections = mesh_sections(index, **extra)
        sections["mesh"]["port"] = self.mesh_port
        sections["status"] = {"port": self.status_port}
        sections["node"] = {"data_dir": str(self.data_dir)}
        sections.setdefault("discovery", {}).setdefault("mdns", False)
        self.config_path = self.data_dir / "config.toml"
        self.config_path.write_text(toml_document(sections))
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            cli_command("run", "--config", str(self.config_path)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=node_env(),
        )

    async def wait_ready(self, within: float = 30.0) -> None:
        async def healthy() -> bool:
            if self.process is not None and self.process.poll() is not None:
                out, err = self.process.communicate()
                raise AssertionError(f"node {self.index} exited: {err}\n{out[-2000:]}")
            try:
                status = await asyncio.to_thread(self.get, "/api/status")
            except OSError:
                return False
            return bool(status.get("ready"))

        await wait_until(healthy, within=within, what=f"process node {self.index}")

    def get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.status_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())

    async def aget(self, path: str) -> Any:
        """`get` off the event loop (in-process nodes share the loop with the test)."""
        return await asyncio.to_thread(self.get, path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.status_port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())

    def kill(self) -> None:
        """SIGKILL: no goodbye, no flush."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=STOP_BOUND_S)

    def stop(self) -> tuple[int, str, str]:
        """SIGTERM and wait; returns (exit code, stdout, stderr)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, err = self.process.communicate(timeout=STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            raise AssertionError(f"node {self.index} did not stop within {STOP_BOUND_S}s") from None
        return self.process.returncode, out, err

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.stop()
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def toml_document(sections: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def elapsed(start: float) -> float:
    return time.monotonic() - start
