"""Every CLI command against a real node process, with --json, and against no node at all."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import cli_command, free_port, node_env, wait_until
from tests.mesh.harness import ProcessNode

TIMEOUT = 30


def cli(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(*args, "--status-port", str(port)),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=node_env(),
    )


async def acli(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """`cli` off the event loop (a subprocess that takes a second would block it)."""
    return await asyncio.to_thread(cli, port, *args)


async def ok_json(port: int, *args: str) -> dict[str, object]:
    result = await acli(port, *args, "--json")
    assert result.returncode == 0, (args, result.stderr)
    assert result.stderr == ""
    return dict(json.loads(result.stdout))


async def test_every_command_with_json(tmp_path: Path) -> None:
    node = ProcessNode(tmp_path, 10, ledger={"genesis": "found", "period_s": 3600})
    node.start()
    try:
        await node.wait_ready()
        port = node.status_port
        await wait_until(lambda: node.aget("/api/status"), what="status")

        async def has_genesis() -> bool:
            return bool((await node.aget("/api/status"))["network_id"])

        await wait_until(has_genesis, within=30, what="the genesis")
        alice = (await ok_json(port, "account", "new", "--name", "alice"))["account"]
        bob = (await ok_json(port, "account", "new", "--name", "bob"))["account"]
        assert isinstance(alice, str) and isinstance(bob, str)

        async def funded() -> bool:
            return (await node.aget(f"/api/accounts/{alice}"))["balance"] != "0.00"

        await wait_until(funded, within=30, what="grants")
        assert (await ok_json(port, "status"))["node_id"]
        assert len((await ok_json(port, "account", "list"))["accounts"]) == 2  # type: ignore[arg-type]
        assert (await ok_json(port, "account", "list", "--held"))["total"] == 2
        assert (await ok_json(port, "account", "show", alice))["name"] == "alice"
        assert (await ok_json(port, "balance", alice))["balance"]
        assert (await ok_json(port, "transfer", alice, bob, "1.50", "--memo", "thanks"))[
            "amount"
        ] == "1.50"
        assert (await ok_json(port, "post", "hello", "--channel", "billboard", "--priority", "4"))[
            "id"
        ]
        assert (await ok_json(port, "messages", "--channel", "billboard"))["messages"]
        assert (await ok_json(port, "ledger"))["state_hash"]
        assert "peers" in (await ok_json(port, "peers"))
        assert "nodes" in (await ok_json(port, "topology"))
        assert "routes" in (await ok_json(port, "routes"))
        assert "messages" in (await ok_json(port, "inbox"))
        assert (await ok_json(port, "subscriptions", "--set", "news", "social"))["channels"] == [
            "news",
            "social",
        ]
        assert (await ok_json(port, "subscriptions"))["channels"] == ["news", "social"]
        assert "liberation_uptime_seconds" in (await ok_json(port, "metrics"))
        assert "/api/transfers" in (await ok_json(port, "api"))["paths"]  # type: ignore[operator]
        # Refusals are one clear line and exit 1, never a traceback.
        for args in (
            ("transfer", alice, bob, "99999999.00"),
            ("transfer", alice, bob, "1.234"),
            ("route", "ab" * 32),
            ("send", "--to", "ab" * 32, "hi"),
            ("account", "show", "nothex"),
        ):
            result = await acli(port, *args)
            assert result.returncode == 1, args
            assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
            assert "Traceback" not in result.stderr
        human = await acli(port, "status")
        assert human.returncode == 0 and "node" in human.stdout
    finally:
        code, _, err = node.stop()
        assert code == 0, err


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("account", "list"),
        ("transfer", "a", "b", "1"),
        ("post", "x"),
        ("messages",),
        ("peers",),
        ("routes",),
        ("metrics",),
        ("inbox",),
        ("api",),
    ],
)
def test_no_node_running_is_a_clear_message(args: tuple[str, ...]) -> None:
    result = cli(free_port(), *args)
    assert result.returncode == 3
    assert "no liberation-node is answering" in result.stderr
    assert "Traceback" not in result.stderr
