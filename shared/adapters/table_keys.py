"""Encode arbitrary text (ARM ids) as Azure Table Storage PartitionKey/RowKey values.

Table keys may not contain ``/ \\ # ?`` or control characters, and are limited to 1 KiB. ARM ids
are full of ``/``. This module maps any string to a safe key, reversibly when the key is short
enough, with no SDK import (it is pure and property-tested).

Choices, and why:

* **Whitelist, not blacklist.** Only ``A-Z a-z 0-9 - . _`` pass through; every other character is
  written as its UTF-8 bytes, each as ``~XX`` (upper-case hex). Encoding only the documented
  forbidden characters is not enough in practice: ``%`` in a key is double-decoded by the Table
  service on point operations (GET/MERGE/PUT/DELETE put the key in the URL path; Azure Storage
  team, "PartitionKey or RowKey containing the percent character causes some Windows Azure Tables
  APIs to fail"), ``'`` must be doubled inside the URL literal and has broken Azurite and Storage
  Explorer deletes (Azurite #1377, #1418), and ``+``/space/parentheses are URL-encoded differently
  by different clients. The whitelisted characters are the RFC 3986 "unreserved" set, which no
  client or server encodes or decodes, so the key on the wire is byte-for-byte the stored key.
* **``~`` as the escape character** (not ``%``): it is unreserved too (Python's ``quote`` leaves it
  alone, so escapes do not grow again in URLs), it never occurs in ARM names, and it keeps ids
  readable (``~2Fsubscriptions~2F...``).
* **ASCII-only output**, so the length in characters is the size: 512 characters are exactly 1 KiB
  in UTF-16 (how the service measures) and 512 bytes in UTF-8. Azurite enforces the same 512
  characters (``DEFAULT_KEY_MAX_LENGTH``; 513 is rejected with ``InvalidInput``).
* **Prefix-preserving.** Each character maps to a fixed, self-delimiting code word, so
  ``encode_key(a + b) == encode_key(a) + encode_key(b)`` and a key starts with ``encode_key(p)``
  exactly when the text starts with ``p``: a range query ``RowKey ge lo and RowKey lt hi`` over an
  encoded prefix finds every id under, say, a resource group. (Lexicographic order of whole keys
  is *not* preserved; nothing relies on it beyond determinism.)
* **Too long: truncate and hash.** A key that would exceed :data:`MAX_KEY_LENGTH` becomes its first
  code words, the marker ``~~`` (never produced by the escaping, because ``~`` is always followed
  by two hex digits) and the SHA-256 of the text. That form is deterministic but not reversible;
  the store keeps the real id in a property, so reading never depends on :func:`decode_key`.
  Real ARM ids stay far below the limit (about 150-350 characters).
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "ESCAPE",
    "FORBIDDEN_KEY_CHARS",
    "HASH_MARK",
    "MAX_KEY_LENGTH",
    "decode_key",
    "encode_key",
    "is_hashed_key",
    "is_valid_key",
]

ESCAPE = "~"
"""Starts every escape sequence ``~XX``."""

HASH_MARK = "~~"
"""Separates the kept prefix from the SHA-256 hex digest in a truncated key."""

MAX_KEY_LENGTH = 512
"""Longest key written: 512 ASCII characters = 1 KiB as UTF-16, the documented key limit."""

FORBIDDEN_KEY_CHARS = frozenset(
    "/\\#?"
    + "".join(chr(c) for c in range(0x00, 0x20))
    + "".join(chr(c) for c in range(0x7F, 0xA0))
)
"""The characters Azure Table Storage rejects in PartitionKey and RowKey."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_ESCAPED = re.compile(r"~([0-9A-F]{2})")
_SAFE_OR_ESCAPED = re.compile(r"(?:[A-Za-z0-9._-]|~[0-9A-F]{2})*")
_DIGEST_LENGTH = 64  # sha256 hex
_KEPT_PREFIX = MAX_KEY_LENGTH - len(HASH_MARK) - _DIGEST_LENGTH


def _escape(match: re.Match[str]) -> str:
    raw = match.group().encode("utf-8", "surrogatepass")
    return "".join(f"{ESCAPE}{byte:02X}" for byte in raw)


def _escape_all(text: str) -> str:
    return _UNSAFE.sub(_escape, text)


def _cut_at_code_word(encoded: str, limit: int) -> str:
    """The longest prefix of ``encoded`` of at most ``limit`` characters that does not split
    an escape sequence, so a truncated key still starts with whole code words."""
    prefix = encoded[:limit]
    tail = prefix[-2:]
    if ESCAPE in tail:
        prefix = prefix[: len(prefix) - len(tail) + tail.index(ESCAPE)]
    return prefix


def encode_key(text: str) -> str:
    """A valid Table key for ``text``: reversible escaping, or a truncated hashed form when the
    escaped text would be longer than :data:`MAX_KEY_LENGTH` characters.

    Case is kept; callers that want case-insensitive identity (ARM ids) lower-case first.
    """
    encoded = _escape_all(text)
    if len(encoded) <= MAX_KEY_LENGTH:
        return encoded
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return _cut_at_code_word(encoded, _KEPT_PREFIX) + HASH_MARK + digest


def is_hashed_key(key: str) -> bool:
    """True when ``key`` is the truncated, hashed (irreversible) form."""
    return HASH_MARK in key


def decode_key(key: str) -> str:
    """The text that :func:`encode_key` turned into ``key``.

    Raises :class:`ValueError` for a hashed key (irreversible by design) and for any string that
    :func:`encode_key` cannot have produced, so a corrupted key is never silently misread.
    """
    if is_hashed_key(key):
        raise ValueError(f"key is a truncated hash and cannot be decoded: {key[:40]!r}...")
    if _SAFE_OR_ESCAPED.fullmatch(key) is None:
        raise ValueError(f"not an encoded key: {key[:80]!r}")
    chunks: list[bytes] = []
    position = 0
    for match in _ESCAPED.finditer(key):
        chunks.append(key[position : match.start()].encode("ascii"))
        chunks.append(bytes.fromhex(match.group(1)))
        position = match.end()
    chunks.append(key[position:].encode("ascii"))
    try:
        text = b"".join(chunks).decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as error:
        raise ValueError(f"not an encoded key (bad UTF-8 escape): {key[:80]!r}") from error
    if _escape_all(text) != key:
        raise ValueError(f"not a canonical encoded key: {key[:80]!r}")
    return text


def is_valid_key(key: str) -> bool:
    """True when Table Storage accepts ``key``: no forbidden character and at most 1 KiB."""
    return len(key.encode("utf-16-le")) <= 2 * MAX_KEY_LENGTH and not (
        FORBIDDEN_KEY_CHARS.intersection(key)
    )
