"""The WAL is copied into the database by a background connection, not by the commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import store as store_module
from storage.store import Store
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
