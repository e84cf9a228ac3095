"""The node's Prometheus metrics: what /metrics exposes, fed by the driver's listeners.

Label values come from closed sets (frame types, event kinds, error codes), never from peers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from node import __version__
from node.metrics import LabelValues, Registry
from protocol.gossip import Penalised
from protocol.replica import Plan

if TYPE_CHECKING:
    from node.daemon import Node
    from node.engine import GossipDriver

RTT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
COMMIT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class NodeMetrics:
    def __init__(self, registry: Registry, node: Node) -> None:
        self.node = node
        m = registry
        self.uptime = m.gauge("liberation_uptime_seconds", "Seconds since the daemon started.")
        info = m.gauge(
            "liberation_node_info", "Constant 1, labelled with the version.", ["version"]
        )
        info.set(1, __version__)
        self.peers = m.gauge("liberation_peers", "Connected peers (handshake done).")
        self.events_stored = m.gauge(
            "liberation_events_stored", "Events in the store, by kind.", ["kind"]
        )
        m.counter(
            "liberation_frames_received_total",
            "Frames received from peers, by type.",
            ["type"],
            collect=self._frames_in,
        )
        self.frames_sent = m.counter("liberation_frames_sent_total", "Frames sent to peers.")
        self.bytes_sent = m.counter("liberation_bytes_sent_total", "Bytes sent to peers.")
        self.bytes_received = m.counter(
            "liberation_bytes_received_total", "Bytes received from peers."
        )
        self.accepted = m.counter(
            "liberation_events_accepted_total",
            "Events committed to the store, by kind and source (local or peer).",
            ["kind", "source"],
        )
        self.rejected = m.counter(
            "liberation_events_rejected_total", "Events refused, by error code.", ["code"]
        )
        m.counter(
            "liberation_duplicates_total",
            "Event payloads received that this node already had.",
            collect=self._duplicates,
        )
        self.penalties = m.counter(
            "liberation_peer_penalties_total", "Score penalties given to peers, by code.", ["code"]
        )
        self.rtt = m.histogram(
            "liberation_peer_rtt_seconds", "Keep-alive round-trip times to peers.", RTT_BUCKETS
        )
        self.dissemination = m.histogram(
            "liberation_dissemination_latency_seconds",
            "Author's timestamp to commit here, for events from peers (clocks differ by host).",
            LATENCY_BUCKETS,
        )
        self.commit_seconds = m.histogram(
            "liberation_store_commit_seconds",
            "Time to commit one plan (fsync included).",
            COMMIT_BUCKETS,
        )
        self.plans = m.counter("liberation_plans_committed_total", "Plans committed.")
        self.ledger_total = m.gauge("liberation_ledger_total_cents", "Genesis total.")
        self.ledger_pool = m.gauge("liberation_ledger_pool_balance_cents", "Pool balance.")
        self.ledger_unclaimed = m.gauge(
            "liberation_ledger_unclaimed_cents", "Sends not yet claimed (effective)."
        )
        self.ledger_accounts = m.gauge("liberation_ledger_accounts", "Enrolled accounts.")
        self.ledger_frozen = m.gauge("liberation_ledger_frozen_authors", "Authors frozen by forks.")
        self.pending = m.gauge("liberation_pending_events", "Events held waiting for a dependency.")
        self.inbox = m.gauge("liberation_inbox_events", "Events waiting to be judged.")
        self.store_bytes = m.gauge(
            "liberation_store_bytes", "Size of the database files (db, WAL, shm).", []
        )
        self._driver: GossipDriver | None = None

    def attach(self, driver: GossipDriver) -> None:
        self._driver = driver
        driver.commit_listeners.append(self.on_commit)
        driver.penalty_listeners.append(self.on_penalty)
        driver.traffic = self

    # --- listeners -------------------------------------------------------------------------------

    def on_commit(self, plan: Plan) -> None:
        self.plans.inc()
        now_ms = time.time() * 1000
        for item in plan.accepted:
            source = "local" if item.origin is None else "peer"
            self.accepted.inc(1, item.event.kind, source)
            if item.origin is not None:
                self.dissemination.observe(max(0.0, (now_ms - item.event.ts) / 1000))
        for rejection in plan.rejected:
            self.rejected.inc(1, rejection.error.code)

    def on_penalty(self, penalty: Penalised) -> None:
        self.penalties.inc(1, penalty.code)

    def sent(self, data: bytes) -> None:
        self.frames_sent.inc()
        self.bytes_sent.inc(len(data))

    def received(self, data: bytes) -> None:
        self.bytes_received.inc(len(data))

    # --- collected at scrape time ----------------------------------------------------------------

    def _frames_in(self) -> Iterable[tuple[LabelValues, float]]:
        if self._driver is None:
            return []
        return [((name,), count) for name, count in self._driver.gossip.stats.frames_in.items()]

    def _duplicates(self) -> Iterable[tuple[LabelValues, float]]:
        if self._driver is None:
            return []
        return [((), self._driver.gossip.stats.duplicates)]

    async def refresh(self) -> None:
        node = self.node
        self.uptime.set(time.monotonic() - node.started_monotonic)
        if node.gossip is not None:
            sessions = node.gossip.active_sessions()
            self.peers.set(len(sessions))
            for session in sessions:
                for sample in session.take_rtt_samples():
                    self.rtt.observe(sample)
        ledger = node.replica.ledger
        self.ledger_total.set(ledger.total)
        self.ledger_pool.set(ledger.balance.get(ledger.pool, 0) if ledger.pool else 0)
        self.ledger_unclaimed.set(ledger.unclaimed_total())
        self.ledger_accounts.set(len(ledger.accounts))
        self.ledger_frozen.set(len(ledger.frozen))
        self.pending.set(node.replica.pending_count)
        self.inbox.set(node.replica.inbox_size)
        if node.ready:
            for kind, count in (await node.store.event_counts()).items():
                self.events_stored.set(count, kind)
        size = 0
        for suffix in ("", "-wal", "-shm"):
            path = node.data_dir.database.with_name(node.data_dir.database.name + suffix)
            if path.exists():
                size += path.stat().st_size
        self.store_bytes.set(size)
