"""Deterministic CBOR (RFC 8949 section 4.2), the one encoding of events and frames.

Only the subset the protocol needs: unsigned and negative integers, byte strings, UTF-8 text,
definite-length arrays, maps with text keys, ``false``, ``true`` and ``null``. No floats (amounts
are integer minor units), no tags, no indefinite lengths.

The decoder is strict: it accepts exactly the bytes the encoder would produce for the value it
returns, so every value has one encoding and every node computes the same event id. Anything else
(non-shortest integer, unsorted or repeated map key, trailing bytes, invalid UTF-8, lengths that
claim more than the buffer holds) raises `DecodeError`, and nothing else escapes it.
"""

from __future__ import annotations

import struct
from typing import TypeAlias, cast

from protocol.errors import DecodeError

CborValue: TypeAlias = (
    "int | bytes | str | bool"
    " | list[CborValue] | tuple[CborValue, ...] | dict[str, CborValue] | None"
)

#: Deepest nesting of arrays and maps accepted; events and frames need 4.
MAX_DEPTH = 8

_UINT64_MAX = (1 << 64) - 1
_pack_b = struct.Struct(">B").pack
_pack_h = struct.Struct(">H").pack
_pack_i = struct.Struct(">I").pack
_pack_q = struct.Struct(">Q").pack


def _head(major: int, value: int) -> bytes:
    mt = major << 5
    if value < 24:
        return bytes((mt | value,))
    if value < 0x100:
        return bytes((mt | 24, value))
    if value < 0x10000:
        return bytes((mt | 25,)) + _pack_h(value)
    if value < 0x100000000:
        return bytes((mt | 26,)) + _pack_i(value)
    return bytes((mt | 27,)) + _pack_q(value)


def _encode_into(value: CborValue, out: list[bytes], depth: int = 0) -> None:
    # bool first: it is a subclass of int.
    if value is True:
        out.append(b"\xf5")
    elif value is False:
        out.append(b"\xf4")
    elif value is None:
        out.append(b"\xf6")
    elif isinstance(value, int):
        if value >= 0:
            if value > _UINT64_MAX:
                raise ValueError("integer out of CBOR range")
            out.append(_head(0, value))
        else:
            if -1 - value > _UINT64_MAX:
                raise ValueError("integer out of CBOR range")
            out.append(_head(1, -1 - value))
    elif isinstance(value, bytes):
        out.append(_head(2, len(value)))
        out.append(value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out.append(_head(3, len(raw)))
        out.append(raw)
    elif isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            raise ValueError("nesting too deep to encode (decode would refuse it)")
        out.append(_head(4, len(value)))
        for item in value:
            _encode_into(item, out, depth + 1)
    elif isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise ValueError("nesting too deep to encode (decode would refuse it)")
        items: list[tuple[bytes, CborValue]] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("CBOR map keys must be text")
            raw_key = key.encode("utf-8")
            items.append((_head(3, len(raw_key)) + raw_key, item))
        items.sort(key=lambda pair: pair[0])
        out.append(_head(5, len(items)))
        for encoded_key, item in items:
            out.append(encoded_key)
            _encode_into(item, out, depth + 1)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as CBOR")


def encode(value: CborValue) -> bytes:
    """The deterministic encoding of ``value``."""
    out: list[bytes] = []
    _encode_into(value, out)
    return b"".join(out)


_SIMPLE: dict[int, CborValue] = {20: False, 21: True, 22: None}
_MIN_FOR_INFO = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}
_WIDTH_FOR_INFO = {24: 1, 25: 2, 26: 4, 27: 8}


def _argument(buf: bytes, end: int, info: int, pos: int) -> tuple[int, int]:
    """The argument of a head with additional information ``info``, which starts at ``pos``."""
    width = _WIDTH_FOR_INFO.get(info)
    if width is None:
        if info == 31:
            raise DecodeError("indefinite lengths are not canonical")
        raise DecodeError("reserved additional information")
    stop = pos + width
    if stop > end:
        raise DecodeError("truncated integer")
    value = buf[pos] if width == 1 else int.from_bytes(buf[pos:stop], "big")
    if value < _MIN_FOR_INFO[info]:
        raise DecodeError("non-shortest integer encoding")
    return value, stop


def _item(buf: bytes, end: int, pos: int, depth: int) -> tuple[CborValue, int]:
    # One function with locals only: this is the hot path of every frame and event.
    if pos >= end:
        raise DecodeError("truncated value")
    initial = buf[pos]
    major = initial >> 5
    info = initial & 0x1F
    pos += 1
    if major == 7:
        if info in _SIMPLE:
            return _SIMPLE[info], pos
        raise DecodeError("unsupported simple value or float")
    if info < 24:
        arg = info
    else:
        arg, pos = _argument(buf, end, info, pos)
    if major == 0:
        return arg, pos
    if major == 2:
        stop = pos + arg
        if stop > end:
            raise DecodeError("byte string longer than the buffer")
        return buf[pos:stop], stop
    if major == 3:
        stop = pos + arg
        if stop > end:
            raise DecodeError("text longer than the buffer")
        try:
            return buf[pos:stop].decode("utf-8"), stop
        except UnicodeDecodeError:
            raise DecodeError("text is not valid UTF-8") from None
    if major == 1:
        return -1 - arg, pos
    if depth >= MAX_DEPTH and major in (4, 5):
        raise DecodeError("nesting too deep")
    if major == 4:
        if arg > end - pos:
            raise DecodeError("array longer than the buffer")
        items: list[CborValue] = []
        append = items.append
        for _ in range(arg):
            value, pos = _item(buf, end, pos, depth + 1)
            append(value)
        return items, pos
    if major == 5:
        if arg * 2 > end - pos:
            raise DecodeError("map longer than the buffer")
        result: dict[str, CborValue] = {}
        previous_key = b""
        for _ in range(arg):
            key_start = pos
            if pos >= end or buf[pos] >> 5 != 3:
                raise DecodeError("map key is not text")
            key, pos = _item(buf, end, pos, depth + 1)
            encoded_key = buf[key_start:pos]
            if encoded_key <= previous_key:
                if encoded_key == previous_key:
                    raise DecodeError("repeated map key")
                raise DecodeError("map keys out of canonical order")
            previous_key = encoded_key
            value, pos = _item(buf, end, pos, depth + 1)
            result[cast(str, key)] = value
        return result, pos
    raise DecodeError("tags are not supported")


def decode(buf: bytes) -> CborValue:
    """The value whose deterministic encoding is exactly ``buf``."""
    if not isinstance(buf, bytes | bytearray | memoryview):
        raise DecodeError("expected bytes")
    data = bytes(buf)
    value, pos = _item(data, len(data), 0, 0)
    if pos != len(data):
        raise DecodeError("trailing bytes after value")
    return value
