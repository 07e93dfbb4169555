"""The rollouts dataset: :class:`Rollouts` (``N`` sequences of crops, actions, positions, wall
hits and the images under them) and its ``.npz`` file format (atomic save, pickle-free load)."""

from __future__ import annotations

import json
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gtmsm_cli.files import atomic_path
from gtmsm_cli.inputs import array_file_problem, unreadable_reason
from gtmsm_env.images import canonical_image_size
from gtmsm_env.world import Action, World

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
        """Write an ``.npz`` atomically (:func:`gtmsm_cli.files.atomic_path`: a temporary file,
        then rename); metadata as a JSON string. The file gets the mode an ordinary ``open`` would
        give (0666 minus the user's umask). A refused write raises ``OSError`` naming ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {key: getattr(self, key) for key in _ARRAY_KEYS}
        arrays.update({key: getattr(self, key) for key in _OPTIONAL_KEYS if getattr(self, key) is not None})
        with atomic_path(path, "rollouts file") as tmp, open(tmp, "wb") as file:
            # A handle, not the name: np.savez would append .npz to a name without that suffix.
            np.savez_compressed(file, **arrays, metadata=np.array(json.dumps(self.metadata)))

    @classmethod
    def load(cls, path: str | Path) -> Rollouts:
        """Read a file written by :meth:`save` (never unpickles anything).

        A missing file raises ``FileNotFoundError``; a FIFO, device or socket (never opened), a
        corrupt or truncated file, arrays whose headers declare more than this machine's memory
        (checked before any is loaded), a file that is not an ``.npz`` of rollouts (missing keys,
        object arrays, bad metadata) or one whose arrays disagree raises ``ValueError`` naming the
        file and the problem.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"rollouts file does not exist: {path}")
        if path.is_dir():
            raise ValueError(f"{path} is a folder; give the .npz file gtmsm-rollouts wrote")
        # Before numpy opens it: a FIFO would block forever, a lying header end in a MemoryError.
        problem = array_file_problem(path, "rollouts file")
        if problem is not None:
            raise ValueError(problem)
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
