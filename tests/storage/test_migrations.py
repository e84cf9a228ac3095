from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage.errors import CorruptDatabase, MigrationError
from storage.store import Store, migrations

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
    "message_spread",
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
