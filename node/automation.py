"""The automation engine: what a node does by itself.

- Claims every send addressed to an account whose key it holds (as soon as the send is stored,
  and again at start-up for any it missed).
- On the node that holds the pool key: sends the enrolment grants (housing credit and investment
  pool) to every new account, and the weekly flow to every active account once per period.

Every action is an intent whose body is built at plan time from the ledger as it then is, and
refuses itself if it no longer applies (already claimed, already paid): running a step twice, or
after a restart, never pays twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from node.engine import GossipDriver
from node.keyring import Keyring
from protocol.errors import LiberationError, LocalProtocolError
from protocol.events import Body, Claim, Enroll, Send
from protocol.ledger import Account, Ledger, period_memo
from protocol.replica import Intent, Plan

log = logging.getLogger(__name__)

#: Most seconds between checks for due weekly payments.
MAX_CHECK_INTERVAL_S = 60.0
#: Seconds after which a step whose intent never resolved (a failed commit) may be queued again.
STEP_RETRY_S = 30.0


class AlreadyDone(LocalProtocolError):
    """The automated step was already carried out."""

    code = "already_done"


class Automation:
    def __init__(self, driver: GossipDriver, keyring: Keyring) -> None:
        self.driver = driver
        self.keyring = keyring
        self.claims_made = 0
        self.distributions_made = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        #: Set once the node has caught up with the mesh (or is alone): automation starts then.
        self.settled = asyncio.Event()
        self._reported: set[str] = set()
        #: Steps queued and not yet resolved, with when they were queued (so a step is not
        #: queued again while its first intent waits in the inbox).
        self._queued: dict[tuple[bytes, str], float] = {}
        self._intent_steps: dict[int, tuple[bytes, str]] = {}

    @property
    def ledger(self) -> Ledger:
        return self.driver.gossip.replica.ledger

    def start(self) -> None:
        self.driver.commit_listeners.append(self._on_commit)
        self._task = asyncio.create_task(self._run(), name="automation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- reacting to stored events ---------------------------------------------------------------

    def _on_commit(self, plan: Plan) -> None:
        if not self.settled.is_set():
            return  # the first round after settling claims and pays whatever is due
        for item in plan.accepted:
            event, body = item.event, item.event.body
            if isinstance(body, Send) and body.to in self.keyring:
                self._claim(event.id, event.author, event.seq, body.to, body.amount)
            elif isinstance(body, Enroll) or (plan.network_id is not None):
                self._wake.set()
        for intent in plan.intents:
            step = self._intent_steps.pop(id(intent), None)
            if step is None:
                continue  # not ours (an API request)
            self._queued.pop(step, None)
            if intent.error is not None and not isinstance(intent.error, AlreadyDone):
                self._report(intent.error)

    def _claim(self, send_id: bytes, sender: bytes, seq: int, to: bytes, amount: int) -> None:
        key = self.keyring.get(to)
        if key is None:
            return
        claim = Claim(send_id, sender, seq, amount)

        def make_body(ledger: Ledger) -> Body:
            if send_id in ledger.claimed:
                raise AlreadyDone("already claimed")
            return claim

        self._submit(Intent(key, make_body), (send_id, "claim"))

    def catch_up(self) -> None:
        """Claim sends to our accounts that are still open (a crash between send and claim)."""
        for record in list(self.ledger.open_sends.values()):
            if record.recipient in self.keyring:
                self._claim(record.id, record.sender, record.seq, record.recipient, record.amount)
        self._wake.set()

    # --- the pool's distributions ----------------------------------------------------------------

    def _pool_key_held(self) -> bool:
        pool = self.ledger.pool
        return pool is not None and pool in self.keyring

    async def _run(self) -> None:
        # Sign nothing until this node has caught up with its peers: after a restore from an
        # old backup, its own accounts may have signed events it no longer has, and signing at
        # those seqs again would be a fork.
        await self.settled.wait()
        self.catch_up()
        while True:
            try:
                delay = self.distribute(self._now_ms())
            except Exception:
                log.exception("automation step failed")
                delay = MAX_CHECK_INTERVAL_S
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _now_ms(self) -> int:
        return self.driver.gossip.wall_ms(self.driver.now)

    def distribute(self, now_ms: int) -> float:
        """Queue the grants and weekly payments due now; returns seconds until the next check."""
        ledger = self.ledger
        if not self._pool_key_held() or ledger.genesis is None or ledger.pool is None:
            return MAX_CHECK_INTERVAL_S
        genesis = ledger.genesis
        for account, purpose in ledger.pending_grants():
            amount = genesis.housing_credit if purpose == "housing" else genesis.investment_pool
            if amount > 0:
                guard = self._grant_guard(account, purpose)
                self._pay(account, purpose, amount, "", guard, (account.id, purpose))
        period = ledger.period_at(now_ms)
        if genesis.weekly_flow > 0:
            memo = period_memo(period)
            for account in ledger.weekly_due(period):
                guard = self._weekly_guard(account, period)
                self._pay(account, "weekly", genesis.weekly_flow, memo, guard, (account.id, memo))
        period_ms = genesis.period_s * 1000
        next_period_ms = ledger.genesis_ts + (period + 1) * period_ms
        return max(0.05, min(MAX_CHECK_INTERVAL_S, (next_period_ms - now_ms) / 1000))

    @staticmethod
    def _grant_guard(account: Account, purpose: str) -> Callable[[Ledger], None]:
        def guard(ledger: Ledger) -> None:
            if (account.id, purpose) in ledger.granted:
                raise AlreadyDone(f"{purpose} already granted")

        return guard

    @staticmethod
    def _weekly_guard(account: Account, period: int) -> Callable[[Ledger], None]:
        def guard(ledger: Ledger) -> None:
            if ledger.weekly_paid.get(account.id, -1) >= period:
                raise AlreadyDone(f"period {period} already paid")

        return guard

    def _pay(
        self,
        account: Account,
        purpose: str,
        amount: int,
        memo: str,
        guard: Callable[[Ledger], None],
        step: tuple[bytes, str],
    ) -> None:
        pool = self.ledger.pool
        key = self.keyring.get(pool) if pool is not None else None
        if key is None:
            return
        body = Send(account.id, amount, purpose, memo)

        def make_body(ledger: Ledger) -> Body:
            guard(ledger)
            return body

        if self._submit(Intent(key, make_body), step):
            self.distributions_made += 1

    def _submit(self, intent: Intent, step: tuple[bytes, str]) -> bool:
        now = self.driver.now
        queued_at = self._queued.get(step)
        if queued_at is not None and now - queued_at < STEP_RETRY_S:
            return False
        if not self.driver.submit(intent):
            return False
        if len(self._intent_steps) > 100_000:  # intents of failed plans never report back
            self._intent_steps.clear()
            self._queued.clear()
        self._queued[step] = now
        self._intent_steps[id(intent)] = step
        if step[1] == "claim":
            self.claims_made += 1
        return True

    def _report(self, error: LiberationError) -> None:
        # A peer cannot trigger these; still, say each kind of failure once, not per account.
        if error.code not in self._reported:
            self._reported.add(error.code)
            log.warning("automation: %s", error.detail)
