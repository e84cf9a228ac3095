"""An in-memory event store with the same plan semantics as storage.Store (for the simulator
and for protocol tests). What it holds counts as durable: a simulated crash keeps it."""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.events import Event, Send
from protocol.replica import (
    ForkProof,
    Head,
    Incoming,
    OldEvent,
    Plan,
    Replica,
    is_ledger_event,
)


@dataclass
class MemoryStore:
    #: The log in insertion order (a causal order).
    log: dict[bytes, Event] = field(default_factory=dict)
    by_slot: dict[tuple[bytes, int], bytes] = field(default_factory=dict)
    archive: dict[bytes, Event] = field(default_factory=dict)
    forks: dict[bytes, ForkProof] = field(default_factory=dict)
    frozen: dict[bytes, int] = field(default_factory=dict)
    genesis: Event | None = None
    balances: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    send_states: dict[bytes, str] = field(default_factory=dict)
    commits: int = 0

    def commit(self, plan: Plan) -> None:
        for item in plan.accepted:
            event = item.event
            slot = (event.author, event.seq)
            if event.id in self.log:
                raise AssertionError(f"{event!r} stored twice")
            if slot in self.by_slot:
                raise AssertionError(f"two events stored for slot {event!r}")
            self.log[event.id] = event
            self.by_slot[slot] = event.id
        if plan.network_id is not None:
            for item in plan.accepted:
                if item.event.id == plan.network_id:
                    self.genesis = item.event
        for event in plan.archived:
            self.archive[event.id] = event
        for proof in plan.forks:
            known = self.forks.get(proof.author)
            if known is None or proof.seq <= known.seq:
                self.forks[proof.author] = proof
        for author, seq in plan.archive_from.items():
            self.frozen[author] = min(seq, self.frozen.get(author, seq))
            for event_id in [i for i, e in self.log.items() if e.author == author and e.seq >= seq]:
                event = self.log.pop(event_id)
                del self.by_slot[(event.author, event.seq)]
                self.archive[event_id] = event
        for row in plan.balances:
            self.balances[row.account] = (row.balance, row.face)
        self.send_states.update(plan.send_states)
        self.commits += 1

    # --- reads the gossip shell needs -------------------------------------------------------------

    def at(self, author: bytes, seq: int) -> Event | None:
        event_id = self.by_slot.get((author, seq))
        return self.log[event_id] if event_id is not None else None

    def lookup(self, items: tuple[Incoming, ...]) -> list[OldEvent]:
        return [OldEvent(i.event, self.at(i.event.author, i.event.seq), i.origin) for i in items]

    def range(self, author: bytes, start: int, stop: int) -> list[bytes]:
        out: list[bytes] = []
        for seq in range(start, stop + 1):
            event = self.at(author, seq)
            if event is None:
                break
            out.append(event.raw)
        return out

    def by_ids(self, ids: tuple[bytes, ...]) -> list[bytes]:
        out: list[bytes] = []
        for event_id in ids:
            event = self.log.get(event_id) or self.archive.get(event_id)
            if event is not None:
                out.append(event.raw)
        return out

    def head_of(self, author: bytes) -> Head:
        best: Event | None = None
        for event in self.log.values():
            if event.author == author and (best is None or event.seq > best.seq):
                best = event
        return Head(best.seq, best.id, best.ts) if best else Head(0, b"", 0)

    def rebuild(self, replica: Replica) -> Plan:
        ledger_events = [e for e in self.log.values() if is_ledger_event(e)]
        archived_sends = [e for e in self.archive.values() if isinstance(e.body, Send)]
        heads = {author: self.head_of(author) for author in self.frozen}
        plan = replica.rebuild_ledger(ledger_events, archived_sends, heads)
        for row in plan.balances:
            self.balances[row.account] = (row.balance, row.face)
        self.send_states.update(plan.send_states)
        return plan

    def load(self, replica: Replica) -> None:
        """Restore a replica from what is stored (a restart after a crash)."""
        if self.genesis is not None:
            replica.load_genesis(self.genesis)
        heads: dict[bytes, Event] = {}
        for event in self.log.values():
            current = heads.get(event.author)
            if current is None or event.seq > current.seq:
                heads[event.author] = event
        for author, event in heads.items():
            replica.load_head(author, Head(event.seq, event.id, event.ts), self.frozen.get(author))
        for author, seq in self.frozen.items():
            if author not in heads:
                replica.load_head(author, Head(0, b"", 0), seq)
        for proof in self.forks.values():
            replica.load_fork(proof)
        replica.ledger.frozen = dict(self.frozen)
        self.rebuild(replica)
        replica.journal.forget()
