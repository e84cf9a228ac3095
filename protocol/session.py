"""One peer's session: handshake, rate limits, score, keep-alive and the credit-limited send queue.

A `Session` never decides what to gossip (that is `protocol.gossip.Gossip`, which owns all
sessions); it turns bytes into checked frames, frames into bytes, and keeps the per-peer state a
decision needs: is the peer who it claims to be, is it within its rates, how far may we push to it,
is it still alive, how much do we trust it.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from protocol.errors import (
    CloseReason,
    HandshakeFailed,
    LocalProtocolError,
    RateLimited,
    RemoteProtocolError,
    UnexpectedFrame,
)
from protocol.frames import (
    AnyFrame,
    Bye,
    Credit,
    Events,
    Have,
    Hello,
    Ping,
    decode_frame,
    encode_frame,
)
from protocol.identity import SigningKey
from protocol.limits import (
    HANDSHAKE_TIMEOUT_S,
    INITIAL_EVENT_CREDIT,
    MAX_EVENTS_PER_FRAME,
    MAX_FRAME_BYTES,
    MAX_IDS_PER_FRAME,
    MAX_OUTBOUND_EVENTS,
    PEER_DEAD_S,
    PING_INTERVAL_S,
    SCORE_BAN_THRESHOLD,
    SCORE_DECAY_PER_S,
)

#: Largest positive score; a good history cannot buy unlimited forgiveness.
MAX_SCORE = 100.0
#: Pings remembered for the loss estimate.
PING_WINDOW = 20
#: Pings whose lowest RTT is the link's base RTT (`Session.base_rtt_s`).
BASE_RTT_WINDOW = 8
#: Bytes of an EVENTS frame around its events (array heads, version, type, flag).
EVENTS_FRAME_OVERHEAD = 16


class SessionState(Enum):
    HANDSHAKING = "handshaking"
    ACTIVE = "active"
    CLOSED = "closed"


#: Allowed transitions; anything else is a bug (LocalProtocolError).
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.HANDSHAKING: frozenset({SessionState.ACTIVE, SessionState.CLOSED}),
    SessionState.ACTIVE: frozenset({SessionState.CLOSED}),
    SessionState.CLOSED: frozenset(),
}


def transitions_diagram() -> str:
    """The transition table as a Mermaid state diagram (for the docs)."""
    lines = ["stateDiagram-v2", "    [*] --> handshaking"]
    for source, targets in TRANSITIONS.items():
        lines.extend(
            f"    {source.value} --> {target.value}" for target in sorted(targets, key=str)
        )
    lines.append("    closed --> [*]")
    return "\n".join(lines)


class TokenBucket:
    """Rate limiter: ``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def take(self, amount: float, now: float) -> bool:
        elapsed = max(0.0, now - self.updated)
        self.updated = now
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False


@dataclass(frozen=True, slots=True)
class SessionLimits:
    max_frame_bytes: int = MAX_FRAME_BYTES
    frames_per_s: float = 500.0
    frame_burst: int = 1_000
    bytes_per_s: float = 4 * 1024 * 1024
    initial_credit: int = INITIAL_EVENT_CREDIT
    #: Keep-alive: PING this often; a peer silent for dead_after_s is dropped.
    ping_interval_s: float = PING_INTERVAL_S
    dead_after_s: float = PEER_DEAD_S


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What the HELLO told us about the peer (after its signature and binding checked out)."""

    node_id: bytes
    network_id: bytes
    genesis: bytes
    name: str
    mesh_port: int


class Session:
    """The state of one connection to one peer."""

    def __init__(
        self,
        handle: int,
        *,
        outbound: bool,
        address: str,
        local_fingerprint: str,
        remote_fingerprint: str,
        limits: SessionLimits,
        now: float,
        on_output: Callable[[int], None] | None = None,
    ) -> None:
        self.handle = handle
        #: Called with the handle whenever output is queued, so the owner drains only busy sessions.
        self._on_output = on_output or _ignore
        self.outbound = outbound
        self.address = address
        self.local_fingerprint = local_fingerprint
        self.remote_fingerprint = remote_fingerprint
        self.limits = limits
        self.state = SessionState.HANDSHAKING
        self.opened_at = now
        self.connected_since: float | None = None
        self.peer: PeerInfo | None = None
        self.close_reason: CloseReason | None = None
        self.close_detail = ""
        # Score and limits.
        self.score = 0.0
        self._score_at = now
        self._frames = TokenBucket(limits.frames_per_s, limits.frame_burst, now)
        self._bytes = TokenBucket(limits.bytes_per_s, limits.bytes_per_s * 2, now)
        # Plumtree: push events eagerly to this peer (True) or announce them lazily (False).
        self.eager = True
        # Back-pressure: events we may send, events received since we last granted credit.
        self.credit_out = 0
        self.outstanding_in = 0
        self.processed_uncredited = 0
        # Events waiting for credit: a FIFO per priority (a handful of levels), so that taking
        # the next event and demoting the last one are both O(1) however long the queue.
        self._queues: dict[int, deque[bytes]] = {}
        self._queued = 0
        self._have: list[bytes] = []
        self._flush_have = False
        self._replies: deque[tuple[bytes, ...]] = deque()
        self._frames_out: list[bytes] = []
        # Liveness.
        self.last_received = now
        self.last_sent = now
        self._ping_nonce = 0
        self._next_ping_at = now + self.limits.ping_interval_s
        self._ping_sent_at: dict[int, float] = {}
        self._ping_results: deque[bool] = deque(maxlen=PING_WINDOW)
        self.rtt_s: float | None = None
        self._recent_rtts: deque[float] = deque(maxlen=BASE_RTT_WINDOW)
        # Anti-entropy: when each GET_RANGE in flight was sent, and the requests waiting.
        self.ranges_sent: deque[float] = deque()
        self.ranges_waiting: deque[tuple[bytes, int, int]] = deque()
        self._rtt_samples: list[float] = []
        # Counters for the status page and metrics.
        self.bytes_in = 0
        self.bytes_out = 0
        self.frames_in = 0
        self.frames_out = 0
        self.events_in = 0
        self.events_out = 0
        self.duplicates_in = 0

    # --- state -----------------------------------------------------------------------------------

    def _to(self, state: SessionState) -> None:
        if state not in TRANSITIONS[self.state]:
            raise LocalProtocolError(f"session cannot go from {self.state.value} to {state.value}")
        self.state = state

    @property
    def active(self) -> bool:
        return self.state is SessionState.ACTIVE

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def peer_id(self) -> bytes | None:
        return self.peer.node_id if self.peer else None

    # --- handshake -------------------------------------------------------------------------------

    def hello(
        self,
        key: SigningKey,
        *,
        network_id: bytes,
        genesis: bytes,
        nonce: bytes,
        name: str,
        mesh_port: int,
    ) -> None:
        """Queue our HELLO (both sides send one as soon as the channel opens)."""
        frame = Hello.create(
            key,
            network_id=network_id,
            genesis=genesis,
            nonce=nonce,
            local_fingerprint=self.local_fingerprint,
            remote_fingerprint=self.remote_fingerprint,
            name=name,
            mesh_port=mesh_port,
            credit=self.limits.initial_credit,
        )
        self.send_frame(frame)

    def check_hello(self, frame: Hello) -> PeerInfo:
        """Verify the peer's HELLO: its signature and its binding to this DTLS connection."""
        if self.state is not SessionState.HANDSHAKING:
            raise UnexpectedFrame("a second HELLO")
        if not frame.signature_valid():
            raise HandshakeFailed("HELLO signature does not verify")
        if _norm(frame.local_fingerprint) != _norm(self.remote_fingerprint) or _norm(
            frame.remote_fingerprint
        ) != _norm(self.local_fingerprint):
            raise HandshakeFailed(
                "HELLO is bound to other DTLS certificates (relayed or intercepted connection)"
            )
        return PeerInfo(frame.node_id, frame.network_id, frame.genesis, frame.name, frame.mesh_port)

    def activate(self, peer: PeerInfo, credit: int, now: float) -> None:
        self._to(SessionState.ACTIVE)
        self.peer = peer
        self.credit_out = credit
        self.connected_since = now
        self._next_ping_at = now  # measure the RTT at once: link state and routes need it

    # --- receiving -------------------------------------------------------------------------------

    def parse(self, data: bytes, now: float) -> AnyFrame:
        """Account for and decode one received message; raises RemoteProtocolError subclasses."""
        self.last_received = now
        self.frames_in += 1
        self.bytes_in += len(data)
        if not self._frames.take(1, now) or not self._bytes.take(len(data), now):
            raise RateLimited("frame or byte rate above this node's per-peer limit")
        frame = decode_frame(data, self.limits.max_frame_bytes)
        if self.state is SessionState.HANDSHAKING and not isinstance(frame, Hello | Bye):
            raise UnexpectedFrame(f"{type(frame).__name__} before HELLO")
        return frame

    def take_events(self, count: int) -> None:
        """Account for ``count`` received events against the credit we granted."""
        self.events_in += count
        self.outstanding_in += count
        if self.outstanding_in > self.limits.initial_credit:
            raise RateLimited("events beyond the granted credit", penalty=10)

    def grant(self, count: int) -> None:
        """We are done with ``count`` received events: give the credit back, in batches of a
        quarter window so that CREDIT frames stay rare."""
        self.processed_uncredited += count
        if self.processed_uncredited >= max(1, self.limits.initial_credit // 4):
            returned = min(self.processed_uncredited, self.outstanding_in)
            self.outstanding_in -= returned
            self.processed_uncredited = 0
            if returned > 0:
                self.send_frame(Credit(returned))

    def add_credit(self, count: int) -> None:
        self.credit_out = min(self.credit_out + count, 1 << 20)
        if self._queued or self._replies:
            self._on_output(self.handle)

    def flush_announcements(self) -> None:
        """Send the HAVEs collected since the last flush (announcements go out in batches)."""
        if self._have:
            self._flush_have = True
            self._on_output(self.handle)

    @property
    def announcing(self) -> bool:
        return bool(self._have)

    def note_pong(self, nonce: int, now: float) -> None:
        sent = self._ping_sent_at.pop(nonce, None)
        if sent is None:
            return
        sample = now - sent
        self.rtt_s = sample if self.rtt_s is None else 0.875 * self.rtt_s + 0.125 * sample
        self._recent_rtts.append(sample)
        self._ping_results.append(True)
        if len(self._rtt_samples) < PING_WINDOW:
            self._rtt_samples.append(sample)

    @property
    def base_rtt_s(self) -> float | None:
        """The lowest RTT of the last keep-alives: the path's own delay, without the queueing of
        a busy moment (which the smoothed `rtt_s` follows). Routing weighs links by it."""
        return min(self._recent_rtts) if self._recent_rtts else None

    def take_rtt_samples(self) -> list[float]:
        """RTT samples since the last call (for the metrics histogram)."""
        samples, self._rtt_samples = self._rtt_samples, []
        return samples

    @property
    def loss(self) -> float:
        """Fraction of recent pings that went unanswered."""
        if not self._ping_results:
            return 0.0
        return self._ping_results.count(False) / len(self._ping_results)

    # --- score -----------------------------------------------------------------------------------

    def current_score(self, now: float) -> float:
        elapsed = max(0.0, now - self._score_at)
        self._score_at = now
        self.score *= math.exp(-SCORE_DECAY_PER_S * elapsed)
        return self.score

    def penalise(self, points: float, now: float) -> bool:
        """Lower the score; True when it fell to the ban threshold."""
        self.current_score(now)
        self.score -= points
        return self.score <= SCORE_BAN_THRESHOLD

    def reward(self, points: float, now: float) -> None:
        self.current_score(now)
        self.score = min(MAX_SCORE, self.score + points)

    # --- sending ---------------------------------------------------------------------------------

    def send_frame(self, frame: AnyFrame) -> None:
        if self.state is SessionState.CLOSED:
            return
        self._frames_out.append(encode_frame(frame))
        self._on_output(self.handle)

    def queue_event(self, raw: bytes, priority: int) -> bool:
        """Queue an event to push; under back-pressure higher priority goes first.

        When the queue is full the lowest-priority event is announced lazily (HAVE) instead, so
        nothing is lost: the peer asks for it, or anti-entropy repairs it. False when that
        happened: the caller must see that the announcements are flushed.
        """
        queue = self._queues.get(priority)
        if queue is None:
            queue = self._queues[priority] = deque()
        queue.append(raw)
        self._queued += 1
        if self.credit_out > 0:
            self._on_output(self.handle)
        if self._queued > MAX_OUTBOUND_EVENTS:
            # The newest of the lowest priority: the one that would have gone out last.
            lowest = min(level for level, waiting in self._queues.items() if waiting)
            self._queued -= 1
            self.announce(_event_id(self._queues[lowest].pop()))
            return False
        return True

    def announce(self, event_id: bytes) -> None:
        if len(self._have) < MAX_OUTBOUND_EVENTS:
            self._have.append(event_id)

    def withdraw_announcements(self, ids: Iterable[bytes]) -> None:
        """Drop queued HAVEs of events the peer has just announced itself."""
        if self._have:
            held = set(ids)
            self._have = [event_id for event_id in self._have if event_id not in held]

    def queue_reply(self, raws: tuple[bytes, ...]) -> None:
        """Events answering a request; sent as one reply frame (truncated to the frame limit)."""
        self._replies.append(raws)
        if self.credit_out > 0:
            self._on_output(self.handle)

    @property
    def queued_events(self) -> int:
        return self._queued

    def drain(self) -> list[bytes]:
        """Encoded frames to send now: control frames, replies, announcements, then events."""
        if self.state is SessionState.CLOSED:
            out, self._frames_out = self._frames_out, []
            return out
        limit = self.limits.max_frame_bytes - EVENTS_FRAME_OVERHEAD
        while self._replies and self.credit_out > 0:
            raws = self._replies.popleft()
            reply = _fit(raws, limit, min(self.credit_out, MAX_EVENTS_PER_FRAME))
            self.credit_out -= len(reply)
            self.events_out += len(reply)
            self._frames_out.append(encode_frame(Events(tuple(reply), reply=True)))
        while self._have and self._flush_have:
            ids, self._have = self._have[:MAX_IDS_PER_FRAME], self._have[MAX_IDS_PER_FRAME:]
            self._frames_out.append(encode_frame(Have(tuple(ids))))
        while self._queued and self.credit_out > 0:
            batch = self._next_batch(min(self.credit_out, MAX_EVENTS_PER_FRAME), limit)
            self.credit_out -= len(batch)
            self.events_out += len(batch)
            self._frames_out.append(encode_frame(Events(tuple(batch))))
        self._flush_have = False
        out, self._frames_out = self._frames_out, []
        self.frames_out += len(out)
        self.bytes_out += sum(len(frame) for frame in out)
        return out

    def _next_batch(self, count: int, limit: int) -> list[bytes]:
        """Up to ``count`` queued events within ``limit`` bytes (at least one): highest priority
        first, oldest first within a priority."""
        batch: list[bytes] = []
        size = 0
        for priority in sorted(self._queues, reverse=True):
            queue = self._queues[priority]
            while queue and len(batch) < count:
                raw = queue[0]
                if batch and size + len(raw) + 3 > limit:
                    self._queued -= len(batch)
                    return batch
                queue.popleft()
                batch.append(raw)
                size += len(raw) + 3
        self._queued -= len(batch)
        return batch

    def close(self, reason: CloseReason, detail: str = "", *, send_bye: bool = True) -> None:
        if self.state is SessionState.CLOSED:
            return
        if send_bye:
            self._frames_out.append(encode_frame(Bye(reason, truncate_utf8(detail, 200))))
        self._to(SessionState.CLOSED)
        self.close_reason = reason
        self.close_detail = detail
        self._queues.clear()
        self._queued = 0
        self._replies.clear()
        self._have.clear()

    # --- timers ----------------------------------------------------------------------------------

    def next_deadline(self) -> float:
        if self.state is SessionState.HANDSHAKING:
            return self.opened_at + HANDSHAKE_TIMEOUT_S
        return min(self._next_ping_at, self.last_received + self.limits.dead_after_s)

    def check_timers(self, now: float) -> RemoteProtocolError | None:
        """Send keep-alives; return an error when the peer must be dropped."""
        if self.state is SessionState.HANDSHAKING:
            if now >= self.opened_at + HANDSHAKE_TIMEOUT_S:
                return HandshakeFailed("handshake timed out", close=CloseReason.TIMEOUT, penalty=0)
            return None
        if self.state is not SessionState.ACTIVE:
            return None
        if now >= self.last_received + self.limits.dead_after_s:
            return RemoteProtocolError(
                "no frame from the peer", penalty=0, close=CloseReason.TIMEOUT
            )
        if now >= self._next_ping_at:
            self.ping(now)
        return None

    def ping(self, now: float) -> None:
        """Probe the peer; pings unanswered for half the dead interval count as lost."""
        for nonce, sent in list(self._ping_sent_at.items()):
            if now - sent > self.limits.dead_after_s / 2:
                del self._ping_sent_at[nonce]
                self._ping_results.append(False)
        self._ping_nonce += 1
        self._ping_sent_at[self._ping_nonce] = now
        self._next_ping_at = now + self.limits.ping_interval_s
        self.send_frame(Ping(self._ping_nonce))


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, never inside a character."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def _ignore(handle: int) -> None:
    return None


def _norm(fingerprint: str) -> str:
    return " ".join(fingerprint.lower().split())


def _fit(raws: tuple[bytes, ...], limit: int, max_items: int) -> list[bytes]:
    batch: list[bytes] = []
    size = 0
    for raw in raws:
        if len(batch) >= max_items or (batch and size + len(raw) + 3 > limit):
            break
        batch.append(raw)
        size += len(raw) + 3
    return batch


def _event_id(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()
