"""Run a node in the foreground until SIGINT or SIGTERM, then shut down cleanly."""

from __future__ import annotations

import asyncio
import signal

from node.config import Config
from node.daemon import Node


async def serve(config: Config, stop: asyncio.Event | None = None) -> None:
    """Start a node, wait for a stop signal, stop it. Errors from start-up propagate."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    node = Node(config)
    try:
        await node.start()
        await stop.wait()
    finally:
        await node.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run_node(config: Config) -> int:
    asyncio.run(serve(config))
    return 0
