"""Founding a mesh offline (`liberation-node init --genesis`): the pool key and the genesis."""

from __future__ import annotations

from node.datadir import DataDir
from node.errors import NodeError
from node.keyring import Keyring
from protocol.events import Event
from protocol.ledger import original_genesis
from protocol.replica import Intent, Replica
from storage.events import EventStore
from storage.store import Store


async def found_offline(data_dir: DataDir, name: str, period_s: int, now_ms: int) -> Event:
    """Create a pool key in the keyring and store a signed genesis; the caller holds the lock."""
    store = Store(data_dir.database)
    await store.open()
    try:
        events = EventStore(store)
        replica = Replica()
        await events.load(replica)
        if replica.network_id is not None:
            raise NodeError(
                f"{data_dir.path} already belongs to a mesh (network id {replica.network_id.hex()})"
            )
        keyring = Keyring(data_dir.keys)
        keyring.load()
        pool = keyring.create()
        body = original_genesis(name, period_s)
        intent = Intent(pool, lambda _ledger: body)
        replica.submit(intent)
        plan = replica.build_plan(now_ms)
        if plan is None or intent.event is None:
            keyring.remove(pool.public)
            raise NodeError(f"could not sign a genesis: {intent.error}")
        try:
            await events.commit(plan)
        except BaseException:
            keyring.remove(pool.public)
            raise
        replica.commit(plan)
        return intent.event
    finally:
        await store.close()
