"""Routes from this node: the least-latency path to every reachable node, alternates on request.

A full recompute is one single-source Dijkstra over the topology snapshot, kept as a tree of
parents: paths, `Route` objects and the forwarding table are built from it only when asked for.
Alternates (the next-shortest loop-free paths, Yen's algorithm) cost a search per hop of the
path, so they too are computed on request, one destination at a time, and kept with the table.
A retry after a failure needs only one search (`RouteTable.alternate_avoiding`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise

from routing.errors import Unreachable
from routing.topology import WEIGHT_PER_MS, Topology

#: Routes kept per destination: the shortest and two alternates to retry over.
DEFAULT_ROUTES_PER_DESTINATION = 3


@dataclass(frozen=True, slots=True)
class Route:
    """One loop-free path from the source to a destination, with its latency and reliability."""

    destination: bytes
    #: Node ids from the source to the destination, both included.
    path: tuple[bytes, ...]
    #: Links crossed: len(path) - 1.
    hop_count: int
    #: Sum of the links' one-way latencies.
    total_latency_ms: float
    #: Probability that a frame crosses every link: the product of (1 - loss) over the path.
    reliability: float

    @property
    def source(self) -> bytes:
        return self.path[0]

    @property
    def next_hop(self) -> bytes:
        """The neighbour to hand a frame to."""
        return self.path[1]

    def crosses(self, u: bytes, v: bytes) -> bool:
        """Whether the route uses the link between u and v (either direction)."""
        return any({x, y} == {u, v} for x, y in pairwise(self.path))


def route_along(topology: Topology, path: Sequence[bytes]) -> Route:
    """The `Route` for a path of linked nodes; raises ValueError when a link is missing."""
    if len(path) < 2:
        raise ValueError("a route has at least two nodes")
    weight = 0
    reliability = 1.0
    for u, v in pairwise(path):
        link = topology.link(u, v)
        if link is None:
            raise ValueError("the path uses a link the topology does not have")
        weight += link.weight
        reliability *= link.delivery
    return Route(path[-1], tuple(path), len(path) - 1, weight / WEIGHT_PER_MS, reliability)


class RouteTable:
    """Routes from one source over one topology snapshot.

    The source itself is not a destination: asking for it is a caller's mistake (ValueError),
    since a frame for this node is delivered, not routed.
    """

    __slots__ = (
        "_distance",
        "_next_hops",
        "_parent",
        "_primary",
        "_ranked",
        "_topology",
        "k",
        "source",
    )

    def __init__(
        self, topology: Topology, source: bytes, *, k: int = DEFAULT_ROUTES_PER_DESTINATION
    ) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.source = source
        #: Most routes `routes` returns per destination.
        self.k = k
        self._topology = topology
        self._distance, self._parent = topology.shortest_path_tree(source)
        self._next_hops: dict[bytes, bytes] | None = None
        self._primary: dict[bytes, Route] = {}
        self._ranked: dict[bytes, list[Route]] = {}

    @property
    def topology(self) -> Topology:
        return self._topology

    def __len__(self) -> int:
        """Number of reachable destinations."""
        return len(self._parent)

    def __contains__(self, destination: object) -> bool:
        return destination in self._parent

    def __iter__(self) -> Iterator[bytes]:
        """The reachable destinations."""
        return iter(self._parent)

    def latency_ms(self, destination: bytes) -> float:
        """One-way latency of the shortest route, without building the route."""
        self._check(destination)
        return self._distance[destination] / WEIGHT_PER_MS

    def next_hop(self, destination: bytes) -> bytes:
        """The neighbour on the shortest path to ``destination``."""
        self._check(destination)
        if self._next_hops is None:
            self._next_hops = self._forwarding()
        return self._next_hops[destination]

    def next_hops(self) -> dict[bytes, bytes]:
        """The whole forwarding table, destination -> neighbour."""
        if self._next_hops is None:
            self._next_hops = self._forwarding()
        return dict(self._next_hops)

    def route(self, destination: bytes) -> Route:
        """The least-latency route to ``destination``."""
        route = self._primary.get(destination)
        if route is None:
            route = route_along(self._topology, self._path(destination))
            self._primary[destination] = route
        return route

    def routes(self, destination: bytes) -> list[Route]:
        """Up to k distinct loop-free routes, least latency first; the first is `route`."""
        ranked = self._ranked.get(destination)
        if ranked is None:
            primary = self.route(destination)
            ranked = [primary]
            if self.k > 1:
                for path in self._topology.simple_paths(self.source, destination):
                    if tuple(path) != primary.path:
                        ranked.append(route_along(self._topology, path))
                        if len(ranked) == self.k:
                            break
            self._ranked[destination] = ranked
        return list(ranked)

    def alternate_avoiding(
        self,
        destination: bytes,
        *,
        nodes: Collection[bytes] = (),
        links: Collection[tuple[bytes, bytes]] = (),
    ) -> Route:
        """The least-latency route that avoids failed nodes and broken links, for a retry.

        Raises `Unreachable` when every path crosses one of them.
        """
        if destination == self.source:
            raise ValueError("the source is not a destination")
        if self.source in nodes:
            raise ValueError("a route cannot avoid its own source")
        if destination in nodes:
            raise Unreachable(destination, "the destination itself is to be avoided")
        if destination in self:
            primary = self.route(destination)
            if not any(node in nodes for node in primary.path) and not any(
                primary.crosses(u, v) for u, v in links
            ):
                return primary
        view = self._topology.without(nodes, links)
        path = view.shortest_path(self.source, destination)
        if path is None:
            raise Unreachable(destination)
        return route_along(view, path)

    def _forwarding(self) -> dict[bytes, bytes]:
        """Next hop of every destination in O(nodes): each parent chain is walked once."""
        hops: dict[bytes, bytes] = {}
        parent, source = self._parent, self.source
        for destination in parent:
            node, passed = destination, []
            while node not in hops:
                up = parent[node]
                if up == source:
                    hops[node] = node
                    break
                passed.append(node)
                node = up
            hop = hops[node]
            for each in passed:
                hops[each] = hop
        return hops

    def _check(self, destination: bytes) -> None:
        if destination == self.source:
            raise ValueError("the source is not a destination")
        if destination not in self._parent:
            raise Unreachable(destination)

    def _path(self, destination: bytes) -> list[bytes]:
        self._check(destination)
        path = [destination]
        while path[-1] != self.source:
            path.append(self._parent[path[-1]])
        path.reverse()
        return path
