"""The node's gossip engine: all sessions, dissemination and sync, as one sans-IO state machine.

Shape (aioquic's): the shell feeds input with the current time - `open_session`, `receive`,
`session_closed`, `publish`, `handle_timer` and the results of work it was asked to do
(`plan_committed`, `plan_failed`, `lookup_done`, `serve`) - then drains `frames_to_send` and
`next_effect`, and re-arms one timer at `get_timer`. Nothing here reads a clock, a socket or a disk.

Dissemination follows Plumtree (epidemic broadcast trees): a committed event is pushed eagerly to
the peers on the tree and announced lazily (HAVE) to the rest; a pushed duplicate prunes the link
from the tree (PRUNE); an announced event that does not arrive in time is asked for (WANT with
graft) and grafts the link back. The tree carries each event once per node, HAVE fills gaps, so
payload duplicates stay low while every event still reaches everyone. Anti-entropy repairs the
rest: on connect and periodically each side sends a digest of its per-author heads; a differing
digest is answered with the heads, and each side fetches what it lacks in bounded GET_RANGE batches.
Back-pressure is credit-based: a peer may push only as many events as we have granted, and we grant
more only after the store has committed them.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from protocol.errors import (
    CloseReason,
    EventRejected,
    HandshakeFailed,
    LiberationError,
    RemoteProtocolError,
    UnknownFrameType,
    WrongNetworkHello,
)
from protocol.events import ZERO_ID, Event, Genesis, Post
from protocol.frames import (
    AnyFrame,
    Bye,
    Credit,
    Error,
    Events,
    FeedHead,
    Fork,
    GetRange,
    Have,
    Heads,
    Hello,
    LinkState,
    LinkStates,
    Peers,
    Ping,
    Pong,
    Prune,
    Routed,
    Signal,
    Want,
    heads_digest,
)
from protocol.identity import SigningKey
from protocol.limits import (
    ANNOUNCE_DELAY_S,
    ANTI_ENTROPY_INTERVAL_S,
    BAN_SECONDS,
    GAP_WAIT_S,
    LAZY_WANT_DELAY_S,
    MAX_HEADS_PER_FRAME,
    MAX_IDS_PER_FRAME,
    MAX_MISSING_IDS,
    MAX_RANGE_EVENTS,
    MAX_RANGES_IN_FLIGHT,
    NONCE_BYTES,
)
from protocol.replica import (
    ForkProof,
    ForkReport,
    Incoming,
    Intent,
    OldEvent,
    Plan,
    Replica,
    RequestKind,
    check_genesis_shape,
)
from protocol.session import PeerInfo, Session, SessionLimits, SessionState, truncate_utf8

#: Seconds a GET_RANGE stays "in flight" for dedup; after that the same range may be asked again.
RANGE_RETRY_S = 5.0
#: Range requests a session keeps waiting when MAX_RANGES_IN_FLIGHT are out (the rest are
#: dropped: the next anti-entropy round asks again).
MAX_WAITING_RANGES = 1_024
#: Seconds before a failed store commit is retried.
COMMIT_RETRY_S = 1.0
#: Score a peer earns for each event it was first to deliver.
FIRST_DELIVERY_REWARD = 0.05

#: Recent events whose holders are tracked for the reach estimate.
MAX_TRACKED_REACH = 10_000

#: Push priority of ledger events: above every post, since they carry value.
LEDGER_PRIORITY = 9


def event_priority(event: Event) -> int:
    """Higher goes first under back-pressure: ledger events, then posts by their priority."""
    body = event.body
    if isinstance(body, Post):
        return body.priority
    return LEDGER_PRIORITY


# --- effects: work the shell must do ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StorePlan:
    """Commit this plan to the store, then call `plan_committed` (or `plan_failed`)."""

    plan: Plan


@dataclass(frozen=True, slots=True)
class Lookup:
    """Read the stored event at each item's (author, seq), then call `lookup_done`."""

    items: tuple[Incoming, ...]


@dataclass(frozen=True, slots=True)
class ServeRange:
    """Read an author's stored events start..stop and call `serve` with them."""

    handle: int
    author: bytes
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class ServeIds:
    """Read these events (log or archive) and call `serve` with those found."""

    handle: int
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Rebuild:
    """A fork froze an author: replay the log into `Replica.rebuild_ledger`."""


@dataclass(frozen=True, slots=True)
class CloseTransport:
    """Close the connection of this session (its BYE, if any, was among the frames sent)."""

    handle: int


@dataclass(frozen=True, slots=True)
class PeerUp:
    handle: int
    peer: PeerInfo
    address: str
    outbound: bool


@dataclass(frozen=True, slots=True)
class PeerDown:
    handle: int
    node_id: bytes | None
    reason: CloseReason
    detail: str
    address: str


@dataclass(frozen=True, slots=True)
class Penalised:
    """A peer broke a rule (for the log and metrics)."""

    handle: int
    node_id: bytes | None
    code: str
    detail: str
    points: float


@dataclass(frozen=True, slots=True)
class FrameIn:
    """A frame for the layers above gossip: ROUTED, SIGNAL, LINK_STATE, PEERS."""

    handle: int
    node_id: bytes | None
    frame: Routed | Signal | LinkState | Peers


Effect = (
    StorePlan
    | Lookup
    | ServeRange
    | ServeIds
    | Rebuild
    | CloseTransport
    | PeerUp
    | PeerDown
    | Penalised
    | FrameIn
)


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """Catch-up after being away: events still missing, fetched so far, and the total."""

    missing: int
    fetched: int
    total: int

    @property
    def syncing(self) -> bool:
        return self.missing > 0

    @property
    def percent(self) -> float:
        return 100.0 if self.total == 0 else round(100.0 * self.fetched / self.total, 1)


@dataclass
class _Missing:
    """An event announced by HAVE that has not arrived (Plumtree's missing set)."""

    announcers: deque[int]
    deadline: float


@dataclass
class GossipStats:
    events_pushed: int = 0
    events_announced: int = 0
    duplicates: int = 0
    wants_sent: int = 0
    ranges_requested: int = 0
    forks_detected: int = 0
    plans_committed: int = 0
    events_accepted: int = 0
    events_rejected: int = 0
    frames_in: dict[str, int] = field(default_factory=dict)


class Gossip:
    """Every session of this node and the decisions that span them."""

    def __init__(
        self,
        key: SigningKey,
        replica: Replica,
        *,
        rng: random.Random,
        name: str = "",
        mesh_port: int = 0,
        limits: SessionLimits | None = None,
        max_peers: int = 12,
        adopt_network: bool = True,
        anti_entropy_interval_s: float = ANTI_ENTROPY_INTERVAL_S,
        lazy_want_delay_s: float = LAZY_WANT_DELAY_S,
        announce_delay_s: float = ANNOUNCE_DELAY_S,
        gap_wait_s: float = GAP_WAIT_S,
        wall_offset_ms: float = 0.0,
    ) -> None:
        self.key = key
        self.replica = replica
        self.rng = rng
        self.name = name
        self.mesh_port = mesh_port
        self.limits = limits or SessionLimits()
        self.max_peers = max_peers
        self.adopt_network = adopt_network
        self.anti_entropy_interval_s = anti_entropy_interval_s
        self.lazy_want_delay_s = lazy_want_delay_s
        self.announce_delay_s = announce_delay_s
        self.gap_wait_s = gap_wait_s
        #: Added to the monotonic time to get wall-clock milliseconds for event timestamps.
        self.wall_offset_ms = wall_offset_ms
        self.sessions: dict[int, Session] = {}
        self.by_peer: dict[bytes, int] = {}
        self.banned: dict[bytes, float] = {}
        self.stats = GossipStats()
        self._next_handle = 1
        self._effects: deque[Effect] = deque()
        self._missing: dict[bytes, _Missing] = {}
        #: Earliest deadline in _missing (None: recompute); entries only ever leave early.
        self._missing_next: float | None = None
        self._queued: set[bytes] = set()
        self._via_reply: set[bytes] = set()
        #: Ranges asked for: author -> (retry after, up to seq, handle of the session asked).
        self._fetching: dict[bytes, tuple[float, int, int]] = {}
        self._next_anti_entropy: float | None = None
        self._retry_commit_at: float | None = None
        self._adopting: Event | None = None
        #: Peers known to hold recent events (they sent, announced or were sent them): the
        #: basis of the reach estimate. Oldest entries leave first.
        self._holders: dict[bytes, set[bytes]] = {}
        #: Catch-up: the highest seq a peer announced for each author we are behind on, and the
        #: most events we were behind at once in the current catch-up (for a progress figure).
        self._behind: dict[bytes, int] = {}
        self._behind_peak = 0
        #: Chain gaps waiting to be fetched: author -> (when, from whom, start, stop).
        self._gaps: dict[bytes, tuple[float, bytes, int, int]] = {}
        #: The seq below the highest event held for a gap, per author, once the gap is fetched:
        #: how far replies are followed up (`_continue_ranges`). Apart from `_behind`, as no
        #: peer may ever have what a held event claims (its seq is the sender's word).
        self._gap_targets: dict[bytes, int] = {}
        #: Sessions with output queued since the last frames_to_send.
        self._busy: set[int] = set()
        #: Gives the PEERS frame to send a node we turn away at the peer limit (set by the shell,
        #: which knows addresses; the engine does not).
        self.referrals: Callable[[bytes], Peers | None] | None = None
        #: Whether a link-state record from a peer (node id, record) is a copy of one already
        #: held (set by the routing layer, which also learns that the peer holds it). Flooding
        #: delivers each record once per neighbour: the copies are dropped before their
        #: signature is checked, since nothing of them would be used.
        self.link_state_known: Callable[[bytes | None, LinkState], bool] | None = None
        #: Peers each event of the latest committed plan was pushed or announced to.
        self.last_forwarded: dict[bytes, int] = {}
        #: When the collected HAVE announcements go out (None: nothing collected).
        self._announce_at: float | None = None

    # --- clock -----------------------------------------------------------------------------------

    def wall_ms(self, now: float) -> int:
        return int(now * 1000 + self.wall_offset_ms)

    @property
    def network_id(self) -> bytes | None:
        if self.replica.network_id is not None:
            return self.replica.network_id
        return self._adopting.id if self._adopting is not None else None

    # --- sessions --------------------------------------------------------------------------------

    def open_session(
        self,
        now: float,
        *,
        outbound: bool,
        address: str,
        local_fingerprint: str,
        remote_fingerprint: str,
    ) -> int:
        """A data channel opened; returns the handle the shell uses for it. Sends our HELLO."""
        handle = self._next_handle
        self._next_handle += 1
        session = Session(
            handle,
            outbound=outbound,
            address=address,
            local_fingerprint=local_fingerprint,
            remote_fingerprint=remote_fingerprint,
            limits=self.limits,
            now=now,
            on_output=self._busy.add,
        )
        self.sessions[handle] = session
        genesis = self.replica.genesis_event or self._adopting
        session.hello(
            self.key,
            network_id=self.network_id or ZERO_ID,
            genesis=genesis.raw if genesis else b"",
            nonce=self.rng.randbytes(NONCE_BYTES),
            name=self.name,
            mesh_port=self.mesh_port,
        )
        if self._next_anti_entropy is None:
            self._next_anti_entropy = now + self.anti_entropy_interval_s
        return handle

    def session_closed(self, handle: int, now: float) -> None:
        """The transport under a session closed (peer, failure, or after CloseTransport)."""
        session = self.sessions.pop(handle, None)
        if session is None:
            return
        if not session.closed:
            session.close(CloseReason.NORMAL, "connection closed", send_bye=False)
            self._peer_down(session)

    def is_banned(self, node_id: bytes, now: float) -> bool:
        until = self.banned.get(node_id)
        if until is None:
            return False
        if until <= now:
            del self.banned[node_id]
            return False
        return True

    def active_sessions(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.active]

    def close_session(self, handle: int, reason: CloseReason, detail: str, now: float) -> None:
        session = self.sessions.get(handle)
        if session is not None:
            self._close(session, reason, detail)

    def close_all(self, reason: CloseReason = CloseReason.SHUTDOWN) -> None:
        for session in list(self.sessions.values()):
            self._close(session, reason, "node shutting down")

    # --- input -----------------------------------------------------------------------------------

    def receive(self, handle: int, data: bytes, now: float) -> None:
        session = self.sessions.get(handle)
        if session is None or session.closed:
            return
        try:
            frame = session.parse(data, now)
            name = type(frame).__name__
            self.stats.frames_in[name] = self.stats.frames_in.get(name, 0) + 1
            self._dispatch(session, frame, now)
        except RemoteProtocolError as exc:
            self._fault(session, exc, now)
        self._maybe_plan(now)

    def publish(self, intent: Intent, now: float) -> bool:
        """Queue a local event; False when the node is too busy to take it now."""
        if not self.replica.submit(intent):
            return False
        self._maybe_plan(now)
        return True

    def submit_events(self, events: list[Event], now: float) -> None:
        """Events from outside any session (for example loaded or imported); judged as usual."""
        for event in events:
            self.replica.submit(Incoming(event, None))
        self._maybe_plan(now)

    # --- dispatch --------------------------------------------------------------------------------

    def _dispatch(self, session: Session, frame: AnyFrame, now: float) -> None:
        if isinstance(frame, Hello):
            self._on_hello(session, frame, now)
        elif isinstance(frame, Bye):
            session.close(frame.reason, frame.detail, send_bye=False)
            self._peer_down(session)
            self._effects.append(CloseTransport(session.handle))
        elif isinstance(frame, Events):
            self._on_events(session, frame, now)
        elif isinstance(frame, Have):
            self._on_have(session, frame, now)
        elif isinstance(frame, Want):
            if frame.graft:
                session.eager = True
            self._effects.append(ServeIds(session.handle, frame.ids))
        elif isinstance(frame, Heads):
            self._on_heads(session, frame, now)
        elif isinstance(frame, GetRange):
            self._effects.append(ServeRange(session.handle, frame.author, frame.start, frame.stop))
        elif isinstance(frame, Ping):
            session.send_frame(Pong(frame.nonce))
        elif isinstance(frame, Pong):
            session.note_pong(frame.nonce, now)
        elif isinstance(frame, Prune):
            session.eager = False
        elif isinstance(frame, Credit):
            session.add_credit(frame.events)
        elif isinstance(frame, Fork):
            self._on_fork(session, frame)
        elif isinstance(frame, LinkStates):
            for record in frame.records:
                self._on_signed(session, record)
        elif isinstance(frame, Routed | Signal | LinkState):
            self._on_signed(session, frame)
        elif isinstance(frame, Peers):
            self._effects.append(FrameIn(session.handle, session.peer_id, frame))
        elif isinstance(frame, Error):
            pass  # the peer told us we sent something it could not take; nothing to do

    def _on_signed(self, session: Session, frame: Routed | Signal | LinkState) -> None:
        """A frame signed by its origin, for the shell: checked here, used there."""
        if (
            isinstance(frame, LinkState)
            and self.link_state_known is not None
            and self.link_state_known(session.peer_id, frame)
        ):
            return
        ours = self.network_id
        if frame.network_id not in (ours, ZERO_ID):
            if ours is not None:
                raise RemoteProtocolError(f"{type(frame).__name__} of another mesh", penalty=10)
            # No network yet (one is adopted at the HELLO of the first peer that has one). A
            # peer that said HELLO without one may relay frames of a mesh that reached it
            # first: no fault of its. Only what is addressed to this node is taken (an offer
            # it may answer, and so join); the rest is dropped, not kept to be passed on to
            # peers of the mesh this node will join, which would penalise it for them.
            if not (isinstance(frame, Routed) and frame.dst == self.key.public):
                return
        if not frame.signature_valid():
            raise RemoteProtocolError(
                f"{type(frame).__name__} signature does not verify", penalty=30
            )
        self._effects.append(FrameIn(session.handle, session.peer_id, frame))

    def _on_hello(self, session: Session, frame: Hello, now: float) -> None:
        info = session.check_hello(frame)
        if info.node_id == self.key.public:
            self._close(session, CloseReason.DUPLICATE, "connected to itself")
            return
        if self.is_banned(info.node_id, now):
            self._close(session, CloseReason.BANNED, "banned")
            return
        ours = self.network_id
        if info.network_id != ZERO_ID:
            if ours is not None and info.network_id != ours:
                raise WrongNetworkHello("the peer belongs to another mesh (another genesis)")
            if ours is None:
                if not self.adopt_network:
                    self._close(session, CloseReason.WRONG_NETWORK, "this node does not adopt")
                    return
                self._adopt(info, now)
        existing_handle = self.by_peer.get(info.node_id)
        if existing_handle is not None and existing_handle in self.sessions:
            existing = self.sessions[existing_handle]
            # Both sides keep the connection opened by the lower node id.
            keep_outbound = self.key.public < info.node_id
            if session.outbound != keep_outbound:
                self._close(session, CloseReason.DUPLICATE, "already connected")
                return
            self._close(existing, CloseReason.DUPLICATE, "replaced by a newer connection")
        if len(self.by_peer) >= self.max_peers and not self._evict_for(now):
            # Turned away, but not empty-handed: the addresses of our peers come first, so a
            # newcomer that knew only us can still reach its degree.
            referrals = self.referrals(info.node_id) if self.referrals is not None else None
            if referrals is not None:
                session.send_frame(referrals)
            self._close(session, CloseReason.TOO_MANY_PEERS, "this node is at its peer limit")
            return
        session.activate(info, frame.credit, now)
        self.by_peer[info.node_id] = session.handle
        self._effects.append(PeerUp(session.handle, info, session.address, session.outbound))
        self._send_digest(session)

    def _adopt(self, info: PeerInfo, now: float) -> None:
        try:
            genesis = Event.decode(info.genesis)
            check_genesis_shape(genesis)
        except (RemoteProtocolError, EventRejected) as exc:
            raise HandshakeFailed(f"the peer's genesis is not valid: {exc.detail}") from None
        if genesis.id != info.network_id:
            raise HandshakeFailed("the peer's genesis does not match its network id")
        self._adopting = genesis
        self.replica.submit(Incoming(genesis, info.node_id))

    def _evict_for(self, now: float) -> bool:
        """At the peer limit: drop the lowest-scored peer if it scores below a newcomer (0)."""
        worst = min(self.active_sessions(), key=lambda s: s.current_score(now), default=None)
        if worst is None or worst.current_score(now) >= 0:
            return False
        self._close(worst, CloseReason.EVICTED, "evicted for a better-scored peer")
        return True

    def _on_events(self, session: Session, frame: Events, now: float) -> None:
        session.take_events(len(frame.events))
        if frame.reply:
            self._range_answered(session, now)
        network = self.network_id
        done = 0
        #: For a reply: the highest seq it brought of each author.
        reached: dict[bytes, int] = {}
        last_known = False
        for raw in frame.events:
            event_id = hashlib.sha256(raw).digest()
            last_known = self.replica.knows(event_id) or event_id in self._queued
            if last_known:
                done += 1
                self._duplicate(session, event_id, pushed=not frame.reply)
                continue
            try:
                event = Event.decode(raw)
                if network is None:
                    if not (isinstance(event.body, Genesis) and self.adopt_network):
                        done += 1  # nothing can be judged before a genesis
                        continue
                    check_genesis_shape(event)
                    self._adopting = event
                    network = event.id
                else:
                    event.check_signature(network)
            except RemoteProtocolError as exc:
                done += 1
                self._fault(session, exc, now)
                if session.closed:
                    return
                continue
            except EventRejected as exc:
                done += 1
                self._penalise(session, exc.penalty, exc.code, exc.detail, now)
                if session.closed:
                    return
                continue
            self._queued.add(event_id)
            self._note_holder(event_id, session.peer_id)
            if frame.reply:
                self._via_reply.add(event_id)
                reached[event.author] = max(reached.get(event.author, 0), event.seq)
            self._missing.pop(event_id, None)
            self.replica.submit(Incoming(event, session.peer_id))
        if done:
            session.grant(done)
        if frame.reply and last_known and (self._behind or self._gap_targets):
            # A range reply is in seq order: its last event, even one known here, says how far
            # it reached (one decode per frame, and only while catching up).
            _note_reached(frame.events[-1], reached)
        if reached:
            self._continue_ranges(session, reached, now)

    def _continue_ranges(self, session: Session, reached: dict[bytes, int], now: float) -> None:
        """A reply that leaves an author short of the head a peer announced (a range is at most
        MAX_RANGE_EVENTS long, and a reply is cut at the frame size) asks the same peer for the
        next stretch at once: a long catch-up goes at the pace of replies, not of one range
        per author per anti-entropy round."""
        for author, seq in reached.items():
            target = max(self._behind.get(author, 0), self._gap_targets.get(author, 0))
            head = self.replica.heads.get(author)
            head_seq = head.seq if head else 0
            if target <= head_seq:
                self._gap_targets.pop(author, None)
                continue
            seq = max(seq, head_seq)
            if seq >= target or author in self.replica.ledger.frozen:
                continue
            if seq - head_seq > MAX_RANGES_IN_FLIGHT * MAX_RANGE_EVENTS:
                continue  # the head does not follow (events refused or held): leave it be
            fetching = self._fetching.get(author)
            if fetching is not None and fetching[0] > now and fetching[2] != session.handle:
                continue  # another peer is being asked for this author
            self._fetching.pop(author, None)  # answered: the next stretch is a new request
            self._request_range(session, author, seq + 1, target, now)

    def _note_holder(self, event_id: bytes, node_id: bytes | None) -> None:
        if node_id is None:
            return
        holders = self._holders.get(event_id)
        if holders is None:
            if len(self._holders) >= MAX_TRACKED_REACH:
                del self._holders[next(iter(self._holders))]
            holders = self._holders[event_id] = set()
        if len(holders) < 4 * self.max_peers:
            holders.add(node_id)

    def holders(self, event_id: bytes) -> set[bytes]:
        """Peers known to hold an event (recent events only)."""
        return set(self._holders.get(event_id, ()))

    def _duplicate(self, session: Session, event_id: bytes, *, pushed: bool) -> None:
        self._note_holder(event_id, session.peer_id)
        self.stats.duplicates += 1
        session.duplicates_in += 1
        self._missing.pop(event_id, None)
        if pushed and session.eager:
            session.eager = False
            session.send_frame(Prune())

    def _on_have(self, session: Session, frame: Have, now: float) -> None:
        # The peer holds these: announcements of them still waiting for this peer are withdrawn.
        session.withdraw_announcements(frame.ids)
        for event_id in frame.ids:
            self._note_holder(event_id, session.peer_id)
            if self.replica.knows(event_id) or event_id in self._queued:
                continue
            missing = self._missing.get(event_id)
            if missing is None:
                if len(self._missing) >= MAX_MISSING_IDS:
                    continue
                deadline = now + self.lazy_want_delay_s
                self._missing[event_id] = _Missing(deque([session.handle]), deadline)
                if self._missing_next is not None and deadline < self._missing_next:
                    self._missing_next = deadline
            elif session.handle not in missing.announcers:
                missing.announcers.append(session.handle)

    def _on_heads(self, session: Session, frame: Heads, now: float) -> None:
        if not frame.heads:
            if frame.digest != heads_digest(self.replica.head_triples()):
                self._send_heads(session)
            return
        frozen = self.replica.ledger.frozen
        for head in frame.heads:
            if head.author in frozen:
                continue
            mine = self.replica.heads.get(head.author)
            if head.seq > (mine.seq if mine else 0):
                self._note_behind(head.author, head.seq)
            if mine is None or mine.seq == 0:
                self._request_range(session, head.author, 1, head.seq, now)
            elif head.seq > mine.seq:
                # Start at our own head: the overlapping event reveals a fork, if there is one.
                self._request_range(session, head.author, mine.seq, head.seq, now)
            elif head.seq == mine.seq and head.head_id != mine.id:
                self._request_range(session, head.author, head.seq, head.seq, now)

    def _on_fork(self, session: Session, frame: Fork) -> None:
        network = self.network_id
        if network is None:
            return
        try:
            event_a = Event.decode(frame.event_a)
            event_b = Event.decode(frame.event_b)
            event_a.check_signature(network)
            event_b.check_signature(network)
        except RemoteProtocolError:
            raise
        except EventRejected as exc:
            raise RemoteProtocolError(f"fork proof: {exc.detail}", penalty=exc.penalty) from None
        if (
            event_a.author != event_b.author
            or event_a.seq != event_b.seq
            or event_a.id == event_b.id
        ):
            raise RemoteProtocolError("not a fork proof", penalty=30)
        known = self.replica.forks.get(event_a.author)
        if known is not None and known.seq <= event_a.seq:
            return
        self.replica.submit(ForkReport(event_a, event_b, session.peer_id))

    # --- faults ----------------------------------------------------------------------------------

    def _fault(self, session: Session, error: RemoteProtocolError, now: float) -> None:
        self._penalise(session, error.penalty, error.code, error.detail, now)
        if session.closed:
            return
        if error.close is not None:
            self._close(session, error.close, error.detail)
        elif isinstance(error, UnknownFrameType):
            session.send_frame(Error(error.code, truncate_utf8(error.detail, 200)))

    def _penalise(
        self, session: Session, points: float, code: str, detail: str, now: float
    ) -> None:
        if points <= 0:
            return
        self._effects.append(Penalised(session.handle, session.peer_id, code, detail, points))
        if session.penalise(points, now):
            if session.peer_id is not None:
                self.banned[session.peer_id] = now + BAN_SECONDS
            self._close(session, CloseReason.BANNED, f"score too low after {code}")

    def _close(self, session: Session, reason: CloseReason, detail: str) -> None:
        if session.closed:
            return
        session.close(reason, detail)
        self._peer_down(session)
        self._effects.append(CloseTransport(session.handle))

    def _peer_down(self, session: Session) -> None:
        node_id = session.peer_id
        if node_id is not None and self.by_peer.get(node_id) == session.handle:
            del self.by_peer[node_id]
        self._effects.append(
            PeerDown(
                session.handle,
                node_id,
                session.close_reason or CloseReason.NORMAL,
                session.close_detail,
                session.address,
            )
        )

    # --- anti-entropy ----------------------------------------------------------------------------

    def _send_digest(self, session: Session) -> None:
        digest = heads_digest(self.replica.head_triples())
        session.send_frame(Heads(digest, (), reply=False, part=0, last=True))

    def _send_heads(self, session: Session) -> None:
        triples = sorted(self.replica.head_triples())
        digest = heads_digest(triples)
        chunks = [
            triples[i : i + MAX_HEADS_PER_FRAME]
            for i in range(0, len(triples), MAX_HEADS_PER_FRAME)
        ] or [[]]
        for part, chunk in enumerate(chunks):
            heads = tuple(FeedHead(author, seq, head_id) for author, seq, head_id in chunk)
            last = part == len(chunks) - 1
            if heads or last:
                session.send_frame(Heads(digest, heads, reply=True, part=part, last=last))

    def _request_range(
        self,
        session: Session,
        author: bytes,
        start: int,
        stop: int,
        now: float,
        *,
        parked: bool = False,
    ) -> None:
        stop = min(stop, start + MAX_RANGE_EVENTS - 1)
        fetching = self._fetching.get(author)
        if not parked and fetching is not None and fetching[0] > now and fetching[1] >= stop:
            return
        asked = (now + RANGE_RETRY_S, stop, session.handle)
        # At most MAX_RANGES_IN_FLIGHT requests to one peer; the rest wait for its answers.
        while session.ranges_sent and session.ranges_sent[0] < now - RANGE_RETRY_S:
            session.ranges_sent.popleft()
        if len(session.ranges_sent) >= MAX_RANGES_IN_FLIGHT:
            if len(session.ranges_waiting) < MAX_WAITING_RANGES:
                session.ranges_waiting.append((author, start, stop))
                self._fetching[author] = asked  # as good as asked: nothing else asks meanwhile
            return
        self._fetching[author] = asked
        self.stats.ranges_requested += 1
        session.ranges_sent.append(now)
        session.send_frame(GetRange(author, start, stop))

    def _range_answered(self, session: Session, now: float) -> None:
        if session.ranges_sent:
            session.ranges_sent.popleft()
        while session.ranges_waiting and len(session.ranges_sent) < MAX_RANGES_IN_FLIGHT:
            author, start, stop = session.ranges_waiting.popleft()
            head = self.replica.heads.get(author)
            if head is not None and head.seq >= stop:
                continue  # filled in the meantime
            self._request_range(session, author, start, stop, now, parked=True)

    def sync_now(self, now: float) -> None:
        """Start an anti-entropy round with every peer (also runs periodically)."""
        for session in self.active_sessions():
            self._send_digest(session)

    # --- plans -----------------------------------------------------------------------------------

    def _maybe_plan(self, now: float) -> None:
        if self._retry_commit_at is not None and now < self._retry_commit_at:
            return
        self._retry_commit_at = None
        plan = self.replica.build_plan(self.wall_ms(now))
        if plan is not None:
            self._effects.append(StorePlan(plan))

    def plan_committed(self, plan: Plan, now: float) -> None:
        """The store committed ``plan``: forward what it accepted and act on what it found."""
        items = plan.items
        self.replica.commit(plan)
        self.last_forwarded = {}
        self.stats.plans_committed += 1
        self.stats.events_accepted += len(plan.accepted)
        self.stats.events_rejected += len(plan.rejected)
        credits: dict[bytes, int] = {}
        for item in items:
            if isinstance(item, Incoming):
                self._queued.discard(item.event.id)
                if item.origin is not None:
                    credits[item.origin] = credits.get(item.origin, 0) + 1
        for origin, count in credits.items():
            session = self._session_of(origin)
            if session is not None:
                session.grant(count)
        for rejection in plan.rejected:
            if rejection.origin is None:
                continue
            session = self._session_of(rejection.origin)
            error = rejection.error
            if session is not None and isinstance(error, EventRejected):
                self._penalise(session, error.penalty, error.code, error.detail, now)
        for accepted in plan.accepted:
            self._forward(accepted, now)
        for request in plan.requests:
            session = self._session_of(request.peer)
            if session is None:
                continue
            if request.kind is RequestKind.RANGE:
                # A gap usually closes by itself (the missing events are in flight on another
                # path); ask for the range only if it is still open after a while.
                # A later gap of the same author widens the one waiting: held events above a
                # hole are not judged again, so the fetch must reach the highest of them.
                waiting = self._gaps.get(request.author)
                if waiting is None:
                    self._gaps[request.author] = (
                        now + self.gap_wait_s,
                        request.peer,
                        request.start,
                        request.stop,
                    )
                elif request.stop > waiting[3]:
                    self._gaps[request.author] = (*waiting[:3], request.stop)
            elif request.kind is RequestKind.IDS:
                self.stats.wants_sent += 1
                session.send_frame(Want(request.ids[:MAX_IDS_PER_FRAME], graft=False))
            elif request.proof is not None:
                session.send_frame(_fork_frame(request.proof))
        for proof in plan.forks:
            self.stats.forks_detected += 1
            frame = _fork_frame(proof)
            for session in self.active_sessions():
                session.send_frame(frame)
        if plan.lookups:
            self._effects.append(Lookup(tuple(plan.lookups)))
        if plan.network_id is not None:
            self._adopting = None
        if plan.rebuild:
            self._effects.append(Rebuild())
        else:
            self._maybe_plan(now)

    def plan_failed(self, plan: Plan, error: LiberationError, now: float) -> None:
        """The store could not commit ``plan``: nothing was accepted. Peers' events are retried
        later (their credit is not returned meanwhile: back-pressure); this node's own intents
        fail with ``error``."""
        self.replica.abort(plan, error)
        self._retry_commit_at = now + COMMIT_RETRY_S

    def rebuild_committed(self, now: float) -> None:
        """The rebuilt ledger is stored: resume planning."""
        self._maybe_plan(now)

    def lookup_done(self, results: list[OldEvent], now: float) -> None:
        for result in results:
            self.replica.submit(result)
        self._maybe_plan(now)

    def serve(self, handle: int, raws: list[bytes], now: float) -> None:
        session = self.sessions.get(handle)
        if session is not None and session.active:
            session.queue_reply(tuple(raws))

    def _announce_soon(self, now: float) -> None:
        if self._announce_at is None:
            self._announce_at = now + self.announce_delay_s

    def _forward(self, item: Incoming, now: float) -> None:
        event = item.event
        self._missing.pop(event.id, None)
        lazy_only = event.id in self._via_reply
        self._via_reply.discard(event.id)
        origin = item.origin
        if origin is not None:
            source = self._session_of(origin)
            if source is not None:
                source.reward(FIRST_DELIVERY_REWARD, now)
        priority = event_priority(event)
        forwarded = 0
        # Peers that announced or sent it to us while it was on its way here hold it already:
        # neither a push nor an announcement would tell them anything.
        held = set(self._holders.get(event.id, ()))
        for session in self.sessions.values():
            if not session.active or session.peer_id == origin or session.peer_id in held:
                continue
            self._note_holder(event.id, session.peer_id)
            forwarded += 1
            if session.eager and not lazy_only:
                self.stats.events_pushed += 1
                if not session.queue_event(event.raw, priority):
                    self._announce_soon(now)  # the queue was full: one event became a HAVE
            else:
                self.stats.events_announced += 1
                session.announce(event.id)
                self._announce_soon(now)
        if forwarded:
            self.last_forwarded[event.id] = forwarded

    def _session_of(self, node_id: bytes) -> Session | None:
        handle = self.by_peer.get(node_id)
        if handle is None:
            return None
        session = self.sessions.get(handle)
        return session if session is not None and session.active else None

    # --- output ----------------------------------------------------------------------------------

    def frames_to_send(self) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        busy = sorted(self._busy)
        self._busy.clear()
        for handle in busy:
            session = self.sessions.get(handle)
            if session is not None:
                out.extend((handle, data) for data in session.drain())
        return out

    def next_effect(self) -> Effect | None:
        return self._effects.popleft() if self._effects else None

    def send_to(self, node_id: bytes, frame: AnyFrame) -> bool:
        session = self._session_of(node_id)
        if session is None:
            return False
        session.send_frame(frame)
        return True

    def send_to_handle(self, handle: int, frame: AnyFrame) -> None:
        session = self.sessions.get(handle)
        if session is not None and session.active:
            session.send_frame(frame)

    # --- timers ----------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        deadlines = [s.next_deadline() for s in self.sessions.values() if not s.closed]
        if self._missing:
            if self._missing_next is None:
                self._missing_next = min(m.deadline for m in self._missing.values())
            deadlines.append(self._missing_next)
        if self._next_anti_entropy is not None and self.sessions:
            deadlines.append(self._next_anti_entropy)
        if self._retry_commit_at is not None:
            deadlines.append(self._retry_commit_at)
        if self._announce_at is not None:
            deadlines.append(self._announce_at)
        if self._gaps:
            deadlines.append(min(gap[0] for gap in self._gaps.values()))
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        if self._announce_at is not None and now >= self._announce_at:
            self._announce_at = None
            for session in self.sessions.values():
                session.flush_announcements()
        for session in list(self.sessions.values()):
            error = session.check_timers(now)
            if error is not None:
                self._fault(session, error, now)
        self._want_missing(now)
        self._fetch_gaps(now)
        if self._next_anti_entropy is not None and now >= self._next_anti_entropy:
            self.sync_now(now)
            jitter = 0.8 + 0.4 * self.rng.random()
            self._next_anti_entropy = now + self.anti_entropy_interval_s * jitter
            self._fetching = {a: f for a, f in self._fetching.items() if f[0] > now}
            self._prune_targets()
        if self._retry_commit_at is not None and now >= self._retry_commit_at:
            self._maybe_plan(now)

    def _fetch_gaps(self, now: float) -> None:
        for author, (due, peer, start, stop) in list(self._gaps.items()):
            if due > now:
                continue
            del self._gaps[author]
            head = self.replica.heads.get(author)
            if head is not None and head.seq >= stop:
                continue
            session = self._session_of(peer)
            if session is not None:
                _raise_target(self._gap_targets, author, stop)
                start = max(start, head.seq + 1 if head else 1)
                self._request_range(session, author, start, stop, now)

    def _note_behind(self, author: bytes, seq: int) -> None:
        """A peer's head: this node lacks ``author``'s events up to ``seq`` (the catch-up
        target of `_continue_ranges` and `sync_progress`)."""
        _raise_target(self._behind, author, seq)

    def _prune_targets(self) -> None:
        """Forget the catch-up targets reached (or of frozen authors), so that the bounded maps
        keep room for new ones."""
        heads, frozen = self.replica.heads, self.replica.ledger.frozen
        for targets in (self._behind, self._gap_targets):
            for author, target in list(targets.items()):
                head = heads.get(author)
                if author in frozen or (head is not None and head.seq >= target):
                    del targets[author]

    def _want_missing(self, now: float) -> None:
        if self._missing_next is not None and self._missing_next > now:
            return
        self._missing_next = None
        wants: dict[int, list[bytes]] = {}
        for event_id, missing in list(self._missing.items()):
            if missing.deadline > now:
                continue
            while missing.announcers:
                handle = missing.announcers.popleft()
                session = self.sessions.get(handle)
                if session is not None and session.active:
                    wants.setdefault(handle, []).append(event_id)
                    missing.deadline = now + max(self.lazy_want_delay_s * 4, 0.2)
                    break
            else:
                del self._missing[event_id]
        for handle, ids in wants.items():
            session = self.sessions[handle]
            session.eager = True
            self.stats.wants_sent += 1
            for start in range(0, len(ids), MAX_IDS_PER_FRAME):
                session.send_frame(Want(tuple(ids[start : start + MAX_IDS_PER_FRAME]), graft=True))

    # --- introspection ---------------------------------------------------------------------------

    def sync_progress(self) -> SyncProgress:
        """How far this node is in catching up with what its peers announced."""
        remaining = 0
        for author, target in list(self._behind.items()):
            head = self.replica.heads.get(author)
            left = target - (head.seq if head else 0)
            if left <= 0 or author in self.replica.ledger.frozen:
                del self._behind[author]
            else:
                remaining += left
        self._behind_peak = max(self._behind_peak, remaining)
        peak = self._behind_peak
        if remaining == 0:
            self._behind_peak = 0
        return SyncProgress(remaining, peak - remaining, peak)

    def peer_sessions(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.state is not SessionState.CLOSED]


def _raise_target(targets: dict[bytes, int], author: bytes, seq: int) -> None:
    """Raise ``author``'s catch-up target to ``seq``; a new author only while there is room."""
    if author in targets or len(targets) < MAX_TRACKED_REACH:
        targets[author] = max(targets.get(author, 0), seq)


def _note_reached(raw: bytes, reached: dict[bytes, int]) -> None:
    """Count a known event of a reply towards how far the reply reached (see `_on_events`)."""
    try:
        event = Event.decode(raw)
    except (RemoteProtocolError, EventRejected):
        return
    reached[event.author] = max(reached.get(event.author, 0), event.seq)


def _fork_frame(proof: ForkProof) -> Fork:
    return Fork(proof.event_a.raw, proof.event_b.raw)


__all__ = [
    "CloseTransport",
    "Effect",
    "FrameIn",
    "Gossip",
    "Lookup",
    "PeerDown",
    "PeerUp",
    "Penalised",
    "Rebuild",
    "ServeIds",
    "ServeRange",
    "StorePlan",
]
