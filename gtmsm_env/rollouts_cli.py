"""``gtmsm-rollouts``: collect rollouts of ImageNav-v0 and write them to an ``.npz`` dataset
and/or a local Minari dataset.

``gtmsm-rollouts --num-sequences 256 --seq-len 512 --seed 0 --out data/train.npz`` (also
``python -m gtmsm_env.rollouts``); ``--minari gtmsm/random-walk-v0`` writes the Minari dataset
of that id (see :mod:`gtmsm_env.minari_io`). Every flag is checked before any rollout is collected; a bad
one exits with one ``gtmsm-rollouts: error: ...`` line naming it (status 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gtmsm_cli.checks import memory_problem, output_dir_problem, output_file_problem
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
from gtmsm_cli.signals import interrupted, sigterm_raises
from gtmsm_env.images import ImageSizeError
from gtmsm_env.rollouts import MAX_MEAN_HOLD, collect_rollouts
from gtmsm_env.world import World
from gtmsm_env.world_flags import add_world_flags, world_of

PROG = "gtmsm-rollouts"


@dataclass
class RolloutArgs:
    """The flags of ``gtmsm-rollouts`` (one flag per field, ``--num-sequences`` for
    ``num_sequences``; the docstring under each field is its help text). ``world`` is the world
    flags' :class:`~gtmsm_env.world.World` (its flags are :func:`add_world_flags`)."""

    out: str | None = None
    """output .npz path (its folder is created if missing)"""
    minari: str | None = None
    """also (or instead of --out) write a local Minari dataset of this id, e.g. gtmsm/random-walk-v0
    (in MINARI_DATASETS_PATH, else ~/.minari/datasets; needs pip install 'gtmsm[minari]')"""
    num_sequences: int = bounded(256, ge=1)
    """number of sequences (one image each)"""
    seq_len: int = bounded(512, ge=2)
    """steps per sequence, reset observation included"""
    seed: int = bounded(0, ge=0, le=SEED_MAX)
    """seed of images, wall layouts, starts and the policy"""
    image_source: str = "procedural"
    """'procedural' (embedded default), a folder of images, or a .npz/.npy file"""
    mean_hold: float = bounded(2.0, gt=0, le=MAX_MEAN_HOLD)
    """random walk: Poisson mean of how long a direction is held"""
    policy: str | None = None
    """a saved SB3 model (.zip, e.g. benchmarks/results/ppo_coverage.zip) that chooses the actions
    instead of the random walk"""
    policy_steps: int | None = bounded(None, ge=1)
    """with --policy: it drives only the first N steps of each sequence (e.g. 256 = the
    memorisation phase); the rest is the random walk (unset: all steps)"""
    policy_deterministic: bool = True
    """with --policy: greedy actions (--no-policy-deterministic samples them)"""
    world: World = field(default_factory=World)


_WORLD_FIELDS = tuple(f.name for f in fields(World))
def image_source_text(error: BaseException) -> str:
    """The ``--image-source`` problem as the library words it; for images of another size, with
    the flags that would match them added to its advice."""
    text = error_text(error)
    if isinstance(error, ImageSizeError) and text.endswith(")"):
        height, width = error.image_shape
        flags = f"--image-size {height}" + ("" if height == width else f" --image-width {width}")
        text = f"{text[:-1]} in Python, {flags} on the command line)"
    return text


DESCRIPTION = ("Collect rollouts of ImageNav-v0 (the reference random walk, or a saved SB3 policy with "
               "--policy) and write them to an .npz dataset (--out) and/or a Minari dataset (--minari).")


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


def minari_output_problem(dataset_id: str) -> str | None:
    """Why the Minari dataset ``dataset_id`` cannot be written (``None`` if it can): minari not
    installed, a malformed or taken id, a datasets folder that cannot be written in."""
    from gtmsm_env.minari_io import dataset_id_problem, minari_root

    try:
        import minari  # noqa: F401
    except ImportError:
        return "writing a Minari dataset needs the minari package: pip install 'gtmsm[minari]'"
    problem = dataset_id_problem(dataset_id, new=True)
    if problem is not None:
        return problem
    problem = output_dir_problem(minari_root(), create=False)
    return None if problem is None else f"Minari's datasets folder (MINARI_DATASETS_PATH): {problem}"


def parse_args(argv: list[str] | None = None) -> tuple[RolloutArgs, Any, Any]:
    """Parse and check every flag; returns the arguments, the image source built from
    ``--image-source`` and the loaded ``--policy`` (or ``None``). Any problem exits with one ``gtmsm-rollouts: error: ...`` line naming the
    flag (status 2) before any rollout is collected."""
    from gtmsm_env.geometry import single_position_problem
    from gtmsm_env.images import make_image_source
    from gtmsm_env.maze import validate_walls

    parser = ArgumentParser(prog=PROG, description=DESCRIPTION)
    add_dataclass_flags(parser, RolloutArgs, skip=("world",))
    add_world_flags(parser)
    namespace = parser.parse_args(argv)
    world = world_of(namespace)
    args = RolloutArgs(**dataclass_values(namespace, RolloutArgs, skip=("world",)), world=world)
    (height, width), crop_size = world.image_shape, world.crop_size
    if crop_size > height:
        fail(PROG, f"--crop-size {crop_size} is larger than --image-size {height}")
    if crop_size > width:
        fail(PROG, f"--crop-size {crop_size} is larger than --image-width {width}")
    image_size, grid_shape = world.image_size, world.grid_shape
    problem = single_position_problem(image_size, crop_size, world.step_size)
    if problem is not None:
        fail(PROG, flag_text(problem, _WORLD_FIELDS))
    if world.walls == "border" and world.wall_density is not None:
        fail(PROG, "--wall-density applies only to --walls maze")
    try:
        validate_walls(world.walls, world.wall_density, grid_shape)
    except (TypeError, ValueError) as error:
        fail(PROG, f"--wall-density: {error_text(error)}")
    problem = memory_problem(rollouts_memory_needs(args.num_sequences, args.seq_len, (height, width),
                                                   crop_size, grid_shape, world.walls))
    if problem is not None:
        fail(PROG, problem)
    if args.policy is None and not args.policy_deterministic:
        fail(PROG, "--no-policy-deterministic needs --policy (the random walk has no greedy actions)")
    drives_all = args.policy is not None and (args.policy_steps is None or args.policy_steps >= args.seq_len)
    if drives_all and args.mean_hold != RolloutArgs.mean_hold:
        fail(PROG, "--mean-hold shapes the random walk, but --policy drives every step (give --policy-steps N "
                   "below --seq-len to leave the later steps to the walk, or drop --mean-hold)")
    if args.out is None and args.minari is None:
        fail(PROG, "give --out FILE.npz, --minari DATASET_ID, or both (where to write the rollouts)")
    if args.out is not None:
        problem = output_file_problem(args.out, (".npz",))
        if problem is not None:
            fail(PROG, f"--out: {problem}")
    if args.minari is not None:
        problem = minari_output_problem(args.minari)
        if problem is not None:
            fail(PROG, f"--minari: {problem}")
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
        policy.check_geometry(crop_size, grid_shape)
    except (ValueError, TypeError, OSError) as error:
        fail(PROG, f"--policy: {error_text(error)}")
    return args, source, policy


def main(argv: list[str] | None = None) -> None:
    """The command: check every flag, collect, write. Ctrl-C or SIGTERM end it with one line saying
    what was written (nothing, unless --out was already in place when the Minari dataset was
    interrupted: the .npz is written atomically, the Minari dataset through a staging folder) and
    exit status 130 or 143."""
    written: list[str] = []
    try:
        with sigterm_raises():
            _collect_and_write(argv, written)
    except KeyboardInterrupt as stop:
        note = (f"{written[0]}; the Minari dataset was not written" if written
                else "nothing was written")
        raise SystemExit(interrupted(PROG, stop, note)) from None


def _collect_and_write(argv: list[str] | None, written: list[str]) -> None:
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
    if args.out is not None:
        out = Path(args.out)
        try:
            rollouts.save(out)
        except OSError as error:  # e.g. the disk filled up: nothing was half-written (atomic save)
            fail(PROG, f"--out: could not write {out}: {error_text(error)}")
        written.append(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    if args.minari is not None:
        from gtmsm_env.minari_io import save_minari

        try:
            folder = save_minari(rollouts, args.minari)
        except (OSError, ValueError) as error:  # staged, then renamed: nothing half-written
            fail(PROG, f"--minari: could not write {args.minari}: {error_text(error)}")
        written.append(f"wrote Minari dataset {args.minari} in {folder} (minari.load_dataset({args.minari!r}))")
    print(rollouts.summary())
    print(f"image source: {rollouts.metadata['image_source']}; seed {args.seed}")
    print("\n".join(written))


if __name__ == "__main__":
    main()
