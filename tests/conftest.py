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
            t
            for t in threading.enumerate()
            if t not in before
            and t.is_alive()
            and not t.daemon
            and not t.name.startswith("asyncio_")  # the loop's executor: closed with the loop
        ]
        if not leaked or time.monotonic() - start > deadline:
            break
        time.sleep(0.01)
    assert not leaked, f"threads leaked by the test: {leaked}"


#: A callback that holds the event loop this long fails the test (a blocking call in the loop).
#: Generous, because two cores are shared with real crypto, SQLite and WebRTC.
SLOW_CALLBACK_S = 1.0


def _open_sockets() -> set[str]:
    sockets = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            sockets.add(f"{fd}:{target}")
    return sockets


@pytest.fixture(autouse=True)
def _no_leaked_sockets() -> Iterator[None]:
    """A test must close every socket it opened (nodes, HTTP clients, zeroconf, WebRTC)."""
    before = _open_sockets()
    yield
    import gc
    import time

    deadline = time.monotonic() + 5.0
    while True:
        gc.collect()
        leaked = _open_sockets() - before
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"sockets left open by the test: {sorted(leaked)}"


class LoopWatchdog:
    """Notices when the event loop stops answering (a blocking call in the loop) and keeps the
    stack of the loop's thread at that moment. A thread pings the loop; asyncio's own debug mode
    would do the same but slows aiortc down too much to leave on."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: float) -> None:
        self.loop = loop
        self.limit = limit
        self.blocked: list[str] = []
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        import sys
        import time
        import traceback

        while not self._stop.is_set():
            answered = threading.Event()
            try:
                self.loop.call_soon_threadsafe(answered.set)
            except RuntimeError:  # the loop closed
                return
            started = time.monotonic()
            if not answered.wait(self.limit) and not self._stop.is_set():
                frame = sys._current_frames().get(self._loop_thread)
                stack = "".join(traceback.format_stack(frame, limit=6)) if frame else "?"
                answered.wait()
                self.blocked.append(f"blocked {time.monotonic() - started:.2f}s at:\n{stack}")
            self._stop.wait(0.1)


@pytest.fixture(autouse=True)
async def _loop_hygiene(
    request: pytest.FixtureRequest, _no_leaked_threads: None, _no_leaked_sockets: None
) -> AsyncIterator[None]:
    """Fail on a call that blocks the event loop, and on tasks a test leaves running."""
    import inspect

    if not inspect.iscoroutinefunction(request.function):
        yield  # a synchronous test: the loop does not run while it does
        return
    loop = asyncio.get_running_loop()
    watchdog = LoopWatchdog(loop, SLOW_CALLBACK_S)
    watchdog.start()
    before = asyncio.all_tasks()
    try:
        yield
    finally:
        watchdog.stop()
    current = asyncio.current_task()
    deadline = loop.time() + 5.0
    while True:
        leaked = [
            t for t in asyncio.all_tasks() if t not in before and t is not current and not t.done()
        ]
        if not leaked or loop.time() > deadline:
            break
        await asyncio.sleep(0.02)
    assert not leaked, f"tasks left running by the test: {leaked}"
    assert not watchdog.blocked, "the event loop was blocked: " + "\n".join(watchdog.blocked)
    await loop.shutdown_default_executor()  # its threads would count as leaked


@pytest.fixture
def no_leaked_tasks() -> None:
    """Kept for tests that name it; every async test is checked for leaked tasks anyway."""


def _dump_tasks(signum: int, frame: object) -> None:
    """SIGUSR1: print every asyncio task's stack (to find what a hung test awaits)."""
    import sys

    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
        tasks = asyncio.all_tasks(loop)
    except RuntimeError:
        return
    for task in tasks:
        task.print_stack(file=sys.stderr)


if hasattr(__import__("signal"), "SIGUSR1"):
    import signal as _signal

    _signal.signal(_signal.SIGUSR1, _dump_tasks)
