"""The node's SQLite store: schema migrations, the event log and the materialised state.

One file per node, WAL mode. A durable transaction (the default, and every one holding ledger
events) runs under ``synchronous=FULL``: its commit returns only after the WAL is synced, so what
it acknowledged survives kill -9 and power loss alike. All writes go through one connection
and a lock serialises its transactions. They run on that connection's aiosqlite thread, except
small ones without fsync (`run_now`), which run on the event loop's.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from storage.errors import MigrationError, StorageError, translate

SQLITE_BUSY_TIMEOUT_MS = 5_000
T = TypeVar("T")
#: Seconds between background WAL checkpoints. SQLite's own checkpoint runs inside the commit that
#: crosses its threshold and holds that commit (and every write queued behind it) for the length
#: of copying the WAL into the database and syncing it; a separate connection does it instead.
CHECKPOINT_INTERVAL_S = 1.0
#: WAL pages from which a commit checkpoints by itself after all: the safety net for a background
#: checkpointer that fell behind (40 MB at 4 KiB pages).
WAL_AUTOCHECKPOINT_PAGES = 10_000
#: The ledger's kinds, word for word as the partial index `events_ledger` (migration 0004) names
#: them: SQLite uses that index only for a query that says exactly this. The queries that want
#: the index spell it out; tests/storage/test_migrations.py checks that they do.
LEDGER_KINDS_WHERE = "kind IN ('genesis', 'enroll', 'send', 'claim')"
#: Events by kind: ledger kinds through the index by kind, posts through messages (one row each).
EVENT_COUNTS_SQL = (
    "SELECT kind, COUNT(*) FROM events WHERE kind IN ('genesis', 'enroll', 'send', 'claim') "
    "GROUP BY kind UNION ALL SELECT 'post', COUNT(*) FROM messages"
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def _checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database and, if all of it was copied, start the WAL over here.

    The first commit after a complete checkpoint starts the WAL over, and syncs its new header
    whatever the commit's own setting (a power cut could otherwise corrupt the database). Left
    to the gossip commits, that sync would stall the event loop at a node's first commit after
    every checkpoint: with checkpoints each second, in the middle of most posts' spread. A
    commit that changes nothing (the header's user version, set to itself) takes that sync on
    this connection's thread instead. The checkpoint is PASSIVE: it never waits for the writer,
    and a busy one only means this round copied less.
    """
    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if row is None or row[1] <= 1 or row[2] != row[1]:
        # Frames left that a reader or a newer commit still holds; or at most the one page of
        # the last restart here: starting over again for it would sync once a second when idle.
        return
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    conn.execute(f"PRAGMA user_version = {version}")


def migrations() -> list[Migration]:
    """The numbered migrations shipped in storage/migrations, in order."""
    found: list[Migration] = []
    for entry in resources.files("storage.migrations").iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        number, _, _ = name.partition("_")
        if not number.isdigit():
            raise MigrationError(f"migration file {name} does not start with its number")
        found.append(Migration(int(number), name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"migration {expected} is missing (found {migration.name})")
    return found


async def _to_the_end(step: Awaitable[T]) -> T:
    """Await a step that runs on the writer's thread; if the caller is cancelled meanwhile, wait
    for the step to end anyway, then raise the cancellation. The thread goes on with the step
    regardless, so the write lock must not be released before it has."""
    running = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        while not running.done():  # however often the caller is cancelled again meanwhile
            with suppress(BaseException):
                await asyncio.shield(running)
        raise


class Store:
    """Async access to one node's database.

    Three connections: one writer, whose transactions are serialised by a lock (several tasks
    write: the plan committer, routes, direct messages); one reader, which in WAL mode sees only
    committed data - a status page never shows half a plan; and one that checkpoints the WAL in
    the background, so that commits never wait for a checkpoint.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        #: The writer's settings as last applied: (durable, on the loop's thread), or None when
        #: unknown (an interrupted change). See `_configure`.
        self._mode: tuple[bool, bool] | None = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError("the store is not open")
        return self._db

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StorageError("the store is not open")
        return self._reader

    async def open(self) -> None:
        try:
            # Used from the loop's thread too (`run_now`); the write lock keeps any two
            # uses of it from overlapping.
            self._db = await aiosqlite.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
            # The ledger is readable by anyone on the mesh anyway, but account activity on this
            # host is nobody else's business: SQLite gives the -wal and -shm files this mode too.
            with suppress(OSError):
                os.chmod(self.path, 0o600)
            db = self._db
            await db._execute(self._configure, db._conn, True, False)  # type: ignore[no-untyped-call]
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA foreign_keys = ON")
            await self.migrate()
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await self._reader.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            await self._reader.execute("PRAGMA query_only = ON")
            self._checkpointer = await aiosqlite.connect(self.path, isolation_level=None)
            # NORMAL, as in WAL mode it syncs the WAL before a checkpoint copies it and the
            # database after, before the WAL may be reused; FULL would only add a sync to the
            # commit that restarts the WAL (`_checkpoint`), which changes nothing worth keeping.
            await self._checkpointer.execute("PRAGMA synchronous = NORMAL")
            self._checkpoints = asyncio.create_task(
                self._checkpoint_loop(self._checkpointer), name="wal-checkpoints"
            )
        except sqlite3.Error as exc:
            await self.close()
            raise translate(exc) from None
        except StorageError:
            await self.close()
            raise

    async def _checkpoint_loop(self, db: aiosqlite.Connection) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            # PASSIVE: copies what no reader still needs and never blocks the writer; a busy or
            # full disk only means this round did nothing (the commits report such errors).
            with suppress(sqlite3.Error):
                await db._execute(_checkpoint, db._conn)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with suppress(asyncio.CancelledError):
                await self._checkpoints
            self._checkpoints = None
        for attribute in ("_checkpointer", "_reader", "_db"):
            db = getattr(self, attribute)
            if db is not None:
                setattr(self, attribute, None)
                with suppress(sqlite3.Error):
                    await db.close()

    async def schema_version(self) -> int:
        cursor = await self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        )
        if await cursor.fetchone() is None:
            return 0
        cursor = await self.db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def migrate(self) -> list[int]:
        """Apply the migrations this database lacks, each in its own transaction."""
        db = self.db
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        current = await self.schema_version()
        known = migrations()
        if current > len(known):
            raise MigrationError(
                f"database schema version {current} is newer than this program "
                f"({len(known)}); upgrade liberation-node"
            )
        applied: list[int] = []
        for migration in known[current:]:
            try:
                await db.execute("BEGIN IMMEDIATE")
                for statement in _statements(migration.sql):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                await db.execute("ROLLBACK")
                raise MigrationError(f"migration {migration.name} failed: {exc}") from None
            applied.append(migration.version)
        return applied

    @asynccontextmanager
    async def transaction(self, *, durable: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; any error rolls back and surfaces as a StorageError.

        ``durable`` (the default) syncs the commit to disk (synchronous=FULL): it survives power
        loss. Without it the commit survives a crash of the process but not of the machine.
        A caller cancelled during the COMMIT cannot know whether it happened: read back to tell.
        """
        async with self._write_lock:
            db = self.db
            try:
                await _to_the_end(db._execute(self._begin, durable, False))  # type: ignore[no-untyped-call]
                yield db
                await _to_the_end(db.execute("COMMIT"))
            except BaseException as exc:
                # Cancelled or not, the lock is held until the thread has rolled back: the next
                # holder (`run_now` on the loop above all) must find the connection idle.
                with suppress(sqlite3.Error):
                    await _to_the_end(db.execute("ROLLBACK"))
                if isinstance(exc, sqlite3.Error):
                    raise translate(exc) from None
                raise

    async def run(self, work: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``work`` as one transaction, in a single step.

        The same transaction as `transaction` would make, on the writer's thread, but its
        statements do not each wait for a turn of the event loop: a busy loop would otherwise
        stretch every commit by as many turns as it has statements. ``work`` runs on another
        thread: it must touch nothing but the connection it is given and its own arguments.
        A small transaction without fsync is better run on the loop: see `run_now`.
        A caller cancelled meanwhile gets CancelledError, though the thread commits ``work``.
        """
        async with self._write_lock:
            db = self.db
            try:
                return await _to_the_end(
                    db._execute(self._transaction, work, durable, False)  # type: ignore[no-untyped-call]
                )
            except sqlite3.Error as exc:
                raise translate(exc) from None

    async def run_small(self, work: Callable[[sqlite3.Connection], object]) -> None:
        """A transaction without fsync of a few rows: on the loop if nothing has to be waited
        for (`run_now`), else on the writer's thread. Waiting out a thread's round trip with
        the write lock held would hold up the gossip commits behind it."""
        if not self.run_now(work):
            await self.run(work, durable=False)

    def run_now(self, work: Callable[[sqlite3.Connection], object]) -> bool:
        """Run ``work`` as one transaction without fsync, here and now, if nothing has to be
        waited for; False (nothing written) if another transaction holds the writer or another
        process the database: then use `run`.

        Handing a transaction this small to a thread and back costs more than the transaction.
        With 20 nodes in one process, gossip commits on the loop moved the median commit from
        9.6 ms to 0.2 ms, most of it spent waiting for the GIL, and halved the mesh's p99.
        """
        if self._write_lock.locked():
            return False
        conn = self.db._conn  # aiosqlite's connection: under the lock, nothing else uses it
        if conn.in_transaction:
            return False  # left open by an interrupted writer: the thread rolls it back first
        # The loop must not wait for a lock: this process is the store's only writer, but another
        # (a backup, an sqlite3 shell) may hold the database for a while. The transaction, rolled
        # back, is then left to the writer's thread, which waits up to the busy timeout.
        try:
            self._transaction(work, False, True)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in (
                sqlite3.SQLITE_BUSY,
                sqlite3.SQLITE_LOCKED,
            ):
                return False
            raise translate(exc) from None
        except sqlite3.Error as exc:
            raise translate(exc) from None
        return True

    def _configure(self, conn: sqlite3.Connection, durable: bool, on_loop: bool) -> None:
        """Settings of the writer for where its transaction runs. On the loop's thread: no fsync,
        no waiting for another process's lock, and no automatic checkpoint (its copying and
        fsync would stall the loop; the background connection checkpoints). On the writer's
        thread: the fsync a durable transaction asks for, a busy timeout, and the automatic
        checkpoint as a safety net for a background checkpointer that fell behind."""
        mode = (durable, on_loop)
        if mode == self._mode:
            return
        self._mode = None  # unknown until every setting below is in place
        conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        conn.execute(f"PRAGMA busy_timeout = {0 if on_loop else SQLITE_BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {0 if on_loop else WAL_AUTOCHECKPOINT_PAGES}")
        self._mode = mode

    def _begin(self, durable: bool, on_loop: bool) -> None:
        conn = self.db._conn  # aiosqlite's connection: under the lock, nothing else uses it
        if conn.in_transaction:
            conn.execute("ROLLBACK")  # left open by an interrupted writer: never acknowledged
        self._configure(conn, durable, on_loop)
        conn.execute("BEGIN IMMEDIATE")

    def _transaction(
        self, work: Callable[[sqlite3.Connection], T], durable: bool, on_loop: bool
    ) -> T:
        """One transaction on the writer's connection, on whichever thread holds it now."""
        conn = self.db._conn
        self._begin(durable, on_loop)
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return result

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            cursor = await self.reader.execute(sql, params)
            rows = await cursor.fetchall()
        except sqlite3.Error as exc:
            raise translate(exc) from None
        return list(rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        try:
            cursor = await self.reader.execute(sql, params)
            row = await cursor.fetchone()
        except sqlite3.Error as exc:
            raise translate(exc) from None
        return row

    # --- meta -------------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> bytes | None:
        row = await self.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    async def set_meta(self, key: str, value: bytes) -> None:
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # --- summaries --------------------------------------------------------------------------------

    async def event_counts(self) -> dict[str, int]:
        """Events in the log by kind. The index by kind has the ledger's kinds only; each post has
        its row in messages, whose smallest index counts them."""
        rows = await self.fetchall(EVENT_COUNTS_SQL)
        return {str(kind): int(count) for kind, count in rows if count}


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (sqlite3.complete_statement knows the grammar)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if not buffer and line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise MigrationError("migration ends with an incomplete statement")
    return statements
