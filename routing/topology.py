"""Confirmed links and an immutable snapshot of them, with networkx kept behind typed calls.

networkx has no type stubs; everything it returns is ``Any``. `Topology` is the only place that
touches it, so the rest of the layer (and its callers) deal in ``bytes`` node ids, `Link` objects
and integer weights that mypy can check.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

import networkx as nx

#: Link weights per millisecond of one-way latency (a weight is a quarter microsecond).
WEIGHT_PER_MS = 4000

#: Edge attribute holding the integer weight Dijkstra sums.
_WEIGHT = "weight"
#: Edge attribute holding the `Link` itself, so a path's links are one dict lookup each.
_LINK = "link"


@dataclass(frozen=True, slots=True)
class Link:
    """An undirected link that both ends confirm (or that this node measures itself)."""

    #: The lower node id of the two; ``a < b`` makes equal links compare equal.
    a: bytes
    b: bytes
    #: One-way latency in quarter microseconds, that is the sum of the two ends' RTTs in
    #: microseconds ((rtt_a + rtt_b) / 2 is the mean RTT, half of it one way). Integral, so path
    #: sums are exact: equal paths tie exactly and ranks never turn on rounding.
    weight: int
    #: Lost keep-alives per thousand, the worse of the two ends.
    loss_permille: int

    @classmethod
    def between(cls, u: bytes, v: bytes, weight: int, loss_permille: int) -> Link:
        return cls(u, v, weight, loss_permille) if u < v else cls(v, u, weight, loss_permille)

    @property
    def latency_ms(self) -> float:
        """One-way latency in milliseconds."""
        return self.weight / WEIGHT_PER_MS

    @property
    def delivery(self) -> float:
        """Probability that a frame crosses the link (1 - loss)."""
        return 1 - self.loss_permille / 1000

    def other(self, node: bytes) -> bytes:
        return self.b if node == self.a else self.a


class Topology:
    """The mesh's confirmed links at one moment; never changes once built."""

    __slots__ = ("_graph",)

    def __init__(self, links: Iterable[Link], nodes: Iterable[bytes] = ()) -> None:
        graph = nx.Graph()
        graph.add_nodes_from(nodes)
        graph.add_edges_from((x.a, x.b, {_WEIGHT: x.weight, _LINK: x}) for x in links)
        self._graph = graph

    @classmethod
    def _wrap(cls, graph: object) -> Topology:
        topology = cls.__new__(cls)
        topology._graph = graph
        return topology

    def __contains__(self, node: object) -> bool:
        return bool(self._graph.has_node(node))

    @property
    def node_count(self) -> int:
        return int(self._graph.number_of_nodes())

    @property
    def link_count(self) -> int:
        return int(self._graph.number_of_edges())

    def nodes(self) -> list[bytes]:
        return list(self._graph.nodes)

    def component_of(self, node: bytes) -> Topology:
        """The part of the mesh ``node`` can reach: nodes cut off together keep their records,
        and the links between them, until those expire, but drop out of this view at once."""
        if not self._graph.has_node(node):
            return Topology((), (node,))
        return Topology._wrap(self._graph.subgraph(nx.node_connected_component(self._graph, node)))

    def links(self) -> list[Link]:
        return [data for _, _, data in self._graph.edges(data=_LINK)]

    def link(self, u: bytes, v: bytes) -> Link | None:
        data = self._graph.get_edge_data(u, v)
        if data is None:
            return None
        link: Link = data[_LINK]
        return link

    def neighbours(self, node: bytes) -> list[bytes]:
        if not self._graph.has_node(node):
            return []
        return list(self._graph.neighbors(node))

    def shortest_path_tree(self, source: bytes) -> tuple[dict[bytes, int], dict[bytes, bytes]]:
        """Single-source Dijkstra: total weight to every reachable node, and its parent.

        Parents rather than whole paths: building a path per node costs more than the search
        itself at 10,000 nodes, and most paths are never asked for. Following parents from a
        node back to the source gives the same path networkx's single_source_dijkstra returns.
        """
        if not self._graph.has_node(source):
            return {source: 0}, {}
        predecessors: dict[bytes, list[bytes]]
        distance: dict[bytes, int]
        predecessors, distance = nx.dijkstra_predecessor_and_distance(
            self._graph, source, weight=_WEIGHT
        )
        # The source's list is empty, or names a node it reaches again over a zero-weight link;
        # every other node's first entry is the node that first reached it at its final distance.
        del predecessors[source]
        return distance, {node: firsts[0] for node, firsts in predecessors.items()}

    def shortest_path(self, source: bytes, destination: bytes) -> list[bytes] | None:
        """One least-weight path (bidirectional Dijkstra), or None when there is none."""
        try:
            path: list[bytes] = nx.bidirectional_dijkstra(
                self._graph, source, destination, weight=_WEIGHT
            )[1]
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            return None
        return path

    def simple_paths(self, source: bytes, destination: bytes) -> Iterator[list[bytes]]:
        """Loop-free paths in order of total weight (Yen's algorithm); lazy, so take only a few."""
        if source == destination or not (source in self and destination in self):
            return
        try:
            yield from nx.shortest_simple_paths(self._graph, source, destination, weight=_WEIGHT)
        except nx.NetworkXNoPath:
            return

    def without(
        self, nodes: Collection[bytes] = (), links: Collection[tuple[bytes, bytes]] = ()
    ) -> Topology:
        """A view with some nodes and links hidden (either orientation), sharing the snapshot."""
        return Topology._wrap(nx.restricted_view(self._graph, list(nodes), list(links)))
