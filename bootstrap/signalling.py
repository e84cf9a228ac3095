"""The signalling exchange: signed WebRTC offers and answers, and the checks on them.

An offer travels either over HTTP (``POST /signal`` on the receiver's mesh port, for the first
contact) or inside a ROUTED frame across the mesh; either way it is a `protocol.frames.Signal`,
signed by its sender's node key over the SDP (which carries the DTLS fingerprint), the recipient,
a timestamp and a fresh session nonce. `SignalGate` decides whether to answer one: it must verify,
be addressed to us (or to anyone, for a bootstrap address whose owner the sender does not know
yet), be fresh, never seen before, and from our mesh. A replayed, stale, forged or oversized offer
is refused with a typed error that the HTTP layer maps to a 4xx.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from protocol.errors import DecodeError, LiberationError, RemoteProtocolError
from protocol.events import ZERO_ID
from protocol.frames import Signal, decode_frame
from protocol.limits import MAX_ROUTED_PAYLOAD_BYTES

#: Largest signalling request body (an offer with a handful of candidates is 1-3 KiB).
MAX_SIGNAL_BYTES = MAX_ROUTED_PAYLOAD_BYTES
#: How far a signal's timestamp may be from our clock, in milliseconds.
SIGNAL_FRESHNESS_MS = 30_000
#: Session nonces remembered against replays (at least as long as the freshness window).
REPLAY_CACHE = 4_096
#: Content type of a signalling body: the encoded SIGNAL frame.
CONTENT_TYPE = "application/cbor"


class SignalRefused(LiberationError):
    """An offer or answer that this node will not act on."""

    code = "signal_refused"
    #: HTTP status for the signalling endpoint.
    status = 400

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(detail)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


@dataclass(frozen=True, slots=True)
class SignalCheck:
    """What the gate needs to know about this node."""

    node_id: bytes
    network_id: bytes | None


class SignalGate:
    """Checks incoming signals; remembers session nonces to refuse replays."""

    def __init__(self) -> None:
        self._seen: OrderedDict[bytes, int] = OrderedDict()

    def parse(self, data: bytes) -> Signal:
        if len(data) > MAX_SIGNAL_BYTES:
            raise SignalRefused(
                f"signal of {len(data)} bytes exceeds {MAX_SIGNAL_BYTES}",
                code="too_large",
                status=413,
            )
        try:
            frame = decode_frame(data, MAX_SIGNAL_BYTES)
        except (RemoteProtocolError, DecodeError) as exc:
            raise SignalRefused(f"not a signal frame: {exc.detail}", code="malformed") from None
        if not isinstance(frame, Signal):
            raise SignalRefused("not a signal frame", code="malformed")
        return frame

    def check(self, signal: Signal, me: SignalCheck, now_ms: int, *, kind: str) -> None:
        """Raise SignalRefused unless ``signal`` is a fresh, authentic ``kind`` for this node."""
        if signal.kind != kind:
            raise SignalRefused(f"expected an {kind}, got an {signal.kind}", code="wrong_kind")
        if signal.sender == me.node_id:
            raise SignalRefused("a signal from this node itself", code="self", status=409)
        if signal.recipient not in (me.node_id, ZERO_ID):
            raise SignalRefused(
                "the signal is addressed to another node", code="wrong_recipient", status=421
            )
        if abs(signal.ts - now_ms) > SIGNAL_FRESHNESS_MS:
            raise SignalRefused("the signal is stale or from the future", code="stale")
        if (
            me.network_id is not None
            and signal.network_id != ZERO_ID
            and signal.network_id != me.network_id
        ):
            raise SignalRefused(
                "the signal comes from another mesh", code="wrong_network", status=403
            )
        if not signal.signature_valid():
            raise SignalRefused(
                "the signal's signature does not verify", code="bad_signature", status=401
            )
        if signal.session in self._seen:
            raise SignalRefused("this signal was already used", code="replayed", status=409)
        # Forget only what is too old to be replayed anyway; when the cache is full of fresh
        # nonces, refuse rather than forget one (a flood must not open a replay window).
        horizon = now_ms - 2 * SIGNAL_FRESHNESS_MS
        while self._seen and next(iter(self._seen.values())) < horizon:
            self._seen.popitem(last=False)
        if len(self._seen) >= REPLAY_CACHE:
            raise SignalRefused("too many offers at once; retry shortly", code="busy", status=503)
        self._seen[signal.session] = now_ms
