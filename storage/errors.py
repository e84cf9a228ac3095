"""Errors of the storage layer, translated from sqlite3's at the boundary."""

from __future__ import annotations

import sqlite3

from protocol.errors import LiberationError


class StorageError(LiberationError):
    """The store could not complete an operation; nothing of it was committed."""

    code = "storage_error"


class DiskFull(StorageError):
    """The disk holding the data directory is full; writes resume when space is freed."""

    code = "disk_full"


class DatabaseLocked(StorageError):
    """Another process holds a lock on the database."""

    code = "database_locked"


class MigrationError(StorageError):
    """The database schema cannot be brought up to date."""

    code = "migration_error"


class CorruptDatabase(StorageError):
    """The database file is not a valid SQLite database."""

    code = "corrupt_database"


def translate(exc: sqlite3.Error) -> StorageError:
    """The typed error for a sqlite3 exception."""
    text = str(exc)
    lowered = text.lower()
    if "disk is full" in lowered or "database or disk is full" in lowered:
        return DiskFull(text)
    if "locked" in lowered or "busy" in lowered:
        return DatabaseLocked(text)
    if "not a database" in lowered or "malformed" in lowered:
        return CorruptDatabase(text)
    return StorageError(text)
