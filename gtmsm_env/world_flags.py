"""The world's command-line flags, shared by every entry point that takes a world
(``gtmsm-rollouts``, ``gtmsm train``): one flag per :class:`~gtmsm_env.world.World` field, plus
``--image-width`` for rectangular images; each flag's range and help are its field's."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from gtmsm_cli.flags import Bounds, _base_type, field_bounds, flag_name, flag_text, number
from gtmsm_env.images import ImageSize, canonical_image_size
from gtmsm_env.world import START_MODES, WALL_MODES, World, setting_help

WORLD_FLAGS = ("image_size", "image_width", "crop_size", "step_size", "start", "walls", "wall_density")
"""The world's flags: one per :class:`World` field, and ``--image-width``, the width of a
``(height, width)`` ``image_size`` (square images when unset)."""
CHOICES = {"start": list(START_MODES), "walls": list(WALL_MODES)}


def _field(name: str) -> dataclasses.Field:
    """The :class:`World` field behind flag ``name`` (``image_width``: ``image_size``'s)."""
    name = "image_size" if name == "image_width" else name
    return next(f for f in dataclasses.fields(World) if f.name == name)


def world_flag_bounds(name: str) -> Bounds | None:
    """The range flag ``name`` accepts: its field's (``--image-width`` takes ``image_size``'s)."""
    return field_bounds(_field(name))


def add_world_flags(parser: argparse.ArgumentParser, *, defaults: Mapping[str, Any] | None = None,
                    default_label: str = "default", suppress_defaults: bool = False) -> None:
    """The :data:`WORLD_FLAGS` in a "world" group, so a bad value is refused in the words every
    entry point uses ("argument --image-size: must be >= 2, got 1"). ``defaults`` (by flag name)
    replace World's own in the help and the namespace; ``suppress_defaults`` leaves unset flags out
    of the namespace (a preset fills them)."""
    hints = typing.get_type_hints(World)
    group = parser.add_argument_group("world", "the images, window, moves, start and walls")
    for name in WORLD_FLAGS:
        if name in ("image_size", "image_width"):
            kind, optional = int, name == "image_width"
        else:
            kind, optional = _base_type(hints[name])
        default = (None if name == "image_width" else _field(name).default) if defaults is None \
            else defaults.get(name)
        text = flag_text(setting_help(name))
        if default is not None:
            text = f"{text} ({default_label}: {default})"
        parse = number(kind, world_flag_bounds(name), optional=optional) if kind in (int, float) else str
        group.add_argument(flag_name(name), dest=name, type=parse, metavar=name.upper(), choices=CHOICES.get(name),
                           default=argparse.SUPPRESS if suppress_defaults else default,
                           help=text.replace("%", "%%"))


def flag_image_size(image_size: int, image_width: int | None) -> ImageSize:
    """``--image-size`` alone (square), or ``(--image-size, --image-width)``."""
    if image_width is None:
        return image_size
    return canonical_image_size((image_size, image_width))


def world_of(namespace: argparse.Namespace) -> World:
    """The world the parsed :func:`add_world_flags` ask for (not validated)."""
    return World(flag_image_size(namespace.image_size, namespace.image_width), namespace.crop_size,
                 namespace.step_size, namespace.start, namespace.walls, namespace.wall_density)
