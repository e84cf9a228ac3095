"""``liberation-node`` as the chaos runner starts it: the CLI unchanged, plus one diagnostic.

    python -m tests.chaos.nodeproc run --config FILE

SIGUSR1 prints the stack of every asyncio task to stderr (the node's log), so that a node that
does not stop after SIGTERM shows which await it is stuck in; the runner sends it before giving
up on the node (then SIGABRT, which faulthandler turns into every thread's stack).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import traceback
from types import FrameType

from node.cli import main


def dump_tasks(signum: int, frame: FrameType | None) -> None:
    loop = asyncio._get_running_loop()
    out = sys.stderr
    if loop is None:
        print("chaos: SIGUSR1 with no running event loop; main thread:", file=out)
        traceback.print_stack(frame, file=out)
        return
    tasks = asyncio.all_tasks(loop)
    print(f"chaos: SIGUSR1: {len(tasks)} asyncio tasks", file=out)
    for task in tasks:
        print(f"--- {task!r}", file=out)
        task.print_stack(limit=12, file=out)
    out.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, dump_tasks)
    sys.exit(main(sys.argv[1:]))
