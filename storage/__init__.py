"""SQLite persistence (aiosqlite, WAL): migrations, the event log and materialised state."""
