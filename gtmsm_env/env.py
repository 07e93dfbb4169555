"""ImageNav-v0: move a small window over an image and observe only the crop under it.

The pieces live in their own modules: :mod:`gtmsm_env.world` (the :class:`~gtmsm_env.world.World`
and the actions), :mod:`gtmsm_env.geometry` (the grid of window positions), :mod:`gtmsm_env.maze`
(walls), :mod:`gtmsm_env.observations` (observation modes) and :mod:`gtmsm_env.drawing` (frames).
This module holds the env and the checks of its constructor, ``reset`` and ``step`` arguments.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gtmsm_env.drawing import draw_frame
from gtmsm_env.geometry import check_int, env_memory_problem
from gtmsm_env.images import (
    ImageSize,
    ImageSource,
    canonical_image_size,
    image_shape_of,
    make_image_source,
)
from gtmsm_env.maze import border_blocked_moves, generate_maze
from gtmsm_env.observations import observation_space_for, validate_observation
from gtmsm_env.world import ACTION_DELTAS, NUM_ACTIONS, Action, World, resolve_world

# The actions as module constants (the same values as the Action members).
STAY, UP, DOWN, LEFT, RIGHT = Action.STAY, Action.UP, Action.DOWN, Action.LEFT, Action.RIGHT
_DROW = tuple(int(d) for d in ACTION_DELTAS[:, 0])
_DCOL = tuple(int(d) for d in ACTION_DELTAS[:, 1])

TASKS = (None, "coverage")
RENDER_MODES = ("human", "rgb_array")
DEFAULT_MAX_EPISODE_STEPS = 1024


def validate_task(task: object) -> str | None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return task  # type: ignore[return-value]


def configure_env(
    env: Any,
    *,
    world: World | None = None,
    image_size: object = 32,
    crop_size: object = 8,
    step_size: object = 3,
    start: object = "center",
    image_source: Any,
    task: object,
    render_mode: object,
    render_scale: object,
    max_episode_steps: object,
    walls: object = "border",
    wall_density: object = None,
    observation: object = "crop",
    terminate_when_covered: object = False,
    num_envs: int | None = None,
) -> tuple[spaces.Discrete, spaces.Space]:
    """Validate the constructor kwargs shared by the single and the vector env and set them on
    ``env``: the world (``world=``, or its loose fields) becomes ``env.world``, validated, and its
    parts ``env.geometry``, ``env.image_size``, ``env.grid_shape``, ... for fast access. Sizes whose
    images and window tables could never fit in memory (one env, or ``num_envs`` of a vector env)
    raise ``ValueError`` naming the argument, before any image source is built.

    Returns one env's action and observation spaces."""
    world = resolve_world(world, image_size=image_size, crop_size=crop_size, step_size=step_size,
                          start=start, walls=walls, wall_density=wall_density).validated()
    geometry = world.geometry
    env.world = world
    env.geometry = geometry
    env.image_size, env.crop_size, env.step_size = geometry.image_size, geometry.crop_size, geometry.step_size
    env.image_shape = geometry.image_shape
    env.grid_shape = geometry.grid_shape
    env.wall_density = world.wall_density
    env.walls = world.walls
    env.observation_parts = validate_observation(observation)
    env.observation = str(observation)
    if not isinstance(terminate_when_covered, (bool, np.bool_)):
        raise TypeError(
            f"terminate_when_covered must be a bool, got {type(terminate_when_covered).__name__}"
        )
    if terminate_when_covered and task != "coverage":
        raise ValueError("terminate_when_covered=True needs task='coverage'")
    env.terminate_when_covered = bool(terminate_when_covered)
    env.start = world.start
    env.task = validate_task(task)
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be None or one of {RENDER_MODES}, got {render_mode!r}")
    env.render_mode = render_mode
    env.render_scale = check_int("render_scale", render_scale, 1)
    if max_episode_steps is not None:
        max_episode_steps = check_int("max_episode_steps", max_episode_steps, 1)
    env.max_episode_steps = max_episode_steps
    problem = env_memory_problem(geometry, num_envs)
    if problem is not None:
        raise ValueError(problem)
    env.image_source = make_image_source(image_source, geometry.image_size)
    return spaces.Discrete(NUM_ACTIONS), observation_space_for(env.observation_parts, env.crop_size, env.grid_shape)


def movement_keys() -> dict[int, Action]:
    """pygame key → action: arrows and WASD move, space stays (the keys of ``get_keys_to_action``
    and of ``gtmsm-play``). Imports pygame, so call it only where a window is wanted."""
    import pygame

    return {
        pygame.K_UP: UP,
        pygame.K_DOWN: DOWN,
        pygame.K_LEFT: LEFT,
        pygame.K_RIGHT: RIGHT,
        pygame.K_w: UP,
        pygame.K_s: DOWN,
        pygame.K_a: LEFT,
        pygame.K_d: RIGHT,
        pygame.K_SPACE: STAY,
    }


def validate_action(action: object) -> int:
    """``action`` as an int in ``0..4``; anything else raises a ``TypeError``/``ValueError``.

    Accepted: a Python or numpy integer, or a 0-d integer numpy array (what
    ``Discrete.sample()`` and SB3's ``predict`` give). Rejected: bools, floats (even 2.0),
    strings, ``None`` and arrays with a shape (e.g. ``np.array([1, 2])``).
    """
    if type(action) is int:  # the common case, kept fast
        a = action
    elif isinstance(action, (int, np.integer)) and not isinstance(action, (bool, np.bool_)):
        a = int(action)
    elif isinstance(action, np.ndarray) and action.shape == () and action.dtype.kind in "iu":
        a = int(action)
    else:
        what = (
            f"array of shape {action.shape} dtype {action.dtype}"
            if isinstance(action, np.ndarray)
            else f"{type(action).__name__} {action!r}"
        )
        raise TypeError(f"action must be an int in 0..4 (stay, up, down, left, right), got {what}")
    if not 0 <= a < NUM_ACTIONS:
        raise ValueError(f"action must be in 0..4 (stay, up, down, left, right), got {a}")
    return a


def validate_options(options: object, allowed: tuple[str, ...]) -> dict[str, Any]:
    """``reset`` options as a dict; unknown keys (e.g. a misspelt ``"image"``) raise."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    unknown = sorted(str(k) for k in options if k not in allowed)
    if unknown:
        raise ValueError(f"unknown reset option(s) {unknown}; supported: {list(allowed)}")
    return options


def validate_pinned_image(image: object, image_size: ImageSize) -> np.ndarray:
    """Check an image passed through ``reset(options={"image": ...})``: ``(H, W, 3)`` uint8 with
    ``(H, W)`` the env's image shape (``image_size`` an int for square images, or ``(H, W)``)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"options['image'] must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"options['image']: expected uint8, got {image.dtype}")
    shape = (*image_shape_of(image_size), 3)
    if image.shape != shape:
        raise ValueError(
            f"options['image'] must have shape {shape} "
            f"(image_size={canonical_image_size(image_size)}), got {image.shape}"
        )
    return image.copy()


class ImageNavEnv(gym.Env[np.ndarray, np.int64]):
    """
    ## Description

    An agent moves a ``crop_size`` x ``crop_size`` window over an RGB image of ``image_size``
    (``S`` x ``S``, or ``height`` x ``width``) and observes only the crop under the window. The
    window's top-left pixel is ``(step_size * row, step_size * col)`` for grid positions ``row`` in
    ``0 .. (height - crop_size) // step_size`` and ``col`` in ``0 .. (width - crop_size) // step_size``
    (``grid_shape = (rows, cols)``); the reference setup (32 / 8 / 3) has a 9 x 9 grid of 81
    positions whose crops overlap by 5 pixels; ``image_size=(32, 48)`` gives 9 x 14. The image
    border is a wall: a move that would leave the grid leaves the window where it is (the step
    still counts). With ``walls="maze"`` there are walls between some neighbouring cells too (see
    Walls). A new image is drawn from the image source on every ``reset``. It is a world-model environment: by default
    there is no reward and no termination.

    ## Action Space

    ``Discrete(5)``:

    | Num | Action | Grid move             |
    |-----|--------|-----------------------|
    | 0   | stay   | none (no-op)          |
    | 1   | up     | row - 1               |
    | 2   | down   | row + 1               |
    | 3   | left   | col - 1               |
    | 4   | right  | col + 1               |

    Stay is action 0 so ``gymnasium.utils.play.play`` (``noop=0``) does not drift. Settings that
    play well by hand: ``play(gym.make("ImageNav-v0", render_mode="rgb_array"),
    keys_to_action=env.unwrapped.get_keys_to_action(), noop=STAY, fps=8, wait_on_player=True)``.
    ``wait_on_player=True`` takes no step while no key is pressed (otherwise every idle frame is a
    "stay" step: at the default 30 fps, 34 idle seconds reach ``max_episode_steps`` and a new image
    appears); ``fps=8`` moves a held key 8 cells a second (at 30 fps it crosses the grid in 0.3 s).
    ``gtmsm-play`` adds key repeat, a wall-hit flash, fog of war and imagination mode.

    ## Observation Space

    ``observation="crop"`` (default): ``Box(0, 255, (crop_size, crop_size, 3), uint8)``, the crop
    under the window, a fresh array every step
    (``image[step*row : step*row + crop, step*col : step*col + crop]``).

    Other modes give a ``Dict`` of some of these parts (keys in this order):

    | mode                      | ``"crop"`` | ``"position"`` | ``"visited"`` |
    |---------------------------|------------|----------------|---------------|
    | ``"crop"``                | (the Box)  |                |               |
    | ``"crop+position"``       | yes        | yes            |               |
    | ``"crop+visited"``        | yes        |                | yes           |
    | ``"crop+position+visited"`` | yes      | yes            | yes           |
    | ``"position+visited"``    |            | yes            | yes           |

    - ``"crop"``: the crop as above;
    - ``"position"``: ``Box(0, 1, (2,), float32)``, the true ``(row / (rows - 1), col / (cols - 1))``;
    - ``"visited"``: ``Box(0, 1, (rows, cols), float32)``, 1.0 at every position seen this episode
      (the start and the current position included).

    ``"position"`` and ``"visited"`` are privileged information (the true grid position): they
    are for exploration agents (e.g. ``ImageNavCoverage-v0``), never for a world model's input.

    ## Info

    - ``"position"``: ``np.ndarray([row, col])`` (int64), the true grid position after the step;
    - ``"wall_hit"``: ``True`` iff the action was a move that was blocked (it would have left the
      grid, or crossed an interior wall);
    - ``"step"``: steps taken since ``reset`` (0 after reset);
    - ``"grid_shape"``: ``(rows, cols)``;
    - ``"coverage"`` (only with ``task="coverage"``): how many distinct positions have been seen
      this episode, the start included (so the episode's return is ``coverage - 1``).

    ## Rewards

    ``task=None`` (default): always 0.0. ``task="coverage"``: 1.0 for each step that reaches a
    position not seen before in the episode (the start counts as seen), else 0.0; each position
    pays once per episode.

    ## Walls

    ``walls="border"`` (default): only the image border blocks moves. ``walls="maze"``: on every
    ``reset`` a new layout of interior walls is drawn with ``self.np_random`` (after the image,
    before a random start), ``round(wall_density * E)`` of the ``E`` interior edges between
    neighbouring cells (E = 144 on the 9 x 9 grid; ``wall_density`` defaults to 0.05, i.e. 7
    walls), chosen so that every cell stays reachable from every other (at most ``E - cells + 1``
    walls, 64 on 9 x 9: a perfect maze, ``wall_density=64/144``; more raises ``ValueError``). See
    :func:`~gtmsm_env.maze.generate_maze`. A move into a wall behaves exactly like a move into the border: the
    position is unchanged, the step counts and ``info["wall_hit"]`` is True.
    ``env.blocked_moves`` ``(rows, cols, 5)`` bool is the current layout, border included:
    ``blocked_moves[row, col, action]`` is True iff ``action`` from ``(row, col)`` is blocked. It
    is privileged information: it is not in the observation. Renders draw interior walls as
    two-toned segments (white core, black outline: they show on any image) between the window
    centres of the two cells they separate.

    ## Starting State

    ``start="center"``: ``(rows // 2, cols // 2)``; ``start="random"``: uniform over the grid.
    ``reset`` draws the image first, then (for a maze) the walls, then (for a random start) the
    position, all with ``self.np_random``. ``reset(options={"image": array})`` pins an ``(H, W, 3)`` uint8 image.

    ## Episode End

    Never terminates, except with ``task="coverage", terminate_when_covered=True``: terminated on
    the step that has seen every position. Truncated after ``max_episode_steps`` steps: 1024 as registered (the
    ``TimeLimit`` wrapper of ``gym.make``; override with
    ``gym.make("ImageNav-v0", max_episode_steps=...)``). The raw class truncates only when given
    its own ``max_episode_steps`` kwarg (default ``None``: never).

    ## Arguments

    - ``image_size=32``: side of the square images, or a ``(height, width)`` pair for
      rectangular ones (``env.image_shape`` is always ``(height, width)``).
    - ``crop_size=8``: side of the window.
    - ``step_size=3``: pixels per grid move.
    - ``start="center"``: ``"center"`` or ``"random"``.
    - ``image_source=None``: ``None``/``"procedural"`` (embedded procedural scenes), a folder of
      image files, a ``.npz``/``.npy`` path, a uint8 array ``(N, H, W, 3)``/``(H, W, 3)``, or an
      :class:`~gtmsm_env.images.ImageSource`.
    - ``task=None``: ``None`` or ``"coverage"``.
    - ``render_mode=None``: ``None``, ``"rgb_array"`` (the full image upscaled ``render_scale``
      times with the window outlined) or ``"human"`` (a pygame window: image, window, path so far,
      the crop zoomed, a status line).
    - ``render_scale=8``: upscaling factor of rendered frames.
    - ``max_episode_steps=None``: truncate after this many steps (``None``: never; ``gym.make``
      adds its own ``TimeLimit`` instead).
    - ``walls="border"``: ``"border"`` or ``"maze"`` (interior walls, see Walls).
    - ``observation="crop"``: one of the modes in Observation Space.
    - ``terminate_when_covered=False``: with ``task="coverage"``, terminate once every position
      has been seen.
    - ``wall_density=None``: fraction of interior edges walled with ``walls="maze"`` (``None``:
      0.05); giving it with ``walls="border"`` raises.
    - ``world=None``: a :class:`~gtmsm_env.world.World` instead of the six settings it holds
      (``image_size``, ``crop_size``, ``step_size``, ``start``, ``walls``, ``wall_density``;
      giving both raises). ``env.world`` is the validated world either way.

    Bad values raise at construction (``TypeError`` for a wrong type, ``ValueError`` for a wrong
    value, naming the argument; also for an ``image_size`` whose image and window table could
    never fit in this machine's memory). ``step`` accepts an int (or numpy integer / 0-d integer array)
    in ``0..4`` and raises ``TypeError``/``ValueError`` for anything else (floats, bools, arrays
    with a shape); ``reset`` raises for unknown option keys.

    ## Registered Configurations

    Each id has the native vector env
    (``gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")``).

    | id                          | kwargs                                                   | max_episode_steps |
    |-----------------------------|----------------------------------------------------------|-------------------|
    | ``ImageNav-v0``             | the reference setup above                                | 1024              |
    | ``ImageNavMaze-v0``         | ``walls="maze"`` (``wall_density`` 0.05)                 | 1024              |
    | ``ImageNavCoverage-v0``     | ``task="coverage", observation="crop+position+visited"`` | 256               |
    | ``ImageNavCoverageMaze-v0`` | as ``ImageNavCoverage-v0`` plus ``walls="maze"``         | 256               |

    The coverage ids are exploration tasks whose observations include the true position: use
    them to train explorers, not world models.
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 30}

    def __init__(
        self,
        image_size: ImageSize = 32,
        crop_size: int = 8,
        step_size: int = 3,
        start: str = "center",
        image_source: Any = None,
        task: str | None = None,
        render_mode: str | None = None,
        render_scale: int = 8,
        max_episode_steps: int | None = None,
        walls: str = "border",
        wall_density: float | None = None,
        observation: str = "crop",
        terminate_when_covered: bool = False,
        world: World | None = None,
    ) -> None:
        self.action_space, self.observation_space = configure_env(
            self, world=world, image_size=image_size, crop_size=crop_size, step_size=step_size, start=start,
            image_source=image_source, task=task, render_mode=render_mode,
            render_scale=render_scale, max_episode_steps=max_episode_steps, walls=walls,
            wall_density=wall_density, observation=observation,
            terminate_when_covered=terminate_when_covered,
        )
        self.image_source: ImageSource
        rows, cols = self.grid_shape
        self._position_scale = (1.0 / max(rows - 1, 1), 1.0 / max(cols - 1, 1))

        self.image: np.ndarray | None = None
        self._windows: np.ndarray | None = None
        self._row = self._col = 0
        self._step = 0
        self._seen = np.zeros(self.grid_shape, dtype=bool)
        self._border = border_blocked_moves(self.grid_shape)
        self.blocked_moves = self._border
        self._blocked_list: list[bool] = self._border.ravel().tolist()
        self.path: list[tuple[int, int]] = []
        self._renderer: Any = None

    # -- core API ------------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = validate_options(options, ("image",))
        if options.get("image") is not None:
            image = validate_pinned_image(options["image"], self.image_size)
        else:
            image = self.image_source.sample(self.np_random, 1)[0]
        self.image = image
        self._windows = self.geometry.windows(image[None])[0]
        if self.wall_density is not None:
            self.blocked_moves = generate_maze(self.np_random, self.grid_shape, self.wall_density)
            self._blocked_list = self.blocked_moves.ravel().tolist()
        rows, cols = self.grid_shape
        if self.start == "center":
            self._row, self._col = rows // 2, cols // 2
        else:
            self._row = int(self.np_random.integers(rows))
            self._col = int(self.np_random.integers(cols))
        self._step = 0
        self._seen[:] = False
        self._seen[self._row, self._col] = True
        self.path = [(self._row, self._col)]
        if self.render_mode == "human":
            self.render()
        return self._observation(), self._info(False)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._windows is None:
            raise RuntimeError("call reset() before step()")
        a = validate_action(action)
        rows, cols = self.grid_shape
        wall_hit = self._blocked_list[(self._row * cols + self._col) * NUM_ACTIONS + a]
        if not wall_hit:
            self._row += _DROW[a]
            self._col += _DCOL[a]
        self._step += 1
        reward = 0.0
        if not self._seen[self._row, self._col]:
            self._seen[self._row, self._col] = True
            if self.task == "coverage":
                reward = 1.0
        if self.render_mode is not None:
            self.path.append((self._row, self._col))
            if self.render_mode == "human":
                self.render()
        terminated = self.terminate_when_covered and self.num_seen == rows * cols
        truncated = self.max_episode_steps is not None and self._step >= self.max_episode_steps
        return self._observation(), reward, terminated, truncated, self._info(wall_hit)

    def _observation(self) -> Any:
        crop = self._windows[self._row * self.grid_shape[1] + self._col].copy()
        if self.observation == "crop":
            return crop
        parts = {
            "crop": lambda: crop,
            "position": lambda: np.array(
                [self._row * self._position_scale[0], self._col * self._position_scale[1]],
                np.float32,
            ),
            "visited": lambda: self._seen.astype(np.float32),
        }
        return {part: parts[part]() for part in self.observation_parts}

    def _info(self, wall_hit: bool) -> dict[str, Any]:
        info = {
            "position": np.array([self._row, self._col]),
            "wall_hit": wall_hit,
            "step": self._step,
            "grid_shape": self.grid_shape,
        }
        if self.task == "coverage":
            info["coverage"] = self.num_seen
        return info

    # -- accessors -----------------------------------------------------------------------------

    @property
    def position(self) -> tuple[int, int]:
        """The current grid position ``(row, col)``."""
        return self._row, self._col

    @property
    def num_seen(self) -> int:
        """How many distinct positions the window has visited this episode."""
        return int(self._seen.sum())

    @property
    def elapsed_steps(self) -> int:
        return self._step

    def get_keys_to_action(self) -> dict[tuple[int, ...], int]:
        """Key mapping for ``gymnasium.utils.play.play`` (use ``noop=STAY``): arrows/WASD move."""
        return {(key,): action for key, action in movement_keys().items()}

    # -- rendering -----------------------------------------------------------------------------

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode at creation")
            return None
        if self.image is None:
            raise RuntimeError("call reset() before render()")
        if self.render_mode == "rgb_array":
            return self.render_frame()
        if self._renderer is None:
            from gtmsm_env.render import HumanRenderer

            self._renderer = HumanRenderer(self.render_scale, self.metadata["render_fps"])
        self._renderer.draw(self)
        return None

    def render_frame(self) -> np.ndarray:
        """The full image upscaled ``render_scale`` times, the window outlined in yellow."""
        assert self.image is not None
        blocked = self.blocked_moves if self.walls == "maze" else None
        return draw_frame(self.image, self.position, self.geometry, self.render_scale, blocked)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
