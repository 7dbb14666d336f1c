"""The protobuf wire format, by hand: enough to read and write a Caffe
``.caffemodel`` without generated code.

Why not the ``protobuf`` package: it needs message classes, i.e. a
``.proto`` compiled by ``protoc`` (not installed everywhere) or descriptors
built at import time; and its Python parser copies every packed float of a
half-gigabyte VGG file into a Python list. The format itself is small
(https://protobuf.dev/programming-guides/encoding/): a message is a run of
``(field number << 3 | wire type)`` varint keys, each followed by a varint
(type 0), 8 bytes (1), a length-prefixed payload (2: strings, nested
messages, packed numbers) or 4 bytes (5). Packed float payloads become numpy
arrays over the file's bytes, without a copy.
"""

from __future__ import annotations

__all__ = ["WireError", "fields", "length_field", "read_varint", "varint", "varint_field"]

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def read_varint(buf, pos: int) -> tuple[int, int]:
    """``(value, next position)`` of the base-128 varint at ``pos``."""
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def fields(buf):
    """Yield ``(field number, wire type, value)`` for each field of the
    message in ``buf`` (a memoryview or bytes): ``value`` is an int for
    varints, the raw bytes (a memoryview slice) otherwise."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == VARINT:
            value, pos = read_varint(buf, pos)
        elif wire in (FIXED64, FIXED32, LENGTH):
            if wire == LENGTH:
                size, pos = read_varint(buf, pos)
            else:
                size = 8 if wire == FIXED64 else 4
            if pos + size > end:
                raise WireError(f"field {number}: {size} bytes announced, {end - pos} left")
            value = buf[pos:pos + size]
            pos += size
        else:  # 3, 4: groups (deprecated, not in caffe.proto); 6, 7: undefined
            raise WireError(f"field {number}: unsupported wire type {wire}")
        yield number, wire, value


# --- writing --------------------------------------------------------------------------


def varint(value: int) -> bytes:
    """The base-128 varint of a non-negative int (negative int32 / int64
    values take their 64-bit two's complement, as protobuf writes them)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    return varint(number << 3 | VARINT) + varint(value)


def length_field(number: int, payload) -> bytes:
    """A string, nested message or packed run: key, length, bytes."""
    payload = bytes(payload)
    return varint(number << 3 | LENGTH) + varint(len(payload)) + payload
