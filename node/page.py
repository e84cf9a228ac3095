"""The server-rendered status page (no CDN, no build step; readable on a phone).

The page is a list of sections, each rendered here from the node's own state and replaceable on
its own: ``GET /fragment/{section}`` (node/api_stream.py) serves one section, and the bundled
script (node/static/dashboard.js) swaps it in when the live stream says that section changed.

Everything shown can come from a peer (names, messages, account names, addresses), so every
dynamic value goes through `_e` (HTML escaping with quotes) and every attribute is quoted; the
page also carries a Content-Security-Policy that allows only this origin's script and style.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

from node import __version__
from node.api_ledger import account_view, enrolled_accounts, ledger_view

if TYPE_CHECKING:
    from node.daemon import Node
    from storage.events import MessageRow

#: The page's layout: rows of sections (the sections of one row share it on a wide screen).
ROWS: tuple[tuple[str, ...], ...] = (
    ("node", "events", "routes"),
    ("sync",),
    ("peers",),
    ("topology",),
    ("messages",),
    ("ledger",),
)
#: The page's sections in page order; each is a fragment of its own.
SECTIONS: tuple[str, ...] = tuple(name for row in ROWS for name in row)

#: Rows one table shows at most (the JSON API has the rest).
MAX_ROWS = 50
#: Messages listed (newest first, over every channel).
MAX_MESSAGES = 100
#: Nodes drawn in the topology picture (this node and the nearest others by hops).
MAX_DRAWN_NODES = 120
#: Force-layout work budget: node pairs x iterations (keeps a render well under 100 ms).
LAYOUT_BUDGET = 400_000
#: Layouts remembered (keyed by the graph), so an unchanged mesh is not laid out again.
LAYOUT_CACHE_SIZE = 8
#: Fixed seed: the same graph is always drawn the same way.
LAYOUT_SEED = 7
#: Latency bands for link colours: (upper bound in ms, CSS class, legend text).
LATENCY_BANDS: tuple[tuple[float, str, str], ...] = (
    (20.0, "lat-a", "< 20 ms"),
    (100.0, "lat-b", "20-100 ms"),
    (math.inf, "lat-c", ">= 100 ms"),
)
#: Loss ratio from which a link is drawn dashed.
LOSSY = 0.05

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'"
)


def _e(value: object) -> str:
    """HTML-escape anything for text or a double-quoted attribute."""
    return escape(str(value), quote=True)


def _short(hex_id: str) -> str:
    return hex_id[:8]


def _kv(rows: Iterable[tuple[str, object]]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows) + "</dl>"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _bytes(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + "Z"


def _id_cell(hex_id: str, name: str = "") -> str:
    """A node or account: its name (if any) and short id, the full id as a tooltip."""
    label = f"{_e(name)} " if name else ""
    return f'{label}<span class="id" title="{_e(hex_id)}">{_e(_short(hex_id))}</span>'


def _table(
    head: tuple[str, ...], rows: list[str], empty: str, numeric: tuple[int, ...] = ()
) -> str:
    cells = "".join(
        f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
        for i, h in enumerate(head)
    )
    body = "".join(rows) or f'<tr><td colspan="{len(head)}" class="dim">{_e(empty)}</td></tr>'
    return f'<div class="scroll"><table><tr>{cells}</tr>{body}</table></div>'


def _section(name: str, title: str, body: str, *, hidden: bool = False) -> str:
    attrs = " hidden" if hidden else ""
    return f'<section id="sec-{name}"{attrs}><h2>{_e(title)}</h2>{body}</section>\n'


# --- what the sections read -------------------------------------------------------------------


@dataclass
class View:
    """One rendering's reads of the node (shared by the sections of one page)."""

    node: Node
    _status: dict[str, Any] | None = None
    _peers: list[dict[str, Any]] | None = None

    async def status(self) -> dict[str, Any]:
        if self._status is None:
            self._status = await self.node.status()
        return self._status

    def peers(self) -> list[dict[str, Any]]:
        if self._peers is None:
            self._peers = self.node.peers.status() if self.node.peers is not None else []
        return self._peers

    def names(self) -> dict[str, str]:
        """Known node names by node id: this node's and its peers'."""
        names = {p["id"]: str(p.get("name") or "") for p in self.peers()}
        names[self.node.node_id] = self.node.config.node.name
        return {k: v for k, v in names.items() if v}


# --- sections ------------------------------------------------------------------------------------


async def _node_section(view: View) -> str:
    status = await view.status()
    node = view.node
    ledger = status.get("ledger") or {}
    body = _kv(
        [
            ("id", status.get("node_id", "")),
            ("name", status.get("name") or "(unnamed)"),
            ("version", status.get("version", "")),
            ("uptime", _duration(float(status.get("uptime_s", 0)))),
            ("mesh", ledger.get("mesh") or "(no genesis yet)"),
            ("network id", status.get("network_id") or "(no genesis yet)"),
            ("peers", f"{status.get('peers', 0)} (target {node.config.mesh.target_peers})"),
            ("mesh port", status.get("mesh_port", "")),
            ("ready", "yes" if status.get("ready") else "starting"),
        ]
    )
    return _section("node", "Node", body)


async def _sync_section(view: View) -> str:
    sync = (await view.status()).get("sync") or {}
    syncing = bool(sync.get("syncing"))
    percent = float(sync.get("percent", 100.0))
    body = (
        f'<progress max="100" value="{percent:.1f}">{percent:.1f}%</progress>'
        f'<p class="dim">catching up: {_e(f"{percent:.1f}")}% - fetched '
        f"{_e(sync.get('fetched', 0))}, still missing {_e(sync.get('missing', 0))} events</p>"
    )
    return _section("sync", "Catching up", body, hidden=not syncing)


async def _events_section(view: View) -> str:
    status = await view.status()
    events: dict[str, int] = status.get("events_by_kind") or {}
    rows = [
        f'<tr><td>{_e(kind)}</td><td class="num">{_e(count)}</td></tr>'
        for kind, count in sorted(events.items())
    ]
    rows.append(f'<tr><td>total</td><td class="num">{_e(status.get("events", 0))}</td></tr>')
    return _section("events", "Events", _table(("kind", "count"), rows, "", numeric=(1,)))


async def _peers_section(view: View) -> str:
    if view.node.peers is None:
        return _section("peers", "Peers", '<p class="dim">the mesh is starting</p>')
    now = time.time()
    rows = []
    for peer in view.peers()[:MAX_ROWS]:
        since = peer.get("connected_since")
        since_text = f"{_utc(since)} ({_duration(now - since)})" if since else "-"
        rtt = peer.get("rtt_ms")
        direction = "out" if peer.get("outbound") else "in"
        loss = float(peer.get("loss") or 0.0)
        rows.append(
            "<tr>"
            f"<td>{_id_cell(str(peer['id']), str(peer.get('name') or ''))}</td>"
            f"<td>{_e(peer.get('via', ''))} ({direction})</td>"
            f"<td>{_e(peer.get('address', ''))}</td>"
            f'<td class="num">{_e(f"{rtt:.1f}" if rtt is not None else "-")}</td>'
            f'<td class="num">{_e(f"{loss * 100:.0f}%")}</td>'
            f'<td class="num">{_e(peer.get("score", ""))}</td>'
            f'<td class="num">{_e(_bytes(int(peer.get("bytes_in", 0))))}</td>'
            f'<td class="num">{_e(_bytes(int(peer.get("bytes_out", 0))))}</td>'
            f"<td>{_e(since_text)}</td>"
            "</tr>"
        )
    table = _table(
        ("peer", "via", "address", "rtt ms", "loss", "score", "in", "out", "connected since"),
        rows,
        "no peers yet",
        numeric=(3, 4, 5, 6, 7),
    )
    return _section("peers", f"Peers ({len(view.peers())})", table)


async def _topology_section(view: View) -> str:
    topology = view.node.topology()
    svg = render_topology(topology, view.names())
    legend = "".join(
        f'<span class="key"><i class="sw {css}"></i>{_e(text)}</span>'
        for _, css, text in LATENCY_BANDS
    )
    legend += '<span class="key"><i class="sw lat-u"></i>unknown</span>'
    legend += '<span class="key"><i class="sw lossy"></i>lossy</span>'
    legend += '<span class="key"><i class="dot self"></i>this node</span>'
    body = f'<div class="topo">{svg}</div><div class="legend">{legend}</div>'
    return _section("topology", "Topology", body)


async def _routes_section(view: View) -> str:
    router = view.node.router
    if router is None:
        return _section("routes", "Routes", '<p class="dim">the mesh is starting</p>')
    names = view.names()
    routes = sorted(router.all_routes(), key=lambda r: (r.hop_count, r.destination))
    rows = []
    for route in routes[:MAX_ROWS]:
        dest = route.destination.hex()
        path = " > ".join(_short(hop.hex()) for hop in route.path)
        rows.append(
            "<tr>"
            f"<td>{_id_cell(dest, names.get(dest, ''))}</td>"
            f'<td class="num">{_e(route.hop_count)}</td>'
            f'<td class="num">{_e(f"{route.total_latency_ms:.1f}")}</td>'
            f'<td class="num">{_e(f"{route.reliability * 100:.1f}%")}</td>'
            f'<td class="path">{_e(path)}</td>'
            "</tr>"
        )
    more = f'<p class="dim">and {len(routes) - MAX_ROWS} more</p>' if len(routes) > MAX_ROWS else ""
    table = _table(
        ("destination", "hops", "latency ms", "reliability", "path"),
        rows,
        "no routes yet",
        numeric=(1, 2, 3),
    )
    return _section("routes", f"Routes ({len(routes)})", table + more)


async def _ledger_section(view: View) -> str:
    node = view.node
    summary_view = await ledger_view(node)
    if summary_view["genesis"] is None:
        body = _kv([("state hash", summary_view["state_hash"])])
        return _section("ledger", "Ledger", '<p class="dim">no genesis yet</p>' + body)
    summary = _kv(
        [
            ("mesh", summary_view["genesis"]["name"]),
            ("total supply", summary_view["total"]),
            ("pool balance", summary_view["pool_balance"]),
            ("unclaimed", summary_view["unclaimed"]),
            ("accounts", summary_view["accounts"]),
            ("conserved", "yes" if summary_view["conserved"] else "NO"),
            ("period", summary_view["period"]),
            ("frozen authors", len(summary_view["frozen"])),
            ("state hash", summary_view["state_hash"]),
        ]
    )
    ids = enrolled_accounts(node)
    names = {a.hex(): node.replica.ledger.accounts[a].name for a in ids}
    names[summary_view["genesis"]["pool"]] = "pool"
    transfers = [
        "<tr>"
        f"<td>{_e(_utc(r['ts'] / 1000))}</td>"
        f"<td>{_id_cell(r['from'], names.get(r['from'], ''))}</td>"
        f"<td>{_id_cell(r['to'], names.get(r['to'], ''))}</td>"
        f'<td class="num">{_e(r["amount"])}</td>'
        f"<td>{_e(r['purpose'])}</td><td>{_e(r['state'])}</td>"
        "</tr>"
        for r in summary_view["recent"]
    ]
    accounts = []
    for account in ids[:MAX_ROWS]:
        shown = account_view(node, account)
        held = ' <span class="badge">held here</span>' if shown["held"] else ""
        frozen = ' <span class="badge warn">frozen</span>' if shown["frozen_at"] is not None else ""
        accounts.append(
            "<tr>"
            f"<td>{_id_cell(shown['id'], shown['name'])}{held}{frozen}</td>"
            f'<td class="num">{_e(shown["balance"])}</td>'
            "</tr>"
        )
    more = f'<p class="dim">and {len(ids) - MAX_ROWS} more</p>' if len(ids) > MAX_ROWS else ""
    body = (
        f'<div class="cols"><div>{summary}</div><div><h3>Accounts ({len(ids)})</h3>'
        + _table(("account", "balance"), accounts, "no accounts yet", numeric=(1,))
        + more
        + "</div></div><h3>Recent transfers</h3>"
        + _table(
            ("time", "from", "to", "amount", "purpose", "state"),
            transfers,
            "no transfers yet",
            numeric=(3,),
        )
    )
    return _section("ledger", "Ledger", body)


async def _messages_section(view: View) -> str:
    node = view.node
    rows = await node.events.messages(None, MAX_MESSAGES)
    subscribed = set(node.subscriptions)
    by_channel: dict[str, list[MessageRow]] = {c: [] for c in sorted(subscribed)}
    for row in rows:
        by_channel.setdefault(row.channel, []).append(row)
    order = sorted(by_channel, key=lambda c: (c not in subscribed, c))
    mesh = node.known_mesh_size()
    names = view.names()
    blocks = []
    for channel in order:
        sub = channel in subscribed
        badge = ' <span class="badge">subscribed</span>' if sub else ""
        items = []
        for row in by_channel[channel]:
            author = row.author.hex()
            reach = node.reach_estimate(row.id)
            items.append(
                f'<li class="msg p{_e(row.priority)}" data-id="{_e(row.id.hex())}">'
                f'<div class="meta"><span class="prio" title="priority">P{_e(row.priority)}</span> '
                f"{_id_cell(author, names.get(author, ''))} "
                f'<span class="dim">{_e(_utc(row.ts / 1000))}</span> '
                f'<span class="reach" title="nodes estimated to hold it">'
                f"reach {_e(reach)}/{_e(mesh)}</span></div>"
                f'<p class="content">{_e(row.content)}</p></li>'
            )
        listing = "".join(items) or '<li class="dim">no messages yet</li>'
        blocks.append(
            f'<div class="channel{" sub" if sub else ""}" data-channel="{_e(channel)}">'
            f'<h3>#{_e(channel)}{badge} <span class="dim">({len(by_channel[channel])})</span>'
            f'</h3><ul class="msgs">{listing}</ul></div>'
        )
    body = '<div class="channels">' + "".join(blocks) + "</div>"
    return _section("messages", "Messages", body)


SectionRenderer = Callable[[View], Awaitable[str]]

RENDERERS: dict[str, SectionRenderer] = {
    "node": _node_section,
    "sync": _sync_section,
    "events": _events_section,
    "peers": _peers_section,
    "topology": _topology_section,
    "routes": _routes_section,
    "ledger": _ledger_section,
    "messages": _messages_section,
}


async def render_fragment(node: Node, section: str) -> str | None:
    """One section's HTML (a whole ``<section>`` element), or None for an unknown name."""
    renderer = RENDERERS.get(section)
    if renderer is None:
        return None
    return await renderer(View(node))


async def render(node: Node) -> str:
    """The whole status page for ``node``."""
    view = View(node)
    rows = []
    for row in ROWS:
        sections = [await RENDERERS[name](view) for name in row]
        rows.append(f'<div class="row">{"".join(sections)}</div>\n')
    node_id = node.node_id
    title = f"liberation-node {_short(node_id)}"
    if node.config.node.name:
        title += f" ({node.config.node.name})"
    version = _e(__version__)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>{_e(title)}</title>
<link rel="stylesheet" href="/static/dashboard.css?v={version}">
<script src="/static/dashboard.js?v={version}" defer></script></head>
<body>
<header><h1>liberation-node</h1>
<span class="id">{_e(node_id)}</span>
<span id="live" class="live" title="live updates">static</span></header>
<main>
{"".join(rows)}</main>
</body></html>
"""


# --- the topology picture ------------------------------------------------------------------------

WIDTH, HEIGHT, PAD = 640.0, 380.0, 36.0
Point = tuple[float, float]
_layouts: dict[tuple[Any, ...], dict[str, Point]] = {}


def _band(latency_ms: float | None) -> str:
    if latency_ms is None:
        return "lat-u"
    return next(css for bound, css, _ in LATENCY_BANDS if latency_ms < bound)


def render_topology(topology: dict[str, Any], names: dict[str, str]) -> str:
    """An SVG of ``node.topology()``: this node highlighted, links coloured by latency."""
    me = next((str(n["id"]) for n in topology.get("nodes", []) if n.get("self")), "")
    known = {str(n["id"]) for n in topology.get("nodes", [])} | ({me} if me else set())
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    for edge in topology.get("edges", []):
        a, b = sorted((str(edge["a"]), str(edge["b"])))
        if a != b:
            edges[(a, b)] = edge
            known |= {a, b}
    all_nodes = sorted(known)
    nodes = _nearest(all_nodes, list(edges), me, MAX_DRAWN_NODES)
    shown = set(nodes)
    drawn = [(a, b) for a, b in sorted(edges) if a in shown and b in shown]
    points = _cached_layout(nodes, drawn, me)

    def xy(node_id: str) -> Point:
        x, y = points[node_id]
        return PAD + x * (WIDTH - 2 * PAD), PAD + y * (HEIGHT - 2 * PAD)

    parts = [
        f'<svg id="topology" class="topology" viewBox="0 0 {WIDTH:.0f} {HEIGHT:.0f}" '
        f'role="img" aria-label="mesh topology: {len(nodes)} nodes, {len(drawn)} links" '
        f'data-nodes="{len(nodes)}" data-links="{len(drawn)}">'
    ]
    for a, b in drawn:
        edge = edges[(a, b)]
        latency = edge.get("latency_ms")
        loss = float(edge.get("loss") or 0.0)
        css = _band(latency)
        if loss >= LOSSY:
            css += " lossy"
        (x1, y1), (x2, y2) = xy(a), xy(b)
        lat_text = f"{latency:.1f} ms" if latency is not None else "latency unknown"
        tip = f"{_short(a)} - {_short(b)}: {lat_text}, {loss * 100:.0f}% loss"
        parts.append(
            f'<line class="link {css}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}">'
            f"<title>{_e(tip)}</title></line>"
        )
    for node_id in nodes:
        x, y = xy(node_id)
        is_me = node_id == me
        name = names.get(node_id, "")
        label = name if name else _short(node_id)
        if len(label) > 18:
            label = label[:17] + "\u2026"
        tip = f"{name} {node_id}" if name else node_id
        parts.append(
            f'<g class="n{" self" if is_me else ""}" data-id="{_e(node_id)}">'
            f'<circle class="node{" self" if is_me else ""}" cx="{x:.1f}" cy="{y:.1f}" '
            f'r="{13 if is_me else 9}"><title>{_e(tip)}</title></circle>'
            f'<text x="{x:.1f}" y="{y + (27 if is_me else 22):.1f}" text-anchor="middle">'
            f"{_e(label)}</text></g>"
        )
    parts.append("</svg>")
    if len(all_nodes) > len(nodes):
        parts.append(f'<p class="dim">showing {len(nodes)} of {len(all_nodes)} nodes</p>')
    return "".join(parts)


def _graph(nodes: list[str], edges: list[tuple[str, str]]) -> Any:
    """A networkx graph (imported here: only the topology picture needs it)."""
    import networkx as nx

    graph = nx.Graph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    return graph


def _hops(nodes: list[str], edges: list[tuple[str, str]], me: str) -> dict[str, int]:
    """Hops from ``me`` to each node it can reach (networkx BFS; untyped, so wrapped here)."""
    if not me or me not in nodes:
        return {}
    import networkx as nx

    lengths = nx.single_source_shortest_path_length(_graph(nodes, edges), me)
    return {str(k): int(v) for k, v in lengths.items()}


def _nearest(nodes: list[str], edges: list[tuple[str, str]], me: str, limit: int) -> list[str]:
    if len(nodes) <= limit:
        return nodes
    hops = _hops(nodes, edges, me)
    far = len(nodes) + 1
    return sorted(sorted(nodes, key=lambda n: (hops.get(n, far), n))[:limit])


def _cached_layout(nodes: list[str], edges: list[tuple[str, str]], me: str) -> dict[str, Point]:
    key = (me, tuple(nodes), tuple(edges))
    points = _layouts.get(key)
    if points is None:
        points = layout(nodes, edges, me)
        if len(_layouts) >= LAYOUT_CACHE_SIZE:
            _layouts.pop(next(iter(_layouts)))
        _layouts[key] = points
    return points


def layout(
    nodes: list[str], edges: list[tuple[str, str]], me: str, seed: int = LAYOUT_SEED
) -> dict[str, Point]:
    """Positions in the unit square: a seeded spring (Fruchterman-Reingold) layout.

    networkx's own layouts need numpy, which this project does not depend on, so the force
    model is written out here; networkx supplies the graph and the hop distances from this node,
    which give the start: rings of equal hop count around this node, which stays in the centre.
    Deterministic: the same graph and seed give the same picture.
    """
    n = len(nodes)
    if n == 0:
        return {}
    if n == 1:
        return {nodes[0]: (0.5, 0.5)}
    rng = random.Random(seed)
    hops = _hops(nodes, edges, me)
    rings: dict[int, list[str]] = {}
    outer = max(hops.values(), default=0) + 1
    for node_id in nodes:
        rings.setdefault(hops.get(node_id, outer), []).append(node_id)
    pos: dict[str, list[float]] = {}
    for ring, members in rings.items():
        offset = rng.random() * 2 * math.pi
        for i, node_id in enumerate(members):
            if ring == 0:
                pos[node_id] = [0.0, 0.0]
                continue
            angle = offset + 2 * math.pi * i / len(members)
            pos[node_id] = [ring * math.cos(angle), ring * math.sin(angle)]
    scale = max(1, outer)
    for p in pos.values():
        p[0] /= scale
        p[1] /= scale
    # Plain lists indexed by position in ``nodes``: the inner loop is the page's hot spot.
    xs = [pos[node_id][0] for node_id in nodes]
    ys = [pos[node_id][1] for node_id in nodes]
    index = {node_id: i for i, node_id in enumerate(nodes)}
    links = [(index[a], index[b]) for a, b in edges if a in index and b in index]
    pinned = index.get(me, -1)
    k2 = 1.0 / n  # the ideal distance k = 1/sqrt(n), squared
    k = math.sqrt(k2)
    iterations = max(10, min(80, LAYOUT_BUDGET // (n * n)))
    for step in range(iterations):
        fx = [0.0] * n
        fy = [0.0] * n
        for i in range(n - 1):
            xi, yi = xs[i], ys[i]
            sx = sy = 0.0
            for j in range(i + 1, n):
                dx, dy = xi - xs[j], yi - ys[j]
                dist2 = dx * dx + dy * dy
                if dist2 < 1e-12:
                    dx, dy, dist2 = rng.uniform(-1e-3, 1e-3), rng.uniform(-1e-3, 1e-3), 1e-6
                force = k2 / dist2
                dx *= force
                dy *= force
                sx += dx
                sy += dy
                fx[j] -= dx
                fy[j] -= dy
            fx[i] += sx
            fy[i] += sy
        for a, b in links:
            dx, dy = xs[a] - xs[b], ys[a] - ys[b]
            force = math.sqrt(dx * dx + dy * dy) / k
            fx[a] -= dx * force
            fy[a] -= dy * force
            fx[b] += dx * force
            fy[b] += dy * force
        limit = 0.2 * (1 - step / iterations)  # the temperature: how far a node may move
        for i in range(n):
            length = math.sqrt(fx[i] * fx[i] + fy[i] * fy[i])
            if i != pinned and length > 0:
                move = min(length, limit) / length
                xs[i] += fx[i] * move
                ys[i] += fy[i] * move
    pos = {node_id: [xs[i], ys[i]] for i, node_id in enumerate(nodes)}
    return _fit(pos, me)


def _fit(pos: dict[str, list[float]], me: str) -> dict[str, Point]:
    """Scale into the unit square, keeping the aspect and (when it is drawn) ``me`` centred."""
    if me in pos:
        cx, cy = pos[me]
        span = max(max(abs(p[0] - cx), abs(p[1] - cy)) for p in pos.values()) or 1.0
        return {
            n: (0.5 + (p[0] - cx) / span / 2, 0.5 + (p[1] - cy) / span / 2) for n, p in pos.items()
        }
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0
    mx, my = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    return {n: (0.5 + (p[0] - mx) / span, 0.5 + (p[1] - my) / span) for n, p in pos.items()}
