"""Walk the OpenAPI document: every operation answers as described, on a real two-node mesh."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from node.openapi import SchemaViolation, document, validate
from tests.conftest import wait_until
from tests.mesh.harness import mesh_address, running, start_node


def fill(value: Any, ids: dict[str, str]) -> Any:
    """An example with its empty id placeholders replaced by real ids."""
    if isinstance(value, dict):
        return {k: (ids[k] if v == "" and k in ids else fill(v, ids)) for k, v in value.items()}
    return value


async def test_every_documented_operation_answers_as_described(tmp_path: Path) -> None:
    first = await start_node(tmp_path, 0, ledger={"genesis": "found", "period_s": 3600})
    nodes = [first]
    async with running(nodes), aiohttp.ClientSession() as http:
        await wait_until(lambda: first.replica.network_id is not None, what="the genesis")
        second = await start_node(tmp_path, 1, discovery={"bootstrap": (mesh_address(first, 0),)})
        nodes.append(second)
        base = f"http://127.0.0.1:{first.status_port}"
        async with http.post(base + "/api/accounts", json={"name": "alice"}) as r:
            alice = (await r.json())["account"]
        async with http.post(base + "/api/accounts", json={"name": "bob"}) as r:
            bob = (await r.json())["account"]
        other = second.node_id
        await wait_until(
            lambda: first.router is not None and first.router.next_hop(bytes.fromhex(other)),
            within=20,
            what="a route to the second node",
        )
        await wait_until(
            lambda: first.replica.ledger.balance.get(bytes.fromhex(alice), 0) > 0,
            what="alice's grants",
        )
        ids = {"from": alice, "to": bob, "account": alice, "node": other}
        spec = document()
        async with http.get(base + "/api/openapi.json") as response:
            assert response.status == 200
            assert await response.json() == json.loads(json.dumps(spec))
        walked = 0
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                url = base + path.replace("{account}", alice).replace("{node}", other).replace(
                    "{section}", "node"
                )
                body = None
                if "requestBody" in operation:
                    example = operation["requestBody"]["content"]["application/json"]["example"]
                    body = fill(example, ids | ({"to": other} if path == "/api/direct" else {}))
                async with http.request(method.upper(), url, json=body) as response:
                    status = str(response.status)
                    assert status in operation["responses"], (
                        method,
                        path,
                        status,
                        await response.text(),
                    )
                    described = operation["responses"][status]
                    content = described.get("content", {})
                    if "application/json" in content:
                        data = await response.json()
                        try:
                            validate(content["application/json"]["schema"], data, "response")
                        except SchemaViolation as exc:
                            raise AssertionError(f"{method} {path}: {exc.detail}: {data}") from None
                    else:
                        expected = next(iter(content), None)
                        if expected is not None:
                            assert response.content_type == expected, (method, path)
                walked += 1
                # Every body the document describes is checked: garbage gets a documented 4xx.
                if "requestBody" in operation:
                    async with http.request(method.upper(), url, json={"nonsense": 1}) as response:
                        assert 400 <= response.status < 500
                        assert str(response.status) in operation["responses"], (method, path)
        assert walked >= 20
