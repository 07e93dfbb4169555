"""A native numpy vector env: ``num_envs`` ImageNav environments stepped with one gather."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from gtmsm_env.drawing import draw_frame
from gtmsm_env.env import configure_env, validate_options, validate_pinned_image
from gtmsm_env.geometry import check_int
from gtmsm_env.images import ImageSize, ImageSource
from gtmsm_env.maze import border_blocked_moves, generate_maze
from gtmsm_env.world import ACTION_DELTAS, NUM_ACTIONS, World


class ImageNavVectorEnv(VectorEnv):
    """``num_envs`` ImageNav-v0 environments in lock step, in numpy.

    Equivalence with single envs: ``reset(seed=s)`` seeds env ``i`` with ``s + i`` (as
    ``SyncVectorEnv`` does; a list of seeds is used as given), each env owns its own
    ``np_random`` generator and draws its image, then its random start, exactly as
    :class:`~gtmsm_env.env.ImageNavEnv` does. So for the same seed and actions the observations,
    positions and wall hits equal those of ``num_envs`` single envs made with ``gym.make``.

    Autoreset: ``metadata["autoreset_mode"] = AutoresetMode.NEXT_STEP`` (Gymnasium's default):
    after an env is truncated (``max_episode_steps`` reached) or terminated (only with
    ``terminate_when_covered``), the *next* ``step`` resets it, ignoring its action, and returns
    its reset observation with reward 0 and ``terminated = truncated = False``.

    At reset every env's crops at all grid positions are precomputed into a table
    ``(num_envs, rows * cols, crop * crop * 3)``, so a step is one integer update and one gather.

    Info (batched, the keys and layout ``SyncVectorEnv`` gives): ``"position"`` ``(N, 2)`` int64,
    ``"wall_hit"`` ``(N,)`` bool, ``"step"`` ``(N,)`` int64 (steps since that env's last reset),
    ``"grid_shape"`` ``(N,)`` object array of ``(rows, cols)`` tuples, and for each key ``k`` the
    mask ``"_k"`` ``(N,)`` bool (all True: every env reports every key). The masks and
    ``grid_shape`` are shared read-only arrays.

    Observation modes, the coverage task and ``terminate_when_covered`` work as in the single env
    (a ``Dict`` observation is a dict of batched arrays); a terminated env autoresets on the next
    step like a truncated one.

    Walls: ``walls="maze"`` draws each env's layout with its own generator after its image (as
    the single env does); ``blocked_moves`` ``(N, rows, cols, 5)`` bool holds every env's layout.

    ``world=`` (a :class:`~gtmsm_env.world.World`) may replace the six world settings, as in the
    single env; ``env.world`` is the validated world.

    ``reset(options={"image": array})`` pins images: ``(H, W, 3)`` for all envs or
    ``(N, H, W, 3)`` one per env; a ``"reset_mask"`` option ``(N,)`` bool resets only those envs.
    """

    metadata = {
        "render_modes": ["rgb_array"],
        "render_fps": 30,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int,
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
        self.num_envs = check_int("num_envs", num_envs, 1)
        if render_mode == "human":
            raise ValueError("the vector env renders only 'rgb_array' (one frame per env)")
        self.single_action_space, self.single_observation_space = configure_env(
            self, world=world, image_size=image_size, crop_size=crop_size, step_size=step_size, start=start,
            image_source=image_source, task=task, render_mode=render_mode,
            render_scale=render_scale, max_episode_steps=max_episode_steps, walls=walls,
            wall_density=wall_density, observation=observation,
            terminate_when_covered=terminate_when_covered, num_envs=self.num_envs,
        )
        self.image_source: ImageSource
        crop_size = self.crop_size
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

        n = self.num_envs
        rows, cols = self.grid_shape
        self._rngs: list[np.random.Generator] = [seeding.np_random()[0] for _ in range(n)]
        self.images = np.zeros((n, *self.image_shape, 3), np.uint8)
        self._table = np.zeros((n * rows * cols, crop_size * crop_size * 3), np.uint8)
        self._base = np.arange(n, dtype=np.int64) * (rows * cols)
        self._rows = np.zeros(n, np.int64)
        self._cols = np.zeros(n, np.int64)
        self._steps = np.zeros(n, np.int64)
        self._seen = np.zeros((n, rows * cols), bool)
        self._track_seen = self.task == "coverage" or "visited" in self.observation_parts
        # float64 then cast, exactly as the single env computes it
        self._position_scale = np.array([1.0 / max(rows - 1, 1), 1.0 / max(cols - 1, 1)])
        # blocked_moves[i, row, col, action]: that move of env i is blocked (border or wall).
        self.blocked_moves = np.broadcast_to(
            border_blocked_moves(self.grid_shape), (n, rows, cols, NUM_ACTIONS)
        ).copy()
        self._blocked_flat = self.blocked_moves.reshape(-1)  # a view: maze resets write through
        self._autoreset = np.zeros(n, bool)
        self._drow = np.ascontiguousarray(ACTION_DELTAS[:, 0])
        self._dcol = np.ascontiguousarray(ACTION_DELTAS[:, 1])
        self._has_reset = False
        # Gymnasium's per-key masks (every env reports every key every step) and the grid shape as
        # SyncVectorEnv batches it (an object array of tuples); shared read-only arrays, so the
        # step stays one gather.
        self._present = np.ones(n, bool)
        self._present.flags.writeable = False
        self._grid_shapes = np.empty(n, object)
        for i in range(n):
            self._grid_shapes[i] = self.grid_shape
        self._grid_shapes.flags.writeable = False

    # -- reset ---------------------------------------------------------------------------------

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        n = self.num_envs
        options = validate_options(options, ("image", "reset_mask"))
        mask = options.get("reset_mask")
        if mask is None:
            mask = np.ones(n, bool)
        else:
            mask = np.asarray(mask)
            if mask.dtype != np.bool_ or mask.shape != (n,):
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({n},), got shape "
                    f"{mask.shape} dtype {mask.dtype}"
                )
        if not self._has_reset and not mask.all():
            raise RuntimeError("the first reset() must reset every env")
        images = None
        if options.get("image") is not None:
            images = self._pinned_images(options["image"])[mask]
        if seed is not None:
            if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
                seeds: list[Any] = [int(seed) + i for i in range(n)]
            elif isinstance(seed, (list, tuple, np.ndarray)):
                seeds = list(seed)
            else:
                raise TypeError(
                    f"seed must be None, an int or a sequence of {n} ints, got "
                    f"{type(seed).__name__}"
                )
            if len(seeds) != n:
                raise ValueError(f"expected {n} seeds, got {len(seeds)}")
            # Only the envs being reset are reseeded (as SyncVectorEnv does with a reset_mask).
            for i in np.flatnonzero(mask):
                if seeds[i] is not None:
                    self._rngs[i] = seeding.np_random(int(seeds[i]))[0]
        self._reset_envs(np.flatnonzero(mask), images)
        self._has_reset = True
        return self._observations(), self._info(np.zeros(n, bool))

    def _pinned_images(self, image: Any) -> np.ndarray:
        if isinstance(image, np.ndarray) and image.ndim == 4:
            if len(image) != self.num_envs:
                raise ValueError(
                    f"options['image'] holds {len(image)} images for {self.num_envs} envs"
                )
            return np.stack([validate_pinned_image(im, self.image_size) for im in image])
        single = validate_pinned_image(image, self.image_size)
        return np.broadcast_to(single, (self.num_envs, *single.shape))

    def _reset_envs(self, envs: np.ndarray, images: np.ndarray | None = None) -> None:
        """Reset the envs at indices ``envs``: new image then start, each with its own generator."""
        if len(envs) == 0:
            return
        rngs = [self._rngs[i] for i in envs]
        if images is None:
            images = self.image_source.sample_each(rngs)
        self.images[envs] = images
        rows, cols = self.grid_shape
        cells = rows * cols
        table = self._table.reshape(self.num_envs, cells, -1)
        table[envs] = self.geometry.windows(images).reshape(len(envs), cells, -1)
        if self.wall_density is not None:
            for i, rng in zip(envs, rngs, strict=True):
                self.blocked_moves[i] = generate_maze(rng, self.grid_shape, self.wall_density)
        if self.start == "center":
            self._rows[envs], self._cols[envs] = rows // 2, cols // 2
        else:
            for i, rng in zip(envs, rngs, strict=True):
                self._rows[i] = rng.integers(rows)
                self._cols[i] = rng.integers(cols)
        self._steps[envs] = 0
        self._seen[envs] = False
        self._seen[envs, self._rows[envs] * cols + self._cols[envs]] = True
        self._autoreset[envs] = False

    # -- step ----------------------------------------------------------------------------------

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._has_reset:
            raise RuntimeError("call reset() before step()")
        n = self.num_envs
        actions = np.asarray(actions)
        if actions.shape != (n,):
            raise ValueError(f"expected actions of shape ({n},), got {actions.shape}")
        if actions.dtype.kind not in "iu":
            raise TypeError(
                "actions must be integers in 0..4 (stay, up, down, left, right), got dtype "
                f"{actions.dtype}"
            )
        if actions.min() < 0 or actions.max() >= NUM_ACTIONS:
            raise ValueError(
                "actions must be integers in 0..4 (stay, up, down, left, right), got values "
                f"{np.unique(actions[(actions < 0) | (actions >= NUM_ACTIONS)])[:5].tolist()}"
            )
        rows, cols = self.grid_shape
        cell = self._base + self._rows * cols + self._cols
        wall_hit = self._blocked_flat.take(cell * NUM_ACTIONS + actions)
        moves = ~wall_hit
        self._rows += self._drow[actions] * moves
        self._cols += self._dcol[actions] * moves
        self._steps += 1
        rewards = np.zeros(n, np.float64)
        terminated = np.zeros(n, bool)
        if self._track_seen:
            cell = self._rows * cols + self._cols
            seen = self._seen[np.arange(n), cell]
            self._seen[np.arange(n), cell] = True
            if self.task == "coverage":
                rewards[~seen] = 1.0
                if self.terminate_when_covered:
                    terminated = self._seen.all(axis=1)

        resetting = self._autoreset
        if resetting.any():
            envs = np.flatnonzero(resetting)
            self._reset_envs(envs)
            wall_hit[envs] = False
            rewards[envs] = 0.0
            terminated[envs] = False
        if self.max_episode_steps is not None:
            truncated = self._steps >= self.max_episode_steps
        else:
            truncated = np.zeros(n, bool)
        self._autoreset = truncated | terminated
        return self._observations(), rewards, terminated, truncated, self._info(wall_hit)

    def crops(self) -> np.ndarray:
        """The crop under each env's window, ``(N, crop, crop, 3)`` uint8 (whatever the
        observation mode)."""
        rows, cols = self.grid_shape
        index = self._base + self._rows * cols + self._cols
        return self._table.take(index, axis=0).reshape(
            self.num_envs, self.crop_size, self.crop_size, 3
        )

    def _observations(self) -> Any:
        rows, cols = self.grid_shape
        n = self.num_envs
        if self.observation_parts == ("crop",):
            index = self._base + self._rows * cols + self._cols
            return self._table.take(index, axis=0).reshape(n, self.crop_size, self.crop_size, 3)
        obs: dict[str, np.ndarray] = {}
        for part in self.observation_parts:
            if part == "crop":
                index = self._base + self._rows * cols + self._cols
                crops = self._table.take(index, axis=0)
                obs[part] = crops.reshape(n, self.crop_size, self.crop_size, 3)
            elif part == "position":
                rows_cols = np.stack([self._rows, self._cols], axis=1)
                obs[part] = (rows_cols * self._position_scale).astype(np.float32)
            else:
                obs[part] = self._seen.reshape(n, rows, cols).astype(np.float32)
        return obs

    def _info(self, wall_hit: np.ndarray) -> dict[str, Any]:
        present = self._present
        return {
            "position": np.stack([self._rows, self._cols], axis=1),
            "_position": present,
            "wall_hit": wall_hit,
            "_wall_hit": present,
            "step": self._steps.copy(),
            "_step": present,
            "grid_shape": self._grid_shapes,
            "_grid_shape": present,
        } | (
            {"coverage": self._seen.sum(axis=1), "_coverage": present}
            if self.task == "coverage"
            else {}
        )

    # -- rendering -----------------------------------------------------------------------------

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One ``rgb_array`` frame per env (as ``SyncVectorEnv`` returns)."""
        if self.render_mode is None:
            return None
        return tuple(
            draw_frame(
                self.images[i],
                (int(self._rows[i]), int(self._cols[i])),
                self.geometry,
                self.render_scale,
                self.blocked_moves[i] if self.walls == "maze" else None,
            )
            for i in range(self.num_envs)
        )
