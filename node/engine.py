"""The asyncio shell around the sans-IO gossip engine.

After every input (a frame, a closed link, a local intent, a timer) the driver sends the frames the
engine queued, carries out its effects and re-arms one timer (aioquic's asyncio adapter, in a few
more lines because our effects include the store). Effects that need the database - committing a
plan, reading old events, serving ranges - run one at a time on a worker task, in order; the
engine never has more than one plan in flight, so events that arrive meanwhile are group-committed
in the next plan. A plan that needs no fsync is committed on the spot when the worker is idle
(`EventStore.commit_now`): a relayed post then goes out in the same callback that brought it.
No protocol decision is made here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from protocol.errors import CloseReason, LiberationError
from protocol.events import Event
from protocol.gossip import (
    CloseTransport,
    Effect,
    FrameIn,
    Gossip,
    Lookup,
    PeerDown,
    PeerUp,
    Penalised,
    Rebuild,
    ServeIds,
    ServeRange,
    StorePlan,
)
from protocol.identity import short_id
from protocol.replica import Intent, Plan
from storage.errors import StorageError
from storage.events import EventStore

log = logging.getLogger(__name__)

#: Seconds an API caller waits for its event to be committed before getting a 503.
PUBLISH_TIMEOUT_S = 30.0
#: Seconds a shutdown waits for the store work already queued (the plan in flight above all).
SHUTDOWN_FLUSH_S = 5.0


class Link(Protocol):
    """A connected transport to one peer (a WebRTC data channel, or a test double)."""

    address: str

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class Traffic(Protocol):
    """Counts what crosses the links (metrics)."""

    def sent(self, data: bytes) -> None: ...

    def received(self, data: bytes) -> None: ...

    commit_seconds: Any


class NodeBusy(LiberationError):
    """The node cannot take the request now; retry later."""

    code = "busy"


WorkItem = StorePlan | Lookup | ServeRange | ServeIds | Rebuild

CommitListener = Callable[[Plan], None]
PeerListener = Callable[[PeerUp | PeerDown], None]
FrameListener = Callable[[FrameIn], None]
PenaltyListener = Callable[[Penalised], None]


class GossipDriver:
    def __init__(self, gossip: Gossip, events: EventStore) -> None:
        self.gossip = gossip
        self.events = events
        self.links: dict[int, Link] = {}
        self.commit_listeners: list[CommitListener] = []
        self.peer_listeners: list[PeerListener] = []
        self.frame_listeners: list[FrameListener] = []
        self.penalty_listeners: list[PenaltyListener] = []
        self.last_storage_error: StorageError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._work: asyncio.Queue[WorkItem] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._working = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._process_pending = False
        self._waiting: dict[int, asyncio.Future[Event]] = {}
        self._stopping = False
        self.traffic: Traffic | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sync_wall_clock()
        self._worker = asyncio.create_task(self._work_loop(), name="gossip-store-worker")

    async def stop(self) -> None:
        """Say BYE to every peer, flush, and stop the worker (after the plan in flight)."""
        self._stopping = True
        self.gossip.close_all(CloseReason.SHUTDOWN)
        self._process()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.join(), SHUTDOWN_FLUSH_S)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._timer is not None:
            self._timer.cancel()
        for link in list(self.links.values()):
            link.close()
        self.links.clear()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(NodeBusy("the node is shutting down"))

    @property
    def now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def _sync_wall_clock(self) -> None:
        # Event timestamps are wall-clock; timers are monotonic. Re-read the offset every input so
        # that a clock step shows up in new timestamps at once.
        self.gossip.wall_offset_ms = time.time() * 1000 - self.now * 1000

    # --- inputs ----------------------------------------------------------------------------------

    def attach(
        self,
        link: Link,
        *,
        outbound: bool,
        local_fingerprint: str,
        remote_fingerprint: str,
    ) -> int:
        handle = self.gossip.open_session(
            self.now,
            outbound=outbound,
            address=link.address,
            local_fingerprint=local_fingerprint,
            remote_fingerprint=remote_fingerprint,
        )
        self.links[handle] = link
        self._process()
        return handle

    def receive(self, handle: int, data: bytes) -> None:
        if self.traffic is not None:
            self.traffic.received(data)
        self.gossip.receive(handle, data, self.now)
        self._process()

    def detached(self, handle: int) -> None:
        """The link under ``handle`` closed (whoever closed it)."""
        self.links.pop(handle, None)
        self.gossip.session_closed(handle, self.now)
        self._process()

    async def publish(self, intent: Intent, wait_s: float = PUBLISH_TIMEOUT_S) -> Event:
        """Author an event and wait until it is committed; raises its rule error or NodeBusy."""
        if self._stopping:
            raise NodeBusy("the node is shutting down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Event] = loop.create_future()
        self._waiting[id(intent)] = future
        try:
            self._sync_wall_clock()
            if not self.gossip.publish(intent, self.now):
                raise NodeBusy("the node's inbox is full; retry shortly")
            self._process_soon()
            try:
                return await asyncio.wait_for(asyncio.shield(future), wait_s)
            except TimeoutError:
                detail = "the event was not committed in time"
                if self.last_storage_error is not None:
                    detail += f": {self.last_storage_error.detail}"
                raise NodeBusy(detail) from None
        finally:
            self._waiting.pop(id(intent), None)

    def submit(self, intent: Intent) -> bool:
        """Author an event without waiting (automation)."""
        ok = self.gossip.publish(intent, self.now)
        self._process_soon()
        return ok

    def kick(self) -> None:
        self._process()

    # --- processing ------------------------------------------------------------------------------

    def _process_soon(self) -> None:
        """Process on the next turn of the loop, once for all the local intents that come before
        it. The first of a burst goes into a plan of its own; the rest, waiting for that plan,
        are committed together in the next (one transaction for all), instead of one each."""
        if not self._process_pending:
            self._process_pending = True
            (self._loop or asyncio.get_running_loop()).call_soon(self._process_now)

    def _process_now(self) -> None:
        self._process_pending = False
        self._process()

    def _process(self) -> None:
        gossip = self.gossip
        while True:
            frames = gossip.frames_to_send()
            for handle, data in frames:
                link = self.links.get(handle)
                if link is not None:
                    if self.traffic is not None:
                        self.traffic.sent(data)
                    try:
                        link.send(data)
                    except Exception as exc:  # a link that broke while sending
                        log.debug("send to %s failed: %s", link.address, exc)
            effect = gossip.next_effect()
            if effect is None:
                if not frames:
                    break
                continue
            self._apply(effect)
        self._arm_timer()

    def _apply(self, effect: Effect) -> None:
        if isinstance(effect, StorePlan) and self._commit_now(effect.plan):
            return
        if isinstance(effect, StorePlan | Lookup | ServeRange | ServeIds | Rebuild):
            self._work.put_nowait(effect)
        elif isinstance(effect, CloseTransport):
            link = self.links.pop(effect.handle, None)
            if link is not None:
                link.close()
            self.gossip.session_closed(effect.handle, self.now)
        elif isinstance(effect, PeerUp | PeerDown):
            if isinstance(effect, PeerUp):
                log.info("peer %s up (%s)", short_id(effect.peer.node_id), effect.address)
            elif effect.node_id is not None:
                log.info(
                    "peer %s down: %s %s",
                    short_id(effect.node_id),
                    effect.reason.name.lower(),
                    effect.detail,
                )
            for peer_listener in self.peer_listeners:
                peer_listener(effect)
        elif isinstance(effect, Penalised):
            for penalty_listener in self.penalty_listeners:
                penalty_listener(effect)
        else:
            for frame_listener in self.frame_listeners:
                frame_listener(effect)

    def _arm_timer(self) -> None:
        at = self.gossip.get_timer()
        if at is None or (self._timer_at is not None and self._timer_at <= at):
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = self._loop or asyncio.get_running_loop()
        self._timer_at = at
        self._timer = loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._sync_wall_clock()
        self.gossip.handle_timer(self.now)
        self._process()

    async def _work_loop(self) -> None:
        while True:
            item = await self._work.get()
            self._working = True
            try:
                await self._do(item)
            except Exception:
                log.exception("store work %s failed", type(item).__name__)
            finally:
                self._working = False
                self._work.task_done()
            self._process()

    async def _do(self, item: WorkItem) -> None:
        gossip = self.gossip
        if isinstance(item, StorePlan):
            await self._commit(item.plan)
        elif isinstance(item, Lookup):
            gossip.lookup_done(await self.events.lookup(item.items), self.now)
        elif isinstance(item, ServeRange):
            raws = await self.events.range(item.author, item.start, item.stop)
            gossip.serve(item.handle, raws, self.now)
        elif isinstance(item, ServeIds):
            gossip.serve(item.handle, await self.events.by_ids(list(item.ids)), self.now)
        else:
            await self._rebuild()

    def _commit_now(self, plan: Plan) -> bool:
        """Commit ``plan`` in this callback if the worker is idle (the order of store work holds)
        and the store can do it without waiting; False: queue it."""
        if self._working or not self._work.empty():
            return False
        started = time.perf_counter()
        try:
            if not self.events.commit_now(plan):
                return False
        except StorageError as exc:
            self._commit_failed(plan, exc)
            return True
        except Exception as exc:  # not to escape into whoever fed us input (aiortc, the API)
            log.exception("committing a plan failed")
            self._commit_failed(plan, StorageError(f"unexpected {type(exc).__name__}: {exc}"))
            return True
        # Listeners run inside _process here. One that submits (the automation) nests a _process
        # whose plan commits after ours, though maybe before our later listeners have run: fine
        # today, as the automation submits ledger events, which go to the writer's thread.
        self._committed(plan, started)
        return True

    async def _commit(self, plan: Plan) -> None:
        started = time.perf_counter()
        try:
            await self.events.commit(plan)
        except StorageError as exc:
            self._commit_failed(plan, exc)
            return
        self._committed(plan, started)

    def _commit_failed(self, plan: Plan, exc: StorageError) -> None:
        if self.last_storage_error is None or self.last_storage_error.code != exc.code:
            log.error("store cannot commit (%s): %s; retrying", exc.code, exc.detail)
        self.last_storage_error = exc
        self.gossip.plan_failed(plan, exc, self.now)
        self._settle(plan)

    def _committed(self, plan: Plan, started: float) -> None:
        if self.traffic is not None and plan.writes:
            self.traffic.commit_seconds.observe(time.perf_counter() - started)
        if self.last_storage_error is not None:
            log.info("store commits again")
            self.last_storage_error = None
        self._sync_wall_clock()
        self.gossip.plan_committed(plan, self.now)
        self._settle(plan)
        for listener in self.commit_listeners:
            try:
                listener(plan)
            except Exception:
                log.exception("commit listener failed")

    def _settle(self, plan: Plan) -> None:
        for intent in plan.intents:
            future = self._waiting.get(id(intent))
            if future is None or future.done():
                continue
            if intent.event is not None:
                future.set_result(intent.event)
            elif intent.error is not None:
                future.set_exception(intent.error)

    async def _rebuild(self) -> None:
        while True:
            try:
                await self.events.rebuild(self.gossip.replica)
                break
            except StorageError as exc:
                log.error("ledger rebuild cannot be stored (%s); retrying", exc.detail)
                await asyncio.sleep(1.0)
        self.gossip.rebuild_committed(self.now)
