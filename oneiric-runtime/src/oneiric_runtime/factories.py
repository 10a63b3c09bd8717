"""Factory policy: which `module.path:Attribute` strings a candidate may hand to the application.

The operator never imports a factory; the application does. So this is the one gate between a
Candidate (possibly from a remote manifest) and code that runs in the user's pods. The resolver,
the explain CLI, the manifest verifier and the admission webhook all call `factory_violation`, so
they can never disagree.

A name says nothing about the object behind it: `acme:run` is `subprocess.run` when `acme` does
`from subprocess import run`. Only the application imports, so only it can judge the object:
`object_violation` is that second rule, under the same allowlist and denylist, and the application
runtime applies it to whatever the name resolved to before calling it.
"""

from __future__ import annotations

import functools
import re
import types
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


def _prefixes(allowlist: Sequence[str]) -> set[str]:
    return {entry.rstrip(".") for entry in allowlist if entry.rstrip(".")}


def _denied(module: str) -> str | None:
    """The denylisted prefix of `module`, if any."""
    return next((prefix for prefix in _module_chain(module) if prefix in FACTORY_DENYLIST), None)


def _allowed(module: str, prefixes: set[str]) -> bool:
    return any(prefix in prefixes for prefix in _module_chain(module))


def _shown(prefixes: set[str]) -> str:
    return ", ".join(sorted(prefixes)[:5]) + (", ..." if len(prefixes) > 5 else "")


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
    denied = _denied(module)
    if denied is not None:
        return f"factory {factory} is on the denylist (module {denied} can never be allowed)"
    if attribute.startswith("__"):
        return f"factory {factory} names a dunder attribute, which is never a factory"
    prefixes = _prefixes(allowlist)
    if not prefixes:
        return f"factory {factory} is not allowed: the factory allowlist is empty, so no factory may be set"
    if _allowed(module, prefixes):
        return None
    return f"factory {factory} is outside the factory allowlist ({_shown(prefixes)})"


_MAX_UNWRAP = 16
"""A partial of a partial of ... deeper than this is refused rather than followed."""


def _origins(target: object, depth: int = 0) -> list[tuple[str, object]]:
    """Every (what, module) the object comes from: a wrapper counts with what it wraps.

    A function counts with the module it claims (`__module__`) and the module whose globals it runs
    in; a bound method with its function and the object it is bound to; a C function with its module
    and, when bound, the type of its `self`; a callable instance with its type.
    """
    if depth > _MAX_UNWRAP:
        return [("an object wrapped too deeply", None)]
    if isinstance(target, functools.partial):
        return _origins(target.func, depth + 1)
    if isinstance(target, staticmethod | classmethod):
        return _origins(target.__func__, depth + 1)
    if isinstance(target, types.MethodType):
        bound = target.__self__
        owner = bound if isinstance(bound, type) else type(bound)
        return _origins(target.__func__, depth + 1) + _origins(owner, depth + 1)
    if isinstance(target, type):
        return [(f"class {target.__qualname__}", getattr(target, "__module__", None))]
    if isinstance(target, types.FunctionType):
        name = f"function {target.__qualname__}"
        defined_in = target.__globals__.get("__name__")
        return [(name, target.__module__), (f"{name} (defined in)", defined_in)]
    if isinstance(target, types.BuiltinFunctionType):
        name = f"C function {target.__qualname__}"
        found: list[tuple[str, object]] = [(name, target.__module__)]
        bound = target.__self__
        if isinstance(bound, types.ModuleType):
            found.append((name, bound.__name__))
        elif bound is not None:
            found += _origins(type(bound), depth + 1)
        return found
    if isinstance(target, types.ModuleType):
        return [("a module", None)]
    kind = type(target)
    if kind.__module__ == "builtins":  # method descriptors, slot wrappers, ...: no module of their own
        what = f"{kind.__name__} {getattr(target, '__qualname__', '')}".strip()
        return [(what, getattr(target, "__module__", None))]
    return [(f"instance of {kind.__qualname__}", kind.__module__)]


def object_violation(factory: str, target: object, allowlist: Sequence[str]) -> str | None:
    """None when the object `factory` resolved to comes only from allowed modules, else one sentence.

    The application calls this after the import, on the object itself: its module (and, for a
    function, the module it was defined in), through `functools.partial`, bound methods,
    `staticmethod` and callable instances, must pass the same denylist and allowlist as the name. A
    C function or builtin passes only when its module does (`builtins`, `posix`, `io` never do); an
    object that names no module is refused, since where it comes from cannot be judged.
    """
    prefixes = _prefixes(allowlist)
    for what, module in _origins(target):
        if not isinstance(module, str) or not module:
            return f"factory {factory} resolves to {what}, which names no module it comes from: refused"
        denied = _denied(module)
        if denied is not None:
            return (
                f"factory {factory} resolves to {what} from module {module}, "
                f"which is on the denylist (module {denied} can never be allowed)"
            )
        if not _allowed(module, prefixes):
            return (
                f"factory {factory} resolves to {what} from module {module}, "
                f"outside the factory allowlist ({_shown(prefixes) or 'empty'})"
            )
    return None
