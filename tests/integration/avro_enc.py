"""avro_enc.py - a tiny, independent Avro binary encoder for funneld's Event
schema (conf/schemas/event.avsc) and its v0 writer schema, so tests can
build valid and deliberately broken messages without funneld's own codec.
"""

import struct


def zigzag(n):
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def string(s):
    b = s.encode() if isinstance(s, str) else s
    return zigzag(len(b)) + b


def opt_string(s):
    return zigzag(0) if s is None else zigzag(1) + string(s)


def opt_double(d):
    return zigzag(0) if d is None else zigzag(1) + struct.pack("<d", d)


TYPES = {"CLICK": 0, "CART": 1, "PURCHASE": 2}


def event(event_id="e1", user_id="u1", ts=1767225600000, type="CLICK", item_id=None,
          session_id=None, price=None, quantity=1, category=None, type_index=None):
    """Encode in the reader schema's field order. type_index overrides the
    enum index (to write one that does not exist)."""
    idx = TYPES[type] if type_index is None else type_index
    return (string(event_id) + string(user_id) + zigzag(ts) + zigzag(idx) + opt_string(item_id)
            + opt_string(session_id) + opt_double(price) + zigzag(quantity)
            + opt_string(category))


def event_v0(event_id="e1", user_id="u1", ts=1767225600000, type="CLICK", session_id=None,
             item_id=None, price=None):
    """Encode in conf/schemas/event.v0.avsc: user_id, event_id, type, ts,
    session_id, item_id, price (no quantity, no category)."""
    return (string(user_id) + string(event_id) + zigzag(TYPES[type]) + zigzag(ts)
            + opt_string(session_id) + opt_string(item_id) + opt_double(price))


def confluent(schema_id, body):
    return b"\x00" + struct.pack(">I", schema_id) + body
