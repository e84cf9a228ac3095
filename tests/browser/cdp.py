"""A tiny Chrome DevTools Protocol client for the browser tests: no new dependencies.

Starts Debian's headless Chromium with every flag that keeps it off the network (it only ever
loads the loopback status page), finds the page target, and talks CDP over the target's websocket
with aiohttp's client. Every call and every wait has a deadline; the browser's whole process
group is killed at the end, whatever happened.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

#: Where Debian's package puts it; CHROMIUM overrides.
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
#: Seconds Chromium may take to open its DevTools port, and one CDP call to answer.
START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 15.0
#: Seconds Chromium gets to exit after SIGTERM before its process group is killed.
STOP_TIMEOUT_S = 5.0

#: Headless, no sandbox (root in a container), and nothing that talks to the network by itself.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-breakpad",
    "--disable-dev-shm-usage",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
)


def find_chromium() -> str | None:
    """The Chromium binary to use, or None."""
    override = os.environ.get("CHROMIUM")
    if override:
        return override if shutil.which(override) else None
    for candidate in CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


class CdpError(Exception):
    """Chromium answered a call with an error, or went away."""


class Page:
    """One page target: send commands, read events, evaluate script."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        #: Events kept for the test to look at (console errors, exceptions): bounded.
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read(), name="cdp-reader")

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(message.data)
                future = self._pending.pop(data.get("id", -1), None)
                if future is not None and not future.done():
                    future.set_result(data)
                elif "method" in data and len(self.events) < 1_000:
                    self.events.append(data)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CdpError("the browser closed the connection"))

    async def call(
        self, method: str, params: dict[str, Any] | None = None, within: float = CALL_TIMEOUT_S
    ) -> dict[str, Any]:
        call_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self.ws.send_json({"id": call_id, "method": method, "params": params or {}})
        try:
            answer = await asyncio.wait_for(future, within)
        finally:
            self._pending.pop(call_id, None)
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error']}")
        return dict(answer.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        result = await self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, within: float, what: str) -> Any:
        """Poll ``expression`` until it is truthy; AssertionError after ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        last: Any = None
        while True:
            last = await self.evaluate(expression)
            if last:
                return last
            if loop.time() >= deadline:
                raise AssertionError(f"timed out after {within}s waiting for {what} ({last!r})")
            await asyncio.sleep(0.1)

    async def navigate(self, url: str, within: float = CALL_TIMEOUT_S) -> None:
        await self.call("Page.navigate", {"url": url})
        await self.wait_for("document.readyState === 'complete'", within, f"{url} to load")

    async def screenshot(self, path: Path, *, width: int, height: int, mobile: bool) -> Path:
        """A PNG of the whole page at the given viewport (full height), written to ``path``."""
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )
        full = int(await self.evaluate("document.documentElement.scrollHeight"))
        shot = await self.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": max(full, height), "scale": 1},
            },
        )
        return _save(path, base64.b64decode(shot["data"]))

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _save(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _open_log(profile: Path, log_path: Path) -> BinaryIO:
    profile.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return log_path.open("wb")


def _read_port(marker: Path) -> int | None:
    with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
        return int(marker.read_text().split()[0])
    return None


async def _devtools_port(profile: Path, process: asyncio.subprocess.Process) -> int:
    """Chromium writes the port it chose (--remote-debugging-port=0) to DevToolsActivePort."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    marker = profile / "DevToolsActivePort"
    while True:
        if process.returncode is not None:
            raise CdpError(f"chromium exited with code {process.returncode} before it was ready")
        port = _read_port(marker)
        if port is not None:
            return port
        if loop.time() >= deadline:
            raise CdpError(f"chromium did not open its DevTools port within {START_TIMEOUT_S}s")
        await asyncio.sleep(0.05)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the browser's process group; SIGKILL it if it has not exited in time."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    # Children (renderer, zygote) can outlive the browser process: end the whole group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.returncode is None:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)


@contextlib.asynccontextmanager
async def chromium(binary: str, profile: Path, log_path: Path) -> AsyncIterator[Page]:
    """A headless Chromium with one blank page; killed on exit, even on failure."""
    with _open_log(profile, log_path) as log:
        process = await asyncio.create_subprocess_exec(
            binary,
            *FLAGS,
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group, so that every child is ended
        )
        try:
            port = await _devtools_port(profile, process)
            timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    targets = await response.json()
                pages = [t for t in targets if t.get("type") == "page"]
                if not pages:
                    raise CdpError(f"no page target in {targets!r}")
                ws = await session.ws_connect(
                    pages[0]["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024
                )
                page = Page(ws)
                try:
                    await page.call("Page.enable")
                    await page.call("Runtime.enable")
                    await page.call("Log.enable")
                    yield page
                finally:
                    await page.close()
        finally:
            await _stop(process)
