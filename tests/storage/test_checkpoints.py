"""The WAL is copied into the database by a background connection, not by the commits."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage import store as store_module
from storage.store import Store, _checkpoint
from tests.conftest import wait_until


async def test_wal_is_checkpointed_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "CHECKPOINT_INTERVAL_S", 0.05)
    path = tmp_path / "node.db"
    store = Store(path)
    await store.open()
    try:
        size_before = path.stat().st_size
        for index in range(20):
            async with store.transaction(durable=False) as db:
                await db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?)", (f"k{index}", bytes(3000))
                )
        # Far below the commits' own threshold (WAL_AUTOCHECKPOINT_PAGES): only the background
        # connection can have copied these pages into the database file.
        await wait_until(
            lambda: path.stat().st_size > size_before + 20 * 3000,
            within=10,
            what="the database file to take in the WAL",
        )
    finally:
        await store.close()
    reopened = Store(path)
    await reopened.open()
    try:
        assert await reopened.get_meta("k19") == bytes(3000)
    finally:
        await reopened.close()


def wal_generation(path: Path) -> bytes:
    """The WAL header's checkpoint sequence number and salts: they change exactly when a commit
    starts the WAL over, the step that syncs the new header."""
    with open(f"{path}-wal", "rb") as wal:
        return wal.read(24)[12:24]


async def test_the_checkpointer_starts_the_wal_over_so_that_loop_commits_never_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit on the loop must not be the first after a complete checkpoint: that commit
    starts the WAL over and syncs its header, stalling every node in the process."""
    monkeypatch.setattr(store_module, "CHECKPOINT_INTERVAL_S", 3600.0)  # rounds run by hand
    path = tmp_path / "node.db"
    store = Store(path)
    await store.open()
    checkpointer = sqlite3.connect(path, isolation_level=None)
    try:

        def put(key: str) -> None:
            assert store.run_now(
                lambda db: db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?)", (key, bytes(3000))
                )
            )

        for index in range(5):
            put(f"before {index}")
        generation = wal_generation(path)
        _checkpoint(checkpointer)
        restarted = wal_generation(path)
        assert restarted != generation  # started over here, on the checkpointer's connection
        put("after the checkpoint")
        assert wal_generation(path) == restarted  # the loop's commit only appended
        # Idle: the next round copies the frames above and starts over once more; then the
        # rounds find only their own one-page restart and leave the WAL (and the disk) alone.
        _checkpoint(checkpointer)
        idle = wal_generation(path)
        assert idle != restarted
        _checkpoint(checkpointer)
        _checkpoint(checkpointer)
        assert wal_generation(path) == idle
        assert await store.get_meta("after the checkpoint") == bytes(3000)
    finally:
        checkpointer.close()
        await store.close()


async def test_a_reader_holding_the_wal_keeps_it_from_starting_over(tmp_path: Path) -> None:
    """An incomplete checkpoint (a reader still needs WAL frames) must not restart anything;
    the reader's snapshot stays readable."""
    path = tmp_path / "node.db"
    store = Store(path)
    await store.open()
    checkpointer = sqlite3.connect(path, isolation_level=None)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        assert store.run_now(
            lambda db: db.execute("INSERT INTO meta (key, value) VALUES ('a', x'01')")
        )
        reader.execute("BEGIN")
        assert reader.execute("SELECT value FROM meta WHERE key = 'a'").fetchone() == (b"\x01",)
        assert store.run_now(
            lambda db: db.execute("INSERT INTO meta (key, value) VALUES ('b', x'02')")
        )
        generation = wal_generation(path)
        _checkpoint(checkpointer)
        assert wal_generation(path) == generation
        assert reader.execute("SELECT value FROM meta WHERE key = 'b'").fetchone() is None
        reader.execute("COMMIT")
    finally:
        reader.close()
        checkpointer.close()
        await store.close()
