"""The status page, its fragments, the static files and the live stream (real nodes, real HTTP)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from html import escape
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node import api_stream, page
from node.api_stream import Change, ChangeFeed, StreamClient
from node.daemon import Node
from tests.conftest import make_config, wait_until
from tests.mesh.harness import mesh_address, running, start_node

#: Peer- and user-controlled text that must only ever appear escaped.
HOSTILE_NAME = '<script>alert("n0de")</script>\'&'
HOSTILE_POST = '<script>alert("post")</script><img src=x onerror="alert(\'x\')">&amp;'
HOSTILE_ACCOUNT = "<b onmouseover='x()'>\"eve\"</b>"
RAW_MARKERS = ("<script>alert", "<img src=x", "<b onmouseover")


def assert_escaped(html: str, *payloads: str) -> None:
    for marker in RAW_MARKERS:
        assert marker not in html, f"unescaped {marker!r} in the page"
    for payload in payloads:
        assert payload not in html
        assert escape(payload, quote=True) in html, f"{payload!r} is not shown (escaped)"


class Http:
    def __init__(self, session: aiohttp.ClientSession, node: Node) -> None:
        self.session = session
        self.base = f"http://127.0.0.1:{node.status_port}"

    async def text(self, path: str, status: int = 200) -> str:
        async with self.session.get(self.base + path) as response:
            body = await response.text()
            assert response.status == status, body
            return body

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        async with self.session.post(self.base + path, json=body) as response:
            data = await response.json()
            assert response.status == 201, data
            return data


async def started(data_dir: Path, **sections: dict[str, Any]) -> Node:
    node = Node(make_config(data_dir, **sections))
    await node.start()
    return node


@pytest.fixture
async def joiner(data_dir: Path) -> AsyncIterator[Node]:
    """A node that waits for a mesh (no genesis)."""
    node = await started(data_dir, ledger={"genesis": "join"}, node={"name": HOSTILE_NAME})
    yield node
    await node.stop()


@pytest.fixture
async def founder(data_dir: Path) -> AsyncIterator[Node]:
    """A node that founds its own mesh at once."""
    node = await started(data_dir, ledger={"genesis": "found"})
    await wait_until(lambda: node.replica.network_id is not None, what="the genesis")
    yield node
    await node.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def section_ids(html: str) -> list[str]:
    return re.findall(r'<section id="sec-([a-z]+)"', html)


# --- the page ------------------------------------------------------------------------------------


async def test_page_without_genesis_or_peers(joiner: Node, session: aiohttp.ClientSession) -> None:
    html = await Http(session, joiner).text("/")
    assert section_ids(html) == list(page.SECTIONS)
    assert joiner.node_id in html
    assert "no genesis yet" in html
    assert '<section id="sec-sync" hidden>' in html  # not catching up
    assert "/static/dashboard.css?v=" in html and "/static/dashboard.js?v=" in html
    assert 'http-equiv="Content-Security-Policy"' in html
    assert "http://" not in html and "https://" not in html  # nothing external
    assert 'data-nodes="1" data-links="0"' in html  # only this node in the picture


async def test_catch_up_bar_while_syncing(joiner: Node) -> None:
    sync = {"syncing": True, "missing": 40, "fetched": 60, "percent": 60.0}
    html = await page.RENDERERS["sync"](page.View(joiner, _status={"sync": sync}))
    assert html.startswith('<section id="sec-sync"><h2>Catching up</h2>')  # shown
    assert '<progress max="100" value="60.0">' in html
    assert "fetched 60, still missing 40 events" in html


async def test_node_name_is_escaped_everywhere(
    joiner: Node, session: aiohttp.ClientSession
) -> None:
    http = Http(session, joiner)
    assert_escaped(await http.text("/"), HOSTILE_NAME)
    assert_escaped(await http.text("/fragment/node"), HOSTILE_NAME)


async def test_page_with_genesis_posts_and_accounts(
    founder: Node, session: aiohttp.ClientSession
) -> None:
    http = Http(session, founder)
    await http.post("/api/accounts", {"name": HOSTILE_ACCOUNT})
    await http.post("/api/messages", {"content": HOSTILE_POST, "channel": "social"})
    await http.post("/api/messages", {"content": "elsewhere", "channel": "zeta", "priority": 1})
    html = await http.text("/")
    assert_escaped(html, HOSTILE_POST, HOSTILE_ACCOUNT)
    assert "no genesis yet" not in html
    assert founder.config.ledger.mesh_name in html
    assert founder.replica.ledger.state_hash().hex() in html
    # subscribed channels come first and are highlighted; others are listed plainly
    assert '<div class="channel sub" data-channel="social">' in html
    assert '<div class="channel" data-channel="zeta">' in html
    assert html.index('data-channel="social"') < html.index('data-channel="zeta"')
    assert "reach 1/1" in html
    assert "held here" in html  # the account's key is on this node
    ledger = await http.text("/fragment/ledger")
    assert_escaped(ledger, HOSTILE_ACCOUNT)

    async def granted() -> bool:  # the enrolment grants appear among the recent transfers
        return "housing" in await http.text("/fragment/ledger")

    await wait_until(granted, within=10, what="the enrolment grants on the page")
    messages = await http.text("/fragment/messages")
    assert_escaped(messages, HOSTILE_POST)


async def test_fragments(founder: Node, session: aiohttp.ClientSession) -> None:
    http = Http(session, founder)
    for name in page.SECTIONS:
        async with session.get(f"{http.base}/fragment/{name}") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            assert response.headers["Cache-Control"] == "no-store"
            body = await response.text()
        assert body.startswith(f'<section id="sec-{name}"'), body[:80]
        assert body.rstrip().endswith("</section>")
    await http.text("/fragment/nope", status=404)
    await http.text("/fragment/%2e%2e%2fapi", status=404)


async def test_static_files(founder: Node, session: aiohttp.ClientSession) -> None:
    base = Http(session, founder).base
    async with session.get(base + "/static/dashboard.css") as response:
        assert response.status == 200
        assert response.content_type == "text/css"
        assert "--neon:#39ff14" in await response.text()
    async with session.get(base + "/static/dashboard.js") as response:
        assert response.status == 200
        assert "javascript" in response.content_type
        assert "EventSource" in await response.text()
    for path in ("/static/nope.js", "/static/%2e%2e/api.py", "/static/"):
        async with session.get(base + path) as response:
            assert response.status in (403, 404), path


async def test_page_with_peers_and_topology(tmp_path: Path) -> None:
    first = await start_node(tmp_path, 0)
    nodes = [first]
    async with running(nodes), aiohttp.ClientSession() as session:
        await wait_until(lambda: first.replica.network_id is not None, what="the genesis")
        nodes.append(
            await start_node(
                tmp_path,
                1,
                node={"name": HOSTILE_NAME},
                discovery={"bootstrap": (mesh_address(first, 0),)},
            )
        )
        http = Http(session, first)

        async def linked() -> str | None:
            html = await http.text("/fragment/topology")
            return html if 'data-nodes="2" data-links="1"' in html else None

        topology = await wait_until(linked, within=30, what="a 2-node topology")
        assert topology.count('<circle class="node self"') == 1
        assert topology.count('<circle class="node"') == 1
        assert re.search(r'<line class="link lat-[abcu]', topology)
        peers = await http.text("/fragment/peers")
        assert "Peers (1)" in peers
        assert nodes[1].node_id[:8] in peers
        assert_escaped(peers, HOSTILE_NAME)
        html = await http.text("/")
        assert_escaped(html)
        routes = await wait_until(
            lambda: _has_route(http, nodes[1].node_id), within=30, what="a route"
        )
        assert "Routes (1)" in routes


async def _has_route(http: Http, node_id: str) -> str | None:
    html = await http.text("/fragment/routes")
    return html if node_id in html else None


# --- the live stream -----------------------------------------------------------------------------


async def next_event(response: aiohttp.ClientResponse, within: float = 10.0) -> tuple[str, Any]:
    """The next server-sent event (name, decoded data); EOFError at the end of the stream."""

    async def read() -> tuple[str, Any]:
        name, data = "", ""
        while True:
            raw = await response.content.readline()
            if not raw:
                raise EOFError
            line = raw.decode().rstrip("\n")
            if not line:
                if data:
                    return name, json.loads(data)
                continue
            field, _, value = line.partition(":")
            if field == "event":
                name = value.strip()
            elif field == "data":
                data += value.strip()

    return await asyncio.wait_for(read(), within)


async def test_stream_says_hello_then_names_the_sections_a_post_changed(
    founder: Node, session: aiohttp.ClientSession
) -> None:
    http = Http(session, founder)
    async with session.get(http.base + "/api/stream") as stream:
        assert stream.status == 200
        assert stream.content_type == "text/event-stream"
        name, data = await next_event(stream)
        assert name == "hello"
        assert data["sections"] == list(page.SECTIONS)
        await http.post("/api/messages", {"content": "live!", "channel": "social"})

        async def messages_event() -> dict[str, Any]:
            while True:
                name, data = await next_event(stream)
                if name == "change" and "messages" in data["sections"]:
                    return dict(data)

        data = await asyncio.wait_for(messages_event(), 10)
        assert "commit" in data["reasons"]
        assert "events" in data["sections"]
        assert "live!" in await http.text("/fragment/messages")


async def test_stream_ticks(founder: Node, session: aiohttp.ClientSession) -> None:
    async with session.get(Http(session, founder).base + "/api/stream") as stream:
        await next_event(stream)
        name, data = await next_event(stream, within=api_stream.TICK_S * 3)
        assert name == "change"
        assert set(api_stream.TICK_SECTIONS) <= set(data["sections"])


async def test_stream_client_cap(founder: Node) -> None:
    cap = api_stream.MAX_STREAM_CLIENTS
    connector = aiohttp.TCPConnector(limit=cap + 4)
    async with aiohttp.ClientSession(connector=connector) as session:
        url = Http(session, founder).base + "/api/stream"
        streams = [await session.get(url) for _ in range(cap)]
        try:
            for stream in streams:
                assert stream.status == 200
                assert (await next_event(stream))[0] == "hello"
            async with session.get(url) as refused:
                assert refused.status == 503
                assert (await refused.json())["error"] == "too_many_streams"
            streams.pop().close()

            async def admitted() -> bool:
                async with session.get(url) as again:
                    return again.status == 200

            # the server notices the closed stream at its next write (a tick at the latest)
            await wait_until(admitted, within=api_stream.TICK_S * 5, what="a free stream slot")
        finally:
            for stream in streams:
                stream.close()


async def test_node_stops_promptly_with_streams_open(data_dir: Path, no_leaked_tasks: None) -> None:
    node = await started(data_dir, ledger={"genesis": "found"})
    stopped = False
    try:
        async with aiohttp.ClientSession() as session:
            url = Http(session, node).base + "/api/stream"
            async with session.get(url) as one, session.get(url) as two:
                await next_event(one)
                await next_event(two)
                await asyncio.wait_for(node.stop(), 5)
                stopped = True
                for stream in (one, two):
                    assert await drain(stream) in ("eof", "payload error")
    finally:
        if not stopped:
            await node.stop()


async def drain(stream: aiohttp.ClientResponse) -> str:
    """Read events until the stream ends (each read bounded); how it ended."""
    try:
        while True:
            await next_event(stream, within=5)
    except EOFError:
        return "eof"
    except aiohttp.ClientPayloadError:
        return "payload error"


# --- the change feed on its own ------------------------------------------------------------------


async def test_feed_coalesces_a_burst_into_one_event() -> None:
    feed = ChangeFeed(coalesce_s=0.01, tick_s=3600)
    feed.start(None)
    try:
        client = feed.join()
        assert client is not None
        for _ in range(100):
            feed.changed(frozenset({"ledger"}), "commit")
        feed.changed(frozenset({"peers", "node"}), "peer_up")
        change = await asyncio.wait_for(client.queue.get(), 5)
        assert change is not None
        assert change.sections == ("node", "peers", "ledger")  # page order
        assert change.reasons == ("commit", "peer_up")
        assert client.queue.empty()
        assert b"event: change\n" in change.encode()
    finally:
        await feed.close()


async def test_feed_drops_a_client_that_does_not_read() -> None:
    feed = ChangeFeed(coalesce_s=0.001, tick_s=3600)
    feed.start(None)
    try:
        slow, fast = feed.join(), feed.join()
        assert slow is not None and fast is not None
        for _ in range(api_stream.CLIENT_QUEUE_EVENTS + 1):
            feed.changed(frozenset({"node"}), "tick")
            # each change goes out on its own: the fast client reads it, the slow one does not
            assert await asyncio.wait_for(fast.queue.get(), 5) is not None
        assert slow.ended and slow.slow
        assert slow not in feed.clients and fast in feed.clients
        assert feed.dropped == 1
        assert [c async for c in slow.changes()] == []  # its writer just ends
    finally:
        await feed.close()
    assert fast.ended and not fast.slow


async def test_feed_refuses_clients_beyond_its_cap_and_after_close() -> None:
    feed = ChangeFeed(max_clients=2, tick_s=3600)
    feed.start(None)
    assert feed.join() is not None and feed.join() is not None
    assert feed.join() is None
    await feed.close()
    assert feed.join() is None
    feed.changed(frozenset({"node"}), "tick")  # ignored once closed


def test_stream_client_end_is_idempotent() -> None:
    client = StreamClient()
    assert client.offer(Change(("node",), ("tick",), 1))
    client.end()
    client.end()
    assert client.queue.qsize() == 1
    assert not client.offer(Change(("node",), ("tick",), 2))


def test_section_names_agree() -> None:
    assert set(page.RENDERERS) == set(page.SECTIONS)
    named = api_stream.TICK_SECTIONS | api_stream.PEER_SECTIONS | api_stream.COMMIT_SECTIONS
    for sections in api_stream.KIND_SECTIONS.values():
        named |= sections
    assert named <= set(page.SECTIONS)


# --- the topology picture ------------------------------------------------------------------------


def ids(count: int) -> list[str]:
    return [f"{i:02x}" * 32 for i in range(count)]


def test_layout_is_deterministic_bounded_and_centred() -> None:
    nodes = ids(12)
    edges = [(nodes[i], nodes[i + 1]) for i in range(11)] + [(nodes[0], nodes[6])]
    first = page.layout(nodes, edges, nodes[3])
    assert first == page.layout(nodes, edges, nodes[3])
    assert set(first) == set(nodes)
    for x, y in first.values():
        assert 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0
    assert first[nodes[3]] == (0.5, 0.5)
    points = list(first.values())
    assert len(set(points)) == len(points)  # no two on one spot
    assert page.layout([], [], "") == {}
    assert page.layout(nodes[:1], [], nodes[0]) == {nodes[0]: (0.5, 0.5)}
    apart = page.layout(nodes[:3], [], "")  # no links, no "self": still inside the square
    assert all(0.0 <= v <= 1.0 for p in apart.values() for v in p)


def test_topology_svg_colours_links_and_escapes_names() -> None:
    me, near, far, lost = ids(4)
    topology = {
        "nodes": [{"id": me, "self": True}, {"id": near, "self": False}, {"id": far}],
        "edges": [
            {"a": me, "b": near, "latency_ms": 3.0, "loss": 0.0},
            {"a": near, "b": far, "latency_ms": 250.0, "loss": 0.2},
            {"a": far, "b": lost, "latency_ms": None, "loss": 0.0},
            {"a": me, "b": me, "latency_ms": 1.0, "loss": 0.0},  # a loop is not drawn
        ],
    }
    svg = page.render_topology(topology, {near: HOSTILE_NAME})
    assert 'data-nodes="4" data-links="3"' in svg
    assert '<line class="link lat-a"' in svg
    assert '<line class="link lat-c lossy"' in svg
    assert '<line class="link lat-u"' in svg
    assert svg.count('<circle class="node self"') == 1
    assert_escaped(svg)
    assert escape(HOSTILE_NAME[:17]) in svg  # labels are shortened, then escaped


def test_topology_draws_at_most_the_nearest_nodes() -> None:
    nodes = ids(page.MAX_DRAWN_NODES + 30)
    me = nodes[0]
    edges = [{"a": me, "b": n, "latency_ms": 1.0, "loss": 0.0} for n in nodes[1:50]]
    edges += [
        {"a": nodes[i], "b": nodes[i + 1], "latency_ms": 1.0, "loss": 0.0}
        for i in range(49, len(nodes) - 1)
    ]
    topology = {"nodes": [{"id": n, "self": n == me} for n in nodes], "edges": edges}
    svg = page.render_topology(topology, {})
    assert f'data-nodes="{page.MAX_DRAWN_NODES}"' in svg
    assert f"showing {page.MAX_DRAWN_NODES} of {len(nodes)} nodes" in svg
    assert 'class="node self"' in svg
