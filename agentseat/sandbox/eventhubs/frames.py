"""Pads the performatives proton writes to their full field counts.

The AMQP 1.0 spec (part 2.4 "framing", 1.4 "composite types") lets an encoder
leave trailing null fields off a list, and proton does. azure-eventhub 5.15.1's
pure-Python client reads frame fields by position and fails on a short `begin`
(`IndexError` at `frame[7]`; fixed upstream in azure-sdk-for-python PR #47660,
not yet released). This layer sits between proton's output and the socket and
appends explicit nulls (`0x40`, which AMQP reads as the field's default) so each
performative carries every field its definition has. Nothing else is changed.
"""

from __future__ import annotations

import struct

#: Field counts of the AMQP 1.0 performatives (transport part 2.7) and SASL frames (part 5.3.3).
FULL_FIELDS: dict[int, int] = {
    0x10: 10,  # open
    0x11: 8,  # begin
    0x12: 14,  # attach
    0x13: 11,  # flow
    0x14: 11,  # transfer
    0x15: 6,  # disposition
    0x16: 3,  # detach
    0x17: 1,  # end
    0x18: 1,  # close
    0x40: 1,  # sasl-mechanisms
    0x44: 2,  # sasl-outcome
}
_HEADER = 8
_NULL = b"\x40"


class FramePadder:
    """Feed proton's output bytes in; take whole, padded frames (and protocol headers) out."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> bytes:
        self._pending += data
        out = bytearray()
        while True:
            buf = self._pending
            if len(buf) >= 4 and buf[:4] == b"AMQP":
                if len(buf) < 8:
                    break
                out += buf[:8]  # a protocol header ("AMQP" 0 1 0 0 or the SASL one, 3 1 0 0)
                del buf[:8]
                continue
            if len(buf) < 4:
                break
            size = struct.unpack(">I", buf[:4])[0]
            if len(buf) < size:
                break
            out += pad_frame(bytes(buf[:size]))
            del buf[:size]
        return bytes(out)


def pad_frame(frame: bytes) -> bytes:
    """One frame, its performative padded; empty frames and unknown bodies pass unchanged."""
    doff = frame[4] * 4
    body = frame[doff:]
    if len(body) < 3 or body[0] != 0x00:
        return frame
    if body[1] == 0x53:  # smallulong descriptor
        code, pos = body[2], 3
    elif body[1] == 0x80 and len(body) >= 10:  # ulong descriptor
        code, pos = struct.unpack(">Q", body[2:10])[0], 10
    else:
        return frame
    full = FULL_FIELDS.get(code)
    if full is None or pos >= len(body):
        return frame
    ctor = body[pos]
    if ctor == 0x45:  # list0
        count, elements, rest = 0, b"", body[pos + 1 :]
    elif ctor == 0xC0:  # list8: size, count
        size, count = body[pos + 1], body[pos + 2]
        elements, rest = body[pos + 3 : pos + 2 + size], body[pos + 2 + size :]
    elif ctor == 0xD0:  # list32
        size, count = struct.unpack(">II", body[pos + 1 : pos + 9])
        elements, rest = body[pos + 9 : pos + 5 + size], body[pos + 5 + size :]
    else:
        return frame
    if count >= full:
        return frame
    elements += _NULL * (full - count)
    if ctor != 0xD0 and len(elements) + 1 <= 255:
        listed = bytes([0xC0, len(elements) + 1, full]) + elements
    else:
        listed = b"\xd0" + struct.pack(">II", len(elements) + 4, full) + elements
    new_body = body[:pos] + listed + rest
    header = frame[:doff]
    return struct.pack(">I", doff + len(new_body)) + header[4:] + new_body
