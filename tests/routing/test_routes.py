"""Route tables cross-checked against networkx's own answers on random meshes."""

from __future__ import annotations

from itertools import islice, pairwise

import networkx as nx
import pytest

from protocol.errors import LiberationError
from routing.errors import RoutingError, Unreachable
from routing.graph import MeshGraph
from routing.routes import Route, RouteTable, route_along
from routing.topology import Topology
from tests.routing.helpers import (
    RandomMesh,
    nb,
    node,
    path_latency,
    path_reliability,
    random_mesh,
    reference_graph,
    signed,
)

S, A, B, C, D, X = (node(n) for n in ("s", "a", "b", "c", "d", "x"))

#: (seed, nodes, mean degree): sparse meshes with several components, and denser ones.
MESHES = [(seed, 30 + 7 * seed, 2.0 + (seed % 5)) for seed in range(30)]


def table_for(sample: RandomMesh, k: int = 3) -> tuple[RouteTable, nx.Graph]:
    graph = MeshGraph(sample.nodes[0])
    for record in sample.records:
        graph.update(record, now=0.0)
    return RouteTable(graph.topology(), sample.nodes[0], k=k), reference_graph(sample.records)


def assert_valid_path(route: Route, source: bytes, reference: nx.Graph) -> None:
    path = route.path
    assert path[0] == source
    assert path[-1] == route.destination
    assert len(set(path)) == len(path), "a route must be loop-free"
    assert all(reference.has_edge(u, v) for u, v in pairwise(path))
    assert route.hop_count == len(path) - 1
    assert route.total_latency_ms == pytest.approx(path_latency(reference, path))
    assert route.reliability == pytest.approx(path_reliability(reference, path))


def diamond() -> Topology:
    """S-A-D is fast (2 ms), S-B-D slower (4 ms), S-C-B-D slowest; X is off on its own."""
    graph = MeshGraph(S)
    graph.set_local_links([nb("a", 2_000), nb("b", 4_000), nb("c", 1_000)])
    graph.update(signed("a", 1, nb("s", 2_000), nb("d", 2_000)), now=0.0)
    graph.update(signed("b", 1, nb("s", 4_000), nb("d", 4_000), nb("c", 4_000)), now=0.0)
    graph.update(signed("c", 1, nb("s", 1_000), nb("b", 4_000)), now=0.0)
    graph.update(signed("d", 1, nb("a", 2_000), nb("b", 4_000, loss_permille=100)), now=0.0)
    graph.update(signed("x", 1, nb("d")), now=0.0)  # D does not list X: no link
    return graph.topology()


# --- against networkx ---------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "n", "degree"), MESHES)
def test_shortest_routes_match_networkx(seed: int, n: int, degree: float) -> None:
    table, reference = table_for(random_mesh(seed, n, degree))
    source = table.source
    if source in reference:
        distance, paths = nx.single_source_dijkstra(reference, source, weight="latency_ms")
    else:
        distance, paths = {source: 0.0}, {source: [source]}
    assert set(table) == set(distance) - {source}
    assert len(table) == len(distance) - 1
    forwarding = table.next_hops()
    for destination in distance:
        if destination == source:
            continue
        route = table.route(destination)
        assert_valid_path(route, source, reference)
        assert route.total_latency_ms == pytest.approx(distance[destination], abs=1e-9)
        assert route.total_latency_ms == pytest.approx(path_latency(reference, paths[destination]))
        assert table.next_hop(destination) == route.next_hop == forwarding[destination]
        assert table.latency_ms(destination) == route.total_latency_ms


@pytest.mark.parametrize(("seed", "n", "degree"), MESHES[::3])
def test_alternates_are_the_next_shortest_simple_paths(seed: int, n: int, degree: float) -> None:
    k = 4
    table, reference = table_for(random_mesh(seed, n, degree), k=k)
    for destination in list(table)[:15]:
        routes = table.routes(destination)
        expected = list(
            islice(nx.shortest_simple_paths(reference, table.source, destination, "latency_ms"), k)
        )
        assert routes[0] == table.route(destination)
        assert len(routes) == len(expected)
        assert len({r.path for r in routes}) == len(routes), "alternates must be distinct"
        for route in routes:
            assert_valid_path(route, table.source, reference)
        latencies = [r.total_latency_ms for r in routes]
        assert latencies == sorted(latencies)
        assert latencies == pytest.approx([path_latency(reference, p) for p in expected])
        assert table.routes(destination) == routes  # kept, not recomputed differently


@pytest.mark.parametrize(("seed", "n", "degree"), MESHES[1::3])
def test_alternate_avoiding_matches_networkx_without_the_failure(
    seed: int, n: int, degree: float
) -> None:
    table, reference = table_for(random_mesh(seed, n, degree))
    for destination in list(table)[:15]:
        primary = table.route(destination)
        broken = primary.path[-2], destination  # the last link fails
        without_link = nx.restricted_view(reference, [], [broken])
        failed = primary.next_hop  # or the first relay fails
        without_node = nx.restricted_view(reference, [failed], [])
        for avoid, view in (
            ({"links": [broken]}, without_link),
            ({"nodes": [failed]}, without_node),
        ):
            if failed == destination and "nodes" in avoid:
                with pytest.raises(Unreachable):
                    table.alternate_avoiding(destination, **avoid)
                continue
            try:
                best = nx.dijkstra_path_length(view, table.source, destination, "latency_ms")
            except nx.NetworkXNoPath:
                with pytest.raises(Unreachable):
                    table.alternate_avoiding(destination, **avoid)
                continue
            route = table.alternate_avoiding(destination, **avoid)
            assert_valid_path(route, table.source, reference)
            assert route.total_latency_ms == pytest.approx(best, abs=1e-9)
            if "links" in avoid:
                assert not route.crosses(*broken)
            else:
                assert failed not in route.path


# --- by hand ------------------------------------------------------------------------------------


def test_routes_on_a_small_mesh() -> None:
    table = RouteTable(diamond(), S)
    assert set(table) == {A, B, C, D}
    route = table.route(D)
    assert route.path == (S, A, D)
    assert route.source == S
    assert route.hop_count == 2
    assert route.total_latency_ms == pytest.approx(2.0)
    assert route.reliability == 1.0
    assert table.next_hop(D) == A
    assert [r.path for r in table.routes(D)] == [(S, A, D), (S, B, D), (S, C, B, D)]
    assert [r.total_latency_ms for r in table.routes(D)] == pytest.approx([2.0, 4.0, 4.5])
    assert [r.reliability for r in table.routes(D)] == pytest.approx([1.0, 0.9, 0.9])


def test_k_bounds_the_routes_per_destination() -> None:
    assert [r.path for r in RouteTable(diamond(), S, k=1).routes(D)] == [(S, A, D)]
    assert len(RouteTable(diamond(), S, k=2).routes(D)) == 2
    assert len(RouteTable(diamond(), S, k=10).routes(D)) == 3  # every simple path S..D
    with pytest.raises(ValueError, match="k"):
        RouteTable(diamond(), S, k=0)


def test_alternate_avoiding_a_failed_node_or_broken_link() -> None:
    table = RouteTable(diamond(), S)
    assert table.alternate_avoiding(D, nodes=[A]).path == (S, B, D)
    assert table.alternate_avoiding(D, links=[(D, A)]).path == (S, B, D)
    assert table.alternate_avoiding(D, nodes=[A], links=[(S, B)]).path == (S, C, B, D)
    # Avoiding something the shortest route does not use gives the shortest route.
    assert table.alternate_avoiding(D, nodes=[C]) == table.route(D)
    with pytest.raises(Unreachable):
        table.alternate_avoiding(D, nodes=[A, B])
    with pytest.raises(Unreachable):
        table.alternate_avoiding(D, nodes=[D])
    with pytest.raises(ValueError, match="source"):
        table.alternate_avoiding(D, nodes=[S])


def test_unreachable_destinations_raise_a_typed_error() -> None:
    table = RouteTable(diamond(), S)
    for destination in (X, node("never-heard-of")):
        assert destination not in table
        for ask in (table.route, table.next_hop, table.routes, table.alternate_avoiding):
            with pytest.raises(Unreachable) as caught:
                ask(destination)
            assert caught.value.destination == destination
            assert isinstance(caught.value, RoutingError)
            assert isinstance(caught.value, LiberationError)
            assert caught.value.code == "unreachable"
            assert destination.hex() in caught.value.detail


def test_the_source_is_not_a_destination() -> None:
    table = RouteTable(diamond(), S)
    assert S not in table
    assert S not in set(table)
    for ask in (table.route, table.next_hop, table.routes, table.alternate_avoiding):
        with pytest.raises(ValueError, match="source"):
            ask(S)


def test_a_source_without_links_reaches_nothing() -> None:
    table = RouteTable(Topology([]), S)
    assert len(table) == 0
    assert table.next_hops() == {}
    with pytest.raises(Unreachable):
        table.route(A)


def test_routes_work_from_the_local_view_alone() -> None:
    graph = MeshGraph(S)
    graph.set_local_links([nb("a", 500)])
    table = RouteTable(graph.topology(), S)
    assert table.route(A).path == (S, A)
    assert table.route(A).total_latency_ms == pytest.approx(0.25)


def test_route_along_refuses_a_path_that_is_not_linked() -> None:
    topology = diamond()
    assert route_along(topology, [S, A, D]).total_latency_ms == pytest.approx(2.0)
    with pytest.raises(ValueError, match="link"):
        route_along(topology, [S, D])
    with pytest.raises(ValueError, match="two nodes"):
        route_along(topology, [S])


def test_equal_paths_sum_exactly() -> None:
    """Integer weights: two paths with the same RTT sums rank equal, with no float residue."""
    graph = MeshGraph(S)
    graph.set_local_links([nb("a", 100), nb("b", 200)])
    graph.update(signed("a", 1, nb("s", 100), nb("d", 300)), now=0.0)
    graph.update(signed("b", 1, nb("s", 200), nb("d", 200)), now=0.0)
    graph.update(signed("d", 1, nb("a", 300), nb("b", 200)), now=0.0)
    routes = RouteTable(graph.topology(), S).routes(D)
    assert routes[0].total_latency_ms == routes[1].total_latency_ms == 0.2


def test_topology_accessors() -> None:
    topology = diamond()
    assert set(topology.nodes()) == {S, A, B, C, D}
    assert X not in topology
    assert topology.node_count == 5
    assert topology.link_count == 6
    assert len(topology.links()) == 6
    assert set(topology.neighbours(S)) == {A, B, C}
    assert topology.neighbours(X) == []
    link = topology.link(D, B)
    assert link is not None
    assert link == topology.link(B, D)
    assert link.other(B) == D
    assert link.latency_ms == pytest.approx(2.0)
    assert topology.link(S, D) is None
    assert topology.shortest_path(S, X) is None
    assert list(topology.simple_paths(S, S)) == []
    assert list(topology.simple_paths(S, X)) == []
    hidden = topology.without(nodes=[A], links=[(C, S)])
    assert A not in hidden
    assert hidden.link(S, C) is None
    assert topology.link(S, C) is not None  # the snapshot itself is untouched


def test_component_of_keeps_only_what_a_node_can_reach() -> None:
    """Nodes cut off together keep their records (and the links between them) until those
    expire, but they are not in this node's component: the topology view shows them no more."""
    graph = MeshGraph(S)
    graph.set_local_links((nb("a"),))
    graph.update(signed("a", 1, nb("s"), nb("x")), now=0.0)
    graph.update(signed("x", 1, nb("a"), nb("d")), now=0.0)
    graph.update(signed("d", 1, nb("x")), now=0.0)
    assert set(graph.topology().component_of(S).nodes()) == {S, A, X, D}
    graph.update(signed("a", 2, nb("s")), now=1.0)  # a lost x; x and d still list each other
    topology = graph.topology()
    assert X in topology and D in topology
    reachable = topology.component_of(S)
    assert set(reachable.nodes()) == {S, A}
    assert reachable.link_count == 1
    assert set(topology.component_of(X).nodes()) == {X, D}
    assert set(Topology([]).component_of(S).nodes()) == {S}
