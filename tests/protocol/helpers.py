"""Helpers for protocol tests: deterministic keys, a genesis, and a replica driven like a node."""

from __future__ import annotations

from collections.abc import Callable

from protocol.events import ZERO_ID, Body, Claim, Enroll, Event, Genesis, Post, Send
from protocol.identity import SigningKey
from protocol.ledger import Ledger
from protocol.memstore import MemoryStore
from protocol.replica import Incoming, Intent, Plan, Replica

T0 = 1_767_225_600_000  # 2026-01-01 in ms
POOL = SigningKey.for_label("test-pool")
NODE = SigningKey.for_label("test-node")
GENESIS_BODY = Genesis(
    name="test mesh",
    total=1_900_000_000_000_000,
    weekly_flow=80_000,
    housing_credit=10_400_000,
    investment_pool=10_400_000,
    period_s=60,
)
GENESIS = Event.create(POOL, ZERO_ID, seq=1, prev=ZERO_ID, ts=T0, body=GENESIS_BODY)
NETWORK = GENESIS.id


def key(label: str) -> SigningKey:
    return SigningKey.for_label(label)


class Chain:
    """Signs consecutive events of one author (for building inputs by hand)."""

    def __init__(self, signer: SigningKey, network: bytes = NETWORK, start_ts: int = T0) -> None:
        self.key = signer
        self.network = network
        self.seq = 0
        self.prev = ZERO_ID
        self.ts = start_ts
        self.events: list[Event] = []

    def next(self, body: Body, *, ts: int | None = None) -> Event:
        self.seq += 1
        self.ts = ts if ts is not None else self.ts + 1
        event = Event.create(
            self.key, self.network, seq=self.seq, prev=self.prev, ts=self.ts, body=body
        )
        self.prev = event.id
        self.events.append(event)
        return event

    def fork(self, body: Body) -> Event:
        """Another event for the slot of the latest one (same seq and prev): a fork."""
        last = self.events[-1]
        return Event.create(
            self.key, self.network, seq=last.seq, prev=last.prev, ts=last.ts, body=body
        )


def pool_chain() -> Chain:
    chain = Chain(POOL)
    chain.seq, chain.prev, chain.ts = 1, GENESIS.id, T0
    chain.events.append(GENESIS)
    return chain


def enroll(signer: SigningKey, name: str = "") -> Chain:
    chain = Chain(signer)
    chain.next(Enroll(name, NODE.public))
    return chain


def send(chain: Chain, to: SigningKey, amount: int, purpose: str = "transfer") -> Event:
    return chain.next(Send(to.public, amount, purpose, ""))


def claim(chain: Chain, send_event: Event) -> Event:
    body = send_event.body
    assert isinstance(body, Send)
    return chain.next(Claim(send_event.id, send_event.author, send_event.seq, body.amount))


def post(chain: Chain, content: str = "hello", priority: int = 3) -> Event:
    return chain.next(Post("social", priority, content))


class Driven:
    """A replica and an in-memory store, with plans committed at once (like a node's writer)."""

    def __init__(self, *, with_genesis: bool = True) -> None:
        self.replica = Replica()
        self.store = MemoryStore()
        self.plans: list[Plan] = []
        if with_genesis:
            self.feed([GENESIS])

    def feed(self, events: list[Event], origin: bytes | None = b"peer" * 8) -> list[Plan]:
        for event in events:
            self.replica.submit(Incoming(event, origin))
        return self.run()

    def author(self, signer: SigningKey, make_body: Callable[[Ledger], Body]) -> Intent:
        intent = Intent(signer, make_body)
        self.replica.submit(intent)
        self.run()
        return intent

    def run(self, now_ms: int = T0 + 1_000) -> list[Plan]:
        done: list[Plan] = []
        while True:
            plan = self.replica.build_plan(now_ms)
            if plan is None:
                break
            self.store.commit(plan)
            self.replica.commit(plan)
            if plan.lookups:
                for old in self.store.lookup(tuple(plan.lookups)):
                    self.replica.submit(old)
            if self.replica.needs_rebuild:
                self.store.rebuild(self.replica)
            done.append(plan)
        self.plans.extend(done)
        return done

    @property
    def ledger(self) -> Ledger:
        return self.replica.ledger

    def ids(self) -> set[bytes]:
        return set(self.store.log)

    def rejected_codes(self) -> list[str]:
        return [r.error.code for plan in self.plans for r in plan.rejected]
