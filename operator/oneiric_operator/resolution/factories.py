"""Factory policy: which `module.path:Attribute` strings a candidate may hand to the application.

The operator never imports a factory; the application does. So this is the one gate between a
Candidate (possibly from a remote manifest) and code that runs in the user's pods. The resolver,
the explain CLI, the manifest verifier and the admission webhook all call `factory_violation`, so
they can never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

FACTORY_MAX_LENGTH = 256
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_FACTORY = re.compile(rf"(?P<module>{_IDENTIFIER}(?:\.{_IDENTIFIER})*):(?P<attribute>{_IDENTIFIER})")

# Modules that run processes, import or execute code, deserialize objects, touch files, open raw
# sockets or control the interpreter. A denied module also denies every submodule. No allowlist can
# lift it. Factories are default-deny anyway (refused unless the StackPolicy's factoryAllowlist names
# their module); the denylist guards against an allowlist that is too broad (`logging`, `yaml`).
FACTORY_DENYLIST: frozenset[str] = frozenset(
    {
        # processes and the OS
        "os",
        "posix",
        "nt",
        "subprocess",
        "_posixsubprocess",
        "pty",
        "multiprocessing",
        "concurrent",
        "signal",
        "_thread",
        "asyncio",
        # the interpreter, imports and code execution
        "sys",
        "builtins",
        "__builtin__",
        "importlib",
        "imp",
        "runpy",
        "code",
        "codeop",
        "pdb",
        "bdb",
        "pkgutil",  # resolve_name imports any module
        "pkg_resources",  # load_entry_point imports any module
        "zipimport",
        "timeit",  # Timer runs a string as code
        "trace",
        "doctest",
        "profile",  # run / runctx execute a string
        "cProfile",
        "pydoc",  # pipepager / tempfilepager run a shell command
        "webbrowser",  # starts a browser process
        "logging.config",  # listen() accepts configuration (and code) over a socket
        "types",  # FunctionType / CodeType build functions from code objects
        "ctypes",
        "_ctypes",
        "cffi",
        # deserialization of arbitrary objects
        "pickle",
        "_pickle",
        "cPickle",
        "marshal",
        "shelve",
        "dill",
        "cloudpickle",
        "jsonpickle",
        "joblib",
        "dbm",
        "yaml",  # load / unsafe_load / full_load and Loader / UnsafeLoader / FullLoader build any object
        # files
        "shutil",
        "pathlib",
        "tempfile",
        "io",
        "_io",
        "fileinput",
        # raw network
        "socket",
        "_socket",
    }
)


def _module_chain(module: str) -> list[str]:
    """`a.b.c` -> `["a", "a.b", "a.b.c"]`: every prefix on a dotted boundary."""
    parts = module.split(".")
    return [".".join(parts[: index + 1]) for index in range(len(parts))]


def factory_violation(factory: str | None, allowlist: Sequence[str]) -> str | None:
    """None when `factory` may be set under `allowlist`, else one sentence saying why not.

    No factory is always allowed. An empty allowlist allows no factory at all. Allowlist entries
    are module prefixes matched on dotted boundaries (`acme.cache` allows `acme.cache.redis:Redis`
    but not `acme.cachex:X`); a trailing dot is tolerated. The denylist wins over the allowlist.
    """
    if factory is None:
        return None
    if len(factory) > FACTORY_MAX_LENGTH:
        return f"factory is {len(factory)} characters long, more than the {FACTORY_MAX_LENGTH} allowed"
    match = _FACTORY.fullmatch(factory)
    if match is None:
        return (
            f"factory {factory!r} is not of the form module.path:Attribute "
            "(Python identifiers separated by dots, one colon, no spaces)"
        )
    module, attribute = match["module"], match["attribute"]
    chain = _module_chain(module)
    denied = next((prefix for prefix in chain if prefix in FACTORY_DENYLIST), None)
    if denied is not None:
        return f"factory {factory} is on the denylist (module {denied} can never be allowed)"
    if attribute.startswith("__"):
        return f"factory {factory} names a dunder attribute, which is never a factory"
    prefixes = {entry.rstrip(".") for entry in allowlist if entry.rstrip(".")}
    if not prefixes:
        return f"factory {factory} is not allowed: the factory allowlist is empty, so no factory may be set"
    if any(prefix in prefixes for prefix in chain):
        return None
    shown = ", ".join(sorted(prefixes)[:5]) + (", ..." if len(prefixes) > 5 else "")
    return f"factory {factory} is outside the factory allowlist ({shown})"
