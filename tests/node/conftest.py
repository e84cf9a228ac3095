"""Fixtures of the node tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.daemon import Node
from tests.conftest import make_config, wait_until


@pytest.fixture
async def node(data_dir: Path) -> AsyncIterator[Node]:
    """A started node that has founded its own mesh (a file may define a `node` of its own)."""
    node = Node(make_config(data_dir, ledger={"genesis": "found"}))
    await node.start()
    await wait_until(lambda: node.replica.network_id is not None, what="genesis")
    yield node
    await node.stop()
