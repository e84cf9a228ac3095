"""Relay benchmark: what one relayed event costs a node, without WebRTC in the way.

Seven real nodes (real driver, store and gossip core) in one process, joined by in-memory links
instead of data channels: node 0 is linked to the six others, which also form a ring. Node 0
publishes posts one at a time; each of the six verifies, commits and forwards what it receives.
Printed: the time each EVENTS frame takes in `GossipDriver.receive` (the whole path: parse,
verify, plan, commit, forward), median and p10/p90 over every frame. With no network stack
beside it, this figure moves far less from run to run than bench/mesh.py's latencies: use it to
compare two builds (run them in turn, a few times each).

Usage: python bench/relay.py [--posts N] [--runs R]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where "protocol" would name the
# bench script, not the package: put the repository there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from node.config import Config, load_config
from node.daemon import Node
from node.engine import GossipDriver
from protocol.events import Post
from protocol.ledger import Ledger
from protocol.replica import Intent

NODES = 7
EVENTS_FRAME_TYPE = 2  # byte 2 of an encoded frame: [version, type, ...]


class MemoryLink:
    """One direction of an in-memory link: delivers on the next turn of the loop, as a data
    channel's message callback would."""

    def __init__(self, loop: asyncio.AbstractEventLoop, address: str) -> None:
        self.loop = loop
        self.address = address
        self.peer: GossipDriver | None = None
        self.handle = -1

    def send(self, data: bytes) -> None:
        self.loop.call_soon(self._deliver, data)

    def _deliver(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.receive(self.handle, data)

    def close(self) -> None:
        self.peer = None


def config(root: Path, index: int) -> Config:
    return load_config(
        None,
        env={},
        overrides={
            "node": {"data_dir": root / f"node{index}"},
            "mesh": {"host": "127.0.0.1", "port": 0},
            "status": {"host": "127.0.0.1", "port": 0},
            "discovery": {"mdns": False},
            "ledger": {"genesis": "found"} if index == 0 else {},
        },
    )


async def wait_for(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)


def link(loop: asyncio.AbstractEventLoop, a: Node, b: Node, name: str) -> None:
    assert a.driver is not None
    assert b.driver is not None
    to_b, to_a = MemoryLink(loop, f"{name}b"), MemoryLink(loop, f"{name}a")
    to_b.peer, to_a.peer = b.driver, a.driver
    # Frames sent while attaching are delivered on a later turn, once both handles are known.
    to_a.handle = a.driver.attach(
        to_b, outbound=True, local_fingerprint=f"{name}-a", remote_fingerprint=f"{name}-b"
    )
    to_b.handle = b.driver.attach(
        to_a, outbound=False, local_fingerprint=f"{name}-b", remote_fingerprint=f"{name}-a"
    )


def post_intent(node: Node, number: int) -> Intent:
    assert node.key is not None
    body = Post("social", 3, f"relay bench {number} " + "x" * 180)

    def make_body(_ledger: Ledger) -> Post:
        return body

    return Intent(node.key, make_body)


async def one_run(posts: int) -> list[float]:
    root = Path(tempfile.mkdtemp(prefix="ln-bench-relay-"))
    nodes = [Node(config(root, i)) for i in range(NODES)]
    try:
        for node in nodes:
            await node.start()
        await wait_for(lambda: all(n.driver is not None for n in nodes), 30, "the mesh cores")
        loop = asyncio.get_running_loop()
        pairs = [(0, i) for i in range(1, NODES)]
        pairs += [(i, i % (NODES - 1) + 1) for i in range(1, NODES)]
        for a, b in pairs:
            link(loop, nodes[a], nodes[b], f"{a}-{b}")
        await wait_for(
            lambda: all(n.replica.network_id is not None for n in nodes), 30, "the genesis"
        )
        await asyncio.sleep(1.0)  # link state and the first pings settle
        frames: list[float] = []
        for node in nodes[1:]:
            driver = node.driver
            assert driver is not None
            receive = driver.receive

            def timed(
                handle: int, data: bytes, receive: Callable[[int, bytes], None] = receive
            ) -> None:
                start = time.perf_counter()
                receive(handle, data)
                if len(data) > 2 and data[2] == EVENTS_FRAME_TYPE:
                    frames.append(time.perf_counter() - start)

            driver.receive = timed  # type: ignore[method-assign]
        for number in range(posts):
            await nodes[0].publish(post_intent(nodes[0], number))
            await asyncio.sleep(0.005)  # one at a time: no group commit
        await wait_for(lambda: len(frames) >= posts * (NODES - 1), 30, "every delivery")
        return frames
    finally:
        for node in nodes:
            await node.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{NODES} nodes over in-memory links; {args.posts} posts from node 0 per run")
    medians = []
    for run in range(1, args.runs + 1):
        frames = sorted(asyncio.run(one_run(args.posts)))
        median = statistics.median(frames) * 1e6
        medians.append(median)
        p10, p90 = (frames[int(q * (len(frames) - 1))] * 1e6 for q in (0.1, 0.9))
        print(
            f"run {run}: {len(frames)} EVENTS frames received: median {median:.0f} µs, "
            f"p10 {p10:.0f} µs, p90 {p90:.0f} µs"
        )
    print(f"median of the runs' medians: {statistics.median(medians):.0f} µs per relayed event")


if __name__ == "__main__":
    main()
