"""Helpers for routing tests: node ids, link-state records, random meshes and a reference graph.

The reference graph is built here from the records, independently of `routing`, with float
latencies in milliseconds, so that comparing against networkx's own answer checks the merge rules
and the integer weights as well as the path search.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise

import networkx as nx

from protocol.frames import LinkNeighbour, LinkState
from protocol.identity import SigningKey

NETWORK = bytes(32)


@cache
def signer(label: str) -> SigningKey:
    return SigningKey.for_label(f"routing-test/{label}")


def node(label: str) -> bytes:
    return signer(label).public


def nb(label: str, rtt_us: int = 1_000, loss_permille: int = 0) -> LinkNeighbour:
    return LinkNeighbour(node(label), rtt_us, loss_permille)


def signed(label: str, seq: int, *neighbours: LinkNeighbour, ts: int = 0) -> LinkState:
    """A record signed by the node named ``label`` (as the caller would have verified it)."""
    return LinkState.create(
        signer(label), seq=seq, ts=ts, neighbours=tuple(neighbours), network_id=NETWORK
    )


def unsigned(origin: bytes, seq: int, neighbours: tuple[LinkNeighbour, ...]) -> LinkState:
    """A record built directly; routing does not look at signatures, and signing is slow."""
    return LinkState(origin, seq, 0, neighbours, NETWORK, b"")


@dataclass
class RandomMesh:
    """A random mesh as records, with the seed that made it (printed by failing tests)."""

    seed: int
    nodes: list[bytes]
    records: list[LinkState] = field(default_factory=list)


def random_mesh(
    seed: int,
    n: int,
    degree: float,
    *,
    one_sided: float = 0.1,
    silent: float = 0.05,
) -> RandomMesh:
    """A G(n, p) mesh of mean degree ``degree`` with asymmetric RTT and loss measurements.

    A fraction ``one_sided`` of links is listed by one end only (not a link), and a fraction
    ``silent`` of nodes has sent no record (its neighbours' claims stay unconfirmed).
    """
    rng = random.Random(seed)
    nodes = [rng.randbytes(32) for _ in range(n)]
    listings: dict[bytes, list[LinkNeighbour]] = {x: [] for x in nodes}
    p = min(1.0, degree / max(1, n - 1))
    for i, u in enumerate(nodes):
        for v in nodes[i + 1 :]:
            if rng.random() >= p:
                continue
            sides = [(u, v), (v, u)]
            if rng.random() < one_sided:
                sides = [rng.choice(sides)]
            for a, b in sides:
                # Wide RTT spread (50 us .. 200 ms) and some zero-cost links, plus a few ties.
                rtt = rng.choice([0, 1_000, 2_000, rng.randint(50, 200_000)])
                listings[a].append(LinkNeighbour(b, rtt, rng.choice([0, 0, 1, 10, 200])))
    mesh = RandomMesh(seed, nodes)
    for x in nodes:
        if rng.random() >= silent:
            mesh.records.append(unsigned(x, rng.randint(1, 5), tuple(listings[x])))
    rng.shuffle(mesh.records)
    return mesh


def reference_graph(records: list[LinkState]) -> nx.Graph:
    """The mesh as networkx sees it: a link where both ends list each other.

    Edge attributes: ``latency_ms`` = mean RTT / 2 in ms, ``loss`` = worse end, as a fraction.
    """
    listing = {r.node: {n.node: n for n in r.neighbours if n.node != r.node} for r in records}
    graph = nx.Graph()
    for u, mine in listing.items():
        for v, ours in mine.items():
            theirs = listing.get(v, {}).get(u)
            if theirs is None:
                continue
            mean_rtt_us = (ours.rtt_us + theirs.rtt_us) / 2
            graph.add_edge(
                u,
                v,
                latency_ms=mean_rtt_us / 2 / 1000,
                loss=max(ours.loss_permille, theirs.loss_permille) / 1000,
            )
    return graph


def path_latency(graph: nx.Graph, path: tuple[bytes, ...] | list[bytes]) -> float:
    return float(sum(graph[u][v]["latency_ms"] for u, v in pairwise(path)))


def path_reliability(graph: nx.Graph, path: tuple[bytes, ...] | list[bytes]) -> float:
    result = 1.0
    for u, v in pairwise(path):
        result *= 1 - graph[u][v]["loss"]
    return result
