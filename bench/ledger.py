"""Ledger benchmark: transfers applied/s end to end, beside a bare sqlite3 floor.

What is measured, on a temporary SQLite file per run (WAL, ``synchronous=FULL``, as the store sets
it), with A funded accounts:
  - local:  transfers authored through `Intent`s the way the daemon does it - the API's send, and
            the recipient's claim once the send is committed (automation) - so each plan holds the
            sends of batch k and the claims of batch k-1. Per plan: `Replica.build_plan` (judge,
            sign, apply the ledger rules), `EventStore.commit` (one transaction, one fsync),
            `Replica.commit`. Transfers/s = completed transfers (claims committed) / wall time.
  - remote: the same events applied as a peer would: `Event.decode`, `check_signature`,
            `Replica` plan and `EventStore.commit` on a second store, in the same batches.
  - floor:  bare stdlib sqlite3 writing the same rows (events, sends, claim and state updates,
            balances, feed heads) into the same schema (our migrations), one transaction per
            batch, same journal mode and synchronous setting; no aiosqlite thread, no Python rules.
Both stores must end with the same ledger state hash (checked). Medians over R runs.
Goals: the issue sets no number; the ratios ours / floor show what signing, verifying, judging and
aiosqlite cost on top of the bare writes (the fsync per batch is in both).

Usage: python bench/ledger.py [--transfers N] [--batch B[,B2...]] [--accounts A] [--runs R]
                              [--dir D]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path, and there "protocol" would name
# the bench script, not the package: put the repository there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from protocol.events import Body, Claim, Enroll, Event, Send
from protocol.identity import SigningKey
from protocol.ledger import Ledger, original_genesis
from protocol.replica import InboxItem, Incoming, Intent, Plan, Replica
from storage.events import EventStore, send_row
from storage.store import Store, migrations

#: Every account starts with this much (minor units); transfers move 1..100 cents.
FUNDING = 1_000_000_00
#: The "peer" a remote replica receives the events from.
PEER = bytes(range(32))


def now_ms() -> int:
    return int(time.time() * 1000)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


@dataclass
class Timed:
    """The plans of one measured phase, in commit order, and how long they took."""

    plans: list[Plan] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class RunResult:
    batch: int
    transfers: int
    events: int
    local_s: float
    remote_s: float
    floor_s: float
    floor_rows: int
    plans: int


class ReplicaStore:
    """One replica and its store, fed with inbox items and committed plan by plan."""

    def __init__(self, path: Path) -> None:
        self.store = Store(path)
        self.events = EventStore(self.store)
        self.replica = Replica()

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    async def apply(self, items: Sequence[InboxItem]) -> list[Plan]:
        """Submit ``items`` and commit plans until the inbox is empty; every item must pass."""
        replica = self.replica
        for item in items:
            if not replica.submit(item):
                raise RuntimeError("the replica's inbox is full: use a smaller batch")
        plans: list[Plan] = []
        while True:
            plan = replica.build_plan(now_ms())
            if plan is None:
                break
            if plan.rejected:
                raise RuntimeError(f"the benchmark broke a rule: {plan.rejected[0].error}")
            await self.events.commit(plan)
            replica.commit(plan)
            plans.append(plan)
        return plans


def fixed(body: Body) -> Callable[[Ledger], Body]:
    return lambda _ledger: body


def claim_of(intent: Intent) -> Callable[[Ledger], Body]:
    """The claim of the send ``intent`` authored (it is committed by the time this runs)."""

    def make_body(_ledger: Ledger) -> Body:
        event = intent.event
        assert event is not None
        assert isinstance(event.body, Send)
        return Claim(event.id, event.author, event.seq, event.body.amount)

    return make_body


async def setup_local(bench: ReplicaStore, accounts: list[SigningKey]) -> list[Plan]:
    """Genesis, enrolments, and a funding transfer (send + claim) to every account."""
    pool = SigningKey.generate()
    node = SigningKey.generate().public
    plans = await bench.apply([Intent(pool, fixed(original_genesis("ledger bench")))])
    plans += await bench.apply(
        [Intent(key, fixed(Enroll(f"account {i}", node))) for i, key in enumerate(accounts)]
    )
    sends = [Intent(pool, fixed(Send(key.public, FUNDING, "transfer", ""))) for key in accounts]
    plans += await bench.apply(sends)
    plans += await bench.apply(
        [Intent(key, claim_of(send)) for key, send in zip(accounts, sends, strict=True)]
    )
    return plans


async def transfers_local(
    bench: ReplicaStore, accounts: list[SigningKey], transfers: int, batch: int
) -> Timed:
    """Pipelined: each plan holds this batch's sends and the claims of the previous batch's."""
    count = len(accounts)
    timed = Timed()
    previous: list[tuple[SigningKey, Intent]] = []
    start = time.perf_counter()
    for first in range(0, transfers + batch, batch):
        items: list[InboxItem] = [Intent(key, claim_of(send)) for key, send in previous]
        previous = []
        for i in range(first, min(first + batch, transfers)):
            sender = accounts[i % count]
            recipient = accounts[(i + 1 + (i // count) % (count - 1)) % count]
            send = Intent(sender, fixed(Send(recipient.public, 1 + i % 100, "transfer", "")))
            items.append(send)
            previous.append((recipient, send))
        if items:
            timed.plans += await bench.apply(items)
    timed.seconds = time.perf_counter() - start
    return timed


async def replay_remote(bench: ReplicaStore, raws: list[bytes]) -> None:
    """Decode, verify and apply the setup's events as received from a peer (not timed)."""
    events = [Event.decode(raw) for raw in raws]
    network = events[0].id  # the genesis
    for event in events:
        event.check_signature(network)
    await bench.apply([Incoming(event, PEER) for event in events])


async def transfers_remote(bench: ReplicaStore, batches: list[list[bytes]]) -> float:
    start = time.perf_counter()
    network = bench.replica.network_id
    assert network is not None
    for raws in batches:
        items: list[InboxItem] = []
        for raw in raws:
            event = Event.decode(raw)
            event.check_signature(network)
            items.append(Incoming(event, PEER))
        await bench.apply(items)
    return time.perf_counter() - start


# --- the floor: bare sqlite3, the same rows -------------------------------------------------------


@dataclass
class FloorBatch:
    """The rows one plan writes, prepared before timing."""

    events: list[tuple[Any, ...]]
    sends: list[tuple[Any, ...]]
    claims: list[tuple[Any, ...]]
    balances: list[tuple[Any, ...]]
    states: list[tuple[Any, ...]]
    heads: list[tuple[Any, ...]]

    @property
    def rows(self) -> int:
        return sum(
            len(rows)
            for rows in (
                self.events,
                self.sends,
                self.claims,
                self.balances,
                self.states,
                self.heads,
            )
        )


def floor_rows(plan: Plan, received: float) -> FloorBatch:
    batch = FloorBatch([], [], [], [], [], [])
    for item in plan.accepted:
        event = item.event
        batch.events.append(
            (event.id, event.author, event.seq, event.kind, event.ts, event.raw, received)
        )
        body = event.body
        if isinstance(body, Send):
            batch.sends.append(send_row(event, plan.send_states.get(event.id, "unclaimed")))
        elif isinstance(body, Claim):
            batch.claims.append((event.id, body.send))
    batch.balances = [(r.account, r.balance, r.face, r.received, r.sent) for r in plan.balances]
    batch.states = [(state, send_id) for send_id, state in plan.send_states.items()]
    batch.heads = [(h.author, h.seq, h.head_id, h.frozen_at) for h in plan.heads.values()]
    return batch


def floor_open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    for migration in migrations():
        db.executescript(migration.sql)
    return db


def floor_write(db: sqlite3.Connection, batch: FloorBatch) -> None:
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO events (id, author, seq, kind, ts, raw, received_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        batch.events,
    )
    db.executemany(
        "INSERT INTO sends (id, sender, seq, recipient, amount, purpose, memo, ts, state) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        batch.sends,
    )
    db.executemany("UPDATE sends SET claim_id = ? WHERE id = ?", batch.claims)
    db.executemany(
        "INSERT INTO feed_heads (author, seq, head_id, frozen_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (author) DO UPDATE SET seq = excluded.seq, head_id = excluded.head_id",
        batch.heads,
    )
    db.executemany(
        "INSERT INTO balances (account, balance, face, received, sent) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (account) DO UPDATE SET balance = excluded.balance, face = excluded.face, "
        "received = excluded.received, sent = excluded.sent",
        batch.balances,
    )
    db.executemany("UPDATE sends SET state = ? WHERE id = ?", batch.states)
    db.execute("COMMIT")


def run_floor(path: Path, setup: list[Plan], timed: list[Plan]) -> tuple[float, int]:
    received = time.time()
    db = floor_open(path)
    try:
        for plan in setup:
            floor_write(db, floor_rows(plan, received))
        batches = [floor_rows(plan, received) for plan in timed]
        start = time.perf_counter()
        for batch in batches:
            floor_write(db, batch)
        seconds = time.perf_counter() - start
    finally:
        db.close()
    return seconds, sum(batch.rows for batch in batches)


# --- one run --------------------------------------------------------------------------------------


async def one_run(work: Path, transfers: int, batch: int, account_count: int) -> RunResult:
    accounts = [SigningKey.generate() for _ in range(account_count)]
    local = ReplicaStore(work / "local.sqlite")
    remote = ReplicaStore(work / "remote.sqlite")
    await local.open()
    await remote.open()
    try:
        setup = await setup_local(local, accounts)
        timed = await transfers_local(local, accounts, transfers, batch)
        await replay_remote(remote, [i.event.raw for plan in setup for i in plan.accepted])
        batches = [[i.event.raw for i in plan.accepted] for plan in timed.plans]
        remote_s = await transfers_remote(remote, batches)
        if local.replica.ledger.state_hash() != remote.replica.ledger.state_hash():
            raise RuntimeError("the two stores disagree on the ledger state")
        if not local.replica.ledger.conserved():
            raise RuntimeError("supply is not conserved")
    finally:
        await local.close()
        await remote.close()
    floor_s, rows = run_floor(work / "floor.sqlite", setup, timed.plans)
    events = sum(len(plan.accepted) for plan in timed.plans)
    return RunResult(
        batch, transfers, events, timed.seconds, remote_s, floor_s, rows, len(timed.plans)
    )


def report(results: list[RunResult]) -> None:
    first = results[0]
    local = statistics.median(r.local_s for r in results)
    remote = statistics.median(r.remote_s for r in results)
    floor = statistics.median(r.floor_s for r in results)
    n, events = first.transfers, first.events
    print(
        f"batch {first.batch} transfers ({first.plans} plans of ~{events // first.plans} events,"
        f" sends of batch k + claims of batch k-1); {n} transfers = {events} events"
    )
    print(
        f"  local  (author: sign, judge, store, balances) : {rate(n, local):7.0f} transfers/s"
        f"  {rate(events, local):7.0f} events/s"
    )
    print(
        f"  remote (decode, verify, judge, store)         : {rate(n, remote):7.0f} transfers/s"
        f"  {rate(events, remote):7.0f} events/s"
    )
    print(
        f"  floor  (bare sqlite3, the same rows)          : {rate(n, floor):7.0f} transfers/s"
        f"  {rate(first.floor_rows, floor):7.0f} rows/s ({first.floor_rows} rows)"
    )
    print(f"  ratio local / floor  : {floor / local:5.2f}")
    print(f"  ratio remote / floor : {floor / remote:5.2f}")


async def amain(args: argparse.Namespace) -> None:
    batches = [int(b) for b in str(args.batch).split(",")]
    base = Path(tempfile.mkdtemp(prefix="ln-bench-ledger-", dir=args.dir))
    try:
        load = os.getloadavg()
        print(
            f"runs: {args.runs} (medians); accounts: {args.accounts}; synchronous=FULL, WAL; "
            f"files in {base}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        for batch in batches:
            results = []
            for run in range(args.runs):
                work = base / f"b{batch}-r{run}"
                work.mkdir()
                results.append(await one_run(work, args.transfers, batch, args.accounts))
                shutil.rmtree(work, ignore_errors=True)
            report(results)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=5_000)
    parser.add_argument(
        "--batch", default="10,200", help="transfers per plan; a comma-separated list runs each"
    )
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--dir", default=None, help="where the SQLite files go (default: the system temp dir)"
    )
    args = parser.parse_args()
    if args.accounts < 2:
        parser.error("--accounts must be at least 2")
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
