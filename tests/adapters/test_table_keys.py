"""Table key encoding: reversible, always valid, prefix-preserving, bounded."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shared.adapters.table_keys import (
    FORBIDDEN_KEY_CHARS,
    HASH_MARK,
    MAX_KEY_LENGTH,
    decode_key,
    encode_key,
    is_hashed_key,
    is_valid_key,
)

ARM_ID = (
    "/subscriptions/5f0c4a3e-8b1d-4e2a-9c6f-1a2b3c4d5e6f/resourcegroups/rg-payroll-network"
    "/providers/microsoft.network/networksecuritygroups/nsg-web"
)
CODE_WORDS = re.compile(r"(?:[A-Za-z0-9._-]|~[0-9A-F]{2})*")

# Text that stays under the length limit once encoded (at most 12 escape characters per char).
short_text = st.text(max_size=MAX_KEY_LENGTH // 12)
# ARM-flavoured text: mostly id characters, with the characters that must be escaped mixed in.
id_text = st.text(alphabet=st.sampled_from("abcz09-._/~%'#?\\ ()é\x00\x7f\x9f"), max_size=40)


def test_arm_id_is_readable_and_round_trips() -> None:
    key = encode_key(ARM_ID)
    assert key.startswith(
        "~2Fsubscriptions~2F5f0c4a3e-8b1d-4e2a-9c6f-1a2b3c4d5e6f~2Fresourcegroups"
    )
    assert decode_key(key) == ARM_ID


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("", ""),
        ("AZaz09-._", "AZaz09-._"),
        ("/", "~2F"),
        ("\\#?", "~5C~23~3F"),
        ("%", "~25"),  # double-decoded by the service on point operations
        ("'", "~27"),  # doubled inside the URL literal; broke Azurite deletes
        ("~", "~7E"),  # the escape character itself
        (" +()", "~20~2B~28~29"),
        ("é", "~C3~A9"),
        ("\x00\x1f\x7f\x9f", "~00~1F~7F~C2~9F"),
        ("\ud800", "~ED~A0~80"),  # a lone surrogate still round-trips
    ],
)
def test_known_encodings(text: str, key: str) -> None:
    assert encode_key(text) == key
    assert decode_key(key) == text


@given(short_text)
@example("\U0001f600/x")
def test_round_trip(text: str) -> None:
    key = encode_key(text)
    assert not is_hashed_key(key)
    assert decode_key(key) == text


@given(st.text(max_size=2000))
def test_output_is_always_a_valid_ascii_key(text: str) -> None:
    key = encode_key(text)
    assert key.isascii()
    assert len(key) <= MAX_KEY_LENGTH
    assert not FORBIDDEN_KEY_CHARS.intersection(key)
    assert is_valid_key(key)


@given(id_text, id_text)
def test_encoding_is_concatenative(a: str, b: str) -> None:
    """encode(a + b) == encode(a) + encode(b): what makes prefix range queries possible."""
    assert encode_key(a + b) == encode_key(a) + encode_key(b)


@given(id_text, id_text)
def test_prefix_of_key_iff_prefix_of_text(prefix: str, text: str) -> None:
    assert encode_key(prefix + text).startswith(encode_key(prefix))
    assert encode_key(text).startswith(encode_key(prefix)) == text.startswith(prefix)


def test_limit_is_exact() -> None:
    assert encode_key("a" * MAX_KEY_LENGTH) == "a" * MAX_KEY_LENGTH
    assert is_hashed_key(encode_key("a" * (MAX_KEY_LENGTH + 1)))
    assert is_hashed_key(encode_key("/" * (MAX_KEY_LENGTH // 3 + 1)))


@given(st.text(alphabet=st.sampled_from("ab/é"), min_size=200, max_size=600))
def test_long_text_gets_a_deterministic_bounded_hashed_key(text: str) -> None:
    key = encode_key(text)
    assert len(key) <= MAX_KEY_LENGTH
    assert key == encode_key(text)
    if not is_hashed_key(key):
        assert decode_key(key) == text
        return
    kept, digest = key.split(HASH_MARK)
    assert CODE_WORDS.fullmatch(kept), "truncation must not split an escape sequence"
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    full_escaping = "".join(encode_key(char) for char in text)
    assert full_escaping.startswith(kept)


def test_long_texts_with_a_common_prefix_get_distinct_keys() -> None:
    base = ARM_ID + "/" + "x" * 600
    one, two = encode_key(base + "1"), encode_key(base + "2")
    assert one != two
    assert one.startswith(encode_key(ARM_ID))  # the prefix survives truncation
    with pytest.raises(ValueError, match="truncated hash"):
        decode_key(one)


@pytest.mark.parametrize(
    "key",
    ["a/b", "~2f", "~41", "~ZZ", "~C3", "~", "a~2", "%2F", "a b", "~C3~28"],
)
def test_decode_rejects_what_encode_cannot_produce(key: str) -> None:
    with pytest.raises(ValueError, match="not"):
        decode_key(key)


def test_is_valid_key_matches_the_service_rules() -> None:
    assert is_valid_key("abc~2F")
    assert not is_valid_key("a/b")
    assert not is_valid_key("a\tb")
    assert not is_valid_key("a\x85b")
    assert is_valid_key("é" * MAX_KEY_LENGTH)  # 1 KiB as UTF-16
    assert not is_valid_key("x" * (MAX_KEY_LENGTH + 1))
