"""Typed errors of the protocol layer.

One base for the whole project (`LiberationError`); every layer derives its own family from it and
user-facing surfaces (CLI, API) map each family to one clear line or one JSON ``{error, detail}``.

Inside the protocol the split follows h11 and wsproto: `LocalProtocolError` means *we* asked for
something the protocol forbids; `RemoteProtocolError` means the *peer* broke it and carries the
score penalty to apply and whether the connection must close. Event validation failures
(`EventRejected`) are raised for local and remote events alike; the receive path turns them into a
penalty, the API into a 4xx.
"""

from __future__ import annotations

from enum import IntEnum


class LiberationError(Exception):
    """Base of every error the daemon raises on purpose."""

    #: Short, stable, machine-readable name used in API error bodies and metrics.
    code: str = "error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.__class__.__doc__ or self.code)
        self.detail = detail or (self.__class__.__doc__ or self.code).strip()


class ProtocolError(LiberationError):
    code = "protocol_error"


class LocalProtocolError(ProtocolError):
    """This node tried to do something the protocol forbids."""

    code = "local_protocol_error"


class CloseReason(IntEnum):
    """Why a session ended; sent in BYE and recorded per peer."""

    NORMAL = 0
    SHUTDOWN = 1
    PROTOCOL_VIOLATION = 2
    WRONG_NETWORK = 3
    INCOMPATIBLE_VERSION = 4
    BANNED = 5
    TOO_MANY_PEERS = 6
    DUPLICATE = 7
    TIMEOUT = 8
    HANDSHAKE_FAILED = 9
    EVICTED = 10


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""

    code = "remote_protocol_error"
    #: Score points taken from the peer that sent it.
    penalty: int = 10
    #: Whether the session must end (the stream can no longer be trusted or understood).
    close: CloseReason | None = None

    def __init__(
        self,
        detail: str = "",
        *,
        penalty: int | None = None,
        close: CloseReason | None = None,
    ) -> None:
        super().__init__(detail)
        if penalty is not None:
            self.penalty = penalty
        if close is not None:
            self.close = close


class DecodeError(RemoteProtocolError):
    """Bytes that are not a valid canonical encoding."""

    code = "decode_error"
    penalty = 20


class TooLarge(DecodeError):
    """A frame, event or field exceeds its size limit."""

    code = "too_large"
    penalty = 25


class UnknownVersion(RemoteProtocolError):
    """A frame of a protocol version this node does not speak."""

    code = "unknown_version"
    penalty = 0
    close = CloseReason.INCOMPATIBLE_VERSION


class UnknownFrameType(DecodeError):
    """A frame type code this node does not know."""

    code = "unknown_frame_type"
    penalty = 10


class HandshakeFailed(RemoteProtocolError):
    """The HELLO exchange did not prove the peer's identity."""

    code = "handshake_failed"
    penalty = 50
    close = CloseReason.HANDSHAKE_FAILED


class WrongNetworkHello(HandshakeFailed):
    """The peer belongs to another mesh (another genesis)."""

    code = "wrong_network"
    penalty = 0
    close = CloseReason.WRONG_NETWORK


class UnexpectedFrame(RemoteProtocolError):
    """A frame that is not allowed in the session's current state."""

    code = "unexpected_frame"
    penalty = 20


class RateLimited(RemoteProtocolError):
    """The peer exceeded a per-peer rate or queue limit."""

    code = "rate_limited"
    penalty = 5


class EventRejected(ProtocolError):
    """An event failed validation."""

    code = "event_rejected"
    #: Score points taken from a peer that relayed this event to us.
    penalty: int = 20

    def __init__(self, detail: str = "", *, penalty: int | None = None) -> None:
        super().__init__(detail)
        if penalty is not None:
            self.penalty = penalty


class MalformedEvent(EventRejected):
    """An event whose fields do not follow the schema of its kind."""

    code = "malformed_event"


class BadSignature(EventRejected):
    """A signature that does not verify under the claimed author key."""

    code = "bad_signature"
    penalty = 50


class WrongNetwork(EventRejected):
    """An event signed for another mesh (another genesis)."""

    code = "wrong_network"
    penalty = 10


class ChainBroken(EventRejected):
    """An event whose seq or prev does not continue its author's chain."""

    code = "chain_broken"
    penalty = 10


class ClockSkew(EventRejected):
    """An event timestamp too far in the future, or before its predecessor."""

    code = "clock_skew"
    penalty = 5


class UnknownKind(EventRejected):
    """An event kind this node does not know."""

    code = "unknown_kind"
    penalty = 5


class AuthorFrozen(EventRejected):
    """An event of an author that forked at or before this seq; it is never applied."""

    code = "author_frozen"
    penalty = 0


class LedgerRuleError(EventRejected):
    """An event that breaks a ledger rule."""

    code = "ledger_rule"


class Overdraft(LedgerRuleError):
    """A send larger than the sender's balance."""

    code = "overdraft"


class DoubleClaim(LedgerRuleError):
    """A claim of a send that was already claimed."""

    code = "double_claim"


class NotRecipient(LedgerRuleError):
    """A claim of a send addressed to another account."""

    code = "not_recipient"


class NotASend(LedgerRuleError):
    """A claim naming an event that is not a send, or whose details do not match it."""

    code = "not_a_send"


class NotEnrolled(LedgerRuleError):
    """An account event before the account's enrolment, or a second enrolment."""

    code = "not_enrolled"


class GenesisError(LedgerRuleError):
    """A genesis event that is not valid, or a second one."""

    code = "genesis_error"
