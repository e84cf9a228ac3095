"""The mesh graph: the latest link-state record of every node, merged into confirmed links.

Each node signs its neighbour list with measured RTT and loss (`protocol.frames.LinkState`); the
caller verifies the signature and hands the record here together with the local time it arrived.
A link counts only when both ends list each other, so no node can attach itself to another by
claiming a link on its own. This node's own live neighbours (the local view) are first-hand
knowledge and count at once, so routes work before our own record has gone round the mesh.

A record's ``ts`` is the signer's clock, which need not agree with ours, so age is local: a
record not replaced by a newer seq within ``max_age_s`` of its arrival is dropped. The seq it
had is remembered for another ``max_age_s`` so that old copies still circulating cannot bring
the node back.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.frames import LinkNeighbour, LinkState
from routing.errors import MeshFull
from routing.topology import Link, Topology

#: Seconds a record lives without being replaced by a newer one. node/ sends link state
#: periodically; this default survives two or three lost refreshes at a 20-30 s interval.
#: Pass ``max_age_s`` to match the interval actually used.
DEFAULT_MAX_AGE_S = 90.0

#: Most nodes the graph holds: twice the 10,000-node mesh the protocol limits are sized for
#: (MAX_ROUTED_TTL's note). Open membership means anyone can mint node keys, so the cap is what
#: keeps a flood of records from fresh keys from growing memory without bound.
MAX_MESH_NODES = 20_000


@dataclass(frozen=True, slots=True)
class _Entry:
    record: LinkState
    #: Local time the record arrived; it expires at received_at + max_age_s.
    received_at: float
    #: The record's neighbours by node id, without the node itself (a self-link means nothing).
    listing: dict[bytes, LinkNeighbour]


def _listing(node: bytes, neighbours: Iterable[LinkNeighbour]) -> dict[bytes, LinkNeighbour]:
    return {n.node: n for n in neighbours if n.node != node}


class MeshGraph:
    """The link-state database of one node: merges records, expires them, builds `Topology`."""

    __slots__ = (
        "_adjacency",
        "_deadlines",
        "_entries",
        "_local_view",
        "_retired",
        "_topology",
        "_version",
        "local",
        "max_age_s",
        "max_nodes",
    )

    def __init__(
        self,
        local: bytes,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        max_nodes: int = MAX_MESH_NODES,
    ) -> None:
        if max_age_s <= 0:
            raise ValueError("max_age_s must be positive")
        if max_nodes < 1:
            raise ValueError("max_nodes must be at least 1")
        #: This node's id: the source of its routes and the owner of the local view.
        self.local = local
        self.max_age_s = max_age_s
        self.max_nodes = max_nodes
        self._entries: dict[bytes, _Entry] = {}
        #: The confirmed links, kept up to date as records change: node -> other end -> link.
        self._adjacency: dict[bytes, dict[bytes, Link]] = {}
        #: Expired nodes -> (last seq, time to forget it); insertion order is expiry order.
        self._retired: dict[bytes, tuple[int, float]] = {}
        #: (expires_at, node, seq): a min-heap with lazy deletion of replaced records.
        self._deadlines: list[tuple[float, bytes, int]] = []
        #: This node's live neighbours, once the caller has set them; they override our record.
        self._local_view: dict[bytes, LinkNeighbour] | None = None
        self._topology: Topology | None = None
        self._version = 0

    # --- queries ---------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of nodes with a live record."""
        return len(self._entries)

    def __contains__(self, node: object) -> bool:
        return node in self._entries

    @property
    def version(self) -> int:
        """Counts topology changes; a route table built at another version is out of date."""
        return self._version

    def record(self, node: bytes) -> LinkState | None:
        """The latest live record of ``node``."""
        entry = self._entries.get(node)
        return entry.record if entry is not None else None

    def seq(self, node: bytes) -> int:
        """Highest seq seen of ``node`` (live or recently expired), 0 when none."""
        entry = self._entries.get(node)
        if entry is not None:
            return entry.record.seq
        retired = self._retired.get(node)
        return retired[0] if retired is not None else 0

    def is_newer(self, record: LinkState) -> bool:
        """Whether `update` would merge ``record``: its seq is above any we hold or recently held.

        This, not a topology change, is the rule for passing a record on: a refresh that
        changes no link must still travel, or the other nodes would expire its sender.
        """
        entry = self._entries.get(record.node)
        if entry is not None:
            return record.seq > entry.record.seq
        retired = self._retired.get(record.node)
        return retired is None or record.seq > retired[0]

    def records(self) -> list[LinkState]:
        """Every live record (to hand a newly connected peer the mesh's link state at once)."""
        return [entry.record for entry in self._entries.values()]

    def links_of(self, node: bytes) -> list[Link]:
        """The confirmed links of ``node`` right now."""
        return list(self._adjacency.get(node, {}).values())

    def next_expiry(self) -> float | None:
        """When the oldest live record expires (the caller's timer for `expire`), or None."""
        self._drop_stale_deadlines()
        return self._deadlines[0][0] if self._deadlines else None

    # --- changes ---------------------------------------------------------------------------

    def update(self, record: LinkState, now: float) -> bool:
        """Merge a verified record that arrived at ``now``; True when the topology changed.

        A record whose seq is not above the one we hold (or held until it expired) is ignored,
        so duplicates and stale copies change nothing, not even the record's age.
        Raises `MeshFull` for a new node when the graph is at ``max_nodes``.
        """
        node = record.node
        if not self.is_newer(record):
            return False
        if node not in self._entries and len(self._entries) >= self.max_nodes:
            raise MeshFull(f"the mesh graph holds {self.max_nodes} nodes")
        self._entries[node] = _Entry(record, now, _listing(node, record.neighbours))
        self._retired.pop(node, None)
        heapq.heappush(self._deadlines, (now + self.max_age_s, node, record.seq))
        if len(self._deadlines) > 2 * len(self._entries) + 64:
            self._rebuild_deadlines()
        return self._relink(node)

    def set_local_links(self, neighbours: Iterable[LinkNeighbour]) -> bool:
        """Replace this node's live neighbours; True when the topology changed.

        Our own links need no confirmation from the other end: a live, authenticated session
        with measured RTT is first-hand evidence, not a claim. Once set, the local view replaces
        whatever our own gossiped record says.
        """
        self._local_view = _listing(self.local, neighbours)
        return self._relink(self.local)

    def expire(self, now: float) -> list[bytes]:
        """Drop records not refreshed for ``max_age_s``; returns the nodes dropped."""
        expired: list[bytes] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, node, seq = heapq.heappop(self._deadlines)
            entry = self._entries.get(node)
            if entry is None or entry.record.seq != seq:
                continue  # replaced by a newer record, which has its own deadline
            del self._entries[node]
            self._relink(node)
            self._retired.pop(node, None)
            self._retired[node] = (seq, now + self.max_age_s)
            expired.append(node)
        self._forget_retired(now)
        return expired

    def topology(self) -> Topology:
        """The confirmed links as an immutable snapshot (built once per topology version)."""
        if self._topology is None:
            self._topology = Topology(self._links(), (self.local,))
        return self._topology

    # --- internals -------------------------------------------------------------------------

    def _relink(self, node: bytes) -> bool:
        """Bring the links of ``node`` up to date after its listing changed; True if they did."""
        adjacency = self._adjacency
        before = adjacency.get(node, {})
        after = self._incident(node)
        if after == before:
            return False
        for other in before.keys() - after.keys():
            theirs = adjacency[other]
            del theirs[node]
            if not theirs:
                del adjacency[other]
        for other, link in after.items():
            adjacency.setdefault(other, {})[node] = link
        if after:
            adjacency[node] = after
        else:
            adjacency.pop(node, None)
        self._version += 1
        self._topology = None
        return True

    def _own_listing(self, node: bytes) -> dict[bytes, LinkNeighbour] | None:
        if node == self.local and self._local_view is not None:
            return self._local_view
        entry = self._entries.get(node)
        return entry.listing if entry is not None else None

    def _link(self, u: bytes, v: bytes) -> Link | None:
        """The link between u and v under the confirmation rule, or None."""
        u_side = (self._own_listing(u) or {}).get(v)
        v_side = (self._own_listing(v) or {}).get(u)
        if self._local_view is not None and self.local in (u, v):
            ours, theirs = (u_side, v_side) if u == self.local else (v_side, u_side)
            if ours is None:
                return None
            if theirs is None:
                return Link.between(u, v, 2 * ours.rtt_us, ours.loss_permille)
            u_side, v_side = ours, theirs
        elif u_side is None or v_side is None:
            return None
        return Link.between(
            u,
            v,
            u_side.rtt_us + v_side.rtt_us,
            max(u_side.loss_permille, v_side.loss_permille),
        )

    def _incident(self, node: bytes) -> dict[bytes, Link]:
        """The confirmed links of ``node``, computed from the listings (the hot path of merging)."""
        local, view = self.local, self._local_view
        if view is not None and node == local:
            return {v: link for v in view if (link := self._link(local, v)) is not None}
        links: dict[bytes, Link] = {}
        entry = self._entries.get(node)
        if entry is not None:
            entries = self._entries
            for v, mine in entry.listing.items():
                if view is not None and v == local:
                    continue  # our own links follow the local view, below
                other = entries.get(v)
                theirs = other.listing.get(node) if other is not None else None
                if theirs is None:
                    continue
                weight = mine.rtt_us + theirs.rtt_us
                loss = max(mine.loss_permille, theirs.loss_permille)
                links[v] = Link(node, v, weight, loss) if node < v else Link(v, node, weight, loss)
        if view is not None and node in view:
            link = self._link(local, node)
            if link is not None:
                links[local] = link
        return links

    def _links(self) -> list[Link]:
        """Every confirmed link once (from its lower end)."""
        return [
            link
            for node, links in self._adjacency.items()
            for link in links.values()
            if link.a == node
        ]

    def _drop_stale_deadlines(self) -> None:
        deadlines = self._deadlines
        while deadlines:
            _, node, seq = deadlines[0]
            entry = self._entries.get(node)
            if entry is not None and entry.record.seq == seq:
                return
            heapq.heappop(deadlines)

    def _rebuild_deadlines(self) -> None:
        self._deadlines = [
            (e.received_at + self.max_age_s, node, e.record.seq)
            for node, e in self._entries.items()
        ]
        heapq.heapify(self._deadlines)

    def _forget_retired(self, now: float) -> None:
        retired = self._retired
        while retired:
            node, (_, forget_at) = next(iter(retired.items()))
            if forget_at > now and len(retired) <= self.max_nodes:
                return
            del retired[node]
