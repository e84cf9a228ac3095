"""The replica: judges events against this node's view of every chain and batches them into plans.

Events reach the replica from peers (already decoded and signature-checked by their session) and
from this node itself (an `Intent`: "sign this body with that key"). They wait in a bounded inbox.
`build_plan` takes a batch and judges each event in order against the state that includes the
batch's earlier events: duplicate, next in its chain, gap (held until the missing events arrive),
claim of an unknown send (held until the send arrives), fork, or a broken rule (rejected, with the
peer to penalise). The plan lists what the store must write in one transaction; `commit` keeps the
new state once the store has committed, `abort` rolls it back when the store failed. Only one plan
is in flight at a time, so a batch's events are group-committed with one fsync.

Nothing is accepted - acknowledged, forwarded or shown - before its plan is committed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from protocol.errors import (
    AuthorFrozen,
    ChainBroken,
    ClockSkew,
    EventRejected,
    GenesisError,
    LiberationError,
    LocalProtocolError,
    NotASend,
    WrongNetwork,
)
from protocol.events import ZERO_ID, Body, Event, Genesis, Send
from protocol.identity import SigningKey
from protocol.journal import Journal
from protocol.ledger import BalanceRow, Ledger, Pending, rebuild
from protocol.limits import MAX_PENDING_EVENTS, RECENT_IDS_CAP

#: Items one plan takes from the inbox; bounds the work and the transaction size.
MAX_PLAN_ITEMS = 2_000
#: Items the inbox holds; credit-based back-pressure keeps honest peers far below it.
MAX_INBOX_ITEMS = 50_000


@dataclass(frozen=True, slots=True)
class Head:
    """The latest stored event of one author."""

    seq: int
    id: bytes
    ts: int


@dataclass(eq=False)
class Intent:
    """A request from this node to author an event; resolved when its plan commits."""

    key: SigningKey
    #: Builds the body from the current ledger; raises a LiberationError if it no longer applies.
    make_body: Callable[[Ledger], Body]
    event: Event | None = None
    error: LiberationError | None = None


@dataclass(frozen=True, slots=True)
class ForkProof:
    """Two valid events of one author with the same seq. Canonical when they share ``prev``:
    then ``seq`` is exactly where the chains diverge."""

    author: bytes
    seq: int
    event_a: Event
    event_b: Event

    @property
    def canonical(self) -> bool:
        return self.event_a.prev == self.event_b.prev


@dataclass(frozen=True, slots=True)
class Incoming:
    event: Event
    #: Node id of the peer that delivered it; None for this node's own events.
    origin: bytes | None


@dataclass(frozen=True, slots=True)
class OldEvent:
    """An event with a seq this node already has, and the stored event at that seq (if any)."""

    event: Event
    stored: Event | None
    origin: bytes | None


@dataclass(frozen=True, slots=True)
class ForkReport:
    """A fork proof received from a peer (both events already signature-checked)."""

    event_a: Event
    event_b: Event
    origin: bytes | None


InboxItem = Incoming | Intent | OldEvent | ForkReport


class RequestKind(Enum):
    RANGE = "range"
    IDS = "ids"
    FORK = "fork"


@dataclass(frozen=True, slots=True)
class Request:
    """Something to ask of (or tell) one peer: a range of a chain, events by id, or a fork proof."""

    peer: bytes
    kind: RequestKind
    author: bytes = ZERO_ID
    start: int = 0
    stop: int = 0
    ids: tuple[bytes, ...] = ()
    proof: ForkProof | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    event: Event | None
    origin: bytes | None
    error: EventRejected | LiberationError
    intent: Intent | None = None


@dataclass(frozen=True, slots=True)
class HeadRow:
    author: bytes
    seq: int
    head_id: bytes
    frozen_at: int | None


@dataclass
class Plan:
    """What one batch changes; the store writes it in one transaction."""

    #: Accepted events in acceptance order (a causal order), with who delivered them.
    accepted: list[Incoming] = field(default_factory=list)
    #: Intents resolved by this plan (their event is among ``accepted``, or they failed).
    intents: list[Intent] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    #: (event id, origin) of events this node already had (statistics; Plumtree prunes on the
    #: duplicates it sees before they reach the replica).
    duplicates: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    #: Old-seq events whose stored counterpart must be read before they can be judged.
    lookups: list[Incoming] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    forks: list[ForkProof] = field(default_factory=list)
    #: Authors whose stored events from this seq on move to the archive (they forked).
    archive_from: dict[bytes, int] = field(default_factory=dict)
    #: Events of frozen authors kept in the archive because a claim names them.
    archived: list[Event] = field(default_factory=list)
    heads: dict[bytes, HeadRow] = field(default_factory=dict)
    balances: list[BalanceRow] = field(default_factory=list)
    send_states: dict[bytes, str] = field(default_factory=dict)
    #: Set when this plan stores the genesis: the network id to record.
    network_id: bytes | None = None
    #: The ledger must be rebuilt from the log after this plan commits (a fork froze an author).
    rebuild: bool = False
    #: The inbox items this plan took, put back at the front of the inbox if it aborts.
    items: list[InboxItem] = field(default_factory=list, repr=False)

    @property
    def writes(self) -> bool:
        return bool(
            self.accepted
            or self.forks
            or self.archived
            or self.heads
            or self.balances
            or self.send_states
        )


class Replica:
    """This node's judged view of the mesh's event log."""

    def __init__(self, *, max_clock_skew_ms: int = 300_000) -> None:
        self.journal = Journal()
        self.ledger = Ledger(self.journal)
        self.network_id: bytes | None = None
        self.genesis_event: Event | None = None
        self.heads: dict[bytes, Head] = {}
        self.forks: dict[bytes, ForkProof] = {}
        self.max_clock_skew_ms = max_clock_skew_ms
        #: Recently stored event ids, oldest first: the cheap duplicate check.
        self._recent: dict[bytes, None] = {}
        #: Held events by (author, seq), oldest first, and the sends that claims among them need.
        self._pending: dict[tuple[bytes, int], Incoming] = {}
        self._waiting_send: dict[bytes, tuple[tuple[bytes, int], ...]] = {}
        self._inbox: deque[InboxItem] = deque()
        #: Held events that became judgeable during the plan being built.
        self._ready: deque[Incoming] = deque()
        self._in_flight: Plan | None = None
        self._plan: Plan | None = None
        self.needs_rebuild = False

    # --- loading committed state -----------------------------------------------------------------

    def load_genesis(self, genesis: Event) -> None:
        check_genesis_shape(genesis)
        self.network_id = genesis.id
        self.genesis_event = genesis

    def load_head(self, author: bytes, head: Head, frozen_at: int | None) -> None:
        self.heads[author] = head
        if frozen_at is not None:
            self.ledger.frozen[author] = frozen_at

    def load_fork(self, proof: ForkProof) -> None:
        self.forks[proof.author] = proof

    # --- queries ---------------------------------------------------------------------------------

    def knows(self, event_id: bytes) -> bool:
        """Whether this id was stored recently (the store is the durable answer)."""
        return event_id in self._recent

    def is_held(self, author: bytes, seq: int) -> bool:
        return (author, seq) in self._pending

    def head_triples(self) -> list[tuple[bytes, int, bytes]]:
        """(author, seq, id) of every head; a head moved back by a fork and not yet reloaded
        from the store (its id unknown for a moment) is left out until the rebuild."""
        return [
            (author, head.seq, head.id)
            for author, head in self.heads.items()
            if head.seq and len(head.id) == len(ZERO_ID)
        ]

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def inbox_size(self) -> int:
        return len(self._inbox)

    @property
    def in_flight(self) -> bool:
        return self._in_flight is not None

    @property
    def idle(self) -> bool:
        return self._in_flight is None and not self._inbox and not self.needs_rebuild

    # --- input -----------------------------------------------------------------------------------

    def submit(self, item: InboxItem) -> bool:
        """Queue an item for the next plan; False (and dropped) when the inbox is full."""
        if len(self._inbox) >= MAX_INBOX_ITEMS:
            return False
        self._inbox.append(item)
        return True

    # --- plans -----------------------------------------------------------------------------------

    def build_plan(self, now_ms: int) -> Plan | None:
        """Judge the next batch of the inbox; None when idle or while a plan is in flight."""
        if self._in_flight is not None or not self._inbox or self.needs_rebuild:
            return None
        plan = Plan()
        self._plan = plan
        self.journal.begin()
        try:
            while self._inbox and len(plan.items) < MAX_PLAN_ITEMS:
                item = self._inbox.popleft()
                plan.items.append(item)
                self._judge_item(item, now_ms)
                while self._ready:
                    self._judge(self._ready.popleft(), now_ms)
            plan.balances, plan.send_states = self.ledger.take_changes()
        except BaseException:
            self._ready.clear()
            self.journal.rollback()
            self._inbox.extendleft(reversed(plan.items))
            self._plan = None
            raise
        self._plan = None
        self._in_flight = plan
        return plan

    def commit(self, plan: Plan) -> None:
        """The store committed ``plan``: keep its changes."""
        if plan is not self._in_flight:
            raise LocalProtocolError("commit of a plan that is not in flight")
        self.journal.forget()
        self._in_flight = None
        plan.items = []
        while len(self._recent) > RECENT_IDS_CAP:
            del self._recent[next(iter(self._recent))]
        if plan.rebuild:
            self.needs_rebuild = True

    def abort(self, plan: Plan, error: LiberationError | None = None) -> None:
        """The store failed: undo ``plan`` and put its items back at the front of the inbox.

        With ``error``, this node's own intents are not retried but fail with it, so that a caller
        waiting for an acknowledgement gets a definite answer: not stored.
        """
        if plan is not self._in_flight:
            raise LocalProtocolError("abort of a plan that is not in flight")
        self.journal.rollback()
        # The rolled-back changes must be written by the retry too.
        self.ledger.dirty_accounts.update(row.account for row in plan.balances)
        self.ledger.dirty_sends.update(plan.send_states)
        self._in_flight = None
        for intent in plan.intents:
            intent.event = None
            intent.error = error
        retry = (
            plan.items if error is None else [i for i in plan.items if not isinstance(i, Intent)]
        )
        self._inbox.extendleft(reversed(retry))
        plan.items = []

    def rebuild_ledger(
        self,
        events: Iterable[Event],
        archived_sends: Iterable[Event],
        heads: dict[bytes, Head],
    ) -> Plan:
        """Replace the ledger by a replay of the log, after a fork froze an author.

        ``heads`` are the stored heads of the frozen authors (their heads moved back to the fork).
        The returned plan rewrites every balance and send state.
        """
        fresh = rebuild(events, dict(self.ledger.frozen), archived_sends)
        fresh.journal = self.journal
        self.ledger = fresh
        self.heads.update(heads)
        balances, sends = fresh.take_changes()
        self.needs_rebuild = False
        return Plan(balances=balances, send_states=sends)

    # --- judging ---------------------------------------------------------------------------------

    @property
    def _p(self) -> Plan:
        if self._plan is None:
            raise LocalProtocolError("no plan is being built")
        return self._plan

    def _judge_item(self, item: InboxItem, now_ms: int) -> None:
        if isinstance(item, Incoming):
            self._judge(item, now_ms)
        elif isinstance(item, Intent):
            self._author(item, now_ms)
        elif isinstance(item, OldEvent):
            if item.stored is None or item.stored.id == item.event.id:
                self._p.duplicates.append((item.event.id, item.origin))
                self._resolve_claims(item.event)
            else:
                self._fork(item.event, item.stored, item.origin)
        else:
            self._fork(item.event_a, item.event_b, item.origin)

    def _reject(self, event: Event | None, origin: bytes | None, error: LiberationError) -> None:
        self._p.rejected.append(Rejection(event, origin, error))

    def _author(self, intent: Intent, now_ms: int) -> None:
        """Sign an event for this node, after the same judgement as anyone else's."""
        plan = self._p
        plan.intents.append(intent)
        author = intent.key.public
        head = self.heads.get(author)
        seq = head.seq + 1 if head else 1
        try:
            body = intent.make_body(self.ledger)
            if self.network_id is None and not isinstance(body, Genesis):
                raise LocalProtocolError("this node has no genesis yet; it cannot sign events")
            if self.ledger.is_frozen_at(author, seq):
                raise AuthorFrozen("this key forked; its events are no longer applied")
            event = Event.create(
                intent.key,
                self.network_id or ZERO_ID,
                seq=seq,
                prev=head.id if head else ZERO_ID,
                ts=max(now_ms, head.ts if head else 0),
                body=body,
            )
            if isinstance(body, Genesis):
                check_genesis_shape(event)
            outcome = self.ledger.check(event) if is_ledger_event(event) else None
            if isinstance(outcome, Pending):
                raise LocalProtocolError("the claimed send is not known here yet")
        except LiberationError as exc:
            intent.error = exc
            plan.rejected.append(Rejection(None, None, exc, intent))
            return
        intent.event = event
        self._accept(Incoming(event, None))

    def _judge(self, item: Incoming, now_ms: int) -> None:
        plan = self._p
        event = item.event
        if event.id in self._recent:
            plan.duplicates.append((event.id, item.origin))
            self._resolve_claims(event)
            return
        if event.ts > now_ms + self.max_clock_skew_ms:
            self._reject(event, item.origin, ClockSkew("timestamp too far in the future"))
            return
        if self.network_id is None:
            # Without a genesis nothing else can be judged (sessions do not relay it either).
            if isinstance(event.body, Genesis):
                try:
                    check_genesis_shape(event)
                except EventRejected as exc:
                    self._reject(event, item.origin, exc)
                    return
                self._accept(item)
            return
        author, seq = event.author, event.seq
        if self.ledger.is_frozen_at(author, seq):
            self._frozen_event(item)
            return
        head = self.heads.get(author)
        head_seq = head.seq if head else 0
        if seq <= head_seq:
            plan.lookups.append(item)
            return
        if seq > head_seq + 1:
            self._hold(item, waiting_send=None)
            if item.origin is not None:
                # The whole gap: GET_RANGE asks for MAX_RANGE_EVENTS of it at a time.
                plan.requests.append(
                    Request(item.origin, RequestKind.RANGE, author, head_seq + 1, seq - 1)
                )
            return
        if event.prev != (head.id if head else ZERO_ID):
            # Another branch of this author's chain: fetch its predecessor to prove the fork.
            if item.origin is not None:
                plan.requests.append(Request(item.origin, RequestKind.IDS, ids=(event.prev,)))
            self._reject(event, item.origin, ChainBroken("prev is not this node's head", penalty=0))
            return
        if head is not None and event.ts < head.ts:
            self._reject(event, item.origin, ClockSkew("timestamp before its predecessor's"))
            return
        if isinstance(event.body, Genesis) and event.id != self.network_id:
            self._reject(event, item.origin, WrongNetwork("a genesis of another mesh"))
            return
        try:
            outcome = self.ledger.check(event) if is_ledger_event(event) else None
        except EventRejected as exc:
            self._reject(event, item.origin, exc)
            return
        if isinstance(outcome, Pending):
            if outcome.send_id in self._recent:
                # We have that event, and it is not an open send: it is not a send at all.
                self._reject(
                    event, item.origin, NotASend("the claim names an event that is not a send")
                )
                return
            self._hold(item, waiting_send=outcome.send_id)
            if item.origin is not None:
                plan.requests.append(Request(item.origin, RequestKind.IDS, ids=(outcome.send_id,)))
            return
        self._accept(item)

    def _accept(self, item: Incoming) -> None:
        """Store ``item`` in this plan; what was held waiting for it becomes ready."""
        plan = self._p
        event = item.event
        j = self.journal
        j.set(self._recent, event.id, None)
        j.set(self.heads, event.author, Head(event.seq, event.id, event.ts))
        plan.heads[event.author] = HeadRow(
            event.author, event.seq, event.id, self.ledger.frozen.get(event.author)
        )
        if isinstance(event.body, Genesis):
            j.call(self._undo_network())
            self.network_id = event.id
            self.genesis_event = event
            plan.network_id = event.id
        if is_ledger_event(event):
            self.ledger.apply(event)
        plan.accepted.append(item)
        self._release(event)

    def _release(self, event: Event) -> None:
        successor_key = (event.author, event.seq + 1)
        successor = self._pending.get(successor_key)
        if successor is not None:
            self.journal.delete(self._pending, successor_key)
            self._ready.append(successor)
        self._resolve_claims(event)

    def _resolve_claims(self, event: Event) -> None:
        """Held claims that name ``event``: released if it is a send, refused if it is not."""
        if event.id not in self._waiting_send:
            return
        if isinstance(event.body, Send):
            self._release_claims(event.id)
            return
        for key in self._waiting_send.get(event.id, ()):
            waiting = self._pending.get(key)
            if waiting is not None:
                self.journal.delete(self._pending, key)
                self._reject(
                    waiting.event,
                    waiting.origin,
                    NotASend("the claim names an event that is not a send"),
                )
        self.journal.delete(self._waiting_send, event.id)

    def _release_claims(self, send_id: bytes) -> None:
        for key in self._waiting_send.get(send_id, ()):
            waiting = self._pending.get(key)
            if waiting is not None:
                self.journal.delete(self._pending, key)
                self._ready.append(waiting)
        self.journal.delete(self._waiting_send, send_id)

    def _hold(self, item: Incoming, waiting_send: bytes | None) -> None:
        key = (item.event.author, item.event.seq)
        if key in self._pending:
            return
        j = self.journal
        while len(self._pending) >= MAX_PENDING_EVENTS:
            j.delete(self._pending, next(iter(self._pending)))
        j.set(self._pending, key, item)
        if waiting_send is not None:
            waiting = self._waiting_send.get(waiting_send, ())
            j.set(self._waiting_send, waiting_send, (*waiting, key))

    def _frozen_event(self, item: Incoming) -> None:
        """An event of a frozen author at or after its fork: never applied."""
        plan = self._p
        event = item.event
        if isinstance(event.body, Send) and event.id in self._waiting_send:
            # A held claim names this send: archive it so that the claim can be judged.
            plan.archived.append(event)
            self.ledger.add_void_send(event)
            self._release_claims(event.id)
            return
        proof = self.forks.get(event.author)
        if item.origin is not None and proof is not None:
            plan.requests.append(Request(item.origin, RequestKind.FORK, proof=proof))

    def _fork(self, event_a: Event, event_b: Event, origin: bytes | None) -> None:
        """Two valid events of one author at one seq: keep the proof and freeze the author."""
        plan = self._p
        if event_a.author != event_b.author or event_a.seq != event_b.seq:
            self._reject(event_a, origin, ChainBroken("not a fork: different authors or seqs"))
            return
        if event_a.id == event_b.id:
            return
        if isinstance(event_a.body, Genesis) or isinstance(event_b.body, Genesis):
            self._reject(event_a, origin, GenesisError("a forked genesis"))
            return
        author, seq = event_a.author, event_a.seq
        first, second = sorted((event_a, event_b), key=lambda e: e.id)
        proof = ForkProof(author, seq, first, second)
        known = self.forks.get(author)
        if known is not None and (known.seq < seq or (known.seq == seq and known.canonical)):
            return
        j = self.journal
        j.set(self.forks, author, proof)
        plan.forks.append(proof)
        # Both halves go to the archive, so that claims naming either can still be judged.
        plan.archived.extend((proof.event_a, proof.event_b))
        if not proof.canonical and origin is not None:
            # The chains diverged further back: walk back along both branches.
            plan.requests.append(
                Request(origin, RequestKind.IDS, ids=(proof.event_a.prev, proof.event_b.prev))
            )
        if not self.ledger.freeze(author, seq):
            return
        plan.archive_from[author] = min(seq, plan.archive_from.get(author, seq))
        head = self.heads.get(author)
        if head is not None and head.seq >= seq:
            # The store moves the head back below the fork; the rebuild reloads its id.
            shared_prev = proof.event_a.prev if proof.canonical else b""
            j.set(self.heads, author, Head(seq - 1, shared_prev, 0))
        plan.heads.pop(author, None)  # the store recomputes it when it archives
        for key in [k for k in self._pending if k[0] == author and k[1] >= seq]:
            j.delete(self._pending, key)
        plan.rebuild = True

    def _undo_network(self) -> Callable[[], None]:
        def undo() -> None:
            self.network_id = None
            self.genesis_event = None

        return undo


def check_genesis_shape(event: Event) -> None:
    """Raise GenesisError (or BadSignature) unless ``event`` can found a mesh."""
    if not isinstance(event.body, Genesis):
        raise GenesisError("not a genesis event")
    if event.seq != 1:
        raise GenesisError("a genesis is seq 1 of the pool's chain")
    event.check_signature(ZERO_ID)


def is_ledger_event(event: Event) -> bool:
    return event.kind in ("genesis", "enroll", "send", "claim")
