"""Every size, rate and cap of the protocol, with its unit and where the value comes from.

Limits are checked before parsing wherever the size is known up front (zeroconf drops oversized
packets before decoding them). Values that an operator may tune have a configuration key in
``[limits]`` whose default is the constant here; the rest are protocol constants that every node
must agree on.
"""

from __future__ import annotations

# --- Wire ---------------------------------------------------------------------------------------

#: Protocol version spoken in every frame; HELLO refuses any other.
PROTOCOL_VERSION = 1

#: Largest data-channel frame in bytes. 65,536 is what WebRTC assumes when a peer advertises no
#: max-message-size (aiortc advertises 262,144 but does not enforce it on receipt, so we do).
MAX_FRAME_BYTES = 65_536

#: Largest encoded event in bytes. SSB caps messages at 8 KiB; our largest body is a 4 KiB post.
MAX_EVENT_BYTES = 8_192

#: Events per EVENTS frame; with MAX_FRAME_BYTES this bounds one frame's decode work.
MAX_EVENTS_PER_FRAME = 256

#: Ids per HAVE or WANT frame (32 bytes each: 8 KiB of ids at most).
MAX_IDS_PER_FRAME = 256

#: Per-author heads per HEADS frame (at most 78 bytes each: about 61 KiB, under MAX_FRAME_BYTES).
MAX_HEADS_PER_FRAME = 800

#: Events one GET_RANGE may ask for; larger gaps are fetched in several bounded requests.
MAX_RANGE_EVENTS = 256

#: Most GET_RANGE requests a session keeps in flight to one peer.
MAX_RANGES_IN_FLIGHT = 4

#: Opaque payload of a ROUTED or SIGNAL frame (a WebRTC offer SDP is 1-4 KiB).
MAX_ROUTED_PAYLOAD_BYTES = 16_384

#: Hops a ROUTED frame may take; the mesh diameter at 10,000 nodes of degree 6 is about 6.
MAX_ROUTED_TTL = 32

#: Bytes in a BYE reason text.
MAX_REASON_BYTES = 256

# --- Keys and signatures --------------------------------------------------------------------------

KEY_BYTES = 32
SIGNATURE_BYTES = 64
ID_BYTES = 32
NONCE_BYTES = 16

#: Longest DTLS fingerprint text ("sha-512 " + 64 hex pairs with colons is 199 characters).
MAX_FINGERPRINT_CHARS = 256

# --- Event bodies ---------------------------------------------------------------------------------

#: Post content: 4 KiB of UTF-8, as the ledger and messages issue states.
MAX_POST_CONTENT_BYTES = 4_096

#: Channel names: short identifiers (lowercase letters, digits, '-' and '_').
MAX_CHANNEL_BYTES = 32

#: Human-readable names of accounts, nodes and meshes.
MAX_NAME_BYTES = 64

#: Free-text memo on a send.
MAX_MEMO_BYTES = 140

#: Message priority range (1 lowest, 5 highest), from the original specification.
MIN_PRIORITY = 1
MAX_PRIORITY = 5

#: Largest amount in minor units: the 19 trillion pool in cents is 1.9e15, far below 2**63.
MAX_AMOUNT = (1 << 63) - 1

#: Default bound on how far in the future an event timestamp may be, in seconds. Configurable.
DEFAULT_MAX_CLOCK_SKEW_S = 300.0

# --- Per-peer state -------------------------------------------------------------------------------

#: Events a receiver lets a sender push before it grants more credit (back-pressure window).
INITIAL_EVENT_CREDIT = 512

#: Events a session queues for one peer beyond its credit; lower-priority entries are demoted to
#: lazy announcements when the queue is full, so nothing is lost (anti-entropy repairs).
MAX_OUTBOUND_EVENTS = 4_096

#: Ids a session remembers as announced-but-not-yet-received (the lazy-push "missing" set).
MAX_MISSING_IDS = 8_192

#: Seconds to wait for an eagerly pushed copy after a HAVE before asking for it with WANT
#: (Plumtree's timer; about two link RTTs on a LAN).
LAZY_WANT_DELAY_S = 0.05

#: Seconds a gap in a chain may stay open before the missing range is requested; gaps usually
#: close by themselves when events take different paths.
GAP_WAIT_S = 0.2

#: Lazy announcements (HAVE) are collected for this long and sent in one frame per peer
#: (Plumtree batches its IHAVE messages); it adds to the repair path only, never to eager push.
#: Long against a push's trip over the tree: by then the lazy peer mostly holds the event, and
#: its own HAVE withdraws ours. HAVEs were most of the mesh's frames at 25 ms (bench/mesh.py:
#: 3.2 per delivery at N = 20, against 2.0 at 250 ms), and each frame costs the receiver as
#: much as an event's push.
ANNOUNCE_DELAY_S = 0.25

#: Default per-peer frame rate (frames per second) and burst, and byte rate (bytes per second).
DEFAULT_PEER_FRAMES_PER_S = 500.0
DEFAULT_PEER_FRAME_BURST = 1_000
DEFAULT_PEER_BYTES_PER_S = 4 * 1024 * 1024

#: Score at or below which a peer is disconnected and banned for BAN_SECONDS.
SCORE_BAN_THRESHOLD = -100

#: Seconds a banned peer is refused.
BAN_SECONDS = 600.0

#: Score decay: every second, a score (good or bad) moves this fraction of the way back to zero.
SCORE_DECAY_PER_S = 0.01

#: Seconds a session may stay in the handshake before it is closed.
HANDSHAKE_TIMEOUT_S = 10.0

#: Keep-alive: PING every this many seconds (RTT and loss come from these); a peer is dead after
#: PEER_DEAD_S without any frame. Both are configurable ([mesh] keepalive_s, dead_after_s).
PING_INTERVAL_S = 5.0
PEER_DEAD_S = 15.0

#: Anti-entropy: send HEADS digests this often, in seconds.
ANTI_ENTROPY_INTERVAL_S = 10.0

# --- Node-wide caps -------------------------------------------------------------------------------

#: Events held while they wait for a predecessor or a claimed send (per node).
MAX_PENDING_EVENTS = 10_000

#: Ids remembered in memory for the cheap duplicate check; the store is the durable dedup.
RECENT_IDS_CAP = 100_000

#: Connections from one IP address at once (CometBFT caps inbound connections per IP).
MAX_CONNECTIONS_PER_ADDRESS = 8
