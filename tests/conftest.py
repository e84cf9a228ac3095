"""Shared fixtures: ports, data directories, condition waits, and hygiene checks."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from node.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
#: Loopback only: tests never bind anything else (see the design's test rules).
LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (for subprocess nodes that must be told a port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def node_env(**extra: str) -> dict[str, str]:
    """Environment for a subprocess node: no stray LIBERATION_* settings from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBERATION_")}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "node", *args]


async def wait_until(
    predicate: Callable[[], Any], within: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns a truthy value or ``within`` s pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what or predicate}")
        await asyncio.sleep(interval)


def make_config(data_dir: Path, **sections: dict[str, Any]) -> Config:
    """A test node's config: loopback ports picked by the OS, no mDNS unless asked for."""
    overrides: dict[str, dict[str, Any]] = {
        "node": {"data_dir": data_dir},
        "mesh": {"host": LOOPBACK, "port": 0},
        "status": {"host": LOOPBACK, "port": 0},
        "discovery": {"mdns": False},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return load_config(None, env={}, overrides=overrides)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "node"


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """A test must not leave threads behind (aiosqlite, zeroconf and aioice all start some)."""
    before = set(threading.enumerate())
    yield
    deadline = 5.0
    import time

    start = time.monotonic()
    while True:
        leaked = [
            t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
        ]
        if not leaked or time.monotonic() - start > deadline:
            break
        time.sleep(0.01)
    assert not leaked, f"threads leaked by the test: {leaked}"


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail if the test leaves asyncio tasks running."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    current = asyncio.current_task()
    leaked = [
        t for t in asyncio.all_tasks() if t not in before and t is not current and not t.done()
    ]
    assert not leaked, f"tasks leaked by the test: {leaked}"
