"""Masking credentials in the error lines that leave the pod (status, events, history).

Provider errors quote what they were given: connection URLs, DSNs, and sometimes the password
itself (`password 'hunter2' rejected`). Three rules, applied to every line: the user-info of any
URL (up to its last `@`, since a password may hold `/` or `@`), the value of any `password=`,
`token: ...`-like pair, and every value this process read from a mounted Secret, wherever it
appears (as read, and percent-encoded as URLs carry it).
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections import OrderedDict

MASK = "***"
MIN_SECRET_CHARS = 4
"""Shorter values are not masked: `1234` or `true` would mask half of every message."""
MAX_REMEMBERED = 256
"""Secret values remembered for masking (the newest); a process reads a handful."""

_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>\S+)")
_PAIR = re.compile(
    r"(?i)(?P<key>\b(?:password|passwd|pwd|pass|secret|token|api[-_]?key|access[-_]?key|auth|credentials?)"
    r"\b[\"']?\s*[=:]\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s&;,)\]}]+)"
)

_lock = threading.Lock()
_values: OrderedDict[str, None] = OrderedDict()


def remember_secret(value: str) -> None:
    """Mask `value` in every later error line of this process (values under 4 characters excepted)."""
    if len(value) < MIN_SECRET_CHARS:
        return
    with _lock:
        for form in {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}:
            if len(form) >= MIN_SECRET_CHARS:
                _values[form] = None
                _values.move_to_end(form)
        while len(_values) > MAX_REMEMBERED:
            _values.popitem(last=False)


def forget_secrets() -> None:
    """Forget every remembered value (tests)."""
    with _lock:
        _values.clear()


def _mask_values(text: str) -> str:
    with _lock:
        values = sorted(_values, key=len, reverse=True)  # a longer value first: it may contain a shorter
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def _mask_user_info(match: re.Match[str]) -> str:
    rest = match["rest"]
    at = rest.rfind("@")
    if at < 0:
        return match.group(0)
    return f"{match['scheme']}{MASK}{rest[at:]}"


def _mask_pair(match: re.Match[str]) -> str:
    value = match["value"]
    if value == MASK or value.strip("\"'") == MASK:
        return match.group(0)
    quote = value[0] if value[0] in "\"'" and len(value) > 1 and value[-1] == value[0] else ""
    return f"{match['key']}{quote}{MASK}{quote}"


def redact(text: str) -> str:
    """`text` with Secret values, URL user-info and credential pairs replaced by `***`."""
    text = _mask_values(text)
    text = _URL.sub(_mask_user_info, text)
    return _PAIR.sub(_mask_pair, text)
