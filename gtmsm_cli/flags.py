"""One way to turn documented dataclasses into command-line flags and to check every value.

Every entry point of the project (``gtmsm``, ``gtmsm-play``, ``gtmsm-rollouts``, the benchmark
scripts) builds its flags with this module, so a bad value is always reported the same way: one
``prog: error: ...`` line that names the flag, exit status 2, no traceback, before any expensive
work starts.

A field states its range once, in its metadata, and both the flag parser and the dataclass's own
``validate`` read it::

    @dataclass
    class Args:
        lr: float = bounded(1e-3, gt=0)
        \"\"\"Adam learning rate.\"\"\"

    parser = argparse.ArgumentParser()
    add_dataclass_flags(parser, Args)           # --lr FLOAT, checked at parse time
    args = Args(**dataclass_values(parser.parse_args(), Args))
    check_fields(args)                          # the same check for programmatic use

Libraries name the *field* in their errors, never a flag: between backticks (```tau` must not
exceed `seq_len```) or, for the fields an entry point names, bare (``crop_size=8 ...``). Only an
entry point words them with its flags, through :func:`flag_text` and the one field-to-flag map
:func:`flag_of` (``--field-name``, unless the entry point's ``flags`` say otherwise).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import re
import sys
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

EXIT_USAGE = 2

SEED_MAX = 2**32 - 1
"""The largest seed numpy's legacy RNG and torch.manual_seed both take (numpy's SeedSequence
takes more, but a seed must mean the same thing everywhere it goes)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: message (see prog --help)``, exit 2.

    argparse's default prints the whole usage block first; with dozens of flags that buries the
    one line that says what is wrong. Subparsers inherit this class.
    """

    def error(self, message: str) -> typing.NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _bound_text(value: float) -> str:
    """A bound as a person writes it: 4294967295, not 4.29497e+09; 0.001 as 0.001."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


@dataclass(frozen=True)
class Bounds:
    """The allowed range of a number (each side optional, open or closed)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def problem(self, value: float) -> str | None:
        """``None`` if ``value`` is allowed, else what it must be ("must be > 0")."""
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if self.ge is not None and value < self.ge:
            return f"must be >= {_bound_text(self.ge)}"
        if self.gt is not None and value <= self.gt:
            return f"must be > {_bound_text(self.gt)}"
        if self.le is not None and value > self.le:
            return f"must be <= {_bound_text(self.le)}"
        if self.lt is not None and value >= self.lt:
            return f"must be < {_bound_text(self.lt)}"
        return None


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field with a default and an allowed range (stored in the field's metadata).

    A list default (``bounded([0, 1, 2], ge=0)``) bounds every element and is copied per instance.
    """
    metadata = {"bounds": Bounds(ge, gt, le, lt)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def flag_of(name: str, flags: Mapping[str, str] | None = None) -> str:
    """The command-line flag of field ``name``: ``flags[name]`` if given, else ``--name-with-dashes``."""
    return (flags or {}).get(name) or flag_name(name)


def field_bounds(field: dataclasses.Field) -> Bounds | None:
    """A field's declared range: its metadata's ``"bounds"``, a :class:`Bounds` or a plain mapping
    of ``ge``/``gt``/``le``/``lt`` (so a library that must not depend on this package declares it too)."""
    bounds = field.metadata.get("bounds")
    return Bounds(**bounds) if isinstance(bounds, Mapping) else bounds


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (the CleanRL convention), read from the source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            body = ast.parse(inspect.getsource(klass)).body[0].body  # type: ignore[attr-defined]
        except (OSError, TypeError, IndexError):
            continue
        for node, following in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)):
                docs[node.target.id] = " ".join(str(following.value.value).split())
    return docs


def number(kind: type, bounds: Bounds | None = None, *, optional: bool = False) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses an int/float and checks ``bounds``.

    argparse turns the ``ArgumentTypeError`` into ``prog: error: argument --flag: ...``.
    """

    def parse(text: str) -> Any:
        if optional and text.lower() in ("none", ""):
            return None
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        problem = bounds.problem(value) if bounds is not None else None
        if problem is None and isinstance(value, float) and not math.isfinite(value):
            problem = "must be a finite number"
        if problem is not None:
            raise argparse.ArgumentTypeError(f"{problem}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _base_type(hint: Any) -> tuple[type, bool]:
    """``int`` → (int, False); ``int | None`` → (int, True); ``str | None`` → (str, True)."""
    args = typing.get_args(hint)
    if args and typing.get_origin(hint) is not list:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return inner[0], type(None) in args
        return str, type(None) in args
    return hint, False


def add_dataclass_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    defaults: Mapping[str, Any] | None = None,
    skip: Iterable[str] = (),
    choices: Mapping[str, Sequence[Any]] | None = None,
    suppress_defaults: bool = False,
    default_label: str = "default",
) -> None:
    """One flag per field of dataclass ``cls``: type, range and help text come from the field.

    ``defaults`` overrides the shown/parsed defaults; ``suppress_defaults`` leaves unset flags out
    of the namespace (so a preset can fill them); ``choices`` restricts string fields.
    """
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    defaults = dict(defaults or {})
    choices = dict(choices or {})
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.init:
            continue
        kind, optional = _base_type(hints[field.name])
        default = defaults.get(field.name, field.default)
        if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        text = docs.get(field.name, "")
        help_text = f"{text} ({default_label}: {default})" if default is not dataclasses.MISSING else text
        common: dict[str, Any] = {"dest": field.name, "help": help_text.replace("%", "%%")}
        if suppress_defaults:
            common["default"] = argparse.SUPPRESS
        elif default is not dataclasses.MISSING:
            common["default"] = default
        else:
            common["required"] = True
        if kind is bool:
            parser.add_argument(flag_name(field.name), action=argparse.BooleanOptionalAction, **common)
            continue
        nargs = None
        if typing.get_origin(kind) is list:  # list[int] → --seeds 0 1 2
            (kind,) = typing.get_args(kind)
            nargs = "+"
        if kind in (int, float):
            parse: Callable[[str], Any] = number(kind, field_bounds(field), optional=optional)
        elif kind is Path:
            parse = Path
        else:
            parse = str
        parser.add_argument(flag_name(field.name), type=parse, metavar=field.name.upper(),
                            choices=choices.get(field.name), nargs=nargs, **common)


def parse_flags(cls: type[T], argv: Sequence[str] | None = None, *, prog: str | None = None,
                description: str | None = None, choices: Mapping[str, Sequence[Any]] | None = None,
                formatter_class: type[argparse.HelpFormatter] = argparse.HelpFormatter) -> T:
    """Parse ``argv`` into a ``cls`` instance, one flag per field (each bounded flag checked as it
    is parsed): the flags of a script whose options are ``cls``; its own checks come after."""
    parser = ArgumentParser(prog=prog, description=description, formatter_class=formatter_class)
    add_dataclass_flags(parser, cls, choices=choices)
    return cls(**dataclass_values(parser.parse_args(argv), cls))


def parse_dataclass(cls: type[T], argv: Sequence[str] | None = None, *, prog: str | None = None,
                    description: str | None = None,
                    choices: Mapping[str, Sequence[Any]] | None = None) -> T:
    """Parse ``argv`` into a ``cls`` instance: the whole CLI of a script whose options are ``cls``
    (:func:`parse_flags`, the description printed as written, then every field's bounds)."""
    values = parse_flags(cls, argv, prog=prog, description=description, choices=choices,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    try:
        check_fields(values)
    except (TypeError, ValueError) as error:
        ArgumentParser(prog=prog).error(error_text(error))
    return values


def dataclass_values(args: argparse.Namespace, cls: type, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The parsed values that belong to ``cls``'s fields (absent ones left out)."""
    names = {f.name for f in dataclasses.fields(cls)} - set(skip)
    return {k: v for k, v in vars(args).items() if k in names}


def value_problem(value: Any, bounds: Bounds) -> str | None:
    """Why ``value`` is not a number within ``bounds`` (``None`` if it is): "must be > 0, got 0"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, got {value!r}"
    problem = bounds.problem(value)
    return None if problem is None else f"{problem}, got {value}"


def check_fields(obj: Any, name: Callable[[str], str] = flag_name, only: Iterable[str] | None = None) -> None:
    """Raise ``ValueError("--flag must be ..., got x")`` for the first field outside its bounds
    (``TypeError`` for one that is not a number). ``name`` words the field (a library passes
    ``"`{}`".format`` to name fields, not flags); ``only``: check just these fields."""
    chosen = None if only is None else set(only)
    for field in dataclasses.fields(obj):
        bounds = field_bounds(field)
        value = getattr(obj, field.name)
        if bounds is None or value is None or (chosen is not None and field.name not in chosen):
            continue
        for item in value if isinstance(value, list) else [value]:
            problem = value_problem(item, bounds)
            if problem is not None:
                error = TypeError if problem.startswith("must be a number") else ValueError
                raise error(f"{name(field.name)} {problem}")


def fail(prog: str, message: str) -> typing.NoReturn:
    """Print ``prog: error: message`` (first line only, never empty) and exit with status 2; a
    library's ```field``` in it is worded as its flag (:func:`flag_text`)."""
    lines = [line for line in flag_text(str(message)).strip().splitlines() if line.strip()]
    print(f"{prog}: error: {lines[0] if lines else 'failed (no details)'}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def error_text(error: BaseException) -> str:
    """A one-line description of ``error`` that is never empty."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


FIELD_MARK = re.compile(r"`(\w+)`")
"""A field named in a library's message: ```crop_size```."""


def mark_fields(message: str, fields: Iterable[str]) -> str:
    """``message`` with the bare names of ``fields`` marked as fields: ``field=value`` becomes
    ```field` value`` and a bare ``field`` becomes ```field``` (names already marked stay)."""
    names = sorted(set(fields), key=len, reverse=True)
    if not names:
        return message
    pattern = re.compile(r"(?<![\w`-])(" + "|".join(map(re.escape, names)) + r")(?:=(\S+))?(?![\w`])")

    def mark(match: re.Match[str]) -> str:
        text = f"`{match.group(1)}`"
        return text if match.group(2) is None else f"{text} {match.group(2)}"

    return pattern.sub(mark, message)


def flag_text(message: str, fields: Iterable[str] = (), flags: Mapping[str, str] | None = None) -> str:
    """``message`` (a library's error naming fields) worded with the entry point's flags: every
    ```field``` and every bare name of ``fields`` becomes its flag (:func:`flag_of`), ``field=value``
    becoming ``--field value`` (``"crop_size=8 covers ... (use a smaller crop_size)"`` ->
    ``"--crop-size 8 covers ... (use a smaller --crop-size)"``)."""
    return FIELD_MARK.sub(lambda match: flag_of(match.group(1), flags), mark_fields(message, fields))


def field_text(message: str) -> str:
    """``message`` with the backticks around field names dropped (for a library's own users)."""
    return FIELD_MARK.sub(lambda match: match.group(1), message)
