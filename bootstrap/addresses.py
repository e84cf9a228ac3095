"""Where peers may be reached, how they were found, and when to try them again.

An `AddressBook` entry is a mesh address (HOST:PORT of a node's signalling endpoint), the node id
it is believed to belong to (unknown for a bootstrap address until we connect), how it was found,
and its retry state: exponential backoff with jitter after each failure, reset by a success.
Pure: every method takes ``now``; the caller owns the clock and the randomness.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

#: First retry delay after a failure, and the cap (seconds).
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0
#: Entries the book keeps; the least recently seen ones from peer exchange go first.
MAX_ADDRESSES = 1_000


class Via(Enum):
    BOOTSTRAP = "bootstrap"
    MDNS = "mdns"
    MESH = "mesh"
    INBOUND = "inbound"


@dataclass
class Address:
    host: str
    port: int
    via: Via
    node_id: bytes | None = None
    failures: int = 0
    next_try: float = 0.0
    last_seen: float = 0.0
    first_seen: float = 0.0
    #: Node that told us about this address (peer exchange); offers can be relayed through it.
    introducer: bytes | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class AddressBook:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._entries: dict[tuple[str, int], Address] = {}

    def add(
        self,
        host: str,
        port: int,
        via: Via,
        now: float,
        *,
        node_id: bytes | None = None,
        introducer: bytes | None = None,
    ) -> Address:
        key = (host, port)
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= MAX_ADDRESSES:
                self._evict()
            entry = self._entries[key] = Address(
                host, port, via, node_id, introducer=introducer, first_seen=now
            )
        elif _rank(via) < _rank(entry.via):
            entry.via = via  # a more trustworthy source found it too
        if node_id is not None and entry.node_id is None:
            entry.node_id = node_id
        if introducer is not None:
            entry.introducer = introducer
        entry.last_seen = now
        return entry

    def _evict(self) -> None:
        candidates = [e for e in self._entries.values() if e.via is Via.MESH]
        victim = min(candidates or self._entries.values(), key=lambda e: e.last_seen)
        del self._entries[victim.key]

    def get(self, host: str, port: int) -> Address | None:
        return self._entries.get((host, port))

    def for_node(self, node_id: bytes) -> list[Address]:
        return [e for e in self._entries.values() if e.node_id == node_id]

    def failed(self, entry: Address, now: float) -> float:
        """Back off after a failed attempt; returns the delay chosen."""
        entry.failures += 1
        ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * float(1 << min(entry.failures - 1, 16)))
        delay = ceiling * (0.5 + 0.5 * self.rng.random())  # "equal jitter"
        entry.next_try = now + delay
        return delay

    def succeeded(self, entry: Address, node_id: bytes, now: float) -> None:
        entry.failures = 0
        entry.next_try = now
        entry.node_id = node_id
        entry.last_seen = now

    def due(self, now: float) -> list[Address]:
        """Entries whose backoff has run out, most trustworthy first, then fewest failures."""
        ready = [e for e in self._entries.values() if e.next_try <= now]
        return sorted(ready, key=lambda e: (_rank(e.via), e.failures, -e.last_seen, e.key))

    def next_due(self) -> float | None:
        return min((e.next_try for e in self._entries.values()), default=None)

    def all(self) -> list[Address]:
        return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


def _rank(via: Via) -> int:
    return {Via.BOOTSTRAP: 0, Via.MDNS: 1, Via.INBOUND: 2, Via.MESH: 3}[via]
