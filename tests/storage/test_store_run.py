"""Store.run: where a transaction runs, and what it does when another process holds the lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from storage.errors import DatabaseLocked, StorageError
from storage.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = Store(tmp_path / "node.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def put(key: str) -> Callable[[sqlite3.Connection], int]:
    def work(db: sqlite3.Connection) -> int:
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, b"v"))
        return threading.get_ident()

    return work


async def test_run_now_runs_on_the_loop_and_run_on_the_writer(store: Store) -> None:
    threads: list[int] = []

    def record(db: sqlite3.Connection) -> None:
        threads.append(put("on the loop")(db))

    assert store.run_now(record)
    assert threads == [threading.get_ident()]
    assert await store.run(put("durable"), durable=True) != threading.get_ident()
    assert await store.run(put("light"), durable=False) != threading.get_ident()
    assert store.run_now(put("on the loop again"))
    for key in ("on the loop", "durable", "light", "on the loop again"):
        assert await store.get_meta(key) == b"v"


async def test_settings_follow_where_the_transaction_runs(store: Store) -> None:
    """No fsync, no busy wait and no automatic checkpoint on the loop; all three on the writer's
    thread, whatever ran before."""

    def settings(db: sqlite3.Connection) -> tuple[int, int, int]:
        return tuple(  # type: ignore[return-value]
            db.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("synchronous", "busy_timeout", "wal_autocheckpoint")
        )

    seen: list[tuple[int, int, int]] = []
    assert store.run_now(lambda db: seen.append(settings(db)))
    assert seen == [(1, 0, 0)]  # NORMAL
    assert await store.run(settings, durable=True) == (2, 5_000, 10_000)  # FULL
    assert await store.run(settings, durable=False) == (1, 5_000, 10_000)
    assert store.run_now(lambda db: seen.append(settings(db)))
    assert seen[-1] == (1, 0, 0)


async def test_a_transaction_left_open_is_rolled_back_before_the_next(store: Store) -> None:
    """A writer interrupted mid-transaction (cancelled twice) must not leave the connection in
    a transaction that swallows the next writers' work."""
    conn = store.db._conn
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO meta (key, value) VALUES ('half', x'00')")
    assert not store.run_now(put("refused on the loop"))
    await store.run(put("after"), durable=False)
    assert await store.get_meta("half") is None
    assert await store.get_meta("after") == b"v"
    assert store.run_now(put("on the loop"))


def hold_write_lock(path: Path, locked: threading.Event, release: threading.Event) -> None:
    other = sqlite3.connect(path, isolation_level=None, timeout=1)
    other.execute("BEGIN IMMEDIATE")
    locked.set()
    release.wait(10)
    other.execute("ROLLBACK")
    other.close()


async def test_a_locked_database_is_waited_for_off_the_loop(store: Store) -> None:
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(store.path, locked, release))
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 5)
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, release.set)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        assert not store.run_now(put("on the loop"))  # refused at once, not waited for
        await store.run(put("after the lock"), durable=False)
        waited = time.monotonic() - started
        ticker.cancel()
    finally:
        release.set()
        await asyncio.to_thread(holder.join, 5)
    assert waited >= 0.25  # it did wait for the other connection...
    assert ticks >= 10  # ...while the loop went on
    assert await store.get_meta("after the lock") == b"v"
    assert store.run_now(put("inline"))


async def test_a_lock_held_past_the_timeout_is_a_typed_error(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storage import store as store_module

    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 100)
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(store.path, locked, release))
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 5)
        with pytest.raises(DatabaseLocked):
            await store.run(put("never"), durable=False)
    finally:
        release.set()
        await asyncio.to_thread(holder.join, 5)
    assert await store.get_meta("never") is None
    await store.run(put("later"), durable=False)
    assert await store.get_meta("later") == b"v"


async def test_run_now_writes_only_when_nothing_is_to_be_waited_for(store: Store) -> None:
    assert store.run_now(put("free"))
    assert await store.get_meta("free") == b"v"
    async with store.transaction():  # another transaction holds the writer
        assert not store.run_now(put("behind a transaction"))
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(store.path, locked, release))
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 5)
        assert not store.run_now(put("behind another process"))
    finally:
        release.set()
        await asyncio.to_thread(holder.join, 5)
    assert await store.get_meta("behind a transaction") is None
    assert await store.get_meta("behind another process") is None
    assert store.run_now(put("free again"))


async def test_run_now_rolls_back_what_fails(store: Store) -> None:
    def half_then_fail(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO meta (key, value) VALUES ('half', x'00')")
        db.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(StorageError):
        store.run_now(half_then_fail)
    assert await store.get_meta("half") is None
    assert store.run_now(put("next"))


async def wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("cancels", [1, 5])
@pytest.mark.parametrize("cancelled_in", ["BEGIN", "a statement"])
@pytest.mark.parametrize("api", ["transaction", "run"])
async def test_a_cancelled_write_holds_the_writer_until_its_thread_is_done(
    store: Store, api: str, cancelled_in: str, cancels: int
) -> None:
    """The writer's thread goes on with a step whose caller was cancelled (once, or again and
    again). The write lock stays held until the thread is done: a commit on the loop would
    otherwise use the connection at the same time as the thread. `transaction` then rolls
    back; `run` hands the whole transaction to the thread, which finishes it."""
    locked, release, in_statement = threading.Event(), threading.Event(), threading.Event()
    holder: threading.Thread | None = None
    if cancelled_in == "BEGIN":  # another process holds the database: BEGIN waits
        holder = threading.Thread(target=hold_write_lock, args=(store.path, locked, release))
        holder.start()
        assert await asyncio.to_thread(locked.wait, 5)

    def held() -> bool:  # the statement waits in a function of ours
        in_statement.set()
        return release.wait(5)

    store.db._conn.create_function("held", 0, held)
    insert = "INSERT INTO meta (key, value) VALUES ('cancelled', held())"

    async def write() -> None:
        if api == "transaction":
            async with store.transaction(durable=False) as db:
                await db.execute(insert)
        else:
            await store.run(lambda db: db.execute(insert), durable=False)

    try:
        task = asyncio.create_task(write())
        if cancelled_in == "BEGIN":
            await wait_until(store._write_lock.locked)
        else:
            await wait_until(in_statement.is_set)
        for _ in range(cancels):
            task.cancel()
            for _ in range(10):  # turns of the loop: each cancellation is delivered
                await asyncio.sleep(0)
        assert store._write_lock.locked()
        assert not store.run_now(put("meanwhile"))
    finally:
        release.set()
        if holder is not None:
            await asyncio.to_thread(holder.join, 5)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert not store._write_lock.locked()
    assert not store.db._conn.in_transaction
    assert store.run_now(put("after"))
    row = await store.fetchone("SELECT COUNT(*) FROM meta WHERE key = 'cancelled'")
    assert row is not None
    assert row[0] == (1 if api == "run" else 0)
    assert await store.get_meta("after") == b"v"
