"""Every CLI command against a real node process, with --json, and against no node at all."""

from __future__ import annotations

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


def ok_json(port: int, *args: str) -> dict[str, object]:
    result = cli(port, *args, "--json")
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
        alice = ok_json(port, "account", "new", "--name", "alice")["account"]
        bob = ok_json(port, "account", "new", "--name", "bob")["account"]
        assert isinstance(alice, str) and isinstance(bob, str)

        async def funded() -> bool:
            return (await node.aget(f"/api/accounts/{alice}"))["balance"] != "0.00"

        await wait_until(funded, within=30, what="grants")
        assert ok_json(port, "status")["node_id"]
        assert len(ok_json(port, "account", "list")["accounts"]) == 2  # type: ignore[arg-type]
        assert ok_json(port, "account", "list", "--held")["total"] == 2
        assert ok_json(port, "account", "show", alice)["name"] == "alice"
        assert ok_json(port, "balance", alice)["balance"]
        assert ok_json(port, "transfer", alice, bob, "1.50", "--memo", "thanks")["amount"] == "1.50"
        assert ok_json(port, "post", "hello", "--channel", "billboard", "--priority", "4")["id"]
        assert ok_json(port, "messages", "--channel", "billboard")["messages"]
        assert ok_json(port, "ledger")["state_hash"]
        assert "peers" in ok_json(port, "peers")
        assert "nodes" in ok_json(port, "topology")
        assert "routes" in ok_json(port, "routes")
        assert "messages" in ok_json(port, "inbox")
        assert ok_json(port, "subscriptions", "--set", "news", "social")["channels"] == [
            "news",
            "social",
        ]
        assert ok_json(port, "subscriptions")["channels"] == ["news", "social"]
        assert "liberation_uptime_seconds" in ok_json(port, "metrics")
        assert "/api/transfers" in ok_json(port, "api")["paths"]  # type: ignore[operator]
        # Refusals are one clear line and exit 1, never a traceback.
        for args in (
            ("transfer", alice, bob, "99999999.00"),
            ("transfer", alice, bob, "1.234"),
            ("route", "ab" * 32),
            ("send", "--to", "ab" * 32, "hi"),
            ("account", "show", "nothex"),
        ):
            result = cli(port, *args)
            assert result.returncode == 1, args
            assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
            assert "Traceback" not in result.stderr
        human = cli(port, "status")
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
