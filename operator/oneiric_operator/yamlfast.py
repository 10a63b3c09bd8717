"""PyYAML's safe loading with libyaml's scanner and parser, and PyYAML's own composer and constructor.

The pure-Python scanner is nearly all of the cost of reading a large YAML text. PyYAML's `CSafeLoader`
is fast but composes nodes in C: there is no hook to refuse an anchor or cap the depth before a node
exists, and its recursion is not bounded by Python's limit. Here libyaml only turns text into events;
composing and constructing stay the Python classes every caller already subclasses and hardens, so a
loader built on `SafeEventLoader` reads documents exactly as one built on `yaml.SafeLoader`.

Most texts are plain data (no anchors, tags, merges, duplicate keys or timestamps), and for those
`plain_documents` builds the values straight from the events, skipping nodes; anything else raises
`Unusual` and the full loader reads the text again and gives its verdict, so results never differ.

libyaml words some syntax errors differently; callers that show the message re-read a refused text
with `yaml.SafeLoader` (see `reference_error`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

WITH_LIBYAML: bool = bool(getattr(yaml, "__with_libyaml__", False))

if WITH_LIBYAML:
    from yaml._yaml import CParser

    class SafeEventLoader(Composer, CParser, SafeConstructor, Resolver):
        """`yaml.SafeLoader`, with libyaml producing the events."""

        def __init__(self, stream: str | bytes) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml

    class SafeEventLoader(yaml.SafeLoader):  # type: ignore[no-redef]
        """Without libyaml: the pure-Python `yaml.SafeLoader` itself."""


def libyaml_reads_as_pyyaml(text: str) -> bool:
    """Whether libyaml may read `text`: it is there, and the text has no tab and no byte order mark
    past its first character.

    libyaml accepts a tab where PyYAML refuses one (`a:<tab>b`, `[b,<tab>c]`, `b<tab># c`), and skips
    a byte order mark at the start of a later line where PyYAML refuses it. Reading such a text
    differently from the library would be a parser differential, so any text with either is read by
    PyYAML alone; manifests and generated YAML practically never hold one.
    """
    return WITH_LIBYAML and "\t" not in text and text.find("\ufeff", 1) < 0


class Unusual(Exception):
    """The text is not plain data; read it with the full loader, which gives the verdict."""


_SCALAR_TAGS = {
    "tag:yaml.org,2002:str": None,
    "tag:yaml.org,2002:null": SafeConstructor.construct_yaml_null,
    "tag:yaml.org,2002:bool": SafeConstructor.construct_yaml_bool,
    "tag:yaml.org,2002:int": SafeConstructor.construct_yaml_int,
    "tag:yaml.org,2002:float": SafeConstructor.construct_yaml_float,
}
_CONSTRUCTOR = SafeConstructor()


def plain_documents(
    text: str,
    *,
    implicit_resolvers: dict[Any, list[tuple[str, Any]]],
    max_depth: int,
    sizes: list[int] | None = None,
) -> list[Any]:
    """Every document of `text`, built straight from libyaml's events, when the text is plain data.

    Plain means: no anchor, alias or explicit tag; scalars that resolve to str, null, bool, int or
    float; distinct scalar mapping keys (no `<<` merge); no node deeper than `max_depth`; valid YAML.
    On plain data the result equals the full loader's; on anything else this raises `Unusual`, so the
    full loader decides, with the same verdict and message as ever. Nodes are never built.

    `sizes`, when given, receives each document's number of values (scalars, keys, lists and
    mappings). Plain data has no aliases, so that is what the document holds fully expanded, and a
    caller bounding expansion need not walk the document again.
    """
    if not libyaml_reads_as_pyyaml(text):
        raise Unusual
    documents: list[Any] = []
    # The open container is held in locals (`container`, `in_list`, the mapping's pending `key`); the
    # stack keeps its parents' states, so its length is the number of open containers.
    stack: list[tuple[Any, bool, Any]] = []
    container: Any = None
    in_list = False
    key: Any = _NO_KEY
    root: Any = None
    nodes = 0
    resolved: dict[str, Any] = {}  # plain scalars repeat (keys, enum values): resolve each text once
    scalar_event, mapping_start, sequence_start = (
        yaml.ScalarEvent,
        yaml.MappingStartEvent,
        yaml.SequenceStartEvent,
    )
    mapping_end, sequence_end, alias_event = yaml.MappingEndEvent, yaml.SequenceEndEvent, yaml.AliasEvent
    document_end, stream_end = yaml.DocumentEndEvent, yaml.StreamEndEvent
    parser = CParser(text)
    get_event = parser.get_event
    try:
        while True:
            try:
                event: Any = get_event()
            except yaml.YAMLError:
                raise Unusual from None
            kind = type(event)
            if kind is scalar_event:
                if event.anchor is not None or event.tag is not None or len(stack) >= max_depth:
                    raise Unusual
                nodes += 1
                value: Any = event.value
                if event.implicit[0]:
                    known = resolved.get(value, _NO_KEY)
                    if known is _NO_KEY:
                        known = resolved[value] = _resolve_plain(value, implicit_resolvers)
                    value = known
            elif kind is mapping_start or kind is sequence_start:
                if event.anchor is not None or event.tag is not None or len(stack) >= max_depth:
                    raise Unusual
                nodes += 1
                stack.append((container, in_list, key))
                in_list = kind is sequence_start
                container = [] if in_list else {}
                key = _NO_KEY
                continue
            elif kind is mapping_end or kind is sequence_end:
                value = container
                container, in_list, key = stack.pop()
            elif kind is document_end:
                documents.append(root)
                if sizes is not None:
                    sizes.append(nodes)
                root = None
                nodes = 0
                continue
            elif kind is stream_end:
                return documents
            elif kind is alias_event:
                raise Unusual
            else:  # stream and document starts
                continue
            if container is None:
                root = value
            elif in_list:
                container.append(value)
            elif key is not _NO_KEY:
                container[key] = value
                key = _NO_KEY
            else:
                try:
                    if value in container:
                        raise Unusual
                except TypeError:  # an unhashable key
                    raise Unusual from None
                key = value
    finally:
        parser.dispose()


_NO_KEY: Any = object()
"""No key pending in the open mapping (and no resolution cached): distinct from every YAML value."""


def _resolve_plain(value: str, implicit_resolvers: dict[Any, list[tuple[str, Any]]]) -> Any:
    tag = next(
        (
            tag
            for tag, regexp in (*implicit_resolvers.get(value[:1], ()), *implicit_resolvers.get(None, ()))
            if regexp.match(value)
        ),
        None,
    )
    if tag is None:
        return value
    if tag not in _SCALAR_TAGS:
        raise Unusual  # a timestamp, `<<` merge, `=` value, or a resolver added later
    construct = _SCALAR_TAGS[tag]
    if construct is None:
        return value
    try:
        return construct(_CONSTRUCTOR, yaml.ScalarNode(tag, value))
    except Exception:  # e.g. an int longer than Python converts: the full loader words it
        raise Unusual from None


PLAIN_MAX_DEPTH = 64
"""Deeper documents go through the full loader, which reports them as it always did."""


def safe_load_all(text: str) -> Iterator[Any]:
    """`yaml.safe_load_all`, with libyaml's parser when it is there: plain data straight from events,
    anything else lazily through `SafeEventLoader`, document by document as before."""
    return (document for document, _ in safe_load_all_sized(text))


def safe_load_all_sized(text: str) -> Iterator[tuple[Any, int | None]]:
    """`safe_load_all`, each document with its number of values when it was read as plain data (no
    aliases, so nothing expands), or None when the full loader read it (aliases may repeat values)."""
    sizes: list[int] = []
    try:
        documents = plain_documents(
            text,
            implicit_resolvers=SafeEventLoader.yaml_implicit_resolvers,
            max_depth=PLAIN_MAX_DEPTH,
            sizes=sizes,
        )
    except Unusual:
        loader = SafeEventLoader if libyaml_reads_as_pyyaml(text) else yaml.SafeLoader
        return ((document, None) for document in yaml.load_all(text, Loader=loader))  # type: ignore[arg-type]
    return zip(documents, sizes, strict=True)


def reference_error(text: str) -> yaml.YAMLError | RecursionError | None:
    """The error `yaml.SafeLoader` raises on `text`, or None when it reads every document.

    Used only after libyaml refused `text`, so messages and positions stay what they were. libyaml
    refuses nesting deeper than its own limit as a syntax error; the pure-Python reader runs out of
    recursion there, which callers already report in their own words.
    """
    try:
        for _ in yaml.load_all(text, Loader=yaml.SafeLoader):
            pass
    except (yaml.YAMLError, RecursionError) as error:
        return error
    return None
