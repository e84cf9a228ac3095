"""A full disk and a locked database: the node stops acknowledging with a clear error, loses
nothing, and resumes by itself when the condition clears."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import aiohttp

from node.daemon import Node


async def post(node: Node, content: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{node.status_port}/api/messages"
        async with http.post(url, json={"content": content}) as response:
            return response.status, await response.json()


async def stored_posts(node: Node) -> list[str]:
    return [m.content for m in await node.events.messages(None)]


async def test_disk_full_stops_acknowledging_and_resumes(node: Node) -> None:
    status, _ = await post(node, "before")
    assert status == 201
    writer = node.store.db
    (pages,) = await (await writer.execute("PRAGMA page_count")).fetchone()  # type: ignore[misc]
    await writer.execute(f"PRAGMA max_page_count = {pages}")  # no room to grow: SQLITE_FULL
    acknowledged: list[str] = []
    refused: list[str] = []
    try:
        for i in range(200):  # the last free space in the pages fills up, then SQLITE_FULL
            content = f"during {i} " + "x" * 3000
            status, error = await post(node, content)
            if status == 201:
                acknowledged.append(content)
                continue
            assert status == 503
            assert error["error"] == "disk_full"
            refused.append(content)
            if len(refused) == 3:
                break
        assert refused, "the disk never filled up"
        status_url = f"http://127.0.0.1:{node.status_port}/api/status"
        async with aiohttp.ClientSession() as http, http.get(status_url) as response:
            status_json = await response.json()
        assert status_json["storage_error"]["error"] == "disk_full"
    finally:
        await writer.execute("PRAGMA max_page_count = 1073741823")
    status, _ = await post(node, "after")
    assert status == 201
    posts = set(await stored_posts(node))
    assert {"before", "after", *acknowledged} <= posts  # nothing acknowledged was lost
    assert not posts & set(refused)  # refused, so never stored
    assert node.driver is not None and node.driver.last_storage_error is None
    assert node.replica.ledger.conserved()


async def test_a_locked_database_is_waited_out(node: Node, data_dir: Path) -> None:
    locked = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        other = sqlite3.connect(data_dir / "node.db", isolation_level=None, timeout=1)
        other.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(30)
        other.execute("ROLLBACK")
        other.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        await asyncio.to_thread(locked.wait, 10)
        status, error = await post(node, "while locked")
        assert status == 503
        assert error["error"] == "database_locked"
    finally:
        release.set()
        await asyncio.to_thread(holder.join, 10)
    status, _ = await post(node, "unlocked")
    assert status == 201
    assert "unlocked" in await stored_posts(node)


async def test_a_post_behind_a_transaction_in_progress_is_committed_after_it(node: Node) -> None:
    """A post is committed on the spot only when the writer is free; otherwise it waits its turn
    on the store's worker, in order, and is acknowledged once committed."""
    inside, release = asyncio.Event(), asyncio.Event()

    async def hold_writer() -> None:
        async with node.store.transaction(durable=False):
            inside.set()
            await release.wait()

    holder = asyncio.create_task(hold_writer())
    await asyncio.wait_for(inside.wait(), 5)
    posting = asyncio.create_task(post(node, "behind"))
    done, _ = await asyncio.wait({posting}, timeout=0.3)
    assert not done  # not acknowledged while the writer was taken
    release.set()
    await holder
    status, _ = await asyncio.wait_for(posting, 10)
    assert status == 201
    assert "behind" in await stored_posts(node)
