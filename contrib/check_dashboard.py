"""Check contrib/grafana-dashboard.json against the metrics the node really exposes.

Every metric name in a panel or variable query must be one that node/node_metrics.py registers
(a histogram also as ``_bucket``, ``_sum`` or ``_count``); metrics that no query uses are listed.
Run from the repository root: ``.venv/bin/python contrib/check_dashboard.py`` (exit code 1 on an
unknown name).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "contrib" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\bliberation_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exposed_metrics() -> dict[str, str]:
    """Name to type of every metric NodeMetrics registers (no running node needed)."""
    sys.path.insert(0, str(ROOT))
    from node.metrics import Registry
    from node.node_metrics import NodeMetrics

    registry = Registry()
    NodeMetrics(registry, None)  # type: ignore[arg-type]  # registering does not use the node
    return {name: metric.kind for name, metric in registry._metrics.items()}


def queries(value: Any) -> Iterator[str]:
    """Every PromQL text in the dashboard: panel targets and variable queries."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("expr", "definition") and isinstance(item, str):
                yield item
            elif key == "query" and isinstance(item, str | dict):
                yield from ([item] if isinstance(item, str) else queries(item))
            else:
                yield from queries(item)
    elif isinstance(value, list):
        for item in value:
            yield from queries(item)


def resolve(name: str, metrics: dict[str, str]) -> str | None:
    if name in metrics:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and metrics.get(base) == "histogram":
            return base
    return None


def main() -> int:
    metrics = exposed_metrics()
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used: set[str] = set()
    unknown: set[str] = set()
    count = 0
    for text in queries(dashboard):
        count += 1
        for name in METRIC_NAME.findall(text):
            base = resolve(name, metrics)
            if base is None:
                unknown.add(name)
            else:
                used.add(base)
    print(f"{count} queries, {len(used)} of {len(metrics)} exposed metrics used")
    for name in sorted(set(metrics) - used):
        print(f"not shown: {name} ({metrics[name]})")
    for name in sorted(unknown):
        print(f"UNKNOWN metric in the dashboard: {name}")
    return 1 if unknown else 0


if __name__ == "__main__":
    sys.exit(main())
