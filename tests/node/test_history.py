"""Test mode: the history recorder and the debug endpoint the chaos runner uses."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from node.daemon import Node
from protocol.events import Event, Post
from tests.conftest import make_config, wait_until


async def test_history_records_accepts_acks_and_the_debug_endpoint_injects(data_dir: Path) -> None:
    history = data_dir.parent / "history.jsonl"
    node = Node(
        make_config(
            data_dir,
            node={"test_mode": True, "history_file": history},
            ledger={"genesis": "found"},
        )
    )
    await node.start()
    try:
        await wait_until(lambda: node.replica.network_id is not None, what="genesis")
        base = f"http://127.0.0.1:{node.status_port}"
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/api/messages", json={"content": "hi"}) as response:
                posted = (await response.json())["id"]
            # Two versions of one slot of another author: the debug endpoint takes both.
            network = node.replica.network_id
            assert network is not None and node.key is not None
            from protocol.identity import SigningKey

            forker = SigningKey.for_label("history-forker")
            assert node.gossip is not None and node.driver is not None
            now_ms = node.gossip.wall_ms(node.driver.now)
            halves = [
                Event.create(
                    forker, network, seq=1, prev=bytes(32), ts=now_ms, body=Post("social", 3, text)
                )
                for text in ("left", "right")
            ]
            async with http.post(
                base + "/api/debug/events", json={"events": [h.raw.hex() for h in halves]}
            ) as response:
                assert response.status == 202
            async with http.post(base + "/api/debug/events", json={"events": ["00ff"]}) as response:
                assert response.status == 400
        await wait_until(lambda: forker.public in node.replica.ledger.frozen, what="the fork")
    finally:
        await node.stop()
    lines = [json.loads(line) for line in history.read_text().splitlines()]
    kinds = [(entry["what"], entry.get("id")) for entry in lines]
    assert ("accept", posted) in kinds
    assert ("ack", posted) in kinds
    assert kinds.index(("accept", posted)) < kinds.index(("ack", posted))
    assert lines[0]["what"] == "start" and lines[-1]["what"] == "stop"
    assert all(entry["node"] == node.node_id for entry in lines)


async def test_without_test_mode_there_is_no_debug_endpoint(data_dir: Path) -> None:
    node = Node(make_config(data_dir))
    await node.start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{node.status_port}/api/debug/events"
            async with http.post(url, json={"events": []}) as response:
                assert response.status == 404
    finally:
        await node.stop()
