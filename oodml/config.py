"""Typed configs: one ``key=value`` grammar, field-named checks, and typed construction.

Every task has one frozen dataclass config (ladder generation, a training run, a few-shot run,
a sweep). The CLI flags, the TOML sweep file and the Python API all build those dataclasses,
so the checks live in their ``__post_init__`` and the messages name the dataclass fields
(``lr=nan must be a finite number > 0``), which read the same whichever surface set them.

* :func:`parse_kv` is the one ``key=value`` grammar (``--param``, ``--loss-args``,
  ``--miner-args``): comma-separated pairs, Python-literal values (numbers, True/False/None,
  quoted strings, lists/tuples), anything else a plain string.
* :func:`from_mapping` builds a dataclass from a plain mapping (a TOML table), checking keys
  and value types against the field annotations before the dataclass's own checks run.
* :func:`check_int` / :func:`check_float` / :func:`check_choice` are the field checks.
* The ``MAX_*`` constants are the documented upper bounds of counts and sizes: a typo (an
  extra digit, ``1e9``) is a one-line error naming the field, not hours of silence or an
  out-of-memory kill. Each field's ``--help`` states its bound.
* :func:`option_field` declares a field with the help text the CLI shows for it.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from oodml.errors import ConfigError, short

T = TypeVar("T")
MAX_SEED = 2**63 - 1

MAX_EPOCHS = 10_000
"""Training and fine-tuning epochs (and LR step sizes)."""
MAX_BATCH = 65_536
"""Images per batch (training, embedding, feature extraction)."""
MAX_WORKERS = 256
"""Decoding worker processes."""
MAX_SEEDS = 1_000
"""Seeds of one evaluate / fewshot / sweep grid."""
MAX_WIDTH = 16_384
"""Embedding dimension and hidden width of the head."""
MAX_IMAGE_SIZE = 2_048
"""Crop size of full-backbone training."""
MAX_DRAWS = 1_000
"""Random draws of the size-controlled gallery."""
MAX_SHOTS = 1_000
"""Support images per class of a few-shot episode."""
MAX_SHOT_COUNTS = 16
"""Shot counts of one ladder or few-shot run."""
MAX_EPISODES = 1_000
"""Few-shot episodes per shot count."""
MAX_SUPPORT_PATHS = 10_000_000
"""Few-shot support-image paths of one split file (about 50 bytes each in JSON: ~500 MB, half
of what a split file may have); a ladder asking for more is refused before any work."""
MAX_BOOTSTRAP = 10_000
"""Bootstrap replicates of a split's distance (a 95% percentile interval needs ~2,000)."""
MAX_LEVELS = 1_000
"""Splits of one ladder (levels, targets)."""
MAX_IDS = 1_000_000
"""Split ids and class counts (SOP, the largest dataset, has 22,634 classes)."""
MAX_STEPS = 100_000
"""Iterations, steps and candidates of a ladder walk."""
MAX_RETRIES = 100
"""Retries of a failed sweep run."""
MAX_CPUS = 4_096
"""CPUs of a local Ray, or per sweep run."""
MAX_LR = 10.0
"""Learning rates (training and fine-tuning)."""
MAX_LR_MULT = 10_000.0
"""Multiplier of the loss parameters' learning rate."""
MAX_NUMBER_CHARS = 400
"""A number written with more characters than this is refused as too long (float64 ends at
about 1.8e308, and int64 at 19 digits)."""


def parse_kv(text: str | None, what: str = "arguments") -> dict[str, Any]:
    """Parse ``'alpha=2,beta=50.0,name=x'`` into ``{'alpha': 2, 'beta': 50.0, 'name': 'x'}``.

    Values are Python literals when they parse as one (numbers, True/False/None, quoted
    strings, lists and tuples), else plain strings; ``true``/``false``/``none``/``null`` in any
    case are the booleans and None.
    """
    if not text or not text.strip():
        return {}
    out: dict[str, Any] = {}
    for part in _split_top_level(text, what):
        if "=" not in part:
            raise ConfigError(
                f"bad {what} {part!r} in {text!r}: write key=value pairs joined by ','"
            )
        key, raw = (s.strip() for s in part.split("=", 1))
        if not key.isidentifier():
            raise ConfigError(f"bad {what} name {key!r} in {text!r}: must be an identifier")
        if key in out:
            raise ConfigError(f"{what} {key!r} given twice in {text!r}")
        check_number_text(f"{what} {key}", raw)
        out[key] = _literal(raw)
    return out


def parse_kv_items(items: list[str] | tuple[str, ...], what: str) -> dict[str, Any]:
    """Several ``key=value[,key=value]`` strings (a repeatable option) as one mapping."""
    out: dict[str, Any] = {}
    for item in items:
        for key, value in parse_kv(item, what).items():
            if key in out:
                raise ConfigError(f"{what} {key!r} given twice")
            out[key] = value
    return out


def _split_top_level(text: str, what: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"bad {what} {text!r}: unbalanced brackets")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _literal(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if len(raw) > 1000:
        return raw
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return raw


_NUMBER_TEXT = re.compile(r"[+-]?[0-9_]*\.?[0-9_]*(?:[eE][+-]?[0-9_]+)?")


def check_number_text(name: str, text: str) -> None:
    """Refuse a number written with more than :data:`MAX_NUMBER_CHARS` characters, in one line
    naming ``name`` (Python would otherwise fail on it with advice about
    ``sys.set_int_max_str_digits``, or turn it into inf)."""
    text = text.strip()
    if (
        len(text) > MAX_NUMBER_CHARS
        and any(c.isdigit() for c in text[:MAX_NUMBER_CHARS])
        and _NUMBER_TEXT.fullmatch(text)
    ):
        raise ConfigError(
            f"{name}: the number {text[:12]}... is {len(text)} characters long; numbers are "
            f"at most {MAX_NUMBER_CHARS} characters, so check the value"
        )


def shown(value: Any) -> str:
    """``value`` for a one-line message: an integer of more than 30 digits by its length (str()
    of one above 4300 digits raises), anything else its repr cut to 60 characters."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value).bit_length() > 100:
        v = abs(value)
        digits = int(math.log10(v)) + 1
        digits += (v >= 10**digits) - (v < 10 ** (digits - 1))  # log10 rounds near powers of 10
        return f"<a number of about {digits} digits>"
    return short(value, 60)


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int in [lo, hi]; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={shown(value)} must be an integer")
    if lo is not None and value < lo:
        raise ConfigError(f"{name}={shown(value)} must be >= {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{name}={shown(value)} must be <= {hi}")
    return int(value)


def check_seed(name: str, value: Any) -> int:
    """A seed: an integer in [0, 2**63 - 1] (what numpy and torch accept)."""
    return check_int(name, value, 0, MAX_SEED)


def check_float(
    name: str,
    value: Any,
    lo: float | None = None,
    *,
    positive: bool = False,
    hi: float | None = None,
) -> float:
    """``value`` as a finite float (>= lo, > 0 with ``positive``, <= hi)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}={shown(value)} must be a number")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float64
        v = math.inf
    if not math.isfinite(v):
        raise ConfigError(f"{name}={shown(value)} must be a finite number")
    if positive and not v > 0:
        raise ConfigError(f"{name}={shown(value)} must be a number > 0")
    if lo is not None and v < lo:
        raise ConfigError(f"{name}={shown(value)} must be >= {lo:g}")
    if hi is not None and v > hi:
        raise ConfigError(f"{name}={shown(value)} must be <= {hi:g}")
    return v


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of: {', '.join(choices)}")
    return value


def option_field(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with its ``--help`` text (and ``flag``, the CLI spelling where it is
    not ``--field-name``) in its metadata: what the CLI derives its options from."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def field_help(cls: type, name: str) -> str:
    """The ``help`` metadata of a dataclass field (what ``--help`` prints for it)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return str(f.metadata.get("help", ""))
    raise KeyError(name)


def optional_inner(tp: Any) -> tuple[bool, Any]:
    """(whether ``tp`` admits None, ``tp`` without the None)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return True, args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007
    return False, tp


def _type_name(tp: Any) -> str:
    optional, inner = optional_inner(tp)
    origin = typing.get_origin(inner)
    if origin is tuple:
        base = f"a list of {_type_name(typing.get_args(inner)[0])}s"
    elif origin is dict or inner is dict:
        base = "a table"
    elif dataclasses.is_dataclass(inner):
        base = "a table"
    else:
        base = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
            inner, getattr(inner, "__name__", str(inner))
        )
    return base + (" (or left out)" if optional else "")


def coerce_value(tp: Any, value: Any, name: str, where: str) -> Any:
    """``value`` checked against the annotation ``tp`` (lists as tuples, tables as nested
    dataclasses); a mismatch is a ConfigError naming ``where`` and ``name``."""
    optional, inner = optional_inner(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: {name} must be {_type_name(tp)}")
    origin = typing.get_origin(inner)
    bad = ConfigError(f"{where}: {name}={shown(value)} must be {_type_name(tp)}")
    if dataclasses.is_dataclass(inner):
        if not isinstance(value, Mapping):
            raise bad
        return from_mapping(inner, value, f"{where} [{name}]")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        item = typing.get_args(inner)[0]
        return tuple(coerce_value(item, v, f"{name}[{i}]", where) for i, v in enumerate(value))
    if origin is dict or inner is dict:
        if not isinstance(value, Mapping):
            raise bad
        return dict(value)
    if inner is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if inner is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if inner is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{where}: {name}={shown(value)} is beyond the range of a "
                              "number (about 1.8e308)") from None
    if inner is str:
        if not isinstance(value, str):
            raise bad
        return value
    return value


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def from_mapping(cls: type[T], data: Mapping[str, Any], where: str, **fixed: Any) -> T:
    """Build dataclass ``cls`` from ``data`` (plus ``fixed`` values set by the caller).

    Unknown keys are refused with the list of valid ones; each value must have its field's
    annotated type (lists become tuples, nested tables nested dataclasses); the dataclass's
    ``__post_init__`` then checks ranges. Errors name ``where`` and the field.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a table of key = value pairs")
    types_ = field_types(cls)
    settable = sorted(set(types_) - set(fixed))
    unknown = sorted(set(data) - set(settable))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(settable)}")
    kwargs = {k: coerce_value(types_[k], v, k, where) for k, v in data.items()}
    try:
        return cls(**kwargs, **fixed)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
