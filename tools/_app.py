"""Plumbing shared by the absl tools.

Every tool is a `Config` dataclass and a `main(config) -> exit code`. Tests and other code
call `main(Config(...))` in-process; the console script calls `run(Config, main, __doc__)`,
which defines one absl flag per Config field (from the field's type, default and `option`
metadata) only then, parses the command line, builds the Config (its own validation errors
become one-line usage errors) and calls main. Importing a tool defines no flag; `parse(Config,
argv)` turns a command line into a Config with flags of its own (tests of the flag mapping).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from typing import Optional

from absl import app, flags


def option(default, help: str, *, choices=None, lower: Optional[float] = None,
           upper: Optional[float] = None):
    """A Config field: its default and --help text, the values an enum flag takes, numeric
    bounds. List fields (tuple defaults) are comma-separated on the command line."""
    metadata = {"help": help, "choices": choices, "lower": lower, "upper": upper}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default_factory=lambda: tuple(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def validate(config):
    """Raise ValueError (naming the flag) for a field outside its declared choices (each item,
    for a list) or bounds: Config.__post_init__ calls it, so a Config made in code is checked
    like the command line."""
    for field in dataclasses.fields(config):
        meta, value = field.metadata, getattr(config, field.name)
        if value is None:
            continue
        choices = meta.get("choices")
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if choices is not None and item not in choices:
                raise ValueError(f"--{field.name}: {item!r} is not one of "
                                 f"{', '.join(map(str, choices))}")
        if meta.get("lower") is not None and value < meta["lower"]:
            raise ValueError(f"--{field.name} must be at least {meta['lower']}, got {value}")
        if meta.get("upper") is not None and value > meta["upper"]:
            raise ValueError(f"--{field.name} must be at most {meta['upper']}, got {value}")


def _define(field, kind, module: str, flag_values=flags.FLAGS):
    meta = field.metadata
    default = field.default if field.default is not dataclasses.MISSING else \
        field.default_factory()
    text = meta.get("help", "")
    origin = typing.get_origin(kind)
    base = next((a for a in typing.get_args(kind) if a is not type(None)), kind) \
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) else kind
    common = dict(module_name=module, flag_values=flag_values)
    if isinstance(default, tuple) or typing.get_origin(base) in (tuple, list):
        flags.DEFINE_list(field.name, list(default) if default is not None else None, text,
                          **common)
    elif base is bool:
        flags.DEFINE_boolean(field.name, default, text, **common)
    elif meta.get("choices") and base is str and not isinstance(default, tuple):
        flags.DEFINE_enum(field.name, default, list(meta["choices"]), text, **common)
    elif base is int:
        flags.DEFINE_integer(field.name, default, text, lower_bound=meta.get("lower"),
                             upper_bound=meta.get("upper"), **common)
    elif base is float:
        flags.DEFINE_float(field.name, default, text, lower_bound=meta.get("lower"),
                           upper_bound=meta.get("upper"), **common)
    else:
        flags.DEFINE_string(field.name, default, text, **common)


_ITEM_NAMES = {int: "integers", float: "numbers", str: "strings"}


def _item_type(kind):
    """The item type of a list field (tuple[int, ...], Optional[tuple[float, ...]]; str when
    the annotation does not say)."""
    for candidate in (kind, *typing.get_args(kind)):
        if typing.get_origin(candidate) in (tuple, list):
            args = [a for a in typing.get_args(candidate) if a is not Ellipsis]
            return args[0] if args and args[0] in _ITEM_NAMES else str
    return str


def _value(field, kind, raw):
    """A flag value as the Config field's type (list flags become tuples of that type; an item
    that does not convert is a ValueError naming the flag)."""
    if not isinstance(raw, list):
        return raw
    convert = _item_type(kind)
    values = []
    for item in raw:
        try:
            values.append(convert(item))
        except ValueError:
            raise ValueError(f"--{field.name} takes {_ITEM_NAMES[convert]}, got {item!r}") \
                from None
    return tuple(values)


def parse(config_class, argv):
    """The Config of a command line (argv[0] is the program), parsed by absl with flags of
    its own (the global absl flags are untouched): absl's errors (unknown flag, a value outside
    its bounds) raise absl.flags.Error, the Config's own raise ValueError."""
    hints = typing.get_type_hints(config_class)
    flag_values = flags.FlagValues()
    fields = dataclasses.fields(config_class)
    for field in fields:
        _define(field, hints[field.name], config_class.__module__, flag_values)
    rest = flag_values(list(argv))
    if len(rest) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(rest[1:])}")
    return config_class(**{f.name: _value(f, hints[f.name], flag_values[f.name].value)
                           for f in fields})


def run(config_class, main, doc: str, argv=None, name: Optional[str] = None,
        error_exit_code: int = 2):
    """Run a tool as a console script (see the module docstring). A Config error is one line
    `<name>: error: <message>` (name: the program's) and exit code `error_exit_code`
    (tfquant-convert: 1, its code for every error)."""
    module = sys.argv[0]
    hints = typing.get_type_hints(config_class)
    fields = dataclasses.fields(config_class)
    for field in fields:
        if field.name not in flags.FLAGS:
            _define(field, hints[field.name], module)
    sys.modules["__main__"].__doc__ = doc

    def absl_main(args):
        if len(args) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(args[1:])}")
        try:
            config = config_class(**{f.name: _value(f, hints[f.name], flags.FLAGS[f.name].value)
                                     for f in fields})
        except ValueError as e:
            print(f"{name or _tool_name()}: error: {e}", file=sys.stderr)
            return error_exit_code
        return main(config)

    app.run(absl_main, argv=argv)


def _tool_name() -> str:
    import os
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "tfquant"


def log(message: str):
    """A progress line on stderr (stdout carries the tool's tables)."""
    print(message, file=sys.stderr, flush=True)


def machine() -> str:
    """The CPU figures were measured on: model name, widest SIMD, core count and date."""
    import datetime
    name, flags, family = "unknown CPU", set(), {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name == "unknown CPU":
                    name = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = set(value.split())
                elif key.strip() in ("cpu family", "model") and key.strip() not in family:
                    family[key.strip()] = value.strip()
    except OSError:
        pass
    simd = next((label for flag, label in (("avx512_vnni", "AVX-512 VNNI"),
                                            ("avx512f", "AVX-512"), ("avx2", "AVX2"),
                                            ("asimddp", "NEON dot product"), ("asimd", "NEON"))
                 if flag in flags), "no SIMD flags read")
    if len(family) == 2:  # the same name covers several generations
        name += f" family {family['cpu family']} model {family['model']}"
    return (f"{name} ({simd}), {os.cpu_count()} cores, "
            f"{datetime.date.today().isoformat()}")


def model_by_model(names, evaluate, report) -> tuple:
    """(rows, the last report's text): evaluate(name) for each name in turn (progress on
    stderr), then report(rows, seconds so far) -> text, which rewrites the tool's report so
    that a long run's page is always current; Keras's state is freed between models."""
    import gc
    import time

    import keras
    start, rows, text = time.perf_counter(), [], ""
    for name in names:
        log(f"== {name} ({len(rows) + 1}/{len(names)})")
        rows.append(evaluate(name))
        text = report(rows, time.perf_counter() - start)
        keras.backend.clear_session()
        gc.collect()
    return rows, text


def write_report(path: str, title: str, body: str, command: str):
    """Write a markdown report atomically, headed by the command line that made it
    (command_line(tool, config)) and the machine it ran on."""
    import tfquant
    tfquant.save_atomically(
        f"# {title}\n\nMade by `{command}` on {machine()}{body}\n".encode(), path)


def command_line(tool: str, config) -> str:
    """The command that reproduces `config` (its fields that differ from the defaults as
    flags), for report headers."""
    parts = [tool]
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        default = field.default if field.default is not dataclasses.MISSING else \
            field.default_factory()
        if value == default:
            continue
        if isinstance(value, bool):
            parts.append(f"--{field.name}" if value else f"--no{field.name}")
        elif isinstance(value, (list, tuple)):
            parts.append(f"--{field.name}={','.join(map(str, value))}")
        else:
            parts.append(f"--{field.name}={value}")
    return " ".join(parts)
