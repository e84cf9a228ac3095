"""Start-up benchmark: process start -> /healthz answering, beside the import floor.

Prints the median over N runs (default 10) of:
  - node:  `liberation-node run` until GET /healthz returns 200 (a restart on an existing data dir)
  - first: the same on an empty data dir (key creation and migrations included)
  - floor: `python -c "import aiortc, aiohttp, zeroconf, aiosqlite, networkx"` until exit
  - bare aiohttp: an aiohttp app with nothing but /healthz, until it answers: the least any node
    whose status server is aiohttp can take on this machine
and the ratio node / floor. Goals: node under 500 ms, and under 1.5x the floor.
The node, the floor and the bare app are timed in turn, run after run, so that a machine whose
speed drifts skews the three alike.

Usage: python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR_IMPORTS = "import aiortc, aiohttp, zeroconf, aiosqlite, networkx"
BARE_AIOHTTP = """
import asyncio, sys
from aiohttp import web

async def healthz(request):
    return web.Response(text="ok")

async def main():
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
        connection.request("GET", "/healthz")
        ok = connection.getresponse().status == 200
        connection.close()
        return ok
    except OSError:
        return False


def node_command() -> list[str]:
    script = Path(sys.executable).with_name("liberation-node")
    return [str(script)] if script.exists() else [sys.executable, "-m", "node"]


def time_node(data_dir: Path) -> float:
    port = free_port()
    command = [
        *node_command(),
        "run",
        "--data-dir",
        str(data_dir),
        "--status-port",
        str(port),
        "--mesh-port",
        str(free_port()),
        "--no-mdns",
    ]
    return time_until_healthy(command, port)


def time_bare_aiohttp() -> float:
    port = free_port()
    return time_until_healthy([sys.executable, "-c", BARE_AIOHTTP, str(port)], port)


def time_until_healthy(command: list[str], port: int) -> float:
    # As on a user's machine, the warm-up run may write bytecode for modules that have none.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LIBERATION_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        while not healthy(port):
            if process.poll() is not None:
                error = process.stderr.read().decode() if process.stderr else ""
                raise SystemExit(f"{command[0]} exited: {error}")
            time.sleep(0.001)
        elapsed = time.perf_counter() - start
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    return elapsed


def time_floor() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOOR_IMPORTS], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ln-bench-startup-"))
    try:
        time_node(work / "warm")  # create the data dir and warm the page cache
        time_floor()
        time_bare_aiohttp()
        node: list[float] = []
        floor: list[float] = []
        bare: list[float] = []
        for _ in range(args.runs):
            node.append(time_node(work / "warm"))
            floor.append(time_floor())
            bare.append(time_bare_aiohttp())
        first = [time_node(work / f"fresh-{i}") for i in range(args.runs)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    node_ms = statistics.median(node) * 1000
    first_ms = statistics.median(first) * 1000
    floor_ms = statistics.median(floor) * 1000
    bare_ms = statistics.median(bare) * 1000
    print(f"runs: {args.runs} (medians)")
    print(f"node start -> /healthz   : {node_ms:7.1f} ms   (goal < 500 ms)")
    print(f"first start (new dir)    : {first_ms:7.1f} ms")
    print(f"import floor             : {floor_ms:7.1f} ms   ({FLOOR_IMPORTS})")
    print(f"ratio node / floor       : {node_ms / floor_ms:7.2f}      (goal < 1.5)")
    print(f"bare aiohttp app         : {bare_ms:7.1f} ms   (an app with only /healthz)")
    print(f"node - bare aiohttp      : {node_ms - bare_ms:7.1f} ms   (the node's own start-up)")


if __name__ == "__main__":
    main()
