from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.daemon import Node
from tests.conftest import make_config


@pytest.fixture
async def node(data_dir: Path) -> AsyncIterator[Node]:
    node = Node(make_config(data_dir))
    await node.start()
    yield node
    await node.stop()


@pytest.fixture
async def http(node: Node) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with aiohttp.ClientSession() as session:
        yield session, f"http://127.0.0.1:{node.status_port}"


async def test_healthz(http: tuple[aiohttp.ClientSession, str]) -> None:
    session, base = http
    async with session.get(base + "/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_status_json(node: Node, http: tuple[aiohttp.ClientSession, str]) -> None:
    session, base = http
    async with session.get(base + "/api/status") as response:
        assert response.status == 200
        status = await response.json()
    assert status["node_id"] == node.node_id
    assert len(status["node_id"]) == 64
    assert status["version"]
    assert status["uptime_s"] >= 0
    assert status["peers"] == 0
    assert status["events"] == 0


async def test_status_page(node: Node, http: tuple[aiohttp.ClientSession, str]) -> None:
    session, base = http
    async with session.get(base + "/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        html = await response.text()
    assert node.node_id in html
    for heading in ("Node", "Events", "Ledger"):
        assert f"<h2>{heading}</h2>" in html
    assert "http://" not in html.replace("http://www.w3.org", "")  # no CDN


async def test_metrics_prometheus_text(http: tuple[aiohttp.ClientSession, str]) -> None:
    session, base = http
    async with session.get(base + "/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    assert "# TYPE liberation_uptime_seconds gauge" in text
    assert 'liberation_node_info{version="' in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.split(" ")) == 2, line


async def test_unknown_api_path_is_json_404(http: tuple[aiohttp.ClientSession, str]) -> None:
    session, base = http
    async with session.get(base + "/api/nope") as response:
        assert response.status == 404
        body = await response.json()
    assert body == {"error": "not_found", "detail": "Not Found"}


async def test_healthz_is_503_until_ready(data_dir: Path) -> None:
    node = Node(make_config(data_dir))
    await node.start()
    node.ready = False
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{node.status_port}/healthz"
            async with session.get(url) as response:
                assert response.status == 503
                assert (await response.json())["error"] == "starting"
    finally:
        await node.stop()
