"""The test vectors of docs/protocol.md: the code produces exactly these bytes, and accepts them.

The document is the one copy of the vectors: every ```hex block in it is parsed into named hex
values, and the set of names must equal the set this module knows how to compute. The inputs
(labels, timestamps, body fields) are restated here, and the definitions the document gives (the
signed message, the event id, the heads digest, the ledger state document) are restated
independently of the code that implements them. The document's tables of frame types, close
reasons, domains, penalties and limits are checked against the code as well.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol import codec, errors, limits
from protocol.codec import CborValue
from protocol.errors import BadSignature, CloseReason, DecodeError
from protocol.events import ZERO_ID, Claim, Enroll, Event, Genesis, Post, Send
from protocol.frames import (
    FIELD_COUNTS,
    AnyFrame,
    Bye,
    Credit,
    FrameType,
    GetRange,
    Heads,
    Hello,
    Ping,
    Prune,
    Want,
    decode_frame,
    encode_frame,
    heads_digest,
)
from protocol.identity import (
    DOMAIN_EVENT,
    DOMAIN_HELLO,
    DOMAIN_LINK_STATE,
    DOMAIN_ROUTED,
    DOMAIN_SIGNAL,
    SigningKey,
)
from protocol.replica import Incoming, Plan, Replica

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

# --- inputs (section 8 of the document) -----------------------------------------------------------

LABELS = {"pool": "vector-pool", "alice": "vector-alice", "node": "vector-node"}
KEYS = {name: SigningKey.for_label(label) for name, label in LABELS.items()}
POOL, ALICE, NODE = KEYS["pool"], KEYS["alice"], KEYS["node"]
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms
TOTAL = 1_900_000_000_000_000
AMOUNT = 25_000

GENESIS = Event.create(
    POOL,
    ZERO_ID,
    seq=1,
    prev=ZERO_ID,
    ts=T0,
    body=Genesis("vector mesh", TOTAL, 80_000, 10_400_000, 10_400_000, 604_800),
)
NETWORK = GENESIS.id
ENROLL = Event.create(
    ALICE, NETWORK, seq=1, prev=ZERO_ID, ts=T0 + 1_000, body=Enroll("alice", NODE.public)
)
SEND = Event.create(
    POOL,
    NETWORK,
    seq=2,
    prev=GENESIS.id,
    ts=T0 + 2_000,
    body=Send(ALICE.public, AMOUNT, "transfer", "vector"),
)
CLAIM = Event.create(
    ALICE,
    NETWORK,
    seq=2,
    prev=ENROLL.id,
    ts=T0 + 3_000,
    body=Claim(SEND.id, POOL.public, 2, AMOUNT),
)
POST = Event.create(
    ALICE, NETWORK, seq=3, prev=CLAIM.id, ts=T0 + 4_000, body=Post("social", 3, "hello, mesh")
)
EVENTS = {"genesis": GENESIS, "enroll": ENROLL, "send": SEND, "claim": CLAIM, "post": POST}
#: Events whose whole encoding the document gives (the others: id and signature).
RAW_EVENTS = ("genesis", "send", "post")

HELLO = Hello.create(
    NODE,
    network_id=ZERO_ID,
    genesis=b"",
    nonce=bytes(range(0xA0, 0xB0)),
    local_fingerprint="sha-256 " + ":".join(f"{i:02X}" for i in range(32)),
    remote_fingerprint="sha-256 " + ":".join(f"{i:02X}" for i in range(32, 64)),
    name="vector-node",
    mesh_port=7_400,
    credit=512,
)
HEADS_AFTER = [(POOL.public, 2, SEND.id), (ALICE.public, 3, POST.id)]
FRAMES: dict[str, AnyFrame] = {
    "frame.hello": HELLO,
    "frame.heads": Heads(heads_digest(HEADS_AFTER), (), reply=False, part=0, last=True),
    "frame.get_range": GetRange(ALICE.public, 2, 3),
    "frame.want": Want((SEND.id,), graft=True),
    "frame.ping": Ping(1),
    "frame.prune": Prune(),
    "frame.credit": Credit(128),
    "frame.bye": Bye(CloseReason.SHUTDOWN, "bye"),
}

CBOR_VALUES: dict[str, CborValue] = {
    "cbor.uint.0": 0,
    "cbor.uint.23": 23,
    "cbor.uint.24": 24,
    "cbor.uint.500": 500,
    "cbor.uint.2e32": 1 << 32,
    "cbor.uint.max": (1 << 64) - 1,
    "cbor.nint.1": -1,
    "cbor.nint.500": -500,
    "cbor.bytes.empty": b"",
    "cbor.bytes.3": b"\x01\x02\x03",
    "cbor.text.empty": "",
    "cbor.text.utf8": "h\u00e9",
    "cbor.array.nested": [1, [2, 3]],
    "cbor.map.order": {"amount": 1, "to": 2, "memo": 3},
    "cbor.false": False,
    "cbor.true": True,
    "cbor.null": None,
}
CBOR_REJECTED = (
    "cbor.reject.non-shortest-int",
    "cbor.reject.non-shortest-length",
    "cbor.reject.indefinite",
    "cbor.reject.unsorted-keys",
    "cbor.reject.repeated-key",
    "cbor.reject.non-text-key",
    "cbor.reject.float",
    "cbor.reject.undefined",
    "cbor.reject.tag",
    "cbor.reject.invalid-utf8",
    "cbor.reject.truncated",
    "cbor.reject.trailing",
)

# --- the document --------------------------------------------------------------------------------

_ENTRY = re.compile(r"([a-z][a-z0-9_.-]*) *=(?: *([0-9a-f ]+?))? *(?:#.*)?")
_MORE = re.compile(r"[ \t]+([0-9a-f ]+?) *(?:#.*)?")


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def doc_vectors() -> dict[str, bytes]:
    """Every ``name = hex`` entry of the document's ```hex blocks (continuation lines indented;
    spaces inside hex and ``# comments`` ignored)."""
    vectors: dict[str, str] = {}
    name: str | None = None
    in_block = False
    for number, line in enumerate(doc_text().splitlines(), 1):
        if line.startswith("```"):
            in_block, name = line == "```hex", None
            continue
        if not in_block or not line.strip() or line.lstrip().startswith("#"):
            continue
        more = _MORE.fullmatch(line)
        entry = None if more else _ENTRY.fullmatch(line)
        if more and name is not None:
            vectors[name] += more.group(1)
        elif entry:
            name = entry.group(1)
            assert name not in vectors, f"line {number}: {name} is given twice"
            vectors[name] = entry.group(2) or ""
        else:
            raise AssertionError(f"docs/protocol.md line {number}: not a vector line: {line!r}")
    return {key: bytes.fromhex(value.replace(" ", "")) for key, value in vectors.items()}


VECTORS = doc_vectors() if DOC.exists() else {}


def vector(name: str) -> bytes:
    assert name in VECTORS, f"docs/protocol.md has no vector {name}"
    return VECTORS[name]


# --- what the code computes, and the definitions the document gives, restated -------------------


def state_document() -> bytes:
    """The ledger state after genesis, enrol, send and claim, built from its definition."""
    pool_balance = TOTAL - AMOUNT
    rows = sorted([(POOL.public, pool_balance), (ALICE.public, AMOUNT)])
    balances: list[CborValue] = [[account, balance, balance] for account, balance in rows]
    return codec.encode([POOL.public, TOTAL, balances, [], [], 1])


def replayed() -> tuple[Replica, Plan | None]:
    """A replica that judged the vector events as a node judges a peer's, and its plan."""
    replica = Replica()
    for event in EVENTS.values():
        replica.submit(Incoming(event, NODE.public))
    plan = replica.build_plan(T0 + 10_000)
    if plan is not None:
        replica.commit(plan)
    return replica, plan


def computed() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, signer in KEYS.items():
        out[f"key.{name}.seed"] = hashlib.sha256(LABELS[name].encode()).digest()
        out[f"key.{name}.public"] = signer.public
    out.update({name: codec.encode(value) for name, value in CBOR_VALUES.items()})
    for name, event in EVENTS.items():
        out[f"event.{name}.id"] = event.id
        out[f"event.{name}.sig"] = event.sig
        if name in RAW_EVENTS:
            out[f"event.{name}.raw"] = event.raw
    out["event.send.signed"] = DOMAIN_EVENT + NETWORK + SEND.signed_part()
    out.update({name: encode_frame(frame) for name, frame in FRAMES.items()})
    out["heads.digest"] = heads_digest(HEADS_AFTER)
    out["heads.digest.empty"] = heads_digest([])
    out["ledger.state"] = state_document()
    out["ledger.state_hash"] = replayed()[0].ledger.state_hash()
    return out


COMPUTED = computed()

# --- the vectors -----------------------------------------------------------------------------


def test_the_document_gives_exactly_the_checked_vectors() -> None:
    assert DOC.exists(), "docs/protocol.md is missing"
    assert set(VECTORS) == set(COMPUTED) | set(CBOR_REJECTED)


@pytest.mark.parametrize("name", sorted(COMPUTED))
def test_code_produces_the_vector(name: str) -> None:
    assert COMPUTED[name].hex() == vector(name).hex()


@pytest.mark.parametrize("name", sorted(KEYS))
def test_key_from_seed(name: str) -> None:
    seed = vector(f"key.{name}.seed")
    assert SigningKey.from_seed(seed).public == vector(f"key.{name}.public")
    assert KEYS[name].id == vector(f"key.{name}.public").hex()


def same(a: CborValue, b: CborValue) -> bool:
    """Equal values of equal types all the way down (``True == 1`` in Python, not in CBOR)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("name", sorted(CBOR_VALUES))
def test_cbor_vector_decodes_to_its_value(name: str) -> None:
    decoded = codec.decode(vector(name))
    assert same(decoded, CBOR_VALUES[name])
    assert codec.encode(decoded) == vector(name)


@pytest.mark.parametrize("name", CBOR_REJECTED)
def test_cbor_vector_is_refused(name: str) -> None:
    with pytest.raises(DecodeError):
        codec.decode(vector(name))


@pytest.mark.parametrize("name", RAW_EVENTS)
def test_event_vector_decodes_and_verifies(name: str) -> None:
    raw = vector(f"event.{name}.raw")
    event = Event.decode(raw)
    expected = EVENTS[name]
    assert (event.author, event.seq, event.prev, event.ts) == (
        expected.author,
        expected.seq,
        expected.prev,
        expected.ts,
    )
    assert event.body == expected.body
    assert event.raw == raw
    assert event.id == hashlib.sha256(raw).digest() == vector(f"event.{name}.id")
    assert event.sig == raw[-64:] == vector(f"event.{name}.sig")
    event.check_signature(vector("event.genesis.id"))
    if name != "genesis":  # a genesis is signed under zeros, whatever the network
        with pytest.raises(BadSignature):
            event.check_signature(hashlib.sha256(b"another mesh").digest())


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_event_signature_covers_domain_network_and_seven_items(name: str) -> None:
    event = EVENTS[name]
    network = ZERO_ID if name == "genesis" else vector("event.genesis.id")
    body = event.body.to_cbor()
    seven: list[CborValue] = [1, event.author, event.seq, event.prev, event.ts, event.kind, body]
    message = DOMAIN_EVENT + network + codec.encode(seven)
    Ed25519PublicKey.from_public_bytes(event.author).verify(vector(f"event.{name}.sig"), message)
    eight = codec.encode([*seven, vector(f"event.{name}.sig")])
    assert hashlib.sha256(eight).digest() == vector(f"event.{name}.id")
    if name == "send":
        assert message == vector("event.send.signed")


def test_the_genesis_is_signed_under_zeros_only() -> None:
    network = vector("event.genesis.id")
    message = DOMAIN_EVENT + network + GENESIS.signed_part()
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(POOL.public).verify(GENESIS.sig, message)


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_frame_vector_decodes(name: str) -> None:
    frame = decode_frame(vector(name))
    assert frame == FRAMES[name]
    assert encode_frame(frame) == vector(name)


def test_hello_signature_covers_its_nine_fields() -> None:
    hello = decode_frame(vector("frame.hello"))
    assert isinstance(hello, Hello)
    assert hello.signature_valid()
    items = codec.decode(vector("frame.hello"))
    assert isinstance(items, list)
    assert items[:2] == [1, FrameType.HELLO]
    nine, sig = items[2:11], items[11]
    assert isinstance(sig, bytes)
    Ed25519PublicKey.from_public_bytes(NODE.public).verify(sig, DOMAIN_HELLO + codec.encode(nine))


def test_heads_digest_definition() -> None:
    replica, _ = replayed()
    assert sorted(replica.head_triples()) == sorted(HEADS_AFTER)
    restated = hashlib.sha256(
        b"".join(a + s.to_bytes(8, "big") + h for a, s, h in sorted(HEADS_AFTER))
    ).digest()
    assert restated == heads_digest(replica.head_triples()) == vector("heads.digest")
    assert vector("heads.digest.empty") == hashlib.sha256(b"").digest()
    frame = decode_frame(vector("frame.heads"))
    assert isinstance(frame, Heads)
    assert frame.digest == vector("heads.digest")


def test_ledger_state_hash_definition() -> None:
    replica, plan = replayed()
    assert plan is not None
    assert not plan.rejected
    assert [item.event for item in plan.accepted] == list(EVENTS.values())
    ledger = replica.ledger
    assert ledger.conserved()
    assert (ledger.balance[POOL.public], ledger.balance[ALICE.public]) == (TOTAL - AMOUNT, AMOUNT)
    assert hashlib.sha256(vector("ledger.state")).digest() == vector("ledger.state_hash")
    assert ledger.state_hash() == vector("ledger.state_hash")


# --- the document's tables -----------------------------------------------------------------------


def table_rows() -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in doc_text().splitlines()
        if line.startswith("|")
    ]


@pytest.mark.parametrize("frame_type", list(FrameType), ids=lambda t: t.name)
def test_frame_table(frame_type: FrameType) -> None:
    rows = [r for r in table_rows() if r[:2] == [str(int(frame_type)), f"`{frame_type.name}`"]]
    assert len(rows) == 1, f"no single row for frame type {frame_type.name}"
    assert rows[0][2].count("`") // 2 == FIELD_COUNTS[frame_type]


@pytest.mark.parametrize("reason", list(CloseReason), ids=lambda r: r.name)
def test_close_reason_table(reason: CloseReason) -> None:
    assert [str(int(reason)), f"`{reason.name.lower()}`"] in [r[:2] for r in table_rows()]


def test_domains_are_documented() -> None:
    text = doc_text()
    for domain in (DOMAIN_EVENT, DOMAIN_HELLO, DOMAIN_SIGNAL, DOMAIN_LINK_STATE, DOMAIN_ROUTED):
        assert domain.endswith(b"\x00")
        assert f"`{domain[:-1].decode()}\\0`" in text


def _error_classes() -> list[type[errors.LiberationError]]:
    roots = (errors.RemoteProtocolError, errors.EventRejected)
    found = [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, roots) and cls not in roots
    ]
    return [*roots, *found]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_penalty_table(cls: type[errors.LiberationError]) -> None:
    penalty = getattr(cls, "penalty", None)
    row = [f"`{cls.__name__}`", f"`{cls.code}`", str(penalty)]
    assert row in [r[:3] for r in table_rows()]


def test_limits_table() -> None:
    documented: dict[str, object] = {}
    for row in table_rows():
        name = row[0].strip("`")
        if row[0] == f"`{name}`" and name.isupper() and hasattr(limits, name):
            documented[name] = ast.literal_eval(row[1])
    constants = {
        name: value
        for name, value in vars(limits).items()
        if name.isupper() and isinstance(value, int | float)
    }
    assert documented == constants
