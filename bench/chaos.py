"""The long chaos run: the short run of tests/chaos for many minutes, with flatness checked.

N node processes in network namespaces under load, a fault every ``--fault-every`` seconds for
``--minutes`` minutes (kill -9 and restart, SIGSTOP/SIGCONT, partitions, netem or a throttle, one
double spend across a partition), then the checker: the seven invariants, and memory and open
fds flat (the last quarter of the run within 10% of the first, after each process's warm-up).

Run it as root inside the project's private network namespace:

    bash tests/netns-run.sh .venv/bin/python bench/chaos.py --minutes 20 --fault-every 10 \\
        --nodes 8 [--seed S] [--workdir DIR]

Prints the seed and schedule first, the fault log as it goes, then the checker's report and its
figures as JSON (``--json FILE`` also writes them). Exit code 0 when every invariant held.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# This file is named like a module it might import: keep bench/ off the import path, and put the
# repository on it (the runner lives in tests/chaos).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chaos.checker import Caps, check  # noqa: E402
from tests.chaos.netns import cannot_make_namespaces  # noqa: E402
from tests.chaos.runner import ChaosRun, RunConfig, new_seed  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the long chaos run")
    parser.add_argument("--minutes", type=float, default=20.0, help="length of the fault phase")
    parser.add_argument("--fault-every", type=float, default=10.0, help="seconds between faults")
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rate", type=float, default=1.0, help="load operations/s per node")
    parser.add_argument("--quiet", type=float, default=20.0, help="seconds of load after healing")
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--liveness-bound", type=float, default=Caps.liveness_s)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)

    reason = cannot_make_namespaces()
    if reason:
        print(f"chaos: cannot run here: {reason}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else new_seed()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"chaos-{seed}-"))
    print(f"chaos: seed {seed}, work directory {workdir}", flush=True)
    config = RunConfig(
        seed=seed,
        workdir=workdir,
        nodes=args.nodes,
        duration_s=args.minutes * 60,
        fault_every_s=args.fault_every,
        quiet_s=args.quiet,
        rate=args.rate,
        sample_every_s=args.sample_every,
        log=lambda line: print(line, flush=True),
    )
    started = time.monotonic()
    outcome = ChaosRun(config).run()
    ran = time.monotonic() - started
    report = check(outcome.manifest, Caps(liveness_s=args.liveness_bound), flat=True)
    print(report.render())
    figures = {
        "seed": seed,
        "nodes": args.nodes,
        "minutes": args.minutes,
        "fault_every_s": args.fault_every,
        "run_s": round(ran, 1),
        "netem": outcome.data.get("netem"),
        "netem_reason": outcome.data.get("netem_reason"),
        "ok": report.ok,
        "failed": [f.name for f in report.findings if not f.ok],
        **report.figures,
    }
    text = json.dumps(figures, indent=1, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)
    print(f"chaos: {ran / 60:.1f} min; stores, histories and logs in {workdir}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
