"""Options declared once: shared typer options, and options derived from config dataclasses.

A command's options for a typed config (``RunSpec``, ``TrainConfig``, ``FewshotConfig``,
``FeatureOptions``) are made from the dataclass fields: ``--field-name`` (or the field's
``flag`` metadata), its default, its ``help`` metadata. Lists are comma-separated
(``--seeds 0,1,2``), tables ``key=value`` pairs in the one grammar of
:func:`oodml.config.parse_kv`. :func:`build` turns the parsed values back into the config, so
the checks and their messages are the dataclass's own.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import typer

from oodml.config import (
    check_number_text,
    coerce_value,
    field_types,
    optional_inner,
    parse_kv,
)
from oodml.errors import ConfigError

T = TypeVar("T")
KW = inspect.Parameter.KEYWORD_ONLY

SKIP_BAD = typer.Option(
    False,
    "--skip-bad",
    help="Leave out images that cannot be decoded (listed); the dataset fingerprint then "
    "names the remaining images, so pass it to every command on that dataset.",
)
ROOT = typer.Option(..., "--root", help="Dataset root folder or zip archive.")
CACHE = typer.Option(None, "--cache", help="Feature cache folder (default: $OODML_CACHE or "
                     "~/.cache/oodml).")
DEVICE_HELP = "Where to run: auto (a GPU if present; the default everywhere), cpu, cuda, cuda:N."

# Old spellings, accepted (hidden) for one release: global, then per command.
ALIASES: dict[str, str] = {
    "--output": "--out",
    "--features-cache": "--cache",
    "--workers": "--num-workers",
}
COMMAND_ALIASES: dict[str, dict[str, str]] = {
    "evaluate": {"--weights": "--backbone-weights"},
    "fewshot": {"--weights": "--backbone-weights"},
}


def flag_of(f: dataclasses.Field) -> str:
    return "--" + str(f.metadata.get("flag", f.name.replace("_", "-")))


def _cli_type(tp: Any) -> tuple[Any, bool]:
    """(the type typer parses, whether the value is text we convert ourselves)."""
    optional, inner = optional_inner(tp)
    if typing.get_origin(inner) in (tuple, dict) or inner is dict:
        return str | None, True
    if inner in (int, float, str, bool):
        return (inner | None) if optional else inner, False
    return str | None, True


def field_params(
    cls: type,
    names: Iterable[str] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
    required: Iterable[str] = (),
) -> list[inspect.Parameter]:
    """One typer option per chosen field of dataclass ``cls`` (all fields by default)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    types_ = field_types(cls)
    chosen = list(names) if names is not None else list(fields)
    defaults = dict(defaults or {})
    params = []
    for name in chosen:
        f = fields[name]
        cli_type, textual = _cli_type(types_[name])
        if name in required:
            default: Any = ...
        elif name in defaults:
            default = defaults[name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = None
        if textual and default not in (None, ...):
            default = _as_text(default)
        help_text = str(f.metadata.get("help", ""))
        if cli_type is bool and default is not ...:
            flag = flag_of(f)
            decls = [f"{flag}/--no-{flag[2:]}"]
        else:
            decls = [flag_of(f)]
        params.append(inspect.Parameter(
            name, KW, default=typer.Option(default, *decls, help=help_text), annotation=cli_type
        ))
    return params


def _as_text(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v!r}" for k, v in value.items())
    return str(value)


def parse_list(text: str, name: str, item: type) -> tuple:
    """``'0,1,2'`` as a tuple of ``item``; a bad entry names the field."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if item in (int, float):
        for p in parts:
            check_number_text(name, p)
    try:
        return tuple(item(p) for p in parts)
    except ValueError:
        kind, example = {int: ("integers", "1,2,5"), float: ("numbers", "20,40,80")}.get(
            item, ("names", "a,b"))
        raise ConfigError(
            f"{name}={text!r} must be comma-separated {kind}, e.g. {example}"
        ) from None


def config_value(tp: Any, value: Any, name: str) -> Any:
    """A parsed option value in the field's type (comma lists, key=value tables)."""
    if value is None or not isinstance(value, str):
        return value
    inner = optional_inner(tp)[1]
    if typing.get_origin(inner) is tuple:
        return parse_list(value, name, typing.get_args(inner)[0])
    if typing.get_origin(inner) is dict or inner is dict:
        return parse_kv(value, f"{name} argument")
    return value


def build(cls: type[T], values: Mapping[str, Any], **fixed: Any) -> T:
    """The config ``cls`` from parsed option ``values`` (only its fields are taken)."""
    types_ = field_types(cls)
    kwargs = {
        k: coerce_value(types_[k], config_value(types_[k], v, k), k, "option")
        for k, v in values.items()
        if k in types_ and k not in fixed and (v is not None or optional_inner(types_[k])[0])
    }
    return cls(**kwargs, **fixed)



def with_params(*groups: list[inspect.Parameter]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Give a ``**options`` command function the typer signature made of ``groups``."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        params = [p for group in groups for p in group]
        required = [p for p in params if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD]
        rest = [p for p in params if p.kind != inspect.Parameter.POSITIONAL_OR_KEYWORD]
        fn.__signature__ = inspect.Signature(required + rest)  # type: ignore[attr-defined]
        return fn

    return wrap


def argument(name: str, annotation: Any, help: str, default: Any = ...) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=typer.Argument(default, help=help), annotation=annotation,
    )


def option(name: str, annotation: Any, default: Any, *decls: str, **kw: Any) -> inspect.Parameter:
    return inspect.Parameter(name, KW, default=typer.Option(default, *decls, **kw),
                             annotation=annotation)


def out_path(what: str) -> Callable[[str], Path]:
    """The parser of an output option: the path as typed, an empty one refused (``Path("")``
    would silently be the current folder)."""
    from oodml.fileio import output_arg

    return lambda raw: output_arg(raw, what)


def out_file(help: str, what: str = "output") -> inspect.Parameter:
    return option("out", Path, ..., "-o", "--out", help=help, parser=out_path(what))


def rewrite_aliases(argv: list[str]) -> tuple[list[str], list[str]]:
    """Old option spellings replaced by the current ones, and a note for each used."""
    command = next((a for a in argv if not a.startswith("-")), "")
    table = {**ALIASES, **COMMAND_ALIASES.get(command, {})}
    out, notes = [], []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if name in table:
            notes.append(f"note: {name} is now {table[name]} (the old spelling goes in the next "
                         "release)")
            arg = table[name] + (eq + value if eq else "")
        out.append(arg)
    return out, notes
