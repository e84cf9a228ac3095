from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage.errors import CorruptDatabase, MigrationError
from storage.events import LEDGER_EVENTS_SQL
from storage.store import EVENT_COUNTS_SQL, LEDGER_KINDS_WHERE, Store, _statements, migrations

EXPECTED_TABLES = {
    "meta",
    "events",
    "feed_heads",
    "fork_proofs",
    "archived_events",
    "accounts",
    "balances",
    "sends",
    "messages",
    "nodes",
    "connections",
    "routes",
    "schema_version",
}


async def test_migrations_from_empty_then_rerun(tmp_path: Path) -> None:
    store = Store(tmp_path / "node.db")
    await store.open()
    try:
        latest = len(migrations())
        assert await store.schema_version() == latest
        rows = await store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        assert {row[0] for row in rows} >= EXPECTED_TABLES
        # Re-running applies nothing and keeps one row per migration.
        assert await store.migrate() == []
        rows = await store.fetchall("SELECT version FROM schema_version ORDER BY version")
        assert [row[0] for row in rows] == list(range(1, latest + 1))
        journal = await store.fetchone("PRAGMA journal_mode")
        assert journal is not None
        assert journal[0] == "wal"
        sync = await store.fetchone("PRAGMA synchronous")
        assert sync is not None
        assert sync[0] == 2
    finally:
        await store.close()
    # Opening again (a restart) applies nothing either.
    again = Store(tmp_path / "node.db")
    await again.open()
    assert await again.migrate() == []
    await again.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    store = Store(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_version VALUES (999, '0999_future.sql', 0)")
    with pytest.raises(MigrationError, match="newer than this program"):
        await Store(path).open()


async def test_garbage_file_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    path.write_bytes(b"this is not a database" * 200)
    with pytest.raises(CorruptDatabase):
        await Store(path).open()


async def test_meta_roundtrip(tmp_path: Path) -> None:
    store = Store(tmp_path / "node.db")
    await store.open()
    try:
        assert await store.get_meta("x") is None
        await store.set_meta("x", b"1")
        await store.set_meta("x", b"2")
        assert await store.get_meta("x") == b"2"
    finally:
        await store.close()


def _database_at(path: Path, version: int) -> None:
    """A database as a program that shipped the first ``version`` migrations left it."""
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute(
            "CREATE TABLE schema_version ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        for migration in migrations()[:version]:
            for statement in _statements(migration.sql):
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_version VALUES (?, ?, 0)", (migration.version, migration.name)
            )
    db.close()


async def test_spread_statistics_move_into_messages(tmp_path: Path) -> None:
    """0004: each message keeps its spread figures; posts are counted without the kind index."""
    path = tmp_path / "node.db"
    _database_at(path, 3)
    with sqlite3.connect(path) as db:
        rows = [(b"g", "genesis"), (b"p1", "post"), (b"p2", "post"), (b"s", "send")]
        for seq, (event_id, kind) in enumerate(rows, start=1):
            db.execute(
                "INSERT INTO events (id, author, seq, kind, ts, raw, received_at) "
                "VALUES (?, ?, ?, ?, 0, ?, 0)",
                (event_id, b"author", seq, kind, event_id),
            )
        for event_id in (b"p1", b"p2"):
            db.execute(
                "INSERT INTO messages (id, author, channel, priority, content, ts) "
                "VALUES (?, ?, 'social', 3, 'hi', 0)",
                (event_id, b"author"),
            )
        db.execute(
            "INSERT INTO message_spread (message_id, first_seen, from_peer, forwarded_to) "
            "VALUES (?, 12.5, ?, 4)",
            (b"p1", b"peer"),
        )
    db.close()
    store = Store(path)
    await store.open()
    try:
        assert await store.schema_version() == len(migrations())
        rows = await store.fetchall(
            "SELECT id, first_seen, from_peer, forwarded_to FROM messages ORDER BY id"
        )
        assert [tuple(row) for row in rows] == [(b"p1", 12.5, b"peer", 4), (b"p2", 0.0, None, 0)]
        tables = await store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        assert "message_spread" not in {row[0] for row in tables}
        assert await store.event_counts() == {"genesis": 1, "send": 1, "post": 2}
        assert LEDGER_KINDS_WHERE in migrations()[3].sql  # the index's own words
        for query in (LEDGER_EVENTS_SQL, EVENT_COUNTS_SQL):
            assert LEDGER_KINDS_WHERE in query
            plan = await store.fetchall(f"EXPLAIN QUERY PLAN {query}")
            assert any("events_ledger" in str(row[-1]) for row in plan), [tuple(r) for r in plan]
    finally:
        await store.close()
