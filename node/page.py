"""The server-rendered status page (no CDN, no build step; readable on a phone)."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node.daemon import Node

STYLE = """
:root { color-scheme: dark; --bg:#07070f; --panel:#10101f; --line:#23234a; --text:#d8d8f0;
  --dim:#8888aa; --neon:#39ff14; --cyan:#00e5ff; --pink:#ff2bd6; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--text);
  font:15px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
header { padding:14px 18px; border-bottom:1px solid var(--line);
  display:flex; flex-wrap:wrap; gap:8px 18px; align-items:baseline; }
header h1 { margin:0; font-size:18px; color:var(--neon); text-shadow:0 0 8px var(--neon); }
main { display:grid; gap:14px; padding:14px;
  grid-template-columns:repeat(auto-fit,minmax(300px,1fr)); }
section { background:var(--panel); border:1px solid var(--line); border-radius:8px;
  padding:12px 14px; min-width:0; }
section h2 { margin:0 0 8px; font-size:13px; letter-spacing:.08em; text-transform:uppercase;
  color:var(--cyan); }
dl { display:grid; grid-template-columns:max-content 1fr; gap:4px 12px; margin:0; }
dt { color:var(--dim); } dd { margin:0; overflow-wrap:anywhere; }
.id { color:var(--pink); }
table { width:100%; border-collapse:collapse; }
td, th { text-align:left; padding:3px 6px; border-bottom:1px solid var(--line); }
th { color:var(--dim); font-weight:normal; }
.num { text-align:right; font-variant-numeric:tabular-nums; }
"""


def _kv(rows: list[tuple[str, Any]]) -> str:
    return (
        "<dl>"
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in rows)
        + "</dl>"
    )


async def render(node: Node) -> str:
    """The whole status page for ``node``."""
    return render_status(await node.status())


def render_status(status: dict[str, Any]) -> str:
    events = status.get("events_by_kind", {})
    ledger = status.get("ledger", {})
    event_rows = (
        "".join(
            f"<tr><td>{escape(kind)}</td><td class=num>{count}</td></tr>"
            for kind, count in sorted(events.items())
        )
        or "<tr><td colspan=2>no events yet</td></tr>"
    )
    node_card = _kv(
        [
            ("name", status.get("name") or "(unnamed)"),
            ("version", status.get("version", "")),
            ("uptime", f"{status.get('uptime_s', 0):.0f} s"),
            ("network", status.get("network_id") or "(no genesis yet)"),
            ("peers", status.get("peers", 0)),
        ]
    )
    ledger_card = _kv(
        [
            ("total supply", ledger.get("total", "-")),
            ("pool balance", ledger.get("pool_balance", "-")),
            ("accounts", ledger.get("accounts", 0)),
            ("unclaimed", ledger.get("unclaimed", "-")),
            ("state hash", ledger.get("state_hash", "-")),
        ]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>liberation-node {escape(str(status.get("node_id", ""))[:8])}</title>
<style>{STYLE}</style></head>
<body>
<header><h1>liberation-node</h1>
<span class="id">{escape(str(status.get("node_id", "")))}</span></header>
<main>
<section><h2>Node</h2>{node_card}</section>
<section><h2>Events</h2><table><tr><th>kind</th><th class=num>count</th></tr>{event_rows}
<tr><td>total</td><td class=num>{status.get("events", 0)}</td></tr></table></section>
<section><h2>Ledger</h2>{ledger_card}</section>
</main>
</body></html>
"""
