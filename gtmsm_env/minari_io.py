"""Rollouts as a Minari dataset (the Farama format for offline-RL and world-model data):
:func:`save_minari` writes one, :func:`load_minari` reads one back as :class:`Rollouts`.

The layout, chosen so a Minari user finds what they expect and nothing is lost:

- one episode per sequence; ``observations`` the ``T`` crops, ``(T, crop, crop, 3)`` uint8 (the
  reset crop first, stored losslessly: no JPEG), ``actions`` the ``T - 1`` actions taken
  (the dataset's ``actions[:, 1:]``; its placeholder ``actions[:, 0] == STAY`` is not an action),
  ``rewards`` 0, ``terminations`` False, ``truncations`` True at the last step only (the sequence
  was cut, not ended);
- ``infos["position"]`` ``(T, 2)`` int64 and ``infos["wall_hit"]`` ``(T,)`` bool, one per
  observation as Minari's infos are;
- the image under the episode as ``infos["image"]``, ``(1, H, W, 3)`` uint8, and in a maze its
  wall layout as ``infos["blocked_moves"]``, ``(1, rows, cols, 5)`` bool: recorded at step 0
  only (once per episode). Minari's per-episode metadata would be the natural home, but its HDF5
  backend stores that as attributes, which cannot exceed 64 KB (a 256x256 image does);
- the episode's seed is the env's reset seed (the dataset seed + the episode index);
- dataset metadata: the env spec ``ImageNav-v0`` with the world's keyword arguments and
  ``max_episode_steps`` ``T - 1`` (``dataset.recover_environment()`` rebuilds the world),
  ``algorithm_name`` the policy, ``author``, ``description``, and the rollouts' own metadata
  under the key ``"gtmsm"``.

Datasets live where Minari keeps them: ``MINARI_DATASETS_PATH``, else ``~/.minari/datasets``.
Nothing is downloaded. ``minari`` (with ``h5py``) is an optional dependency,
``pip install 'gtmsm[minari]'``; it is imported only inside these functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gtmsm_env.dataset import Rollouts
from gtmsm_env.world import Action, World

__all__ = [
    "MINARI_PREFIX",
    "MISSING_MINARI",
    "dataset_id_problem",
    "load_minari",
    "minari_dataset_id",
    "minari_root",
    "save_minari",
]

MINARI_PREFIX = "minari:"
"""``--dataset minari:DATASET_ID`` names a local Minari dataset instead of an ``.npz`` file."""
MISSING_MINARI = "Minari datasets need the minari package: pip install 'gtmsm[minari]'"
ENV_ID = "ImageNav-v0"
METADATA_KEY = "gtmsm"
_STAGING_PREFIX = ".gtmsm-staging-"


def minari_dataset_id(dataset: str | os.PathLike | None) -> str | None:
    """The Minari id in a ``--dataset`` value ``minari:DATASET_ID`` (``None`` for a file path)."""
    if isinstance(dataset, str) and dataset.startswith(MINARI_PREFIX):
        return dataset[len(MINARI_PREFIX):]
    return None


def minari_root() -> Path:
    """The folder Minari keeps local datasets in: ``MINARI_DATASETS_PATH``, else
    ``~/.minari/datasets`` (Minari's own rule; computed here so that asking creates nothing)."""
    root = os.environ.get("MINARI_DATASETS_PATH")
    return Path(root) if root is not None else Path.home() / ".minari" / "datasets"


def _import_minari() -> Any:
    try:
        import minari
    except ImportError:
        raise ImportError(MISSING_MINARI) from None
    return minari


def dataset_id_problem(dataset_id: str, *, new: bool) -> str | None:
    """Why ``dataset_id`` cannot be written (``new``) or read (``None`` if it can): a malformed
    id, an existing dataset of that id (Minari never overwrites one), a missing one."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)  # an id without its -vN version fails with TypeError
    except (ValueError, TypeError):
        return (f"{dataset_id!r} is not a Minari dataset id (the form is [namespace/]name-vN, "
                "e.g. gtmsm/random-walk-v0)")
    path = minari_root() / dataset_id
    if new and path.exists():
        return (f"a Minari dataset {dataset_id} already exists at {path} (Minari never overwrites "
                f"one: pick another name or version, or `minari delete {dataset_id}`)")
    if not new and not (path / "data").is_dir():
        return (f"no local Minari dataset {dataset_id} in {minari_root()} (set MINARI_DATASETS_PATH, "
                "or list them with `minari list local`)")
    return None


def save_minari(rollouts: Rollouts, dataset_id: str, *, author: str = "gtmsm",
                author_email: str | None = None, code_permalink: str | None = None,
                description: str | None = None) -> Path:
    """Write ``rollouts`` as the local Minari dataset ``dataset_id`` (layout: module docstring);
    returns its folder.

    Atomic: the dataset is built in a hidden staging folder beside it, then renamed into place,
    so a failure leaves no partial dataset. A malformed or existing id raises ``ValueError``;
    minari missing raises ``ImportError`` naming the extra."""
    minari = _import_minari()
    problem = dataset_id_problem(dataset_id, new=True)
    if problem is not None:
        raise ValueError(problem)
    import gymnasium

    import gtmsm_env  # noqa: F401  (registers ImageNav-v0)

    n, t = rollouts.actions.shape
    if t < 2:
        raise ValueError(f"a Minari episode needs at least one step; these sequences have {t} observation(s)")
    world = rollouts.world.validated()
    spec = gymnasium.spec(ENV_ID)
    spec = dataclasses.replace(spec, kwargs={**spec.kwargs, **world.to_dict()}, max_episode_steps=t - 1)
    buffers = list(_episode_buffers(rollouts))
    metadata = dict(rollouts.metadata)
    text = description or (f"{n} ImageNav sequences of {t} observations ({metadata.get('policy', 'random_walk')}), "
                           f"written by gtmsm; the image under each episode is infos['image'][0]")
    root = minari_root()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=root))
    try:
        with _datasets_path(staging), warnings.catch_warnings():
            # Minari warns about every optional field left unset; the ones we cannot know are unset.
            warnings.filterwarnings("ignore", message=r"`(author_email|code_permalink)` is set to None",
                                    category=UserWarning)
            dataset = minari.create_dataset_from_buffers(
                dataset_id, buffers, env=spec, eval_env=spec, algorithm_name=str(metadata.get("policy", "random_walk")),
                author=author, author_email=author_email, code_permalink=code_permalink,
                description=text, data_format="hdf5", jpeg_encoding=False,
            )
            dataset.storage.update_metadata({METADATA_KEY: metadata})
        _move_into_place(staging, root, dataset_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root / dataset_id


def _episode_buffers(rollouts: Rollouts) -> Iterator[Any]:
    from minari.data_collector import EpisodeBuffer

    n, t = rollouts.actions.shape
    seed = rollouts.metadata.get("seed")
    truncations = np.zeros(t - 1, bool)
    truncations[-1] = True
    for i in range(n):
        infos = {"position": rollouts.positions[i].astype(np.int64),
                 "wall_hit": rollouts.wall_hits[i].astype(bool),
                 "image": rollouts.images[i][None]}
        if rollouts.blocked_moves is not None:
            infos["blocked_moves"] = rollouts.blocked_moves[i][None]
        yield EpisodeBuffer(
            id=i, seed=seed + i if isinstance(seed, int) else None,
            observations=rollouts.observations[i], actions=rollouts.actions[i, 1:].astype(np.int64),
            rewards=np.zeros(t - 1, np.float64), terminations=np.zeros(t - 1, bool),
            truncations=truncations, infos=infos,
        )


@contextlib.contextmanager
def _datasets_path(path: Path) -> Iterator[None]:
    """Point Minari at ``path`` for the duration (Minari reads the variable on every call)."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _move_into_place(staging: Path, root: Path, dataset_id: str) -> None:
    """Rename the shallowest part of ``dataset_id``'s path that ``root`` lacks (a new namespace
    with its metadata, or the dataset folder) from ``staging`` into ``root``."""
    parts = Path(dataset_id).parts
    for depth in range(1, len(parts) + 1):
        prefix = Path(*parts[:depth])
        if not (root / prefix).exists():
            os.rename(staging / prefix, root / prefix)
            return
    raise ValueError(f"a Minari dataset {dataset_id} already exists at {root / dataset_id}")


def load_minari(dataset_id: str) -> Rollouts:
    """Read the local Minari dataset ``dataset_id`` as :class:`Rollouts` (never downloads).

    One written by :func:`save_minari` comes back array for array with its metadata. Another
    ImageNav dataset works if its episodes have equal lengths and carry ``infos["position"]``,
    ``infos["wall_hit"]`` and ``infos["image"]``; its world is read from its env spec. A missing,
    malformed or unsuitable dataset raises ``ValueError``; minari missing raises ``ImportError``."""
    minari = _import_minari()
    problem = dataset_id_problem(dataset_id, new=False)
    if problem is not None:
        raise ValueError(problem)
    try:
        dataset = minari.load_dataset(dataset_id)
        episodes = list(dataset.iterate_episodes())
        raw = dataset.storage.metadata
    except (OSError, KeyError, ValueError, AssertionError) as error:
        raise ValueError(f"could not read Minari dataset {dataset_id}: {error}") from None
    if not episodes:
        raise ValueError(f"Minari dataset {dataset_id} holds no episodes")
    lengths = sorted({len(episode.observations) for episode in episodes})
    if len(lengths) > 1:
        raise ValueError(f"Minari dataset {dataset_id}: episodes have {lengths[0]}..{lengths[-1]} observations; "
                         "training needs sequences of one length")
    missing = sorted({"position", "wall_hit", "image"} - set(episodes[0].infos or {}))
    if missing:
        raise ValueError(f"Minari dataset {dataset_id} is not an ImageNav dataset: its episodes lack "
                         f"infos {missing}")
    first_action = np.full(1, Action.STAY, np.int64)
    try:
        observations = np.stack([np.asarray(e.observations) for e in episodes])
        actions = np.stack([np.concatenate([first_action, np.asarray(e.actions).reshape(-1)]) for e in episodes])
        positions = np.stack([e.infos["position"] for e in episodes])
        wall_hits = np.stack([e.infos["wall_hit"] for e in episodes]).astype(bool)
        images = np.stack([e.infos["image"][0] for e in episodes])
        blocked = (np.stack([e.infos["blocked_moves"][0] for e in episodes])
                   if "blocked_moves" in episodes[0].infos else None)
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise ValueError(f"Minari dataset {dataset_id}: episodes disagree ({error})") from None
    metadata = raw.get(METADATA_KEY)
    if not isinstance(metadata, dict):
        metadata = _metadata_from_env_spec(raw.get("env_spec"))
    try:
        return Rollouts(observations, actions, positions, wall_hits, images, metadata, blocked)
    except ValueError as error:
        raise ValueError(f"Minari dataset {dataset_id}: {error}") from None


def _metadata_from_env_spec(env_spec: Any) -> dict[str, Any]:
    """The world settings an ImageNav env spec (JSON) records, in the rollouts' flat metadata keys."""
    if not isinstance(env_spec, str):
        return {}
    from gymnasium.envs.registration import EnvSpec

    try:
        kwargs = EnvSpec.from_json(env_spec).kwargs
    except Exception:  # noqa: BLE001  (a foreign spec we cannot parse fixes no world)
        return {}
    names = set(World().to_dict())
    world = {name: kwargs[name] for name in names if name in kwargs}
    return {"world": World.from_dict(world).to_dict(), **world}
