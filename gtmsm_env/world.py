"""The world an agent walks in: the image geometry, where it starts and which moves are walled.

One :class:`World` describes every setting that shapes what an agent can see and where it can go.
The single env, the vector env, the rollouts' metadata, training, evaluation, play and every
benchmark condition carry one, so a setting is declared once and validated in one place. The
actions are :class:`Action`; their grid displacements are :data:`ACTION_DELTAS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from gtmsm_env.geometry import GridGeometry
from gtmsm_env.images import ImageSize, canonical_image_size, image_shape_of

START_MODES = ("center", "random")
WALL_MODES = ("border", "maze")
DEFAULT_WALL_DENSITY = 0.05


class Action(IntEnum):
    """The env's ``Discrete(5)`` actions. Stay is 0 so ``gymnasium.utils.play`` (``noop=0``) does not
    drift; up/down move the window a row, left/right a column."""

    STAY = 0
    UP = 1
    DOWN = 2
    LEFT = 3
    RIGHT = 4


NUM_ACTIONS = len(Action)
MOVES = (Action.UP, Action.DOWN, Action.LEFT, Action.RIGHT)
ACTION_NAMES: tuple[str, ...] = tuple(action.name.lower() for action in Action)
# Grid displacement (d_row, d_col) of each action, indexed by action.
ACTION_DELTAS = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int64)


def validate_start(start: object) -> str:
    """``start`` if it is one of :data:`START_MODES`, else ``ValueError`` naming ``start``."""
    if start not in START_MODES:
        raise ValueError(f"start must be one of {START_MODES}, got {start!r}")
    return str(start)


@dataclass(frozen=True)
class World:
    """Everything about the world that is not the image's content.

    - ``image_size``: side of square images, or ``(height, width)``;
    - ``crop_size``: side of the window the agent sees;
    - ``step_size``: pixels per grid move (window top-left at ``step_size * (row, col)``);
    - ``start``: ``"center"`` or ``"random"``;
    - ``walls``: ``"border"`` (only the image border blocks moves) or ``"maze"`` (interior walls too);
    - ``wall_density``: the share of interior edges walled (``walls="maze"`` only; ``None`` there
      means 0.05).

    The reference world is ``World()``: 32x32 images, 8x8 window, step 3, a 9x9 grid, centre start,
    border walls. Construct freely; :meth:`validated` checks every field (``TypeError``/
    ``ValueError`` naming the field) and returns the canonical form (``image_size`` an int for square
    images, the maze's default density filled in).
    """

    # Each number's range (plain metadata: ``ge``/``gt``/``le``/``lt``) is what a command line
    # accepts before :meth:`validated` checks the whole world; ``help`` is its one-line help text.
    image_size: ImageSize = dataclasses.field(default=32, metadata={
        "bounds": {"ge": 2}, "help": "image side in pixels (the height when `image_width` is given)"})
    crop_size: int = dataclasses.field(default=8, metadata={
        "bounds": {"ge": 1}, "help": "side of the window the agent sees, in pixels (at most `image_size` and `image_width`)"})
    step_size: int = dataclasses.field(default=3, metadata={
        "bounds": {"ge": 1}, "help": "pixels the window moves per step"})
    start: str = dataclasses.field(default="center", metadata={
        "help": "start position: center or random"})
    walls: str = dataclasses.field(default="border", metadata={
        "help": "'border' (only the image border blocks moves) or 'maze' (interior walls too)"})
    wall_density: float | None = dataclasses.field(default=None, metadata={
        "bounds": {"ge": 0, "le": 1},
        "help": f"fraction of interior edges walled with `walls` maze (unset: {DEFAULT_WALL_DENSITY})"})

    def validated(self) -> World:
        from gtmsm_env.maze import validate_walls  # maze.py builds on this module's actions

        geometry = GridGeometry.validated(self.image_size, self.crop_size, self.step_size)
        density = validate_walls(self.walls, self.wall_density, geometry.grid_shape)
        return World(
            image_size=geometry.image_size,
            crop_size=geometry.crop_size,
            step_size=geometry.step_size,
            start=validate_start(self.start),
            walls=str(self.walls),
            wall_density=density,
        )

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the images."""
        return image_shape_of(self.image_size)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` window positions: ``(side - crop) // step + 1`` along each axis."""
        height, width = self.image_shape
        return ((height - self.crop_size) // self.step_size + 1,
                (width - self.crop_size) // self.step_size + 1)

    @property
    def geometry(self) -> GridGeometry:
        """The validated :class:`~gtmsm_env.geometry.GridGeometry` (image shape, crop, step)."""
        return GridGeometry.validated(self.image_size, self.crop_size, self.step_size)

    def replace(self, **changes: Any) -> World:
        """A copy with ``changes`` applied (not validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: ``image_size`` an int or a ``[height, width]`` list."""
        size = canonical_image_size(self.image_size)
        return {
            "image_size": size if isinstance(size, int) else list(size),
            "crop_size": self.crop_size,
            "step_size": self.step_size,
            "start": self.start,
            "walls": self.walls,
            "wall_density": self.wall_density,
        }

    @classmethod
    def from_dict(cls, data: Any) -> World:
        """The inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys raise
        ``ValueError`` naming them. Not validated (call :meth:`validated`)."""
        if not isinstance(data, dict):
            raise TypeError(f"a world must be a dict of settings, got {type(data).__name__}")
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown world settings {unknown}; known: {sorted(names)}")
        values = dict(data)
        if isinstance(values.get("image_size"), list):
            values["image_size"] = tuple(values["image_size"])
        return cls(**values)

    def env_kwargs(self) -> dict[str, Any]:
        """The ``ImageNavEnv`` / ``gym.make`` keyword arguments that build this world."""
        return {"image_size": self.image_size, "crop_size": self.crop_size,
                "step_size": self.step_size, "start": self.start, "walls": self.walls,
                "wall_density": self.wall_density}


def resolve_world(world: World | None, **settings: Any) -> World:
    """The world of a constructor that takes either ``world=`` or the loose settings (the
    :class:`World` fields as keywords): ``world`` when given, else ``World(**settings)``. Both at
    once (a loose setting away from its default) raise ``ValueError``. Not validated."""
    loose = World(**settings)
    if world is None:
        return loose
    if not isinstance(world, World):
        raise TypeError(f"world must be a World, got {type(world).__name__}")
    if loose != World():
        raise ValueError("give the world either as world= or as loose settings, not both")
    return world


def setting_help(name: str) -> str:
    """The one-line help of a world setting, fields in backticks (an entry point words them as its
    flags): a :class:`World` field's, or ``image_width``, the setting that makes ``image_size`` a
    ``(height, width)`` pair where a command line takes one number per flag."""
    if name == "image_width":
        return "image width in pixels for rectangular images (unset: square, `image_size`)"
    return next(f for f in dataclasses.fields(World) if f.name == name).metadata["help"]
