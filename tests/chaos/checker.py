"""The chaos checker: the seven invariants of the reliability brief, from the stores and histories.

Reads, after a run: every node's ``node.db`` (read-only, with sqlite3), its history file (JSON
lines written by the node in test mode), its load's record of 2xx answers, the runner's samples
and ``manifest.json``. Prints one line per invariant with its figure, and raises `ChaosViolation`
with the evidence when any fails.

    python -m tests.chaos.checker WORKDIR/manifest.json [--flat]

1. durability: every event a node accepted or acknowledged (history) or whose 2xx the load got is
   in that node's store (events or archived_events);
2. validity: every stored event decodes, has the id of its bytes, verifies under the mesh's network
   id, and chains (prev is the stored event at seq - 1); the genesis is the mesh's; archived events
   belong to frozen authors at or after the fork; no stored event breaks a ledger rule on replay;
3. exactly once: ids unique (log and archive disjoint, one event per author and seq), each send
   claimed at most once, supply conserved by a replay of the stored ledger events
   (`protocol.ledger.rebuild`), and the stored balances and open sends equal the replay's;
4. convergence: every node has the same event set, the same ledger state hash (replayed) and the
   same fork proofs (author, seq), including the injected double spend, and they got there within
   the bound after the load stopped;
5. liveness: events published once the mesh reconnected after the last fault reached every node
   (history accept times) within the bound;
6. boundedness: RSS, open fds, pending and inbox gauges under their caps; with ``--flat`` also
   memory and fds flat (the last quarter of the run within 10% of the first, after warm-up);
7. reproducibility: the seed and schedule are printed, and the schedule regenerated from the seed
   is the one that ran, every fault begun and healed.

Besides: every node stopped with exit code 0 on SIGTERM, none exited by itself, and the
namespaces, links and processes of the run are gone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import statistics
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.errors import LiberationError
from protocol.events import ZERO_ID, Claim, Event, Genesis, Send
from protocol.ledger import Ledger, rebuild
from protocol.limits import ANTI_ENTROPY_INTERVAL_S, MAX_PENDING_EVENTS
from protocol.replica import MAX_INBOX_ITEMS
from tests.chaos import faults

LEDGER_KINDS = ("genesis", "enroll", "send", "claim")
#: How many pieces of evidence to print per invariant.
EVIDENCE = 12


@dataclass
class Caps:
    rss_mb: float = 512.0
    fds: int = 1024
    pending: int = MAX_PENDING_EVENTS
    inbox: int = MAX_INBOX_ITEMS
    #: An event must reach every node within one anti-entropy round (10 s, jitter up to 1.2x)
    #: plus a few seconds of work once the mesh is connected: the last resort of the protocol.
    liveness_s: float = 1.2 * ANTI_ENTROPY_INTERVAL_S + 3.0
    #: Flatness: the last quarter may exceed the first by this fraction.
    flat_ratio: float = 0.10
    #: Samples of a process younger than this are warm-up, not steady state.
    warmup_s: float = 60.0


@dataclass
class Finding:
    number: int
    name: str
    ok: bool
    figure: str
    evidence: list[str] = field(default_factory=list)

    def render(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        number = f"{self.number}." if self.number else "+"
        lines = [f"  [{mark}] {number} {self.name}: {self.figure}"]
        lines += [f"         - {e}" for e in self.evidence[:EVIDENCE]]
        if len(self.evidence) > EVIDENCE:
            lines.append(f"         ... and {len(self.evidence) - EVIDENCE} more")
        return "\n".join(lines)


@dataclass
class Report:
    seed: int
    findings: list[Finding] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def render(self) -> str:
        verdict = "all invariants hold" if self.ok else "VIOLATED"
        head = f"chaos check, seed {self.seed}: {verdict}"
        return "\n".join([head, *(f.render() for f in self.findings)])


class ChaosViolation(AssertionError):
    def __init__(self, report: Report) -> None:
        super().__init__(report.render())
        self.report = report


# --- reading a node's store and history -----------------------------------------------------------


@dataclass
class Store:
    index: int
    network_id: bytes | None
    genesis_raw: bytes | None
    #: (rowid, id, author, seq, kind, ts, raw), in rowid (insertion) order.
    events: list[tuple[int, bytes, bytes, int, str, int, bytes]]
    archived: list[tuple[bytes, bytes, int, bytes]]
    frozen: dict[bytes, int]
    forks: set[tuple[bytes, int]]
    balances: dict[bytes, tuple[int, int, int, int]]
    unclaimed: set[bytes]
    #: Sends whose row names a claim (claim_id), and that claim's id.
    claim_ids: dict[bytes, bytes]

    @property
    def ids(self) -> set[bytes]:
        return {row[1] for row in self.events}

    @property
    def archived_ids(self) -> set[bytes]:
        return {row[0] for row in self.archived}


def read_store(index: int, path: Path) -> Store:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        events = [
            (int(r[0]), bytes(r[1]), bytes(r[2]), int(r[3]), str(r[4]), int(r[5]), bytes(r[6]))
            for r in db.execute(
                "SELECT rowid, id, author, seq, kind, ts, raw FROM events ORDER BY rowid"
            )
        ]
        archived = [
            (bytes(r[0]), bytes(r[1]), int(r[2]), bytes(r[3]))
            for r in db.execute("SELECT id, author, seq, raw FROM archived_events")
        ]
        frozen = {
            bytes(r[0]): int(r[1])
            for r in db.execute(
                "SELECT author, frozen_at FROM feed_heads WHERE frozen_at IS NOT NULL"
            )
        }
        forks = {
            (bytes(r[0]), int(r[1])) for r in db.execute("SELECT author, seq FROM fork_proofs")
        }
        balances = {
            bytes(r[0]): (int(r[1]), int(r[2]), int(r[3]), int(r[4]))
            for r in db.execute("SELECT account, balance, face, received, sent FROM balances")
        }
        unclaimed = {
            bytes(r[0]) for r in db.execute("SELECT id FROM sends WHERE state = 'unclaimed'")
        }
        claim_ids = {
            bytes(r[0]): bytes(r[1])
            for r in db.execute("SELECT id, claim_id FROM sends WHERE claim_id IS NOT NULL")
        }
    finally:
        db.close()
    network = meta.get("network_id")
    genesis = meta.get("genesis")
    return Store(
        index,
        bytes(network) if network is not None else None,
        bytes(genesis) if genesis is not None else None,
        events,
        archived,
        frozen,
        forks,
        balances,
        unclaimed,
        claim_ids,
    )


def read_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """JSON lines of a file, and how many lines did not parse (a torn last line after kill -9)."""
    entries: list[dict[str, Any]] = []
    bad = 0
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            bad += 1
    return entries, bad


def replay(store: Store, until_ms: int | None = None) -> tuple[Ledger, list[str]]:
    """`protocol.ledger.rebuild` over the stored ledger events (those signed up to ``until_ms``
    when given), and the events it had to skip."""
    ledger_events = [
        Event.decode(row[6])
        for row in store.events
        if row[4] in LEDGER_KINDS and (until_ms is None or row[5] <= until_ms)
    ]
    void = [e for e in (Event.decode(row[3]) for row in store.archived) if isinstance(e.body, Send)]
    ledger = rebuild(ledger_events, store.frozen, void)
    # The same replay step by step, to name what a rebuild silently skips (a stored event that
    # breaks a rule, or a claim whose send is stored nowhere).
    shadow = Ledger()
    shadow.frozen = dict(store.frozen)
    for event in void:
        shadow.add_void_send(event)
    skipped: list[str] = []
    for event in ledger_events:
        if shadow.is_frozen_at(event.author, event.seq):
            skipped.append(f"{event!r} is at or after its author's fork but still in the log")
            continue
        try:
            pending = shadow.check(event)
        except LiberationError as exc:
            skipped.append(f"{event!r} breaks a ledger rule: {exc.code}: {exc}")
            continue
        if pending is not None:
            skipped.append(f"{event!r} claims send {pending.send_id.hex()[:16]} stored nowhere")
            continue
        shadow.apply(event)
    return ledger, skipped


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def short(value: bytes | str) -> str:
    text = value.hex() if isinstance(value, bytes) else value
    return text[:12]


# --- the checker ----------------------------------------------------------------------------------


class Checker:
    def __init__(self, manifest: dict[str, Any], caps: Caps, *, flat: bool = False) -> None:
        self.m = manifest
        self.caps = caps
        self.flat = flat
        self.report = Report(int(manifest["seed"]))
        self.nodes = manifest["nodes"]
        self.stores: dict[int, Store] = {}
        self.histories: dict[int, list[dict[str, Any]]] = {}
        self.torn: dict[int, int] = {}
        self.loads: dict[int, list[dict[str, Any]]] = {}
        self.replays: dict[int, Ledger] = {}
        self.skipped: dict[int, list[str]] = {}
        self.network = bytes.fromhex(manifest["network_id"]) if manifest["network_id"] else None

    def run(self) -> Report:
        for node in self.nodes:
            index = int(node["index"])
            self.stores[index] = read_store(index, Path(node["database"]))
            self.histories[index], self.torn[index] = read_lines(Path(node["history"]))
            self.loads[index], _ = read_lines(Path(node["load_out"]))
        self.durability()
        self.validity()
        self.exactly_once()
        self.convergence()
        self.liveness()
        self.boundedness()
        self.reproducibility()
        self.processes()
        return self.report

    # 1 -------------------------------------------------------------------------------------------

    def durability(self) -> None:
        evidence: list[str] = []
        accepted = acked = by_load = 0
        for index, store in self.stores.items():
            stored = store.ids | store.archived_ids
            history = self.histories[index]
            accept = {e["id"] for e in history if e.get("what") == "accept"}
            ack = {e["id"] for e in history if e.get("what") == "ack"}
            load = {e["id"] for e in self.loads[index] if e.get("what") == "ack"}
            accepted += len(accept)
            acked += len(ack)
            by_load += len(load)
            for what, ids in (
                ("accepted", accept),
                ("acknowledged", ack),
                ("2xx to the load", load),
            ):
                evidence += [
                    f"node {index}: event {i[:16]} {what} but not in its store"
                    for i in sorted(ids)
                    if bytes.fromhex(i) not in stored
                ]
            evidence += [
                f"node {index}: the load got a 2xx for {i[:16]} but the history has no ack"
                for i in sorted(load - ack)
            ]
            if self.torn[index] > 1:
                evidence.append(f"node {index}: {self.torn[index]} history lines do not parse")
        self.report.figures["durability"] = {
            "accepted": accepted,
            "acknowledged": acked,
            "load_2xx": by_load,
            "missing": len(evidence),
        }
        self.report.add(
            Finding(
                1,
                "durability",
                not evidence and accepted > 0,
                f"{accepted} accepts, {acked} acks ({by_load} 2xx to the load) on "
                f"{len(self.stores)} nodes; {len(evidence)} not stored",
                evidence or ([] if accepted else ["no accepted events at all"]),
            )
        )

    # 2 -------------------------------------------------------------------------------------------

    def validity(self) -> None:
        evidence: list[str] = []
        checked = archived = 0
        network = self.network
        for index, store in self.stores.items():
            if network is None or store.network_id != network:
                evidence.append(
                    f"node {index}: network id {short(store.network_id or b'')} is not the mesh's"
                )
                continue
            genesis = Event.decode(store.genesis_raw) if store.genesis_raw else None
            if genesis is None or genesis.id != network or not isinstance(genesis.body, Genesis):
                evidence.append(f"node {index}: the stored genesis is not the mesh's")
            slots: dict[tuple[bytes, int], bytes] = {}
            for _, event_id, author, seq, _, _, _ in store.events:
                slots[(author, seq)] = event_id
            for _, event_id, author, seq, kind, ts, raw in store.events:
                checked += 1
                problem = self._event_problem(raw, network, event_id, author, seq)
                if problem is None:
                    event = Event.decode(raw)
                    if (event.kind, event.ts) != (kind, ts):
                        problem = "kind or ts column differs from the event"
                    elif seq > 1 and slots.get((author, seq - 1)) != event.prev:
                        problem = (
                            f"prev {short(event.prev)} is not the stored event at seq {seq - 1}"
                        )
                    elif seq == 1 and event.prev != ZERO_ID:
                        problem = "seq 1 with a non-zero prev"
                    elif isinstance(event.body, Genesis) and event.id != network:
                        problem = "a second genesis"
                if problem:
                    evidence.append(
                        f"node {index}: {short(event_id)} ({short(author)}#{seq}): {problem}"
                    )
            for event_id, author, seq, raw in store.archived:
                archived += 1
                problem = self._event_problem(raw, network, event_id, author, seq)
                frozen_at = store.frozen.get(author)
                if problem is None and (frozen_at is None or seq < frozen_at):
                    problem = f"archived but its author is not frozen at or before seq {seq}"
                if problem:
                    evidence.append(f"node {index}: archived {short(event_id)}: {problem}")
            ledger, skipped = replay(store)
            self.replays[index] = ledger
            self.skipped[index] = skipped
            evidence += [f"node {index}: {s}" for s in skipped]
        self.report.figures["validity"] = {"checked": checked, "archived": archived}
        self.report.add(
            Finding(
                2,
                "validity",
                not evidence,
                f"{checked} stored events and {archived} archived ones decode, verify and chain; "
                f"{len(evidence)} problems",
                evidence,
            )
        )

    @staticmethod
    def _event_problem(
        raw: bytes, network: bytes, event_id: bytes, author: bytes, seq: int
    ) -> str | None:
        try:
            event = Event.decode(raw)
            event.check_signature(network)
        except (LiberationError, ValueError) as exc:
            return f"does not decode or verify: {exc}"
        if event.id != event_id or hashlib.sha256(raw).digest() != event_id:
            return "its id is not the hash of its bytes"
        if (event.author, event.seq) != (author, seq):
            return "author or seq column differs from the event"
        return None

    # 3 -------------------------------------------------------------------------------------------

    def exactly_once(self) -> None:
        evidence: list[str] = []
        conserved = matched = 0
        total = None
        for index, store in self.stores.items():
            ids = [row[1] for row in store.events]
            dupes = [i for i, n in Counter(ids).items() if n > 1]
            evidence += [f"node {index}: id {short(i)} stored twice" for i in dupes]
            both = store.ids & store.archived_ids
            evidence += [f"node {index}: {short(i)} both in the log and the archive" for i in both]
            slots = Counter((row[2], row[3]) for row in store.events)
            evidence += [
                f"node {index}: {short(a)}#{s} has {n} events in the log"
                for (a, s), n in slots.items()
                if n > 1
            ]
            claims: Counter[bytes] = Counter()
            for row in store.events:
                if row[4] == "claim":
                    body = Event.decode(row[6]).body
                    assert isinstance(body, Claim)
                    claims[body.send] += 1
            evidence += [
                f"node {index}: send {short(s)} claimed {n} times"
                for s, n in claims.items()
                if n > 1
            ]
            ledger = self.replays.get(index)
            if ledger is None:
                continue
            total = ledger.total
            if ledger.conserved():
                conserved += 1
            else:
                face = sum(ledger.balance.values()) + ledger.unclaimed_total()
                evidence.append(
                    f"node {index}: supply not conserved: balances + unclaimed = "
                    f"{face} != total {ledger.total}"
                )
            differences = self._balance_differences(store, ledger)
            if differences:
                evidence += [f"node {index}: {d}" for d in differences]
            else:
                matched += 1
        self.report.figures["exactly_once"] = {
            "conserved": conserved,
            "balances_match": matched,
            "total": total,
        }
        n = len(self.stores)
        self.report.add(
            Finding(
                3,
                "exactly once",
                not evidence and conserved == n and matched == n,
                f"no duplicate ids or claims; supply {total} conserved on {conserved}/{n} nodes; "
                f"stored balances and open sends = replay on {matched}/{n}",
                evidence,
            )
        )

    @staticmethod
    def _balance_differences(store: Store, ledger: Ledger) -> list[str]:
        out: list[str] = []
        accounts = set(store.balances) | set(ledger.face) | set(ledger.balance)
        for account in sorted(accounts):
            row = ledger.row(account)
            replayed = (row.balance, row.face, row.received, row.sent)
            stored = store.balances.get(account, (0, 0, 0, 0))
            if replayed != stored:
                out.append(
                    f"account {short(account)}: stored (balance, face, received, sent) {stored} "
                    f"!= replay {replayed}"
                )
        # What a restart loads as claimed: sends whose row names a claim.
        archived = store.archived_ids
        for send, claim in sorted(store.claim_ids.items()):
            if send not in ledger.claimed:
                where = "archived (its author is frozen)" if claim in archived else "not stored"
                out.append(
                    f"send {short(send)} names claim {short(claim)} in the sends table, but the "
                    f"replay has it unclaimed; that claim is {where}"
                )
        effective = {r.id for r in ledger.open_sends.values() if r.effective}
        for send in sorted(store.unclaimed - effective):
            out.append(f"send {short(send)} stored as unclaimed, void or claimed on replay")
        for send in sorted(effective - store.unclaimed):
            out.append(f"send {short(send)} open on replay, not stored as unclaimed")
        return out

    # 4 -------------------------------------------------------------------------------------------

    def convergence(self) -> None:
        """Judged on the events signed up to the moment the runner saw every node agree: what a
        node signs after that (while the nodes are being stopped) cannot reach a node that has
        already stopped, so it is counted, not compared."""
        evidence: list[str] = []
        timing = self.m.get("convergence") or {}
        agreed_at = self.m["timeline"].get("converged")
        cutoff = int(agreed_at * 1000) if agreed_at else None
        sets: dict[int, set[bytes]] = {}
        late: dict[int, int] = {}
        for index, store in self.stores.items():
            sets[index] = {r[1] for r in store.events if cutoff is None or r[5] <= cutoff}
            late[index] = len(store.events) - len(sets[index])
        union: set[bytes] = set().union(*sets.values())
        for index, ids in sets.items():
            missing = union - ids
            if missing:
                evidence.append(
                    f"node {index} lacks {len(missing)} events, e.g. "
                    f"{', '.join(short(i) for i in sorted(missing)[:3])}"
                )
        hashes = {
            i: (replay(store, cutoff)[0] if cutoff else self.replays[i]).state_hash().hex()
            for i, store in self.stores.items()
            if i in self.replays
        }
        if len(set(hashes.values())) > 1:
            evidence += [f"node {i}: state hash {h[:16]}" for i, h in sorted(hashes.items())]
        forks = {i: s.forks for i, s in self.stores.items()}
        distinct = {frozenset(f) for f in forks.values()}
        if len(distinct) > 1:
            evidence += [
                f"node {i}: forks {sorted((short(a), s) for a, s in f)}"
                for i, f in sorted(forks.items())
            ]
        frozen = {frozenset(s.frozen.items()) for s in self.stores.values()}
        if len(frozen) > 1:
            evidence.append("nodes disagree on frozen authors")
        spend = self.m.get("double_spend")
        if spend:
            expected = (bytes.fromhex(spend["author"]), int(spend["seq"]))
            evidence += [
                f"node {i}: no fork proof for the double spend {short(expected[0])}#{expected[1]}"
                for i, f in sorted(forks.items())
                if expected not in f
            ]
        elif self.m["config"].get("double_spend"):
            evidence.append("the double spend was not injected")
        final = {i: ledger.state_hash().hex() for i, ledger in self.replays.items()}
        for seen in timing.get("last_seen", []):
            index = int(seen["node"])
            reported = seen["state_hash"]
            # Only meaningful when the store did not change after that look.
            unchanged = tuple(seen["digest"]) == self._digest(index)
            if reported and final.get(index) and reported != final[index] and unchanged:
                evidence.append(
                    f"node {index} reported state hash {reported[:16]} while its store, "
                    f"unchanged since, replays to {final[index][:16]}"
                )
        if not timing.get("agreed"):
            evidence.append(f"the runner saw no agreement: {timing.get('error', 'not reached')}")
            if timing.get("events_after_load_stop_s") is not None:
                evidence.append(
                    f"the stores held the same events {timing['events_after_load_stop_s']}s after "
                    f"the load stopped; the nodes' reported state hashes never agreed"
                )
            evidence += [
                f"last seen on node {s['node']}: {s['events']} events, state hash "
                f"{str(s['state_hash'])[:16]}, store {s['digest'][0]} events {s['digest'][1][:12]}"
                for s in timing.get("last_seen", [])
            ]
        after = timing.get("after_load_stop_s")
        fork_text = ", ".join(f"{short(a)}#{s}" for a, s in sorted(next(iter(distinct), set())))
        self.report.figures["convergence"] = {
            "events": len(union),
            "after_load_stop_s": after,
            "events_after_load_stop_s": timing.get("events_after_load_stop_s"),
            "after_last_heal_s": timing.get("after_last_heal_s"),
            "bound_s": timing.get("bound_s"),
            "state_hash": next(iter(hashes.values()), ""),
            "forks": fork_text,
            "signed_while_stopping": late,
        }
        self.report.add(
            Finding(
                4,
                "convergence",
                not evidence,
                f"{len(self.stores)} nodes hold the same {len(union)} events, state hash "
                f"{next(iter(hashes.values()), '')[:16]}, forks [{fork_text}]; agreed {after}s "
                f"after the load stopped ({timing.get('after_last_heal_s')}s after the last heal, "
                f"bound {timing.get('bound_s')}s); {sum(late.values())} events signed while "
                f"stopping not compared",
                evidence,
            )
        )

    def _digest(self, index: int) -> tuple[int, str]:
        ids = sorted(self.stores[index].ids)
        return len(ids), hashlib.sha256(b"".join(ids)).hexdigest()

    # 5 -------------------------------------------------------------------------------------------

    def liveness(self) -> None:
        timeline = self.m["timeline"]
        start, end = timeline.get("connected"), timeline.get("load_stopped")
        evidence: list[str] = []
        if start is None or end is None:
            self.report.add(Finding(5, "liveness", False, "the run did not reach its quiet phase"))
            return
        first_accept: dict[int, dict[str, float]] = {}
        published: list[tuple[str, int, float]] = []
        for index, history in self.histories.items():
            seen: dict[str, float] = {}
            for entry in history:
                if entry.get("what") != "accept":
                    continue
                seen.setdefault(entry["id"], float(entry["t"]))
                if entry.get("origin") == "local" and start <= float(entry["t"]) <= end:
                    published.append((entry["id"], index, float(entry["t"])))
            first_accept[index] = seen
        spreads: list[float] = []
        arrivals: dict[int, list[float]] = defaultdict(list)
        for event_id, origin, t0 in published:
            times = []
            for index, seen in first_accept.items():
                if index == origin:
                    continue
                t = seen.get(event_id)
                if t is None:
                    evidence.append(
                        f"event {event_id[:12]} of node {origin} never accepted by node {index}"
                    )
                else:
                    times.append(t)
                    arrivals[index].append(t - t0)
            if times:
                spread = max(times) - t0
                spreads.append(spread)
                if spread > self.caps.liveness_s:
                    evidence.append(
                        f"event {event_id[:12]} of node {origin} took {spread:.2f}s "
                        f"to reach every node"
                    )
        if not published:
            evidence.append("no event was published in the liveness window")
        if evidence:
            evidence += [
                f"node {i} received after p50 {percentile(a, 0.5) * 1000:.0f} ms, "
                f"max {max(a) * 1000:.0f} ms"
                for i, a in sorted(arrivals.items())
            ]
        self.report.figures["liveness_by_node"] = {
            i: round(percentile(a, 0.5) * 1000, 1) for i, a in sorted(arrivals.items())
        }
        p50, p99 = percentile(spreads, 0.5), percentile(spreads, 0.99)
        worst = max(spreads) if spreads else float("nan")
        self.report.figures["liveness"] = {
            "events": len(published),
            "p50_ms": round(p50 * 1000, 1),
            "p99_ms": round(p99 * 1000, 1),
            "max_ms": round(worst * 1000, 1),
            "bound_s": self.caps.liveness_s,
            "window_s": round(end - start, 1),
        }
        self.report.add(
            Finding(
                5,
                "liveness",
                not evidence,
                f"{len(published)} events published in the {end - start:.0f}s after the mesh "
                f"reconnected reached all {len(self.stores)} nodes: p50 {p50 * 1000:.0f} ms, "
                f"p99 {p99 * 1000:.0f} ms, max {worst * 1000:.0f} ms "
                f"(bound {self.caps.liveness_s:g}s)",
                evidence,
            )
        )

    # 6 -------------------------------------------------------------------------------------------

    def boundedness(self) -> None:
        samples, _ = read_lines(Path(self.m["samples"]))
        evidence: list[str] = []
        caps = self.caps
        peak: dict[str, float] = defaultdict(float)
        for s in samples:
            for key, cap in (
                ("rss_kb", caps.rss_mb * 1024),
                ("fds", caps.fds),
                ("pending", caps.pending),
                ("inbox", caps.inbox),
            ):
                value = s.get(key)
                if value is None:
                    continue
                peak[key] = max(peak[key], float(value))
                if value > cap:
                    evidence.append(
                        f"node {s['node']} at {s['t']:.0f}: {key} {value} > cap {cap:g}"
                    )
        if not samples:
            evidence.append("no samples")
        flat = self.flatness(samples)
        cpu = self.cpu(samples)
        self.report.figures["boundedness"] = {"samples": len(samples), **peak, **flat, **cpu}
        figure = (
            f"{len(samples)} samples; peaks RSS {peak['rss_kb'] / 1024:.0f} MB "
            f"(cap {caps.rss_mb:g}), fds {peak['fds']:.0f} (cap {caps.fds}), pending "
            f"{peak['pending']:.0f} (cap {caps.pending}), inbox {peak['inbox']:.0f} "
            f"(cap {caps.inbox})"
        )
        if cpu:
            figure += (
                f"; the nodes used {cpu['node_cores']:.2f} cores on average "
                f"(machine load average {cpu['load1_mean']:.1f} on {cpu['cpus']} CPUs)"
            )
        if flat.get("rss_ratio") is not None:
            figure += (
                f"; steady state first->last quarter: RSS {flat['rss_q1_mb']:.1f} -> "
                f"{flat['rss_q4_mb']:.1f} MB/node ({flat['rss_ratio']:+.1%}), fds "
                f"{flat['fds_q1']:.1f} -> {flat['fds_q4']:.1f} ({flat['fds_ratio']:+.1%})"
            )
            if self.flat:
                for key in ("rss_ratio", "fds_ratio"):
                    if flat[key] > caps.flat_ratio:
                        evidence.append(f"{key} {flat[key]:+.1%} exceeds {caps.flat_ratio:.0%}")
        elif self.flat:
            evidence.append(f"not enough steady-state samples to judge flatness: {flat}")
        self.report.add(Finding(6, "boundedness", not evidence, figure, evidence))

    def cpu(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Average cores the node processes used, and the machine's load average meanwhile."""
        if not samples:
            return {}
        used: dict[int, float] = {}
        for s in samples:
            if "cpu_s" in s:
                used[int(s["pid"])] = max(used.get(int(s["pid"]), 0.0), float(s["cpu_s"]))
        loads = [float(s["load1"]) for s in samples if "load1" in s]
        timeline = self.m["timeline"]
        end = timeline.get("stopped") or max(float(s["t"]) for s in samples)
        span = end - (timeline.get("start") or end)
        if not used or not loads or span <= 0:
            return {}
        return {
            "node_cores": sum(used.values()) / span,
            "load1_mean": statistics.fmean(loads),
            "cpus": os.cpu_count(),
        }

    def flatness(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Mean RSS and fds per node sample, first against last quarter of the load, counting
        only processes past their warm-up (a restarted node starts small again)."""
        timeline = self.m["timeline"]
        start = timeline.get("load_started") or timeline.get("start")
        end = timeline.get("load_stopped") or timeline.get("stopped")
        if not start or not end:
            return {}
        born = {
            int(inst["pid"]): float(inst["started"])
            for node in self.nodes
            for inst in node["instances"]
        }
        steady = [
            s
            for s in samples
            if "rss_kb" in s
            and s["t"] - born.get(int(s["pid"]), start) >= self.caps.warmup_s
            and start + self.caps.warmup_s <= s["t"] <= end
        ]
        if len(steady) < 8:
            return {"steady_samples": len(steady)}
        first = start + self.caps.warmup_s
        quarter = (end - first) / 4
        q1 = [s for s in steady if s["t"] < first + quarter]
        q4 = [s for s in steady if s["t"] >= end - quarter]
        if not q1 or not q4:
            return {"steady_samples": len(steady)}
        rss1 = statistics.fmean(s["rss_kb"] for s in q1) / 1024
        rss4 = statistics.fmean(s["rss_kb"] for s in q4) / 1024
        fds1 = statistics.fmean(s["fds"] for s in q1)
        fds4 = statistics.fmean(s["fds"] for s in q4)
        return {
            "steady_samples": len(steady),
            "rss_q1_mb": rss1,
            "rss_q4_mb": rss4,
            "rss_ratio": rss4 / rss1 - 1,
            "fds_q1": fds1,
            "fds_q4": fds4,
            "fds_ratio": fds4 / fds1 - 1,
        }

    # 7 -------------------------------------------------------------------------------------------

    def reproducibility(self) -> None:
        evidence: list[str] = []
        shape = faults.Shape(**self.m["shape"])
        recorded = faults.from_json(self.m["schedule"])
        again = faults.make_schedule(int(self.m["seed"]), shape)
        if again != recorded:
            evidence.append("the schedule regenerated from the seed differs from the one that ran")
        steps = Counter((e["fault"], e["step"]) for e in self.m["fault_log"])
        for fault in recorded:
            wanted = ["begin", "heal"] + (["inject"] if fault.kind == faults.DOUBLE_SPEND else [])
            evidence += [
                f"fault #{fault.number} ({fault.kind}): step {w} did not run"
                for w in wanted
                if steps[(fault.number, w)] != 1
            ]
        kinds = Counter(f.kind for f in recorded)
        self.report.figures["reproducibility"] = {
            "seed": self.m["seed"],
            "fingerprint": faults.fingerprint(recorded),
            "faults": dict(kinds),
        }
        self.report.add(
            Finding(
                7,
                "reproducibility",
                not evidence,
                f"seed {self.m['seed']}, schedule {faults.fingerprint(recorded)} "
                f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}) regenerates from "
                f"the seed; every fault begun and healed; replay with {self.m['replay']}",
                evidence + [f.describe() for f in recorded] if evidence else [],
            )
        )

    # processes ---------------------------------------------------------------------------------

    def processes(self) -> None:
        evidence: list[str] = []
        if self.m.get("failure"):
            evidence.append(f"the run failed: {self.m['failure']}")
        codes = self.m.get("exit_codes", {})
        evidence += [f"node {i} exited with {c} on SIGTERM" for i, c in codes.items() if c != 0]
        if len(codes) != len(self.nodes):
            evidence.append(f"exit codes of {len(codes)} of {len(self.nodes)} nodes")
        for crash in self.m.get("crashes", []):
            tail = crash["log_tail"].splitlines()[-3:]
            evidence.append(
                f"node {crash['node']} exited by itself ({crash['exit_code']}): {' | '.join(tail)}"
            )
        loads = self.m.get("load_exit_codes", {})
        evidence += [f"load {i} exited with {c}" for i, c in loads.items() if c != 0]
        evidence += [f"cleanup: {p}" for p in self.m.get("cleanup_problems", [])]
        self.report.add(
            Finding(
                0,
                "processes",
                not evidence,
                f"{sum(1 for c in codes.values() if c == 0)}/{len(self.nodes)} nodes exited 0 on "
                f"SIGTERM, {len(self.m.get('crashes', []))} unplanned exits, namespaces and "
                f"links removed",
                evidence,
            )
        )


def check(manifest_path: Path, caps: Caps | None = None, *, flat: bool = False) -> Report:
    manifest = json.loads(manifest_path.read_text())
    return Checker(manifest, caps or Caps(), flat=flat).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="check a chaos run's invariants")
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--flat", action="store_true", help="also require flat memory and fds")
    parser.add_argument("--liveness-bound", type=float, default=Caps.liveness_s)
    args = parser.parse_args(argv)
    report = check(args.manifest, Caps(liveness_s=args.liveness_bound), flat=args.flat)
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
