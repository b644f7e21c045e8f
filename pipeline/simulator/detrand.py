"""Deterministic pseudo-random helpers keyed by arbitrary values."""

from __future__ import annotations

import hashlib
import random
import time


def digest_int(*parts: object) -> int:
    """Return a stable 64-bit integer derived from ``parts``."""
    key = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def rng_for(*parts: object) -> random.Random:
    """Return a ``random.Random`` seeded from ``parts`` (independent of call order)."""
    return random.Random(digest_int(*parts))


def hex_bits(rng: random.Random, nbits: int) -> str:
    """Return ``nbits`` random bits as zero-padded lowercase hex."""
    return format(rng.getrandbits(nbits), f"0{nbits // 4}x")


def fmt_time(ts: int) -> str:
    """Format a UNIX timestamp as Blockchair's 'YYYY-MM-DD hh:mm:ss' (UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def fmt_date(ts: int) -> str:
    """Format a UNIX timestamp as 'YYYY-MM-DD' (UTC)."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts))
