"""Merging link-state records: seq order, expiry, the both-ends rule and the local view."""

from __future__ import annotations

import random

import pytest

from protocol.errors import LiberationError
from protocol.frames import LinkNeighbour
from routing.errors import MeshFull, RoutingError
from routing.graph import MeshGraph
from routing.topology import Link
from tests.routing.helpers import nb, node, random_mesh, reference_graph, signed, unsigned

A, B, C, D = node("a"), node("b"), node("c"), node("d")
MAX_AGE = 60.0


def mesh(local: str = "self") -> MeshGraph:
    return MeshGraph(node(local), max_age_s=MAX_AGE)


def link_set(graph: MeshGraph) -> set[Link]:
    return set(graph.topology().links())


# --- seq order ----------------------------------------------------------------------------------


def test_first_record_is_merged_and_kept() -> None:
    graph = mesh()
    record = signed("a", 1, nb("b"))
    assert record.signature_valid()
    graph.update(record, now=0.0)
    assert graph.record(A) == record
    assert A in graph
    assert len(graph) == 1
    assert graph.seq(A) == 1


def test_higher_seq_replaces_the_record() -> None:
    graph = mesh()
    graph.update(signed("b", 1, nb("a")), now=0.0)
    graph.update(signed("a", 1, nb("b", 1_000)), now=0.0)
    newer = signed("a", 2, nb("b", 3_000))
    assert graph.update(newer, now=1.0) is True
    assert graph.record(A) == newer
    assert graph.links_of(A) == [Link.between(A, B, 4_000, 0)]


@pytest.mark.parametrize("seq", [1, 2])
def test_equal_or_lower_seq_is_ignored(seq: int) -> None:
    graph = mesh()
    graph.update(signed("b", 1, nb("a")), now=0.0)
    kept = signed("a", 2, nb("b", 1_000))
    graph.update(kept, now=0.0)
    version = graph.version
    assert graph.update(signed("a", seq, nb("b", 9_000), nb("c")), now=1.0) is False
    assert graph.record(A) == kept
    assert graph.version == version
    assert graph.links_of(A)[0].weight == 2_000


def test_is_newer_tells_which_records_to_pass_on() -> None:
    graph = mesh()
    first, refresh = signed("a", 1, nb("b")), signed("a", 2, nb("b"))
    assert graph.is_newer(first)
    graph.update(first, now=0.0)
    assert not graph.is_newer(first)
    # A refresh changes no link, but it is newer, so it must travel on.
    assert graph.is_newer(refresh)
    assert graph.update(refresh, now=1.0) is False
    assert not graph.is_newer(refresh)
    graph.expire(1.0 + MAX_AGE)
    assert not graph.is_newer(refresh)
    assert graph.is_newer(signed("a", 3))


def test_a_seq_gap_is_fine() -> None:
    graph = mesh()
    graph.update(signed("a", 1), now=0.0)
    graph.update(signed("a", 7, nb("b")), now=0.0)
    assert graph.seq(A) == 7


def test_a_refresh_with_the_same_links_is_no_topology_change() -> None:
    graph = mesh()
    graph.update(signed("b", 1, nb("a")), now=0.0)
    assert graph.update(signed("a", 1, nb("b")), now=0.0) is True
    topology = graph.topology()
    assert graph.update(signed("a", 2, nb("b")), now=5.0) is False
    assert graph.seq(A) == 2
    assert graph.topology() is topology  # nothing to rebuild


def test_a_changed_rtt_or_loss_is_a_topology_change() -> None:
    graph = mesh()
    graph.update(signed("b", 1, nb("a")), now=0.0)
    graph.update(signed("a", 1, nb("b")), now=0.0)
    assert graph.update(signed("a", 2, nb("b", rtt_us=1_500)), now=1.0) is True
    assert graph.update(signed("a", 3, nb("b", rtt_us=1_500, loss_permille=5)), now=2.0) is True
    assert graph.links_of(A) == [Link.between(A, B, 2_500, 5)]


# --- expiry -------------------------------------------------------------------------------------


def test_records_expire_after_max_age_without_refresh() -> None:
    graph = mesh()
    graph.update(signed("a", 1, nb("b")), now=0.0)
    graph.update(signed("b", 1, nb("a")), now=10.0)
    assert graph.next_expiry() == MAX_AGE
    assert graph.expire(MAX_AGE - 0.001) == []
    version = graph.version
    assert graph.expire(MAX_AGE) == [A]
    assert A not in graph
    assert B in graph
    assert graph.version == version + 1
    assert link_set(graph) == set()
    assert graph.next_expiry() == 10.0 + MAX_AGE


def test_a_newer_record_resets_the_age() -> None:
    graph = mesh()
    graph.update(signed("a", 1), now=0.0)
    graph.update(signed("a", 2), now=50.0)
    assert graph.expire(MAX_AGE) == []
    assert graph.next_expiry() == 50.0 + MAX_AGE
    assert graph.expire(50.0 + MAX_AGE) == [A]


def test_a_duplicate_does_not_reset_the_age() -> None:
    graph = mesh()
    record = signed("a", 1)
    graph.update(record, now=0.0)
    graph.update(record, now=50.0)
    assert graph.expire(MAX_AGE) == [A]


def test_expired_seq_is_remembered_so_old_copies_do_not_resurrect() -> None:
    graph = mesh()
    old = signed("a", 3)
    graph.update(old, now=0.0)
    assert graph.expire(MAX_AGE) == [A]
    assert graph.seq(A) == 3
    assert graph.update(old, now=MAX_AGE + 1) is False
    assert A not in graph
    graph.update(signed("a", 4), now=MAX_AGE + 2)
    assert graph.record(A) == signed("a", 4)


def test_the_remembered_seq_is_forgotten_after_another_max_age() -> None:
    graph = mesh()
    graph.update(signed("a", 3), now=0.0)
    graph.expire(MAX_AGE)
    graph.expire(2 * MAX_AGE)
    assert graph.seq(A) == 0
    graph.update(signed("a", 1), now=2 * MAX_AGE)
    assert A in graph


def test_many_refreshes_keep_expiry_exact() -> None:
    graph = mesh()
    for seq in range(1, 1_001):
        graph.update(signed("a", seq), now=float(seq))
        graph.update(signed("b", seq), now=float(seq) / 2)
    assert graph.next_expiry() == 500.0 + MAX_AGE
    assert graph.expire(500.0 + MAX_AGE) == [B]
    assert graph.expire(1_000.0 + MAX_AGE) == [A]
    assert graph.next_expiry() is None


def test_expiring_an_unlinked_node_is_no_topology_change() -> None:
    graph = mesh()
    graph.update(signed("a", 1, nb("b")), now=0.0)  # one-sided, so no link
    version = graph.version
    assert graph.expire(MAX_AGE) == [A]
    assert graph.version == version


# --- the both-ends rule -------------------------------------------------------------------------


def test_a_one_sided_claim_is_not_a_link() -> None:
    graph = mesh()
    assert graph.update(signed("a", 1, nb("b")), now=0.0) is False
    assert link_set(graph) == set()
    # B has a record, but it does not list A either.
    assert graph.update(signed("b", 1, nb("c")), now=0.0) is False
    assert link_set(graph) == set()


def test_a_link_needs_both_ends() -> None:
    graph = mesh()
    graph.update(signed("a", 1, nb("b", rtt_us=1_000, loss_permille=3)), now=0.0)
    assert graph.update(signed("b", 1, nb("a", rtt_us=3_000, loss_permille=7)), now=0.0) is True
    (link,) = link_set(graph)
    assert {link.a, link.b} == {A, B}
    assert link.a < link.b
    assert link.weight == 4_000
    assert link.latency_ms == pytest.approx((1_000 + 3_000) / 2 / 2 / 1000)  # 1 ms one way
    assert link.loss_permille == 7
    assert link.delivery == pytest.approx(0.993)


def test_withdrawing_one_end_removes_the_link() -> None:
    graph = mesh()
    graph.update(signed("a", 1, nb("b")), now=0.0)
    graph.update(signed("b", 1, nb("a")), now=0.0)
    assert graph.update(signed("b", 2), now=1.0) is True
    assert link_set(graph) == set()


def test_a_node_listing_itself_is_ignored() -> None:
    graph = mesh()
    graph.update(signed("a", 1, nb("a"), nb("b")), now=0.0)
    graph.update(signed("b", 1, nb("a")), now=0.0)
    assert link_set(graph) == {Link.between(A, B, 2_000, 0)}


def test_links_match_the_reference_on_random_meshes() -> None:
    for seed in range(20):
        sample = random_mesh(seed, 60, 5.0)
        graph = MeshGraph(sample.nodes[0])
        for record in sample.records:
            graph.update(record, now=0.0)
        reference = reference_graph(sample.records)
        ours = {frozenset((x.a, x.b)): x for x in graph.topology().links()}
        assert set(ours) == {frozenset(e) for e in reference.edges}, f"seed {seed}"
        for u, v, data in reference.edges(data=True):
            link = ours[frozenset((u, v))]
            assert link.latency_ms == pytest.approx(data["latency_ms"]), f"seed {seed}"
            assert link.delivery == pytest.approx(1 - data["loss"]), f"seed {seed}"


def test_update_reports_exactly_the_topology_changes() -> None:
    """Replaying records one by one: update is True exactly when the link set changed."""
    sample = random_mesh(7, 40, 4.0)
    graph = MeshGraph(sample.nodes[0])
    before = link_set(graph)
    for record in sample.records:
        changed = graph.update(record, now=0.0)
        after = link_set(graph)
        assert changed == (after != before)
        before = after


# --- the local view -----------------------------------------------------------------------------


def test_local_links_count_before_the_neighbour_confirms() -> None:
    graph = mesh("self")
    me = node("self")
    assert graph.set_local_links([nb("a", rtt_us=2_000, loss_permille=4)]) is True
    assert link_set(graph) == {Link.between(me, A, 4_000, 4)}
    # Once A lists us too, the link uses the mean of both RTTs and the worse loss.
    assert graph.update(signed("a", 1, nb("self", rtt_us=4_000, loss_permille=1)), now=0.0)
    assert link_set(graph) == {Link.between(me, A, 6_000, 4)}


def test_the_local_view_overrides_our_own_gossiped_record() -> None:
    graph = mesh("self")
    me = node("self")
    graph.update(signed("a", 1, nb("self")), now=0.0)
    graph.update(signed("b", 1, nb("self")), now=0.0)
    graph.update(signed("self", 1, nb("a"), nb("b")), now=0.0)
    assert len(link_set(graph)) == 2
    # B's session closed: the local view drops it even though both records still list it.
    assert graph.set_local_links([nb("a")]) is True
    assert link_set(graph) == {Link.between(me, A, 2_000, 0)}
    # Our own record coming back later changes nothing.
    assert graph.update(signed("self", 2, nb("a"), nb("b"), nb("c")), now=1.0) is False
    assert graph.set_local_links([nb("a")]) is False


def test_local_links_ignore_a_listing_of_ourselves() -> None:
    graph = mesh("self")
    graph.set_local_links([nb("self"), nb("a")])
    assert [x.other(node("self")) for x in graph.topology().links()] == [A]


def test_topology_is_rebuilt_only_after_a_change() -> None:
    graph = mesh()
    first = graph.topology()
    assert graph.topology() is first
    graph.update(signed("a", 1, nb("b")), now=0.0)  # one-sided: no change
    assert graph.topology() is first
    graph.update(signed("b", 1, nb("a")), now=0.0)
    assert graph.topology() is not first
    assert node("self") in graph.topology()


# --- the cap ------------------------------------------------------------------------------------


def test_a_full_graph_refuses_new_nodes_but_updates_known_ones() -> None:
    graph = MeshGraph(node("self"), max_nodes=2)
    graph.update(signed("a", 1), now=0.0)
    graph.update(signed("b", 1), now=0.0)
    with pytest.raises(MeshFull) as caught:
        graph.update(signed("c", 1), now=0.0)
    assert isinstance(caught.value, RoutingError)
    assert isinstance(caught.value, LiberationError)
    assert caught.value.code == "mesh_full"
    assert C not in graph
    graph.update(signed("a", 2, nb("b")), now=1.0)
    assert graph.seq(A) == 2
    # Room again once a record expires.
    graph.expire(MAX_AGE * 2)
    graph.update(signed("d", 1), now=MAX_AGE * 2)
    assert D in graph


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_age_s": 0.0}, "max_age_s"), ({"max_nodes": 0}, "max_nodes")],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MeshGraph(node("self"), **kwargs)  # type: ignore[arg-type]


# --- incremental upkeep -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_incremental_links_equal_a_rebuild_from_the_live_records(seed: int) -> None:
    """After any mix of updates, local-view changes and expiries, the links kept up to date
    one record at a time equal those of a graph fed only the surviving records."""
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(12)]
    local = node(names[0])
    graph = MeshGraph(local, max_age_s=MAX_AGE)
    seqs = dict.fromkeys(names, 0)
    view: list[LinkNeighbour] | None = None
    now = 0.0
    for _ in range(300):
        now += rng.uniform(0, 5)
        action = rng.random()
        if action < 0.75:
            name = rng.choice(names)
            seqs[name] += rng.choice([-1, 0, 1, 1, 1, 2])
            listed = rng.sample(names, rng.randint(0, 5))
            neighbours = [nb(x, rng.choice([0, 500, 2_000]), rng.choice([0, 9])) for x in listed]
            graph.update(unsigned(node(name), max(1, seqs[name]), tuple(neighbours)), now)
        elif action < 0.9:
            view = [nb(x, rng.choice([100, 900])) for x in rng.sample(names, rng.randint(0, 4))]
            graph.set_local_links(view)
        else:
            graph.expire(now)
        fresh = MeshGraph(local, max_age_s=MAX_AGE)
        for other in names:
            record = graph.record(node(other))
            if record is not None:
                fresh.update(record, now)
        if view is not None:
            fresh.set_local_links(view)
        assert link_set(graph) == link_set(fresh), f"seed {seed}"
        for other in names:
            assert set(graph.links_of(node(other))) == set(fresh.links_of(node(other)))
