"""`pgfs mount`'s options, derived from the fields of `MountOptions`.

`MountOptions` (pgfs.fuse.options) declares every option once. From it:

- `mount_options`: the click argument and options of `pgfs mount` (name,
  help, type and default from each field);
- `options_from_params`: the parsed click parameters back into a
  `MountOptions`;
- `mount_argv`: the `mount ... --foreground` arguments that `--daemon` runs
  in its detached child, which parse back into the same options
  (tests/cli/test_mount_options.py checks the round trip).

The store fields come from the shared store options (`--meta-schema`,
`--data-schema`); the DSN never goes on a command line (a daemon gets it by
environment).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import Field, fields
from pathlib import Path
from types import UnionType
from typing import Any

import click

from pgfs.fuse.options import MountOptions, check_names

SHARED_FLAGS = {"meta_schema": "--meta-schema", "data_schema": "--data-schema"}
"""Fields whose options are the store options every store command shares."""


class Octal(click.ParamType):
    """A file mode written in octal (644)."""

    name = "OCTAL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            mode = int(str(value), 8)
        except ValueError:
            self.fail(f"{value!r} is not an octal mode such as 644", param, ctx)
        if not 0 <= mode <= 0o7777:
            self.fail(f"{value!r} is not a file mode", param, ctx)
        return mode


def _cli_fields() -> list[Field]:
    return [f for f in fields(MountOptions) if f.metadata.get("cli", True)]


def _flag(f: Field) -> str:
    return f.metadata.get("flag") or SHARED_FLAGS.get(f.name) or "--" + f.name.replace("_", "-")


def _scalar(f: Field) -> type:
    """The field's type without `| None`."""
    hint = typing.get_type_hints(MountOptions)[f.name]
    if isinstance(hint, UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


def _click_param(f: Field) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    meta = f.metadata
    kind = _scalar(f)
    if meta.get("argument"):
        return click.argument(f.name, type=click.Path(file_okay=False, path_type=Path))
    settings: dict[str, Any] = {"help": meta["help"]}
    if "metavar" in meta:
        settings["metavar"] = meta["metavar"]
    if kind is bool:
        return click.option(_flag(f), f.name, is_flag=True, **settings)
    if kind is tuple:
        return click.option(_flag(f), f.name, multiple=True, **settings)
    if meta.get("octal"):
        settings.update(type=Octal(), default=f"{f.default:o}", show_default=True)
    elif kind is Path:
        settings.update(type=click.Path(file_okay=False, path_type=Path), default=f.default)
        settings["show_default"] = f.default is not None
    else:
        settings.update(type=kind, default=f.default, show_default=f.default is not None)
    return click.option(_flag(f), f.name, **settings)


def mount_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add MOUNTPOINT and one option per `MountOptions` field, in the order declared."""
    for f in reversed(_cli_fields()):
        command = _click_param(f)(command)
    return command


def options_from_params(params: Mapping[str, Any], *, dsn: str | None) -> MountOptions:
    """The options the parsed click parameters stand for (ControlError for bad names)."""
    values = {f.name: params[f.name] for f in _cli_fields()}
    values.update({name: params[name] for name in SHARED_FLAGS})
    values["names"] = check_names(values["names"])
    return MountOptions(dsn=dsn, **values)


def mount_argv(options: MountOptions) -> list[str]:
    """`mount MOUNTPOINT --foreground ...`: the arguments that serve `options` again
    (paths absolute; the DSN left out)."""
    options = options.absolute()
    argv = ["mount", str(options.mountpoint), "--foreground"]
    for f in fields(MountOptions):
        value = getattr(options, f.name)
        if f.metadata.get("argument") or not (
            f.metadata.get("cli", True) or f.name in SHARED_FLAGS
        ):
            continue
        if isinstance(value, bool):
            argv += [_flag(f)] if value else []
        elif isinstance(value, tuple):
            for item in value:
                argv += [_flag(f), str(item)]
        elif value is None:
            continue
        elif f.metadata.get("octal"):
            argv += [_flag(f), f"{value:o}"]
        else:
            argv += [_flag(f), str(value)]
    return argv
