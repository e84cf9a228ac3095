"""Routing benchmark: full recompute on synthetic meshes of 100, 1,000 and 10,000 nodes.

Each mesh is random with mean degree ~6 (3n distinct links), per-end RTTs spread
log-uniformly over 0.2-150 ms and loss of 0-5%. Prints the median over N runs (default 7), in
milliseconds, of:
  - merge:      MeshGraph.update for every node's record (the link-state database)
  - build:      MeshGraph.topology(), the confirmed links as a networkx graph
  - routes:     RouteTable(...), single-source Dijkstra to every node
  - recompute:  build + routes, what one debounced recompute costs
  - all routes: Route objects (path, latency, reliability) for every destination
  - alternates: routes(dest) with k=3 for one destination (Yen's algorithm, on request)
  - retry:      alternate_avoiding(dest, nodes=[next hop]) for that destination
Records are built unsigned: signatures are the caller's job, and routing never reads them.

Usage: python bench/routing.py [--runs N] [--sizes 100,1000,10000] [--seed S]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and there "routing" (and
# "protocol") would name the bench scripts, not the packages: put the repository there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from protocol.frames import LinkNeighbour, LinkState
from routing.errors import Unreachable
from routing.graph import MeshGraph
from routing.routes import RouteTable

MEAN_DEGREE = 6
NETWORK = bytes(32)


def synthetic_records(n: int, rng: random.Random) -> list[LinkState]:
    """One record per node for a random mesh of mean degree MEAN_DEGREE; both ends list a link."""
    nodes = [rng.randbytes(32) for _ in range(n)]
    links: set[tuple[int, int]] = set()
    target = min(MEAN_DEGREE * n // 2, n * (n - 1) // 2)
    while len(links) < target:
        u, v = rng.randrange(n), rng.randrange(n)
        if u != v:
            links.add((min(u, v), max(u, v)))
    listings: list[list[LinkNeighbour]] = [[] for _ in range(n)]
    for u, v in links:
        for a, b in ((u, v), (v, u)):
            rtt_us = int(math.exp(rng.uniform(math.log(200), math.log(150_000))))
            listings[a].append(LinkNeighbour(nodes[b], rtt_us, rng.randint(0, 50)))
    return [LinkState(nodes[i], 1, 0, tuple(listings[i]), NETWORK, b"") for i in range(n)]


def timed(action: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def retry(table: RouteTable, destination: bytes, failed: bytes) -> object:
    try:
        return table.alternate_avoiding(destination, nodes=[failed])
    except Unreachable:
        return None


def run_once(records: list[LinkState], rng: random.Random) -> dict[str, float]:
    source = records[0].node
    graph = MeshGraph(source)

    def merge() -> None:
        for record in records:
            graph.update(record, now=0.0)

    figures: dict[str, float] = {}
    figures["merge"], _ = timed(merge)
    figures["build"], _ = timed(graph.topology)
    figures["routes"], table = timed(lambda: RouteTable(graph.topology(), source))
    assert isinstance(table, RouteTable)
    figures["recompute"] = figures["build"] + figures["routes"]
    destinations = list(table)
    figures["all routes"], _ = timed(lambda: [table.route(d) for d in destinations])
    # A destination two or more hops away, so that its first relay can fail.
    far = rng.choice([d for d in destinations if table.next_hop(d) != d])
    figures["alternates"], _ = timed(lambda: table.routes(far))
    hop = table.next_hop(far)
    figures["retry"], _ = timed(lambda: retry(table, far, hop))
    figures["reached"] = len(destinations)
    return figures


COLUMNS = ("merge", "build", "routes", "recompute", "all routes", "alternates", "retry")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"runs: {args.runs} (medians, ms), mean degree {MEAN_DEGREE}, seed {args.seed}")
    print(f"{'nodes':>6} {'links':>6} {'reached':>7} " + " ".join(f"{c:>10}" for c in COLUMNS))
    for size in sizes:
        rng = random.Random(args.seed * 1_000_003 + size)
        records = synthetic_records(size, rng)
        runs = [run_once(records, rng) for _ in range(args.runs)]
        link_count = sum(len(r.neighbours) for r in records) // 2
        reached = int(runs[0]["reached"])
        medians = [statistics.median(r[c] for r in runs) * 1000 for c in COLUMNS]
        print(f"{size:>6} {link_count:>6} {reached:>7} " + " ".join(f"{m:>10.2f}" for m in medians))
    print("recompute = build + routes: what one debounced recompute costs")
    print("merge: all records arriving at once; alternates and retry: one destination, on request")


if __name__ == "__main__":
    main()
