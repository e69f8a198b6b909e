"""Make user-controlled text safe for each output: HTML email, plain text, Adaptive Cards.

Everything that reaches an alert from the estate or from traffic is user-controlled: resource
names, tags, KQL result values, evidence keys and values, even finding titles (they embed names).
An attacker who can name a VM or make a flow appear in the logs can choose those strings, so every
one of them goes through exactly one of the functions below before it is placed in a message.

The steps, and why each exists:

* **Clean**: drop control characters (they can fake line breaks in subjects or corrupt JSON
  consumers) and the Unicode bidirectional overrides (``U+202A..U+202E``, ``U+2066..U+2069``) that
  make text display in a different order than it reads ("trojan source" spoofing of names).
* **Cap**: a 100 KB tag value must not become a 100 KB card (Teams rejects messages over about
  28 KB) or bury the email; the cut is marked with the number of characters left out.
* **Defang**: a URL chosen by an attacker must never become a clickable link in an alert that a
  responder trusts. ``https://evil.example`` is shown as ``hxxps[:]//evil.example`` (the usual
  convention in security tooling); ``www.`` becomes ``www[.]``. The only links in zts alerts are
  the Azure portal links zts builds itself from validated ARM ids.
* **HTML**: :func:`html.escape` with quotes, so values are text in element content and attributes.
* **Markdown** (cards): Adaptive Card ``TextBlock`` and ``FactSet`` text is a Markdown subset, so
  ``[click](https://evil.example)`` would become a link and ``**x**`` bold. Every ASCII character
  that can start inline Markdown is backslash-escaped (CommonMark treats ``\\`` + punctuation as the
  literal character), and list / quote / heading markers at the start of a line are escaped too.
  Cards are built as dicts and serialised with :mod:`json`, never by string templates, so a quote
  or brace in a value cannot leave its JSON string.
"""

from __future__ import annotations

import html
import re
from typing import Any, Final

__all__ = [
    "CARD_TEXT_LIMIT",
    "HTML_TEXT_LIMIT",
    "card_text",
    "clean",
    "defang",
    "html_text",
    "markdown_safe",
    "one_line",
    "plain_text",
]

CARD_TEXT_LIMIT: Final = 300
"""Characters of one user value in a card (a FactSet value, a title)."""

HTML_TEXT_LIMIT: Final = 2000
"""Characters of one user value in an email."""

_CONTROL: Final = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069"
    "\ufeff\ufff9-\ufffb]"
)
_NEWLINES: Final = re.compile(r"\r\n?|[\u2028\u2029\x85]")
_WHITESPACE_RUN: Final = re.compile(r"\s+")
_SCHEME: Final = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{1,31}):(//)", re.ASCII)
_HTTP: Final = re.compile(r"\bh(tt)(ps?)\[:\]//", re.IGNORECASE | re.ASCII)
_WWW: Final = re.compile(r"\b(www)\.", re.IGNORECASE | re.ASCII)
_MD_INLINE: Final = re.compile(r"([\\`*_\[\]()<>~|{}!#])")
_MD_LINE_START: Final = re.compile(r"^(\s*)([-+>=]|\d+[.)])", re.MULTILINE)


def clean(value: Any, limit: int) -> str:
    """``value`` as text without control or bidi-override characters, at most about ``limit``
    characters (a longer text is cut and says how much was left out). Newlines are kept as
    ``\\n``; tabs become spaces."""
    text = value if isinstance(value, str) else str(value)
    total = len(text)
    window = limit * 4 + 1024  # do not run the regexes over megabytes that are dropped anyway
    text = _NEWLINES.sub("\n", text[:window]).replace("\t", " ")
    text = _CONTROL.sub("", text)
    if len(text) > limit or total > window:
        kept = text[:limit].rstrip()
        text = f"{kept}… [{total - len(kept)} more characters]"
    return text


def one_line(value: Any, limit: int) -> str:
    """:func:`clean`, with every run of whitespace (newlines included) turned into one space:
    for subjects, names and table cells where a line break could fake structure."""
    return _WHITESPACE_RUN.sub(" ", clean(value, limit)).strip()


def defang(text: str) -> str:
    """Make URLs inert: ``https://x`` -> ``hxxps[:]//x``, ``ftp://x`` -> ``ftp[:]//x``,
    ``www.x`` -> ``www[.]x``."""
    text = _SCHEME.sub(r"\1[:]\2", text)
    text = _HTTP.sub(lambda m: "hxx" + m.group(2) + "[:]//", text)
    return _WWW.sub(r"\1[.]", text)


def markdown_safe(text: str) -> str:
    """Escape what Adaptive Card Markdown could turn into links or formatting."""
    text = _MD_INLINE.sub(r"\\\1", text)
    return _MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)


def plain_text(value: Any, limit: int = HTML_TEXT_LIMIT) -> str:
    """For the plain-text email body: cleaned, capped and defanged."""
    return defang(clean(value, limit))


def html_text(value: Any, limit: int = HTML_TEXT_LIMIT, *, single_line: bool = False) -> str:
    """For HTML element content or a quoted attribute: cleaned, capped, defanged, escaped;
    newlines become ``<br>`` unless ``single_line``."""
    text = one_line(value, limit) if single_line else clean(value, limit)
    escaped = html.escape(defang(text), quote=True)
    return escaped.replace("\n", "<br>")


def card_text(value: Any, limit: int = CARD_TEXT_LIMIT, *, single_line: bool = True) -> str:
    """For an Adaptive Card TextBlock or Fact: cleaned, capped, defanged, Markdown-escaped."""
    text = one_line(value, limit) if single_line else clean(value, limit)
    return markdown_safe(defang(text))
