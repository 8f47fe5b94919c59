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
# Two characters (10 bits) per lookup: a sweep makes ~6 ids per team, and
# encoding them one character at a time was a tenth of its Python time.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
# os.urandom is a system call (slow in some sandboxes); draw its bytes in bulk.
_RANDOM_CHUNK = 10 * 256
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
_ms_text = ""
_head = ""  # _ms_text and the random part's first 12 characters
_head_bits = -1  # the random part's top 60 bits that _head encodes
_random = b""
_random_at = 0


def _encode(value: int, length: int) -> str:
    """``value``'s last ``length`` base32 characters (``length`` is even)."""
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in range(5 * length - 10, -1, -10)])


def _random_80() -> int:
    global _random, _random_at
    if _random_at >= len(_random):
        _random, _random_at = os.urandom(_RANDOM_CHUNK), 0
    start = _random_at
    _random_at += 10
    return int.from_bytes(_random[start : start + 10], "big")


def _forget_in_child() -> None:
    # A forked child must not replay its parent's random bytes or counter.
    global _lock, _last_ms, _last_rand, _ms_text, _head, _head_bits, _random, _random_at
    _lock = threading.Lock()
    _last_ms, _last_rand, _ms_text, _random, _random_at = 0, 0, "", b"", 0
    _head, _head_bits = "", -1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def new_id(prefix: str) -> str:
    """A new id such as ``hold_01jd...``: monotonic within this process."""
    global _last_ms, _last_rand, _ms_text, _head, _head_bits
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _last_rand += 1
        else:
            _last_ms = ms
            _ms_text = _encode(ms, 10)
            _last_rand = _random_80() >> 1
            _head_bits = -1
        rand = _last_rand & ((1 << 80) - 1)
        # Ids made in the same millisecond count up from one random start: only
        # the last four characters change, except when the count carries.
        if rand >> 20 != _head_bits:
            _head_bits = rand >> 20
            _head = _ms_text + _encode(_head_bits, 12)
        head = _head
    pairs = _PAIRS
    return f"{prefix}_{head}{pairs[(rand >> 10) & 1023]}{pairs[rand & 1023]}"
