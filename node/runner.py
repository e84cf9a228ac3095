"""Run a node in the foreground until SIGINT or SIGTERM, then shut down cleanly."""

from __future__ import annotations

import asyncio
import gc
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
    freezer: asyncio.Task[None] | None = None
    try:
        await node.start()
        freezer = asyncio.create_task(freeze_once_started(node), name="gc-freeze")
        await stop.wait()
    finally:
        if freezer is not None:
            freezer.cancel()
        await node.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def freeze_once_started(node: Node) -> None:
    await node.mesh_started.wait()
    freeze_start_up_objects()


def freeze_start_up_objects() -> None:
    """Move what start-up made (modules, classes, the libraries' tables: most of the heap) out
    of the collector's sight. A full collection then walks only what the running node made, so
    its pause stays short however much was imported."""
    gc.collect()
    gc.freeze()


def run_node(config: Config) -> int:
    asyncio.run(serve(config))
    return 0
