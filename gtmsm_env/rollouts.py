"""Random-walk rollouts of ImageNav: the reference policy, batched collection and the dataset file.

CLI: ``python -m gtmsm_env.rollouts --num-sequences 256 --seq-len 512 --seed 0 --out data/train.npz``
"""

from __future__ import annotations

import json
import os
import tempfile
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gtmsm_cli.checks import memory_problem, output_file_problem
from gtmsm_cli.flags import (
    SEED_MAX,
    ArgumentParser,
    add_dataclass_flags,
    bounded,
    dataclass_values,
    error_text,
    fail,
    flag_text,
)
from gtmsm_env.images import ImageSize, ImageSizeError, canonical_image_size, unreadable_reason
from gtmsm_env.policies import SB3Policy, resolve_policy
from gtmsm_env.world import NUM_ACTIONS, START_MODES, WALL_MODES, Action, World, resolve_world

# Damaged archives fail in many ways (a bad zip, a bad deflate stream, a garbled .npy header that
# numpy's parser chokes on): all of them mean "unreadable file".
_UNREADABLE = (
    OSError,
    EOFError,
    ValueError,
    SyntaxError,
    zipfile.BadZipFile,
    zlib.error,
    tokenize.TokenError,
)

FORMAT_VERSION = 1


def _current_umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask

_ARRAY_KEYS = ("observations", "actions", "positions", "wall_hits", "images")
# Optional arrays: absent from files written before they existed, or when they carry nothing.
_OPTIONAL_KEYS = ("blocked_moves",)


@dataclass
class Rollouts:
    """``N`` sequences of ``T`` steps. ``actions[:, t]`` is the action whose step produced
    ``observations[:, t]``; ``actions[:, 0] == Action.STAY`` stands for the reset observation.
    :attr:`world` is the world they were collected in."""

    observations: np.ndarray  # (N, T, crop, crop, 3) uint8
    actions: np.ndarray  # (N, T) int64
    positions: np.ndarray  # (N, T, 2) int64, (row, col) of observations[:, t]
    wall_hits: np.ndarray  # (N, T) bool, False at t = 0
    images: np.ndarray  # (N, H, W, 3) uint8, the image under each sequence
    metadata: dict[str, Any] = field(default_factory=dict)
    # (N, rows, cols, 5) bool or None: the wall layout of each sequence (walls="maze"),
    # blocked_moves[i, row, col, action] is True iff that move was blocked (border included).
    # None means only the border blocks moves.
    blocked_moves: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` if the arrays' shapes or dtypes disagree."""
        obs = self.observations
        if obs.ndim != 5 or obs.shape[-1] != 3 or obs.dtype != np.uint8:
            raise ValueError(
                f"observations must be (N, T, crop, crop, 3) uint8, got {obs.shape} {obs.dtype}"
            )
        n, t = obs.shape[:2]
        expected = {
            "actions": ((n, t), "iu"),
            "positions": ((n, t, 2), "iu"),
            "wall_hits": ((n, t), "b"),
        }
        for name, (shape, kinds) in expected.items():
            array = getattr(self, name)
            if array.shape != shape or array.dtype.kind not in kinds:
                raise ValueError(
                    f"inconsistent rollouts: {name} has shape {array.shape} dtype {array.dtype}, "
                    f"expected {shape} matching observations {obs.shape}"
                )
        images = self.images
        if (
            images.ndim != 4
            or len(images) != n
            or images.shape[-1] != 3
            or images.dtype != np.uint8
        ):
            raise ValueError(
                f"inconsistent rollouts: images has shape {images.shape} dtype {images.dtype}, "
                f"expected ({n}, H, W, 3) uint8"
            )
        blocked = self.blocked_moves
        if blocked is not None and (
            blocked.ndim != 4 or len(blocked) != n or blocked.shape[-1] != 5
            or blocked.dtype != np.bool_
        ):
            raise ValueError(
                f"inconsistent rollouts: blocked_moves has shape {blocked.shape} dtype "
                f"{blocked.dtype}, expected ({n}, rows, cols, 5) bool"
            )

    def __len__(self) -> int:
        return len(self.observations)

    def __getitem__(self, index: Any) -> Rollouts:
        if isinstance(index, (int, np.integer)):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"rollouts index {index} out of range for {n} sequences")
            index = slice(index % n, index % n + 1)
        return Rollouts(
            self.observations[index],
            self.actions[index],
            self.positions[index],
            self.wall_hits[index],
            self.images[index],
            dict(self.metadata),
            None if self.blocked_moves is None else self.blocked_moves[index],
        )

    @property
    def num_steps(self) -> int:
        return self.observations.shape[1]

    @property
    def world(self) -> World:
        """The world the rollouts were collected in: ``metadata["world"]``, or for files written
        before it existed the flat ``image_size``/``crop_size``/... keys (a key missing there
        takes the crops' and images' own size, or the :class:`World` default)."""
        if isinstance(self.metadata.get("world"), dict):
            return World.from_dict(self.metadata["world"])
        settings = {name: self.metadata[name] for name in ("image_size", "crop_size", "step_size",
                                                             "start", "walls", "wall_density")
                    if name in self.metadata}
        settings.setdefault("image_size", canonical_image_size(tuple(self.images.shape[1:3])))
        settings.setdefault("crop_size", int(self.observations.shape[2]))
        if settings.get("walls", "border") == "border":
            settings["wall_density"] = None
        return World.from_dict(settings)

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` atomically (temporary file, then rename); metadata as a JSON string.

        The file gets the mode an ordinary ``open`` would give (0666 minus the user's umask), not
        the 0600 of the temporary file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~_current_umask())
            with os.fdopen(fd, "wb") as file:
                np.savez_compressed(
                    file,
                    **{key: getattr(self, key) for key in _ARRAY_KEYS},
                    **{
                        key: getattr(self, key)
                        for key in _OPTIONAL_KEYS
                        if getattr(self, key) is not None
                    },
                    metadata=np.array(json.dumps(self.metadata)),
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> Rollouts:
        """Read a file written by :meth:`save` (never unpickles anything).

        A missing file raises ``FileNotFoundError``; a corrupt or truncated file, a file that is
        not an ``.npz`` of rollouts (missing keys, object arrays, bad metadata) or one whose arrays
        disagree raises ``ValueError`` naming the file and the problem.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"rollouts file does not exist: {path}")
        if path.is_dir():
            raise ValueError(f"{path} is a folder; give the .npz file gtmsm-rollouts wrote")
        try:
            loaded = np.load(path, allow_pickle=False)
        except _UNREADABLE as error:
            raise ValueError(f"could not read rollouts file {path} (corrupt?): {unreadable_reason(error)}") from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(
                f"{path} is not a rollouts file: expected an .npz archive, got a single array"
            )
        with loaded as data:
            missing = [k for k in (*_ARRAY_KEYS, "metadata") if k not in data.files]
            if missing:
                raise ValueError(f"{path} is not a rollouts file: missing keys {missing}")
            try:
                arrays = {key: data[key] for key in _ARRAY_KEYS}
                arrays.update({key: data[key] for key in _OPTIONAL_KEYS if key in data.files})
                raw_metadata = data["metadata"]
            except _UNREADABLE as error:
                raise ValueError(
                    f"could not read rollouts file {path} (corrupt?): {unreadable_reason(error)}"
                ) from None
        if raw_metadata.shape != () or raw_metadata.dtype.kind != "U":
            raise ValueError(
                f"{path} is not a rollouts file: metadata must be a JSON string, got an array "
                f"of shape {raw_metadata.shape} dtype {raw_metadata.dtype}"
            )
        try:
            metadata = json.loads(str(raw_metadata))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: metadata is not valid JSON: {error}") from error
        if not isinstance(metadata, dict):
            raise ValueError(
                f"{path}: metadata must be a JSON object, got {type(metadata).__name__}"
            )
        try:
            return cls(**arrays, metadata=metadata)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    def summary(self) -> str:
        """A few human-readable lines: shapes, positions visited, wall-hit fraction."""
        n, t = self.actions.shape
        rows, cols = self.metadata.get("grid_shape", (None, None))
        visited = [len(np.unique(p[:, 0] * 10_000 + p[:, 1])) for p in self.positions]
        moves = self.actions[:, 1:] != Action.STAY
        wall_fraction = self.wall_hits[:, 1:].sum() / max(1, moves.sum())
        lines = [
            f"{n} sequences x {t} steps; observations {self.observations.shape} uint8, "
            f"images {self.images.shape}",
            f"positions visited per sequence: mean {np.mean(visited):.1f}, min {np.min(visited)}, "
            f"max {np.max(visited)} of {rows}x{cols}",
            f"wall hits: {wall_fraction:.1%} of moves; stay actions: {1 - moves.mean():.1%}",
        ]
        return "\n".join(lines)


MAX_MEAN_HOLD = 1e6
"""The longest mean hold the random walk takes (a hold longer than a sequence is one straight run)."""


def random_walk_actions(
    rng: np.random.Generator, num_sequences: int, num_steps: int, mean_hold: float = 2.0
) -> np.ndarray:
    """The reference random walk, ``(num_sequences, num_steps)`` int64.

    Repeatedly pick a direction uniformly among the 4 moves and hold it for Poisson(``mean_hold``)
    steps; a draw of 0 gives one stay (``Action.STAY``). Draws: all directions ``(N, num_steps)``, then all hold
    lengths ``(N, num_steps)`` (every segment lasts >= 1 step, so that many always suffices).
    """
    if num_sequences < 0 or num_steps < 0:
        raise ValueError("num_sequences and num_steps must be >= 0")
    if not 0 < mean_hold <= MAX_MEAN_HOLD:
        raise ValueError(f"mean_hold must be > 0 and <= {MAX_MEAN_HOLD:g}, got {mean_hold}")
    directions = rng.integers(Action.UP, NUM_ACTIONS, size=(num_sequences, num_steps))
    holds = rng.poisson(mean_hold, size=(num_sequences, num_steps))
    segment_actions = np.where(holds == 0, Action.STAY, directions)
    lengths = np.maximum(holds, 1)
    out = np.empty((num_sequences, num_steps), np.int64)
    for i in range(num_sequences):
        # only the segments that start within num_steps (long holds would repeat far past it)
        used = int(np.searchsorted(np.cumsum(lengths[i]), num_steps)) + 1
        out[i] = np.repeat(segment_actions[i, :used], lengths[i, :used])[:num_steps]
    return out


def collect_rollouts(
    num_sequences: int,
    seq_len: int,
    *,
    seed: int,
    world: World | None = None,
    image_source: Any = None,
    image_size: ImageSize = 32,
    crop_size: int = 8,
    step_size: int = 3,
    start: str = "center",
    mean_hold: float = 2.0,
    walls: str = "border",
    wall_density: float | None = None,
    policy: Any = None,
    policy_steps: int | None = None,
    observation: str | None = None,
    deterministic: bool = True,
) -> Rollouts:
    """Collect sequences with the native vector env; reproducible from ``seed``.

    Sequence ``i`` is env ``i`` of an :class:`ImageNavVectorEnv` reset with ``seed`` (so it equals
    a single env reset with ``seed + i`` driven by the same actions). The reference random walk
    draws from its own generator ``np.random.default_rng([seed, 1])``.

    ``policy`` (default ``None``: the random walk everywhere) chooses the actions of the first
    ``policy_steps`` steps of every sequence (default: all; ``policy_steps=256`` drives the
    memorisation phase of a tau = 256 evaluation, i.e. ``actions[:, 1:256]``); the later steps
    keep the random walk, drawn exactly as without a policy, so two datasets with the same seed
    and different memorisation policies share images, starts, walls and prediction-phase actions.
    It is a callable ``(observations, info) -> (N,) actions`` (see :mod:`gtmsm_env.policies`;
    it sees observations in mode ``observation``, default ``"crop"``), an SB3 model, or the path
    of a saved SB3 model (loaded lazily; its observation mode is read from its space, and
    ``deterministic`` picks greedy or sampled actions, sampled from torch seeded with ``seed``).
    The dataset always stores crops.

    ``walls="maze"`` (with ``wall_density``, see :class:`~gtmsm_env.env.ImageNavEnv`) draws a wall
    layout per sequence; it is kept in ``Rollouts.blocked_moves`` and saved with the dataset.

    ``world`` (a :class:`~gtmsm_env.world.World`) sets the geometry, start and walls in one value.
    ``image_size`` is an int (square images) or ``(height, width)``; the metadata records it as
    given (an int, or ``[height, width]``) and always as ``image_shape`` ``[height, width]``.
    """
    from gtmsm_env.images import make_image_source
    from gtmsm_env.vector_env import ImageNavVectorEnv

    world = resolve_world(world, image_size=image_size, crop_size=crop_size, step_size=step_size,
                          start=start, walls=walls, wall_density=wall_density)
    if num_sequences < 1 or seq_len < 1:
        raise ValueError("num_sequences and seq_len must be >= 1")
    source = make_image_source(image_source, world.image_size)
    policy_fn, description = None, "random_walk"
    if policy is not None:
        policy_fn, mode, description = resolve_policy(policy, deterministic=deterministic, seed=seed)
        if mode is not None:
            if observation is not None and observation != mode:
                raise ValueError(f"the policy needs observation={mode!r}, not {observation!r}")
            observation = mode
        if policy_steps is None:
            policy_steps = seq_len
        if not 1 <= policy_steps <= seq_len:
            raise ValueError(f"policy_steps must be in 1..seq_len={seq_len}, got {policy_steps}")
    elif policy_steps is not None:
        raise ValueError("policy_steps needs a policy")
    env = ImageNavVectorEnv(
        num_sequences,
        world=world,
        image_source=source,
        max_episode_steps=None,
        observation=observation or "crop",
    )
    world = env.world
    crop_size = world.crop_size
    if isinstance(policy_fn, SB3Policy):
        policy_fn.check_geometry(crop_size, env.grid_shape)
    policy_rng = np.random.default_rng([seed, 1])
    actions = np.full((num_sequences, seq_len), Action.STAY, np.int64)
    actions[:, 1:] = random_walk_actions(policy_rng, num_sequences, seq_len - 1, mean_hold)
    observations = np.empty((num_sequences, seq_len, crop_size, crop_size, 3), np.uint8)
    positions = np.empty((num_sequences, seq_len, 2), np.int64)
    wall_hits = np.zeros((num_sequences, seq_len), bool)
    obs, info = env.reset(seed=seed)
    observations[:, 0], positions[:, 0] = env.crops(), info["position"]
    for t in range(1, seq_len):
        if policy_fn is not None and t < policy_steps:
            actions[:, t] = _checked_actions(policy_fn(obs, info), num_sequences)
        obs, _, _, _, info = env.step(actions[:, t])
        observations[:, t], positions[:, t], wall_hits[:, t] = (
            env.crops(),
            info["position"],
            info["wall_hit"],
        )
    from gtmsm_env import __version__

    metadata = {
        "seed": seed,
        "image_source": source.describe(),
        "image_size": list(env.image_size) if isinstance(env.image_size, tuple) else env.image_size,
        "image_shape": list(env.image_shape),
        "crop_size": crop_size,
        "step_size": world.step_size,
        "grid_shape": list(env.grid_shape),
        "policy": description,
        "policy_steps": policy_steps,
        "observation": observation or "crop",
        "deterministic": deterministic if policy is not None else None,
        "mean_hold": mean_hold,
        "start": world.start,
        "walls": world.walls,
        "wall_density": world.wall_density,
        "world": world.to_dict(),
        "created_by": "gtmsm_env.rollouts.collect_rollouts",
        "version": __version__,
        "format_version": FORMAT_VERSION,
    }
    blocked = env.blocked_moves.copy() if world.walls == "maze" else None
    return Rollouts(
        observations, actions, positions, wall_hits, env.images.copy(), metadata, blocked
    )


def _checked_actions(actions: Any, n: int) -> np.ndarray:
    actions = np.asarray(actions)
    if actions.shape != (n,) or actions.dtype.kind not in "iu":
        raise ValueError(
            f"the policy must return ({n},) integer actions, got shape {actions.shape} dtype "
            f"{actions.dtype}"
        )
    if n and (actions.min() < 0 or actions.max() >= NUM_ACTIONS):
        raise ValueError("the policy returned actions outside 0..4")
    return actions


PROG = "gtmsm-rollouts"


@dataclass
class RolloutArgs:
    """The flags of ``gtmsm-rollouts`` (one flag per field, ``--num-sequences`` for
    ``num_sequences``; the docstring under each field is its help text)."""

    out: str
    """output .npz path (its folder is created if missing)"""
    num_sequences: int = bounded(256, ge=1)
    """number of sequences (one image each)"""
    seq_len: int = bounded(512, ge=2)
    """steps per sequence, reset observation included"""
    seed: int = bounded(0, ge=0, le=SEED_MAX)
    """seed of images, wall layouts, starts and the policy"""
    image_source: str = "procedural"
    """'procedural' (embedded default), a folder of images, or a .npz/.npy file"""
    image_size: int = bounded(32, ge=1)
    """image side in pixels (the height when --image-width is given)"""
    image_width: int | None = bounded(None, ge=1)
    """image width in pixels for rectangular images (unset: square, --image-size)"""
    crop_size: int = bounded(8, ge=1)
    """window side in pixels (at most --image-size and --image-width)"""
    step_size: int = bounded(3, ge=1)
    """pixels per grid move"""
    start: str = "center"
    """start position: center or random"""
    mean_hold: float = bounded(2.0, gt=0, le=MAX_MEAN_HOLD)
    """random walk: Poisson mean of how long a direction is held"""
    walls: str = "border"
    """'border' (only the image border blocks moves) or 'maze' (interior walls too)"""
    wall_density: float | None = bounded(None, ge=0, le=1)
    """fraction of interior edges walled with --walls maze (unset: 0.05)"""
    policy: str | None = None
    """a saved SB3 model (.zip, e.g. benchmarks/results/ppo_coverage.zip) that chooses the actions
    instead of the random walk"""
    policy_steps: int | None = bounded(None, ge=1)
    """with --policy: it drives only the first N steps of each sequence (e.g. 256 = the
    memorisation phase); the rest is the random walk (unset: all steps)"""
    policy_deterministic: bool = True
    """with --policy: greedy actions (--no-policy-deterministic samples them)"""

    @property
    def world(self) -> World:
        """The world these flags ask for (not validated)."""
        return World(rollout_image_size(self), self.crop_size, self.step_size, self.start,
                     self.walls, self.wall_density)


_WORLD_FIELDS = ("image_size", "crop_size", "step_size", "start", "walls", "wall_density")


def image_source_text(error: BaseException) -> str:
    """The ``--image-source`` problem as the library words it; for images of another size, with
    the flags that would match them added to its advice."""
    text = error_text(error)
    if isinstance(error, ImageSizeError) and text.endswith(")"):
        height, width = error.image_shape
        flags = f"--image-size {height}" + ("" if height == width else f" --image-width {width}")
        text = f"{text[:-1]} in Python, {flags} on the command line)"
    return text


_CHOICES = {"start": START_MODES, "walls": WALL_MODES}


def rollout_image_size(args: RolloutArgs) -> ImageSize:
    """``--image-size`` alone (square), or ``(--image-size, --image-width)``."""
    if args.image_width is None:
        return args.image_size
    return canonical_image_size((args.image_size, args.image_width))


def rollouts_memory_needs(num_sequences: int, seq_len: int, image_shape: tuple[int, int], crop_size: int,
                          grid_shape: tuple[int, int], walls: str = "border") -> dict[str, tuple[str, float]]:
    """Bytes :func:`collect_rollouts` holds at once, by the flags that ask for them: per step a crop
    (uint8 RGB), an action, a position, a wall hit and the random walk's draws (a few int64); per
    sequence its image (in the env and the dataset's copy) and, in a maze, its wall layout."""
    per_step = crop_size * crop_size * 3 + 8 + 16 + 1 + 4 * 8
    per_sequence = 2 * image_shape[0] * image_shape[1] * 3 + 4096
    if walls == "maze":
        per_sequence += 2 * grid_shape[0] * grid_shape[1] * 5
    return {
        "--num-sequences/--seq-len": ("the crops, actions and positions", num_sequences * seq_len * per_step),
        "--num-sequences/--image-size": ("the images", num_sequences * per_sequence),
    }


def parse_args(argv: list[str] | None = None) -> tuple[RolloutArgs, Any, Any]:
    """Parse and check every flag; returns the arguments, the image source built from
    ``--image-source`` and the loaded ``--policy`` (or ``None``). Any problem exits with one ``gtmsm-rollouts: error: ...`` line naming the
    flag (status 2) before any rollout is collected."""
    from gtmsm_env.geometry import single_position_problem
    from gtmsm_env.images import make_image_source
    from gtmsm_env.maze import validate_walls

    parser = ArgumentParser(
        prog=PROG,
        description="Collect rollouts of ImageNav-v0 (the reference random walk, or a saved SB3 "
        "policy with --policy) and write them to an .npz dataset.",
    )
    add_dataclass_flags(parser, RolloutArgs, choices=_CHOICES)
    args = RolloutArgs(**dataclass_values(parser.parse_args(argv), RolloutArgs))
    if args.crop_size > args.image_size:
        fail(PROG, f"--crop-size {args.crop_size} is larger than --image-size {args.image_size}")
    if args.image_width is not None and args.crop_size > args.image_width:
        fail(PROG, f"--crop-size {args.crop_size} is larger than --image-width {args.image_width}")
    world = args.world
    image_size, (height, width), grid_shape = world.image_size, world.image_shape, world.grid_shape
    problem = single_position_problem(image_size, args.crop_size, args.step_size)
    if problem is not None:
        fail(PROG, flag_text(problem, _WORLD_FIELDS))
    if args.walls == "border" and args.wall_density is not None:
        fail(PROG, "--wall-density applies only to --walls maze")
    try:
        validate_walls(args.walls, args.wall_density, grid_shape)
    except (TypeError, ValueError) as error:
        fail(PROG, f"--wall-density: {error_text(error)}")
    problem = memory_problem(rollouts_memory_needs(args.num_sequences, args.seq_len, (height, width),
                                                   args.crop_size, grid_shape, args.walls))
    if problem is not None:
        fail(PROG, problem)
    if args.policy is None and not args.policy_deterministic:
        fail(PROG, "--no-policy-deterministic needs --policy (the random walk has no greedy actions)")
    drives_all = args.policy is not None and (args.policy_steps is None or args.policy_steps >= args.seq_len)
    if drives_all and args.mean_hold != RolloutArgs.mean_hold:
        fail(PROG, "--mean-hold shapes the random walk, but --policy drives every step (give --policy-steps N "
                   "below --seq-len to leave the later steps to the walk, or drop --mean-hold)")
    problem = output_file_problem(args.out, (".npz",))
    if problem is not None:
        fail(PROG, f"--out: {problem}")
    try:
        source = make_image_source(args.image_source, image_size)
    except (ValueError, TypeError, OSError) as error:
        fail(PROG, f"--image-source: {image_source_text(error)}")
    if args.policy is None:
        for name in ("policy_steps",):
            if getattr(args, name) is not None:
                fail(PROG, f"--{name.replace('_', '-')} needs --policy")
        return args, source, None
    if args.policy_steps is not None and args.policy_steps > args.seq_len:
        fail(PROG, f"--policy-steps {args.policy_steps} is more than --seq-len {args.seq_len}")
    from gtmsm_env.policies import load_sb3_policy

    try:
        policy = load_sb3_policy(args.policy, deterministic=args.policy_deterministic, seed=args.seed)
        policy.check_geometry(args.crop_size, grid_shape)
    except (ValueError, TypeError, OSError) as error:
        fail(PROG, f"--policy: {error_text(error)}")
    return args, source, policy


def main(argv: list[str] | None = None) -> None:
    args, source, policy = parse_args(argv)
    rollouts = collect_rollouts(
        args.num_sequences,
        args.seq_len,
        seed=args.seed,
        world=args.world,
        image_source=source,
        mean_hold=args.mean_hold,
        policy=policy,
        policy_steps=args.policy_steps,
    )
    out = Path(args.out)
    try:
        rollouts.save(out)
    except OSError as error:  # e.g. the disk filled up: nothing was half-written (atomic save)
        fail(PROG, f"--out: could not write {out}: {error_text(error)}")
    print(rollouts.summary())
    print(f"image source: {rollouts.metadata['image_source']}; seed {args.seed}")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
