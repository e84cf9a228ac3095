"""Paced link-state flooding: what to send each neighbour, batched, without what it holds.

Plain flooding sends every record over every link in both directions, one message each: at 20
nodes and 66 links, 132 messages per record, and a burst of records (a mesh forming, RTTs that
change together) is thousands of messages at once. So records to flood wait in a per-neighbour
outbox for a pacing window (as OSPF paces its updates) and go out together in LINK_STATES
frames. A copy of a record that a neighbour sends us meanwhile proves it holds the record: ours
to it is dropped. Pure: the caller owns the timer and the sending.
"""

from __future__ import annotations

from protocol.frames import MAX_LINK_STATES, LinkState

#: Seconds a record waits for others before it is flooded on: long against a record's hop over a
#: loaded link (so the copies neighbours send meanwhile cancel ours), short against how fast
#: routes need to follow (RecomputeSchedule waits for a quiet moment anyway; a failed next hop is
#: retried over an alternate at once).
PACING_S = 0.25
#: Bytes of records in one LINK_STATES frame: an eighth of the default max_frame_bytes, so a
#: peer that lowered its limit to 8 KiB or more still takes every batch (one record of 20
#: neighbours is about 1 KiB).
BATCH_BYTES = 8_192
#: Encoded bytes of a record: its fixed fields, then per neighbour.
RECORD_BYTES = 160
NEIGHBOUR_BYTES = 46


def record_bytes(record: LinkState) -> int:
    """An upper estimate of the record's encoded size."""
    return RECORD_BYTES + NEIGHBOUR_BYTES * len(record.neighbours)


class FloodOutbox:
    """Records waiting to be flooded, per neighbour (node id), the newest per origin."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: dict[bytes, dict[bytes, LinkState]] = {}

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def queue(self, record: LinkState, neighbours: list[bytes]) -> None:
        """Flood ``record`` to ``neighbours`` at the next flush (replacing an older one queued)."""
        for neighbour in neighbours:
            waiting = self._waiting.setdefault(neighbour, {})
            queued = waiting.get(record.node)
            if queued is None or queued.seq < record.seq:
                waiting[record.node] = record

    def held_by(self, neighbour: bytes, record: LinkState) -> None:
        """``neighbour`` sent us ``record``: it needs neither that one nor an older one."""
        waiting = self._waiting.get(neighbour)
        if waiting is None:
            return
        queued = waiting.get(record.node)
        if queued is not None and queued.seq <= record.seq:
            del waiting[record.node]
            if not waiting:
                del self._waiting[neighbour]

    def forget(self, neighbour: bytes) -> None:
        self._waiting.pop(neighbour, None)

    def take(self) -> dict[bytes, list[tuple[LinkState, ...]]]:
        """Everything waiting, per neighbour, in batches that each fit one frame; empties it."""
        out: dict[bytes, list[tuple[LinkState, ...]]] = {}
        for neighbour, waiting in self._waiting.items():
            batches: list[tuple[LinkState, ...]] = []
            batch: list[LinkState] = []
            size = 0
            for record in waiting.values():
                cost = record_bytes(record)
                if batch and (size + cost > BATCH_BYTES or len(batch) == MAX_LINK_STATES):
                    batches.append(tuple(batch))
                    batch, size = [], 0
                batch.append(record)
                size += cost
            if batch:
                batches.append(tuple(batch))
            out[neighbour] = batches
        self._waiting = {}
        return out
