"""Identifiers: a prefix and 26 time-sortable characters (ULID-like).

Ids are made by the application, not the database, so every table can lead
its primary key with ``team_id`` (a distribution key for Citus) and ledger
cursors can sort by id.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """A new id such as ``hold_01jd...``: monotonic within this process."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _last_rand += 1
        else:
            _last_ms = ms
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1
        rand = _last_rand & ((1 << 80) - 1)
    return f"{prefix}_{_encode(ms, 10)}{_encode(rand, 16)}"
