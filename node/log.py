"""Logging set-up: one line per record on stdout, peer-prefixed adapters, rate limiting.

Logs go to stdout so that stderr carries only what the operator must act on (a fatal start-up
error); systemd's journal collects both.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Library chatter that a peer can trigger stays below warning unless asked for.
    for noisy in ("aioice", "aiortc", "zeroconf", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class PeerLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every record with a peer's short id, and rate-limits what the peer can trigger."""

    def __init__(self, logger: logging.Logger, peer: str, per_minute: int = 30) -> None:
        super().__init__(logger, {"peer": peer})
        self._per_minute = per_minute
        self._window_start = 0.0
        self._count = 0

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[{self.extra['peer'] if self.extra else '?'}] {msg}", kwargs

    def limited(self, level: int, msg: str, *args: object) -> None:
        """Log unless this peer has already caused per_minute records in the current minute."""
        now = time.monotonic()
        if now - self._window_start >= 60.0:
            self._window_start = now
            self._count = 0
        self._count += 1
        if self._count <= self._per_minute:
            self.log(level, msg, *args)
        elif self._count == self._per_minute + 1:
            self.log(logging.WARNING, "further log records from this peer suppressed for a minute")
