"""One judgement of URL paths, shared by artifact URIs (trust) and fetch URLs (remote).

Servers and proxies disagree on paths: Tomcat and some gateways treat `..;` as `..`, some decode
percent-encoding twice or more, some fold a fullwidth dot (U+FF0E) into `.` (NFKC). Rather than guess
how every consumer normalises, a path that any of them could read differently from us is refused: `;` path
parameters, encoded dots, slashes, backslashes or percent signs (`%2e`, `%2f`, `%5c`, `%25`: the last one
is how encoding is applied twice or more), raw non-ASCII, and `.`/`..` segments after decoding and NFKC.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

_ENCODED_SEPARATOR = re.compile(r"%(2e|2f|5c|25|00)", re.IGNORECASE)


def path_violation(path: str) -> str | None:
    """None when `path` reads the same to every consumer; otherwise why not, as a phrase."""
    if not path.isascii():
        return "has a non-ASCII character in its path (percent-encode it, and never a look-alike dot)"
    if ";" in path:
        return "has a ';' path parameter in its path (as in '..;'), which servers read differently"
    if match := _ENCODED_SEPARATOR.search(path):
        return f"has an encoded dot, slash, backslash, NUL or percent sign ({match.group(0)}) in its path"
    decoded = unicodedata.normalize("NFKC", unquote(path))
    if "\\" in decoded or "\x00" in decoded:
        return "has an encoded backslash or NUL in its path"
    if any(segment in {".", ".."} for segment in decoded.split("/")):
        return "has a '.' or '..' path segment"
    return None
