"""Ledger rules: a block-lattice of account chains, judged identically on every node.

A genesis names the pool (its author) and the total; all of it starts in the pool. A credit moves
in two steps: a *send* in the sender's chain, a *claim* in the recipient's chain naming the send.

Two views of every balance are kept:

- **face**: from the author's own chain alone (genesis total, plus claims, minus sends). Whether an
  event is valid at all depends only on its causal past, never on what this node happens to know
  about forks, so every honest node stores the same events. A send beyond the face balance is an
  `Overdraft` and is rejected; so is a double claim or a claim by someone other than the recipient.
- **effective**: what the mesh honours. An author frozen by a fork at seq f has no effect from f on:
  its sends from f are void, and so are claims of them. A later send whose author's effective
  balance no longer covers it (it spent money that turned out void) is void too, and so on down the
  line. Effective balances are never negative and
  ``sum(balances) + sum(effective unclaimed sends) == genesis total`` always holds.

The effective state is a function of the set of stored events: applying events in any causal order
gives the same state, and `ledger_state_hash` shows two nodes agree. When a fork freezes an author
after events were applied, the state is rebuilt by replaying the log (`rebuild`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from protocol import codec
from protocol.amounts import format_amount
from protocol.codec import CborValue
from protocol.errors import (
    DoubleClaim,
    GenesisError,
    MalformedEvent,
    NotASend,
    NotEnrolled,
    NotRecipient,
    Overdraft,
)
from protocol.events import Claim, Enroll, Event, Genesis, Post, Send
from protocol.journal import Journal

#: Purposes only the pool may use: the distributions of the original specification.
DISTRIBUTION_PURPOSES = frozenset({"housing", "investment", "weekly"})
#: Sent once to every account at enrolment.
ENROLMENT_GRANTS = ("housing", "investment")

#: The original specification's pool and distributions, in minor units (cents).
POOL_TOTAL = 19_000_000_000_000_00
WEEKLY_FLOW = 800_00
HOUSING_CREDIT = 104_000_00
INVESTMENT_POOL = 104_000_00
WEEK_S = 7 * 86_400


def original_genesis(name: str, period_s: int = WEEK_S) -> Genesis:
    """A genesis with the original specification's amounts and the given period."""
    return Genesis(
        name=name,
        total=POOL_TOTAL,
        weekly_flow=WEEKLY_FLOW,
        housing_credit=HOUSING_CREDIT,
        investment_pool=INVESTMENT_POOL,
        period_s=period_s,
    )


@dataclass(frozen=True, slots=True)
class Account:
    """An enrolled person ("human"): the author of an account chain."""

    id: bytes
    name: str
    #: Node that holds the account's key.
    node: bytes
    #: Enrolment timestamp (ms).
    enrolled_at: int


@dataclass(frozen=True, slots=True)
class SendRecord:
    """A send that is not (yet) claimed, or that is void."""

    id: bytes
    sender: bytes
    seq: int
    recipient: bytes
    amount: int
    purpose: str
    memo: str
    ts: int
    #: False when the send has no effect (its author was frozen, or could not cover it).
    effective: bool


@dataclass(frozen=True, slots=True)
class Pending:
    """The event cannot be judged until the send it claims is known."""

    send_id: bytes


@dataclass(frozen=True, slots=True)
class BalanceRow:
    account: bytes
    balance: int
    face: int
    received: int
    sent: int


class Ledger:
    """The ledger state of one node; every change goes through the journal."""

    def __init__(self, journal: Journal | None = None) -> None:
        self.journal = journal or Journal()
        self.genesis: Genesis | None = None
        self.genesis_ts = 0
        self.pool: bytes | None = None
        self.total = 0
        self.face: dict[bytes, int] = {}
        self.balance: dict[bytes, int] = {}
        self.received: dict[bytes, int] = {}
        self.sent: dict[bytes, int] = {}
        self.accounts: dict[bytes, Account] = {}
        #: Sends not claimed yet, and void sends (effective=False), by id.
        self.open_sends: dict[bytes, SendRecord] = {}
        #: Ids of claimed sends.
        self.claimed: set[bytes] = set()
        #: Frozen authors and the seq from which their events have no effect.
        self.frozen: dict[bytes, int] = {}
        #: (account, purpose) of the enrolment grants (housing, investment) the pool has sent.
        self.granted: set[tuple[bytes, str]] = set()
        #: Latest weekly period the pool has paid each account.
        self.weekly_paid: dict[bytes, int] = {}
        #: Accounts and sends whose rows changed since the last `take_changes`.
        self.dirty_accounts: set[bytes] = set()
        self.dirty_sends: dict[bytes, str] = {}
        self._state_hash: bytes | None = None

    # --- judging ---------------------------------------------------------------------------------

    def check(self, event: Event) -> Pending | None:
        """Raise the LedgerRuleError this event breaks, return Pending, or None if it is valid.

        The caller has already checked signature and chain; this judges only ledger rules, from
        the event's causal past (face balances), never from fork knowledge.
        """
        body = event.body
        author = event.author
        if isinstance(body, Genesis):
            if self.genesis is not None:
                raise GenesisError("this mesh already has a genesis")
            if event.seq != 1:
                raise GenesisError("a genesis is the first event of the pool's chain")
            return None
        if isinstance(body, Enroll):
            if event.seq != 1:
                raise NotEnrolled("an enrolment is only ever the first event of an account chain")
            if author == self.pool:
                raise NotEnrolled("the pool does not enrol")
            return None
        if isinstance(body, Post):
            return None
        if author != self.pool and author not in self.accounts:
            raise NotEnrolled("only enrolled accounts and the pool hold money")
        if isinstance(body, Send):
            if body.to == author:
                raise MalformedEvent("a send to oneself")
            if body.purpose in DISTRIBUTION_PURPOSES and author != self.pool:
                raise MalformedEvent(f"only the pool sends {body.purpose} distributions")
            available = self.face.get(author, 0)
            if body.amount > available:
                raise Overdraft(
                    f"send of {format_amount(body.amount)} exceeds the sender's balance "
                    f"of {format_amount(available)}"
                )
            return None
        if isinstance(body, Claim):
            if body.send in self.claimed:
                raise DoubleClaim("this send was already claimed")
            record = self.open_sends.get(body.send)
            if record is None:
                return Pending(body.send)
            if record.recipient != author:
                raise NotRecipient("the send is addressed to another account")
            if (record.sender, record.seq, record.amount) != (
                body.sender,
                body.send_seq,
                body.amount,
            ):
                raise NotASend("the claim's sender, seq or amount does not match the send")
            return None
        raise MalformedEvent(f"no ledger rule for kind {event.kind}")  # pragma: no cover

    # --- applying --------------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Apply an event that `check` accepted (returned None)."""
        j = self.journal
        body = event.body
        author = event.author
        self._state_hash = None
        if isinstance(body, Genesis):
            j.call(self._undo_genesis())
            self.genesis = body
            self.genesis_ts = event.ts
            self.pool = author
            self.total = body.total
            self._credit(author, body.total, face=body.total, effective=True, count=False)
        elif isinstance(body, Enroll):
            j.set(self.accounts, author, Account(author, body.name, body.node, event.ts))
            self._touch(author)
        elif isinstance(body, Send):
            self._apply_send(event, body)
        elif isinstance(body, Claim):
            self._apply_claim(event, body)

    def _apply_send(self, event: Event, body: Send) -> None:
        author = event.author
        j = self.journal
        j.set(self.face, author, self.face.get(author, 0) - body.amount)
        effective = self.balance.get(author, 0) >= body.amount
        if effective:
            j.set(self.balance, author, self.balance.get(author, 0) - body.amount)
            j.set(self.sent, author, self.sent.get(author, 0) + body.amount)
        self._touch(author)
        record = SendRecord(
            event.id,
            author,
            event.seq,
            body.to,
            body.amount,
            body.purpose,
            body.memo,
            event.ts,
            effective,
        )
        j.set(self.open_sends, event.id, record)
        self._dirty_send(event.id, "unclaimed" if effective else "void")
        if author == self.pool:
            self._note_distribution(record)

    def _apply_claim(self, event: Event, body: Claim) -> None:
        j = self.journal
        record = self.open_sends[body.send]
        j.delete(self.open_sends, body.send)
        j.add(self.claimed, body.send)
        self._dirty_send(body.send, "claimed" if record.effective else "void")
        self._credit(event.author, body.amount, face=body.amount, effective=record.effective)

    def _credit(
        self, account: bytes, amount: int, *, face: int, effective: bool, count: bool = True
    ) -> None:
        j = self.journal
        j.set(self.face, account, self.face.get(account, 0) + face)
        if effective:
            j.set(self.balance, account, self.balance.get(account, 0) + amount)
            if count:
                j.set(self.received, account, self.received.get(account, 0) + amount)
        else:
            j.set(self.balance, account, self.balance.get(account, 0))
        self._touch(account)

    def _note_distribution(self, record: SendRecord) -> None:
        if record.purpose in ("housing", "investment"):
            self.journal.add(self.granted, (record.recipient, record.purpose))
        elif record.purpose == "weekly":
            period = parse_period(record.memo)
            if period is not None and period > self.weekly_paid.get(record.recipient, -1):
                self.journal.set(self.weekly_paid, record.recipient, period)

    def add_void_send(self, event: Event) -> None:
        """Record a send of a frozen author (kept in the archive) so that claims can be judged."""
        body = event.body
        if not isinstance(body, Send) or event.id in self.open_sends or event.id in self.claimed:
            return
        self._state_hash = None
        record = SendRecord(
            event.id,
            event.author,
            event.seq,
            body.to,
            body.amount,
            body.purpose,
            body.memo,
            event.ts,
            False,
        )
        self.journal.set(self.open_sends, event.id, record)

    def _touch(self, account: bytes) -> None:
        self.journal.add(self.dirty_accounts, account)

    def _dirty_send(self, send_id: bytes, state: str) -> None:
        self.journal.set(self.dirty_sends, send_id, state)

    def _undo_genesis(self) -> Callable[[], None]:
        def undo() -> None:
            self.genesis = None
            self.genesis_ts = 0
            self.pool = None
            self.total = 0

        return undo

    def freeze(self, author: bytes, seq: int) -> bool:
        """Mark ``author`` frozen from ``seq``; True when that lowers (or sets) its freeze point."""
        current = self.frozen.get(author)
        if current is not None and current <= seq:
            return False
        self.journal.set(self.frozen, author, seq)
        self._state_hash = None
        return True

    def is_frozen_at(self, author: bytes, seq: int) -> bool:
        frozen = self.frozen.get(author)
        return frozen is not None and seq >= frozen

    # --- reading ---------------------------------------------------------------------------------

    def row(self, account: bytes) -> BalanceRow:
        return BalanceRow(
            account,
            self.balance.get(account, 0),
            self.face.get(account, 0),
            self.received.get(account, 0),
            self.sent.get(account, 0),
        )

    def take_changes(self) -> tuple[list[BalanceRow], dict[bytes, str]]:
        """Balances and send states changed since the last call (what the store must write)."""
        rows = [self.row(account) for account in sorted(self.dirty_accounts)]
        sends = dict(self.dirty_sends)
        self.dirty_accounts = set()
        self.dirty_sends = {}
        return rows, sends

    def unclaimed_total(self) -> int:
        return sum(r.amount for r in self.open_sends.values() if r.effective)

    def conserved(self) -> bool:
        """balances + effective unclaimed sends == genesis total (and no balance below zero)."""
        if self.genesis is None:
            return not self.balance
        if any(value < 0 for value in self.balance.values()):
            return False
        return sum(self.balance.values()) + self.unclaimed_total() == self.total

    def state_hash(self) -> bytes:
        """SHA-256 of the canonical ledger state: equal on two nodes iff their ledgers agree."""
        if self._state_hash is None:
            # An account at zero on both views is the same as one never touched.
            balances: list[CborValue] = [
                [account, self.balance.get(account, 0), self.face.get(account, 0)]
                for account in sorted(self.face.keys() | self.balance.keys())
                if self.balance.get(account, 0) or self.face.get(account, 0)
            ]
            # Void sends have no effect, and nodes may hold different ones (archives differ).
            sends: list[CborValue] = [
                [r.id, r.amount]
                for r in sorted(self.open_sends.values(), key=_by_id)
                if r.effective
            ]
            frozen: list[CborValue] = [[author, seq] for author, seq in sorted(self.frozen.items())]
            document = codec.encode(
                [self.pool or b"", self.total, balances, sends, frozen, len(self.claimed)]
            )
            self._state_hash = hashlib.sha256(document).digest()
        return self._state_hash

    def pending_grants(self) -> list[tuple[Account, str]]:
        """(account, purpose) of enrolment grants not yet sent to enrolled, unfrozen accounts."""
        return [
            (account, purpose)
            for account_id, account in sorted(self.accounts.items())
            if account_id not in self.frozen
            for purpose in ENROLMENT_GRANTS
            if (account_id, purpose) not in self.granted
        ]

    def weekly_due(self, period: int) -> list[Account]:
        """Enrolled, unfrozen accounts not yet paid the weekly flow for ``period``."""
        return [
            account
            for account_id, account in sorted(self.accounts.items())
            if self.weekly_paid.get(account_id, -1) < period and account_id not in self.frozen
        ]

    def period_at(self, now_ms: int) -> int:
        """The distribution period index at wall time ``now_ms`` (0 is the genesis period)."""
        if self.genesis is None:
            return 0
        return max(0, (now_ms - self.genesis_ts) // (self.genesis.period_s * 1000))


def _by_id(record: SendRecord) -> bytes:
    return record.id


def period_memo(period: int) -> str:
    return f"period:{period}"


def parse_period(memo: str) -> int | None:
    prefix, _, number = memo.partition(":")
    if prefix != "period" or not number.isdigit() or len(number) > 12:
        return None
    return int(number)


def rebuild(
    events: Iterable[Event], frozen: dict[bytes, int], void_sends: Iterable[Event]
) -> Ledger:
    """Replay stored ledger events (in a causal order, such as insertion order) into a new ledger.

    Used after a fork freezes an author whose events were already applied. ``void_sends`` are the
    archived sends of frozen authors, which claims in the log may name.
    """
    ledger = Ledger()
    ledger.frozen = dict(frozen)
    for event in void_sends:
        ledger.add_void_send(event)
    for event in events:
        if ledger.is_frozen_at(event.author, event.seq):
            continue
        if ledger.check(event) is None:
            ledger.apply(event)
    return ledger
