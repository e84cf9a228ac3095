"""The status page in a real headless Chromium: a 3-node mesh shows up live, and a post made
through the JSON API appears without a reload. Saves screenshots to test-output/."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from tests.browser.cdp import Page, chromium, find_chromium
from tests.conftest import REPO, wait_until
from tests.mesh.harness import mesh_address, running, start_node

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary (/usr/bin/chromium): run tests/ensure-chromium.sh "
    "or apt-get install chromium",
)

OUTPUT = REPO / "test-output"
#: Seconds the mesh and the page may take to show each thing.
MESH_WITHIN_S = 60.0
PAGE_WITHIN_S = 30.0
#: Text a post carries: markup in it must stay text.
POST = 'hello from the browser test <b id="injected">not bold</b> & "quotes"'


def js(value: object) -> str:
    """A JavaScript literal for ``value``."""
    return json.dumps(value)


async def errors_of(page: Page) -> list[str]:
    """Uncaught exceptions and CSP reports the page produced."""
    found = []
    for event in page.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(str(params.get("exceptionDetails", {}).get("text")))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                found.append(f"{entry.get('source')}: {entry.get('text')}")
    return found


async def test_dashboard_updates_live(tmp_path: Path) -> None:
    assert CHROMIUM is not None
    first = await start_node(tmp_path, 0, node={"name": "alpha"})
    nodes = [first]
    async with running(nodes), aiohttp.ClientSession() as http:
        await wait_until(lambda: first.replica.network_id is not None, what="the genesis")
        for index, name in ((1, "beta"), (2, "gamma")):
            nodes.append(
                await start_node(
                    tmp_path,
                    index,
                    node={"name": name},
                    discovery={"bootstrap": (mesh_address(first, 0),)},
                )
            )
        base = f"http://127.0.0.1:{first.status_port}"
        async with chromium(CHROMIUM, tmp_path / "chromium", OUTPUT / "chromium.log") as page:
            await page.navigate(base + "/")
            await page.evaluate("window.loadedOnce = 'yes'")  # gone if the page reloads
            await page.wait_for(
                "document.getElementById('live').textContent === 'live'",
                PAGE_WITHIN_S,
                "the live stream to connect",
            )
            await page.wait_for(
                "document.querySelector('#sec-peers h2').textContent === 'Peers (2)'",
                MESH_WITHIN_S,
                "the 2 peers on the page",
            )
            await page.wait_for(
                "document.querySelectorAll('#topology circle.node').length === 3"
                " && document.querySelectorAll('#topology line.link').length >= 2"
                " && document.querySelectorAll('#topology circle.node.self').length === 1",
                MESH_WITHIN_S,
                "a topology of 3 nodes and 2+ links",
            )
            for name in ("beta", "gamma"):
                assert await page.evaluate(
                    f"document.getElementById('sec-peers').textContent.includes({js(name)})"
                )

            async with http.post(
                base + "/api/messages", json={"content": POST, "channel": "social"}
            ) as response:
                assert response.status == 201, await response.text()
            await page.wait_for(
                "[...document.querySelectorAll('#sec-messages li.msg .content')]"
                f".some(p => p.textContent === {js(POST)})",
                PAGE_WITHIN_S,
                "the post on the page",
            )
            assert await page.evaluate("window.loadedOnce") == "yes", "the page reloaded"
            assert await page.evaluate("document.getElementById('injected')") is None
            await page.wait_for(
                "document.querySelector('#sec-ledger').textContent.includes('state hash')",
                PAGE_WITHIN_S,
                "the ledger",
            )

            desktop = await page.screenshot(
                OUTPUT / "dashboard.png", width=1280, height=900, mobile=False
            )
            phone = await page.screenshot(
                OUTPUT / "dashboard-phone.png", width=390, height=844, mobile=True
            )
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
            print(f"\nscreenshots: {desktop} {phone}")
            assert await errors_of(page) == []
