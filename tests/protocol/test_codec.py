"""Deterministic CBOR: RFC 8949 vectors, strict rejections, round trips and canonicality."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from protocol import codec
from protocol.codec import MAX_DEPTH, CborValue
from protocol.errors import DecodeError

UINT64_MAX = (1 << 64) - 1

# --- known encodings ----------------------------------------------------------------------------

#: (value, encoding in hex). Most come from RFC 8949 Appendix A; the rest are the boundaries of each
#: head size, computed by hand from RFC 8949 section 3.
VECTORS: list[tuple[CborValue, str]] = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (255, "18ff"),
    (256, "190100"),
    (1000, "1903e8"),
    (65535, "19ffff"),
    (65536, "1a00010000"),
    (1_000_000, "1a000f4240"),
    (2**32 - 1, "1affffffff"),
    (2**32, "1b0000000100000000"),
    (1_000_000_000_000, "1b000000e8d4a51000"),
    (UINT64_MAX, "1bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-24, "37"),
    (-25, "3818"),
    (-100, "3863"),
    (-256, "38ff"),
    (-257, "390100"),
    (-1000, "3903e7"),
    (-(2**32) - 1, "3b0000000100000000"),
    (-(2**64), "3bffffffffffffffff"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    (b"\xaa" * 24, "5818" + "aa" * 24),
    (b"\x00" * 256, "590100" + "00" * 256),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ('"\\', "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    (
        {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
        "a56161614161626142616361436164614461656145",
    ),
    # Keys sort bytewise by their *encoding*, so a shorter key sorts first ("b" before "aa"),
    # unlike plain string order (RFC 8949 section 4.2.1).
    ({"aa": 1, "b": 2}, "a261620262616101"),
    ({"\u00fc": 1, "z": 2}, "a2617a0262c3bc01"),
]


@pytest.mark.parametrize(("value", "encoding"), VECTORS, ids=[v[1][:24] for v in VECTORS])
def test_known_encoding(value: CborValue, encoding: str) -> None:
    raw = bytes.fromhex(encoding)
    assert codec.encode(value) == raw
    assert_same(codec.decode(raw), value)


def test_tuples_encode_as_arrays() -> None:
    assert codec.encode((1, (2, 3))) == codec.encode([1, [2, 3]])
    assert codec.decode(codec.encode((1, (2, 3)))) == [1, [2, 3]]


def test_map_insertion_order_does_not_matter() -> None:
    assert codec.encode({"b": 1, "aa": 2, "a": 3}) == codec.encode({"a": 3, "aa": 2, "b": 1})


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (UINT64_MAX + 1, ValueError),
        (-(2**64) - 1, ValueError),
        (1.0, TypeError),
        ({1: 2}, TypeError),
        ({b"a": 2}, TypeError),
        (bytearray(b"a"), TypeError),
        ({1, 2}, TypeError),
    ],
)
def test_encoder_refuses_values_outside_the_subset(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        codec.encode(value)  # type: ignore[arg-type]


def test_decoder_accepts_bytes_like_input() -> None:
    assert codec.decode(bytearray(b"\x83\x01\x02\x03")) == [1, 2, 3]  # type: ignore[arg-type]
    assert codec.decode(memoryview(b"\x42ab")) == b"ab"  # type: ignore[arg-type]


def test_decoder_refuses_text_input() -> None:
    with pytest.raises(DecodeError):
        codec.decode("\x00")  # type: ignore[arg-type]


# --- strict rejections ----------------------------------------------------------------------------

REJECTED: dict[str, list[str]] = {
    "non-shortest integer": [
        "1800",
        "1817",
        "190000",
        "1900ff",
        "1a00000000",
        "1a0000ffff",
        "1b0000000000000000",
        "1b00000000ffffffff",
        "3800",
        "3817",
        "3900ff",
        "3a0000ffff",
        "3b00000000ffffffff",
    ],
    "non-shortest length": [
        "5800",
        "581700" + "00" * 22,
        "59000100",
        "7800",
        "780161",
        "7a0000000161",
        "980101",
        "9900010000",
        "b800",
        "b801616101",
    ],
    "indefinite length": [
        "1f",
        "3f",
        "5f4100ff",
        "7f6161ff",
        "9f01ff",
        "9fff",
        "bf616101ff",
        "bfff",
    ],
    "reserved additional information": ["1c", "1d", "1e", "3c", "5c", "7d", "9e", "bc", "dc"],
    "float": ["f90000", "f93c00", "fa47c35000", "fb3ff199999999999a", "fb7ff8000000000000"],
    "tag": ["c074323031332d30332d32315432303a30343a30305a", "c1190100", "c24100", "d82000", "c0"],
    "simple value": [
        "e0",
        "f0",
        "f3",
        "f7",
        "f818",
        "f820",
        "f8ff",
        "f814",
        "fc",
        "fd",
        "fe",
        "ff",
    ],
    "unsorted map keys": ["a2616202616101", "a262616101616202", "a262c3bc01617a02"],
    "duplicate map keys": ["a2616101616102", "a3616101616201616102", "a260016002"],
    "non-text map key": ["a10102", "a12001", "a141610102", "a18001", "a1a001", "a1f601", "a1f501"],
    "invalid UTF-8": [
        "61ff",
        "6180",
        "62c328",
        "62c0af",
        "63eda080",
        "64f4908080",
        "63e282",
        "a161ff01",
        "8161fe",
    ],
    "truncated": [
        "",
        "18",
        "1900",
        "1a000000",
        "1b00000000000000",
        "38",
        "4200",
        "6261",
        "8201",
        "84010203",
        "a1",
        "a16161",
        "a2616101",
        "f8",
    ],
    "trailing bytes": ["0000", "8000", "f5f5", "a000", "616161", "4100ff"],
    "length larger than the buffer": [
        "5bffffffffffffffff",
        "5b7fffffffffffffff00",
        "7affffffff61",
        "9bffffffffffffffff",
        "9a7fffffff00",
        "bbffffffffffffffff",
        "ba0000ffff616100",
        "8342",
    ],
}


def _rejected_cases() -> list[tuple[str, str]]:
    return [(family, text) for family, hexes in REJECTED.items() for text in hexes]


@pytest.mark.parametrize(("family", "encoding"), _rejected_cases())
def test_rejected(family: str, encoding: str) -> None:
    with pytest.raises(DecodeError):
        codec.decode(bytes.fromhex(encoding))


def _nested_arrays(levels: int) -> bytes:
    return b"\x81" * levels + b"\x00"


def _nested_maps(levels: int) -> bytes:
    return b"\xa1\x61\x6b" * levels + b"\x00"


def test_nesting_up_to_max_depth_is_accepted() -> None:
    value = codec.decode(_nested_arrays(MAX_DEPTH))
    for _ in range(MAX_DEPTH):
        assert isinstance(value, list)
        value = value[0]
    assert value == 0
    assert codec.decode(_nested_maps(MAX_DEPTH)) is not None
    mixed = b"\x81\xa1\x61\x6b" * (MAX_DEPTH // 2) + b"\x00"
    assert codec.encode(codec.decode(mixed)) == mixed


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, MAX_DEPTH + 2, 1_000, 100_000])
def test_nesting_deeper_than_max_depth_is_rejected(levels: int) -> None:
    for raw in (_nested_arrays(levels), _nested_maps(levels), b"\x81" * levels + b"\x80"):
        with pytest.raises(DecodeError):
            codec.decode(raw)


def test_every_proper_prefix_is_truncated() -> None:
    raw = codec.encode({"a": [1, -300, b"xyz", "\u00fc", None, True], "bb": {"c": 2**40}})
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            codec.decode(raw[:cut])


# --- properties -----------------------------------------------------------------------------------

INTS = st.integers(min_value=-(2**64), max_value=UINT64_MAX)
BOUNDARY_INTS = st.sampled_from(
    [
        b + d
        for b in (0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, UINT64_MAX)
        for d in (-1, 0, 1)
        if 0 <= b + d <= UINT64_MAX
    ]
).flatmap(lambda n: st.sampled_from([n, -1 - n]))
LEAVES = st.one_of(
    st.none(), st.booleans(), INTS, BOUNDARY_INTS, st.binary(max_size=300), st.text(max_size=40)
)


def values(depth: int = MAX_DEPTH) -> st.SearchStrategy[CborValue]:
    """Any value of the supported subset, nested at most ``depth`` containers deep."""
    if depth == 0:
        return LEAVES
    inner = st.deferred(lambda: values(depth - 1))
    return st.one_of(
        LEAVES,
        st.lists(inner, max_size=6),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=6), inner, max_size=6),
    )


def normal(value: CborValue) -> object:
    """``value`` as the decoder returns it (tuples become lists), tagged so True != 1."""
    if isinstance(value, bool) or value is None:
        return ("simple", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, bytes):
        return ("bytes", value)
    if isinstance(value, str):
        return ("text", value)
    if isinstance(value, list | tuple):
        return ("array", [normal(v) for v in value])
    assert isinstance(value, dict)
    return ("map", {k: normal(v) for k, v in value.items()})


def assert_same(decoded: CborValue, expected: CborValue) -> None:
    assert normal(decoded) == normal(expected)


@given(values())
@example([[[[[[[[0]]]]]]]])
@example({"": {"a": {"aa": {"b": {"\u00fc": [True, False, None]}}}}})
def test_round_trip(value: CborValue) -> None:
    raw = codec.encode(value)
    decoded = codec.decode(raw)
    assert_same(decoded, value)
    assert codec.encode(decoded) == raw


def _mutated_encodings() -> st.SearchStrategy[bytes]:
    """Valid encodings with a few bytes replaced, inserted or removed: near misses."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        raw = bytearray(codec.encode(draw(values(3))))
        for _ in range(draw(st.integers(1, 3))):
            op = draw(st.sampled_from(["set", "insert", "delete"]))
            pos = draw(st.integers(0, len(raw)))
            if op == "insert" or not raw:
                raw[pos:pos] = draw(st.binary(min_size=1, max_size=4))
            elif op == "set":
                raw[min(pos, len(raw) - 1)] = draw(st.integers(0, 255))
            else:
                del raw[min(pos, len(raw) - 1)]
        return bytes(raw)

    return mutate()


@given(st.one_of(st.binary(max_size=64), _mutated_encodings()))
@example(b"\x18\x17")
@example(b"\xa2\x61\x62\x02\x61\x61\x01")
@example(b"\xf9\x00\x00")
def test_decode_accepts_only_canonical_encodings(raw: bytes) -> None:
    """decode accepts x only if encode(decode(x)) == x; anything else is a DecodeError."""
    try:
        value = codec.decode(raw)
    except DecodeError:
        return
    assert codec.encode(value) == raw
