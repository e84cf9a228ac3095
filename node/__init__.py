"""liberation-node: the daemon (asyncio shell around the sans-IO protocol core)."""

from __future__ import annotations

__version__ = "0.1.0"
