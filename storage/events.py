"""The event log in SQLite: plans written in one transaction, and the reads gossip and the API need.

`EventStore.commit` writes everything a `Plan` changes - events, feed heads, balances, sends,
accounts, messages, fork proofs, archive moves - in one ``BEGIN IMMEDIATE ... COMMIT``, synced to
disk when the plan holds ledger events (see `_needs_fsync`). The plan's events are accepted only
once this returns; if it raises, nothing of the plan is in the database and the replica rolls
back too.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from protocol.events import ZERO_ID, Claim, Enroll, Event, Genesis, Post, Send
from protocol.ledger import Account, SendRecord, parse_period
from protocol.replica import ForkProof, Head, Incoming, OldEvent, Plan, Replica, is_ledger_event
from storage.errors import CorruptDatabase
from storage.store import Store

#: Rows per executemany batch when streaming the log.
STREAM_BATCH = 2_000
#: Most items in a plan committed on the event loop (`commit_now`): 256 posts take ~10 ms here;
#: a bigger plan (a catch-up batch) goes to the writer's thread rather than stall the loop.
COMMIT_NOW_MAX_ITEMS = 256
#: The ledger's events in insertion (causal) order, through the partial index `events_ledger`.
LEDGER_EVENTS_SQL = (
    "SELECT raw FROM events WHERE kind IN ('genesis', 'enroll', 'send', 'claim') ORDER BY rowid"
)


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: bytes
    author: bytes
    channel: str
    priority: int
    content: str
    ts: int
    first_seen: float
    from_peer: bytes | None
    forwarded_to: int


class EventStore:
    """Event-log operations on a `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- writing ---------------------------------------------------------------------------------

    async def commit(self, plan: Plan, *, now: float | None = None) -> None:
        """Write ``plan`` atomically and durably; raises a StorageError and writes nothing."""
        if not plan.writes and plan.network_id is None:
            return
        received = time.time() if now is None else now
        await self.store.run(lambda db: self._write(db, plan, received), durable=_needs_fsync(plan))

    def commit_now(self, plan: Plan, *, now: float | None = None) -> bool:
        """Write ``plan`` here and now if it needs no fsync and nothing has to be waited for
        (`Store.run_now`); False if it was not written: then `commit` it. Raises a StorageError
        and writes nothing, as `commit` does."""
        if _needs_fsync(plan) or len(plan.items) > COMMIT_NOW_MAX_ITEMS:
            return False
        if not plan.writes and plan.network_id is None:
            return True
        received = time.time() if now is None else now
        return self.store.run_now(lambda db: self._write(db, plan, received))

    def _write(self, db: sqlite3.Connection, plan: Plan, received: float) -> None:
        events = [item.event for item in plan.accepted]
        db.executemany(
            "INSERT INTO events (id, author, seq, kind, ts, raw, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(e.id, e.author, e.seq, e.kind, e.ts, e.raw, received) for e in events],
        )
        if plan.archived:
            # Before the claims below: a claim in this plan may name an archived send.
            db.executemany(
                "INSERT OR IGNORE INTO archived_events (id, author, seq, raw) VALUES (?, ?, ?, ?)",
                [(e.id, e.author, e.seq, e.raw) for e in plan.archived],
            )
            self._insert_sends(
                db, [e for e in plan.archived if isinstance(e.body, Send)], default_state="void"
            )
        self._write_derived(db, plan.accepted, plan.send_states, received)
        if plan.network_id is not None:
            genesis = next(e for e in events if e.id == plan.network_id)
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("network_id", plan.network_id), ("genesis", genesis.raw)],
            )
        for proof in plan.forks:
            db.execute(
                "INSERT INTO fork_proofs (author, seq, event_a, event_b, detected_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (author) DO UPDATE SET "
                "seq = excluded.seq, event_a = excluded.event_a, event_b = excluded.event_b, "
                "detected_at = excluded.detected_at WHERE excluded.seq <= fork_proofs.seq",
                (proof.author, proof.seq, proof.event_a.raw, proof.event_b.raw, received),
            )
        db.executemany(
            "INSERT INTO feed_heads (author, seq, head_id, frozen_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (author) DO UPDATE SET seq = excluded.seq, head_id = excluded.head_id, "
            "frozen_at = excluded.frozen_at",
            [(h.author, h.seq, h.head_id, h.frozen_at) for h in plan.heads.values()],
        )
        for author, seq in plan.archive_from.items():
            self._archive(db, author, seq)
        self._write_ledger(db, plan)

    def _write_derived(
        self,
        db: sqlite3.Connection,
        accepted: list[Incoming],
        send_states: dict[bytes, str],
        received: float,
    ) -> None:
        accounts: list[tuple[Any, ...]] = []
        sends: list[Event] = []
        claims: list[tuple[Any, ...]] = []
        messages: list[tuple[Any, ...]] = []
        for item in accepted:
            event, body = item.event, item.event.body
            if isinstance(body, Enroll):
                accounts.append((event.author, body.name, body.node, event.ts))
            elif isinstance(body, Send):
                sends.append(event)
            elif isinstance(body, Claim):
                claims.append((event.id, body.send))
            elif isinstance(body, Post):
                messages.append(
                    (
                        event.id,
                        event.author,
                        body.channel,
                        body.priority,
                        body.content,
                        event.ts,
                        received,
                        item.origin,
                    )
                )
        if accounts:
            db.executemany(
                "INSERT OR REPLACE INTO accounts (id, name, node, enrolled_at) VALUES (?, ?, ?, ?)",
                accounts,
            )
        self._insert_sends(db, sends, states=send_states)
        if claims:
            db.executemany("UPDATE sends SET claim_id = ? WHERE id = ?", claims)
        if messages:
            db.executemany(
                "INSERT INTO messages "
                "(id, author, channel, priority, content, ts, first_seen, from_peer) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                messages,
            )

    def _insert_sends(
        self,
        db: sqlite3.Connection,
        sends: list[Event],
        *,
        states: dict[bytes, str] | None = None,
        default_state: str = "unclaimed",
    ) -> None:
        rows = [send_row(event, (states or {}).get(event.id, default_state)) for event in sends]
        if rows:
            db.executemany(
                "INSERT OR IGNORE INTO sends "
                "(id, sender, seq, recipient, amount, purpose, memo, ts, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def _archive(self, db: sqlite3.Connection, author: bytes, seq: int) -> None:
        """Move a frozen author's events from ``seq`` on out of the log."""
        db.execute(
            "INSERT OR IGNORE INTO archived_events (id, author, seq, raw) "
            "SELECT id, author, seq, raw FROM events WHERE author = ? AND seq >= ?",
            (author, seq),
        )
        db.execute(
            "DELETE FROM messages WHERE id IN "
            "(SELECT id FROM events WHERE author = ? AND seq >= ?)",
            (author, seq),
        )
        # An archived claim no longer counts: the send it named is open again.
        db.execute(
            "UPDATE sends SET claim_id = NULL WHERE claim_id IN "
            "(SELECT id FROM events WHERE author = ? AND seq >= ?)",
            (author, seq),
        )
        db.execute("DELETE FROM events WHERE author = ? AND seq >= ?", (author, seq))
        if seq <= 1:
            db.execute("DELETE FROM accounts WHERE id = ?", (author,))
        cursor = db.execute(
            "SELECT seq, id FROM events WHERE author = ? ORDER BY seq DESC LIMIT 1", (author,)
        )
        row = cursor.fetchone()
        head_seq, head_id = (int(row[0]), bytes(row[1])) if row else (0, ZERO_ID)
        db.execute(
            "INSERT INTO feed_heads (author, seq, head_id, frozen_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (author) DO UPDATE SET seq = excluded.seq, head_id = excluded.head_id, "
            "frozen_at = MIN(COALESCE(feed_heads.frozen_at, excluded.frozen_at), "
            "excluded.frozen_at)",
            (author, head_seq, head_id, seq),
        )

    def _write_ledger(self, db: sqlite3.Connection, plan: Plan) -> None:
        if plan.balances:
            db.executemany(
                "INSERT INTO balances (account, balance, face, received, sent) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET "
                "balance = excluded.balance, face = excluded.face, "
                "received = excluded.received, sent = excluded.sent",
                [(r.account, r.balance, r.face, r.received, r.sent) for r in plan.balances],
            )
        if plan.send_states:
            db.executemany(
                "UPDATE sends SET state = ? WHERE id = ?",
                [(state, send_id) for send_id, state in plan.send_states.items()],
            )

    async def commit_rebuild(self, plan: Plan) -> None:
        """Replace every balance and send state with a rebuilt ledger's."""

        def rebuild(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM balances")
            self._write_ledger(db, plan)

        await self.store.run(rebuild)

    # --- reading for gossip ----------------------------------------------------------------------

    async def lookup(self, items: Iterable[Incoming]) -> list[OldEvent]:
        results: list[OldEvent] = []
        for item in items:
            event = item.event
            stored = await self.at(event.author, event.seq)
            results.append(OldEvent(event, stored, item.origin))
        return results

    async def at(self, author: bytes, seq: int) -> Event | None:
        row = await self.store.fetchone(
            "SELECT raw FROM events WHERE author = ? AND seq = ?", (author, seq)
        )
        return _decode(row[0]) if row else None

    async def range(self, author: bytes, start: int, stop: int) -> list[bytes]:
        rows = await self.store.fetchall(
            "SELECT raw FROM events WHERE author = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (author, start, stop),
        )
        return [bytes(row[0]) for row in rows]

    async def by_ids(self, ids: Sequence[bytes]) -> list[bytes]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = await self.store.fetchall(
            f"SELECT raw FROM events WHERE id IN ({marks}) "  # noqa: S608 - placeholders only
            f"UNION ALL SELECT raw FROM archived_events WHERE id IN ({marks})",
            (*ids, *ids),
        )
        seen: set[bytes] = set()
        out: list[bytes] = []
        for row in rows:
            raw = bytes(row[0])
            if raw not in seen:
                seen.add(raw)
                out.append(raw)
        return out

    async def stream(self, sql: str, params: Sequence[Any] = ()) -> AsyncIterator[Event]:
        cursor = await self.store.reader.execute(sql, params)
        while True:
            rows = await cursor.fetchmany(STREAM_BATCH)
            if not rows:
                break
            for row in rows:
                yield _decode(row[0])
        await cursor.close()

    async def ledger_events(self) -> list[Event]:
        """Every ledger event in the log, in insertion (causal) order."""
        return [event async for event in self.stream(LEDGER_EVENTS_SQL)]

    async def archived_sends(self) -> list[Event]:
        events = [e async for e in self.stream("SELECT raw FROM archived_events")]
        return [e for e in events if isinstance(e.body, Send)]

    async def heads_of(self, authors: Iterable[bytes]) -> dict[bytes, Head]:
        heads: dict[bytes, Head] = {}
        for author in authors:
            row = await self.store.fetchone(
                "SELECT seq, id, ts FROM events WHERE author = ? ORDER BY seq DESC LIMIT 1",
                (author,),
            )
            heads[author] = (
                Head(int(row[0]), bytes(row[1]), int(row[2])) if row else Head(0, ZERO_ID, 0)
            )
        return heads

    async def rebuild(self, replica: Replica) -> Plan:
        """Replay the log into the replica's ledger and store the result."""
        plan = replica.rebuild_ledger(
            await self.ledger_events(),
            await self.archived_sends(),
            await self.heads_of(list(replica.ledger.frozen)),
        )
        await self.commit_rebuild(plan)
        return plan

    # --- loading a replica at start-up -----------------------------------------------------------

    async def load(self, replica: Replica) -> None:
        """Restore the replica's committed state from the database."""
        store = self.store
        genesis_raw = await store.get_meta("genesis")
        if genesis_raw is not None:
            replica.load_genesis(_decode(genesis_raw))
        for author, seq, head_id, frozen_at in await store.fetchall(
            "SELECT author, seq, head_id, frozen_at FROM feed_heads"
        ):
            ts_row = await store.fetchone("SELECT ts FROM events WHERE id = ?", (bytes(head_id),))
            replica.load_head(
                bytes(author),
                Head(int(seq), bytes(head_id), int(ts_row[0]) if ts_row else 0),
                None if frozen_at is None else int(frozen_at),
            )
        for author, seq, raw_a, raw_b in await store.fetchall(
            "SELECT author, seq, event_a, event_b FROM fork_proofs"
        ):
            replica.load_fork(ForkProof(bytes(author), int(seq), _decode(raw_a), _decode(raw_b)))
        await self._load_ledger(replica)

    async def _load_ledger(self, replica: Replica) -> None:
        ledger = replica.ledger
        genesis = replica.genesis_event
        if genesis is not None:
            body = genesis.body
            assert isinstance(body, Genesis)
            ledger.genesis = body
            ledger.genesis_ts = genesis.ts
            ledger.pool = genesis.author
            ledger.total = body.total
        for account, balance, face, received, sent in await self.store.fetchall(
            "SELECT account, balance, face, received, sent FROM balances"
        ):
            key = bytes(account)
            ledger.balance[key] = int(balance)
            ledger.face[key] = int(face)
            if received:
                ledger.received[key] = int(received)
            if sent:
                ledger.sent[key] = int(sent)
        for account_id, name, node, enrolled_at in await self.store.fetchall(
            "SELECT id, name, node, enrolled_at FROM accounts"
        ):
            key = bytes(account_id)
            ledger.accounts[key] = Account(key, str(name), bytes(node), int(enrolled_at))
        rows = await self.store.fetchall(
            "SELECT id, sender, seq, recipient, amount, purpose, memo, ts, state, claim_id "
            "FROM sends"
        )
        for send_id, sender, seq, recipient, amount, purpose, memo, ts, state, claim_id in rows:
            key = bytes(send_id)
            if claim_id is not None:
                ledger.claimed.add(key)
            else:
                ledger.open_sends[key] = SendRecord(
                    key,
                    bytes(sender),
                    int(seq),
                    bytes(recipient),
                    int(amount),
                    str(purpose),
                    str(memo),
                    int(ts),
                    state == "unclaimed",
                )
            if ledger.pool is not None and bytes(sender) == ledger.pool and state != "void":
                if purpose in ("housing", "investment"):
                    ledger.granted.add((bytes(recipient), str(purpose)))
                elif purpose == "weekly":
                    period = parse_period(str(memo))
                    if period is not None and period > ledger.weekly_paid.get(bytes(recipient), -1):
                        ledger.weekly_paid[bytes(recipient)] = period
        ledger.dirty_accounts.clear()
        ledger.dirty_sends.clear()

    # --- reading for the API ---------------------------------------------------------------------

    async def messages(self, channel: str | None, limit: int = 100) -> list[MessageRow]:
        sql = (
            "SELECT id, author, channel, priority, content, ts, first_seen, from_peer, "
            "forwarded_to FROM messages "
        )
        params: tuple[Any, ...] = ()
        if channel is not None:
            sql += "WHERE channel = ? "
            params = (channel,)
        sql += "ORDER BY ts DESC, id LIMIT ?"
        rows = await self.store.fetchall(sql, (*params, limit))
        return [
            MessageRow(
                bytes(r[0]),
                bytes(r[1]),
                str(r[2]),
                int(r[3]),
                str(r[4]),
                int(r[5]),
                float(r[6] or 0),
                bytes(r[7]) if r[7] is not None else None,
                int(r[8] or 0),
            )
            for r in rows
        ]

    async def note_forwarded(self, counts: dict[bytes, int]) -> None:
        """Record to how many peers each message was forwarded (statistics, not ledger state)."""
        if not counts:
            return
        rows = [(count, message_id) for message_id, count in counts.items()]
        await self.store.run_small(
            lambda db: db.executemany(
                "UPDATE messages SET forwarded_to = forwarded_to + ? WHERE id = ?",
                rows,
            )
        )

    async def account_history(self, account: bytes, limit: int = 100) -> list[sqlite3.Row]:
        return await self.store.fetchall(
            "SELECT id, sender, recipient, amount, purpose, memo, ts, state, claim_id FROM sends "
            "WHERE sender = ? OR recipient = ? ORDER BY ts DESC, id LIMIT ?",
            (account, account, limit),
        )

    async def recent_sends(self, limit: int = 20) -> list[sqlite3.Row]:
        return await self.store.fetchall(
            "SELECT id, sender, recipient, amount, purpose, memo, ts, state FROM sends "
            "ORDER BY ts DESC, id LIMIT ?",
            (limit,),
        )

    async def count_events(self) -> int:
        row = await self.store.fetchone("SELECT COUNT(*) FROM events")
        return int(row[0]) if row else 0


def send_row(event: Event, state: str) -> tuple[Any, ...]:
    """The ``sends`` row of a SEND event, in the column order of `_insert_sends`."""
    body = event.body
    assert isinstance(body, Send)
    return (
        event.id,
        event.author,
        event.seq,
        body.to,
        body.amount,
        body.purpose,
        body.memo,
        event.ts,
        state,
    )


def _needs_fsync(plan: Plan) -> bool:
    """Ledger events and fork proofs are synced to disk before they are acknowledged (they must
    survive power loss). A plan of messages alone is committed to the WAL without an fsync:
    it survives a crash of the process, and the next synced commit makes it durable."""
    return bool(
        plan.forks
        or plan.archive_from
        or plan.balances
        or plan.send_states
        or plan.network_id is not None
        or any(is_ledger_event(item.event) for item in plan.accepted)
    )


def _decode(raw: bytes) -> Event:
    try:
        return Event.decode(bytes(raw))
    except Exception as exc:  # a stored event always decoded once: this is corruption
        raise CorruptDatabase(f"a stored event does not decode: {exc}") from None
