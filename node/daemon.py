"""The daemon: wires the data directory, store, protocol core and servers together.

Start-up order keeps the path to a healthy status page short (the 500 ms goal): lock, key, store,
status server, ready. Everything that imports heavy libraries (aiortc, zeroconf, networkx) starts
after ``/healthz`` answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from node import __version__
from node.api import build_app
from node.config import Config
from node.datadir import DataDir, DataDirLock
from node.errors import NodeError
from node.metrics import Registry
from protocol.identity import SigningKey
from storage.store import Store

log = logging.getLogger(__name__)


class Node:
    """One running liberation-node."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = DataDir(config.node.data_dir)
        self.store = Store(self.data_dir.database)
        self.metrics = Registry()
        self.key: SigningKey | None = None
        self.ready = False
        self.started_monotonic = time.monotonic()
        self.status_port: int | None = None
        self._lock: DataDirLock | None = None
        self._status_runner: web.AppRunner | None = None
        self._stopped = asyncio.Event()
        self._init_metrics()

    @property
    def node_id(self) -> str:
        return self.key.id if self.key else ""

    def _init_metrics(self) -> None:
        m = self.metrics
        self.m_uptime = m.gauge("liberation_uptime_seconds", "Seconds since the daemon started.")
        self.m_info = m.gauge(
            "liberation_node_info", "Constant 1, labelled with the version.", ["version"]
        )
        self.m_info.set(1, __version__)
        self.m_events = m.gauge(
            "liberation_events_stored", "Events in the store, by kind.", ["kind"]
        )
        self.m_peers = m.gauge("liberation_peers", "Connected peers.")

    async def start(self) -> None:
        self.started_monotonic = time.monotonic()
        self.data_dir.ensure()
        lock = self.data_dir.lock()
        lock.acquire()
        self._lock = lock
        try:
            self.key, created = self.data_dir.node_key(create=True)
            if created:
                log.info("created node key %s", self.key.id)
            await self.store.open()
            await self._start_status_server()
        except BaseException:
            await self._close_resources()
            raise
        self.ready = True
        log.info(
            "node %s ready: status page http://%s:%d/",
            self.node_id,
            self.config.status.host,
            self.status_port,
        )

    async def _start_status_server(self) -> None:
        app = build_app(self)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.config.status.host, self.config.status.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise NodeError(
                f"cannot listen on status port {self.config.status.host}:"
                f"{self.config.status.port}: {exc.strerror}"
            ) from None
        self._status_runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.status_port = sockets[0].getsockname()[1] if sockets else self.config.status.port

    async def stop(self) -> None:
        was_ready, self.ready = self.ready, False
        await self._close_resources()
        self._stopped.set()
        if was_ready:
            log.info("node stopped")

    async def _close_resources(self) -> None:
        if self._status_runner is not None:
            runner, self._status_runner = self._status_runner, None
            await runner.cleanup()
        await self.store.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # --- read side for the status page and API ----------------------------------------------------

    async def status(self) -> dict[str, Any]:
        counts = await self.store.event_counts() if self.ready else {}
        return {
            "node_id": self.node_id,
            "name": self.config.node.name,
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_monotonic, 3),
            "ready": self.ready,
            "network_id": None,
            "peers": 0,
            "events": sum(counts.values()),
            "events_by_kind": counts,
            "ledger": {},
            "status_port": self.status_port,
            "mesh_port": self.config.mesh.port,
            "data_dir": str(self.data_dir.path),
        }

    async def refresh_metrics(self) -> None:
        self.m_uptime.set(time.monotonic() - self.started_monotonic)
        if self.ready:
            for kind, count in (await self.store.event_counts()).items():
                self.m_events.set(count, kind)
