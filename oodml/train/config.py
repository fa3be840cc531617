"""Checking loss/miner arguments against a constructor signature, and import paths.

Used for ``loss_args``/``miner_args`` (parsed by :func:`oodml.config.parse_kv`) so a typo or a
wrong type fails before training with a message listing the accepted arguments.
"""

from __future__ import annotations

import importlib
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from oodml.config import shown
from oodml.errors import ConfigError

_SIMPLE = (bool, int, float, str, type(None))
_NAMED_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}


def check_args(
    target: Callable[..., Any],
    args: Mapping[str, Any],
    *,
    what: str,
    reserved: Iterable[str] = (),
) -> dict[str, Any]:
    """Check ``args`` against ``target``'s signature: known names, values of the annotated type
    (strict) or of the default's kind (bool, str, or number: an unannotated int default accepts
    floats too). Returns the (possibly converted) arguments."""
    params = accepted_params(target, reserved)
    out: dict[str, Any] = {}
    for key, value in args.items():
        if key not in params:
            valid = ", ".join(_describe(p) for p in params.values()) or "(none)"
            raise ConfigError(f"{what} has no argument {key!r}; valid arguments: {valid}")
        out[key] = _coerce(params[key], value, what)
    return out


def accepted_params(
    target: Callable[..., Any], reserved: Iterable[str] = ()
) -> dict[str, inspect.Parameter]:
    """The keyword parameters a user may set: the constructor's own, plus the simple-typed
    ones of base classes it forwards ``*args``/``**kwargs`` to (minus ``self`` and ``reserved``).
    """
    skip = set(reserved) | {"self"}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    out: dict[str, inspect.Parameter] = {}
    if inspect.isclass(target):
        inits = [c.__init__ for c in target.__mro__ if "__init__" in vars(c)]
    else:
        inits = [target]
    for depth, init in enumerate(inits):
        try:
            sig = inspect.signature(init)
        except (TypeError, ValueError):
            break
        for name, p in sig.parameters.items():
            if p.kind not in kinds or name in skip or name in out:
                continue
            if depth == 0 or isinstance(p.default, (bool, int, float, str)):
                out[name] = p
        passes_on = any(
            p.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
            for p in sig.parameters.values()
        )
        if not passes_on:
            break
    return out


def _describe(p: inspect.Parameter) -> str:
    if p.default is inspect.Parameter.empty:
        return f"{p.name} (required)"
    return f"{p.name}={p.default!r}"


def _expected_types(p: inspect.Parameter) -> tuple[type, ...] | None:
    ann = p.annotation
    if isinstance(ann, str):
        ann = _NAMED_TYPES.get(ann, inspect.Parameter.empty)
    if ann is not inspect.Parameter.empty:
        origin = typing.get_origin(ann)
        members = typing.get_args(ann) if origin in (typing.Union, types.UnionType) else (ann,)
        simple = tuple(t for t in members if isinstance(t, type) and t in _SIMPLE)
        if simple:
            return simple
    default = p.default
    if default is inspect.Parameter.empty or default is None:
        return None
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, (int, float)):
        return (float,)  # unannotated numeric defaults: pml writes alpha=2 for a float
    if isinstance(default, _SIMPLE):
        return (type(default),)
    return None


def _coerce(p: inspect.Parameter, value: Any, what: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(
            f"{what} argument {p.name}={value!r} is not a finite number (a number beyond "
            "about 1.8e308 reads as inf); give a finite value"
        )
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
        raise ConfigError(
            f"{what} argument {p.name}={shown(value)} is too large; give a value below 2**63"
        )
    expected = _expected_types(p)
    if expected is None or value is None:
        return value
    is_bool = isinstance(value, bool)
    if isinstance(value, expected) and (not is_bool or bool in expected):
        return value
    if float in expected and isinstance(value, int) and not is_bool:
        return value if int in expected or isinstance(p.default, int) else float(value)
    names = " or ".join(t.__name__ for t in expected)
    raise ConfigError(
        f"{what} argument {p.name}={value!r} has type {type(value).__name__}; expected {names}"
    )


def import_object(
    path: str,
    what: str = "object",
    base: type | tuple[type, ...] | None = None,
    base_name: str = "",
) -> Any:
    """Import ``'package.module:Name'``; errors name the path and the expected form.

    Importing runs the module's top-level code (that is how user classes are loaded). With
    ``base`` (shown as ``base_name``), the object must be a class derived from ``base``;
    anything else (a function such as ``os:system``, an instance) is refused before it can be
    called with user arguments."""
    mod_name, sep, attr = path.partition(":")
    if not sep or not _is_dotted(mod_name) or not _is_dotted(attr):
        raise ConfigError(
            f"{what} {path[:200]!r} is not an import path; write 'package.module:Name'"
        )
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {mod_name!r} for {what} {path!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"module {mod_name!r} has no {attr!r} (from {what} {path!r})")
        obj = getattr(obj, part)
    if base is not None and not (inspect.isclass(obj) and issubclass(obj, base)):
        bases = base if isinstance(base, tuple) else (base,)
        names = base_name or " or ".join(b.__qualname__ for b in bases)
        raise ConfigError(
            f"{what} {path!r} is not a class derived from {names}; an import path must name "
            f"such a class (nothing was called)"
        )
    return obj


def _is_dotted(name: str) -> bool:
    return bool(name) and len(name) <= 500 and all(p.isidentifier() for p in name.split("."))
