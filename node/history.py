"""The history recorder of test mode: what this node did with each event id, one JSON line each.

Enabled by ``[node] history_file``. Records, in order: ``accept`` (the store committed the event;
``origin`` is "local" for this node's own, else the peer's id), ``ack`` (an API caller got its
2xx for it), ``forward`` (the gossip engine queued it to that many peers) and ``reject``. The chaos
checker reads these files with the stores after a run. Lines are written with one unbuffered
write each, after the commit they describe, so a kill -9 loses at most a line that was never
written - never a line about an event that is not stored.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class History:
    def __init__(self, path: Path, node_id: str) -> None:
        self.path = path
        self.node_id = node_id
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.record("start")

    def record(self, what: str, event_id: bytes | None = None, **fields: Any) -> None:
        entry: dict[str, Any] = {"t": round(time.time(), 6), "node": self.node_id, "what": what}
        if event_id is not None:
            entry["id"] = event_id.hex()
        entry.update(fields)
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        os.write(self._fd, line.encode())

    def close(self) -> None:
        if self._fd >= 0:
            self.record("stop")
            os.close(self._fd)
            self._fd = -1
