"""Image sources for ImageNav: the array, ``.npz``/``.npy`` and folder loaders, and
:func:`make_image_source`, which turns any accepted ``image_source`` value into a source.

Every source yields RGB ``uint8`` images of one fixed ``image_size``: an int for square images, or a
``(height, width)`` pair. Bad sources fail at construction with a message that names the problem,
never later inside ``reset``. This module is also the one place to import every image name from:
it re-exports the :class:`ImageSource` API (:mod:`gtmsm_env.image_source`) and the procedural
default (:mod:`gtmsm_env.procedural`).
"""

from __future__ import annotations

import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from gtmsm_cli.inputs import (
    array_file_problem,
    input_file_problem,
    input_folder_problem,
    special_file_kind,
    unreadable_reason,
)
from gtmsm_env.image_source import (
    ImageSize,
    ImageSizeError,
    ImageSource,
    canonical_image_size,
    check_image_count,
    image_shape_of,
    shape_text,
)
from gtmsm_env.procedural import ProceduralImages, procedural_images

__all__ = [
    "IMAGE_SUFFIXES",
    "ArrayImages",
    "FolderImages",
    "ImageSize",
    "ImageSizeError",
    "ImageSource",
    "NpzImages",
    "ProceduralImages",
    "canonical_image_size",
    "image_shape_of",
    "make_image_source",
    "procedural_images",
    "shape_text",
    "unreadable_reason",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _validate_image_array(array: object, image_shape: tuple[int, int], what: str) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{what}: expected a numpy array, got {type(array).__name__}")
    if array.ndim not in (3, 4):
        raise ValueError(
            f"{what}: expected shape (N, H, W, 3) or (H, W, 3), got ndim={array.ndim} "
            f"shape {array.shape}"
        )
    if array.shape[-1] != 3:
        raise ValueError(
            f"{what}: expected 3 colour channels (RGB, channels last), got {array.shape[-1]} "
            f"in shape {array.shape}"
        )
    if array.ndim == 3:
        array = array[None]
    if array.dtype != np.uint8:
        raise TypeError(
            f"{what}: expected uint8, got {array.dtype} (convert explicitly, e.g. "
            "(x * 255).round().astype(np.uint8); nothing is rescaled silently)"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{what}: contains no images (shape {array.shape})")
    shape = (int(array.shape[1]), int(array.shape[2]))
    if shape != image_shape:
        wanted = canonical_image_size(image_shape)
        own = canonical_image_size(shape)
        raise ImageSizeError(
            f"{what}: images are {shape_text(shape)} but image_size={wanted} wants "
            f"{shape_text(image_shape)}; arrays must match image_size exactly (resize them "
            f"first, or use their size: image_size={own})",
            shape,
        )
    return np.ascontiguousarray(array)


class ArrayImages(ImageSource):
    """Images held in memory: an ``(N, H, W, 3)`` or single ``(H, W, 3)`` uint8 array whose
    ``(H, W)`` is exactly ``image_size`` (an int S means ``(S, S)``).

    With ``image_size=None`` the array's own size is used.
    """

    def __init__(
        self, array: np.ndarray, image_size: ImageSize | None = None, name: str = "image array"
    ) -> None:
        if image_size is None and isinstance(array, np.ndarray) and array.ndim in (3, 4):
            image_size = (int(array.shape[-3]), int(array.shape[-2]))
        self.image_size = canonical_image_size(image_size if image_size is not None else 1)
        self.images = _validate_image_array(array, self.image_shape, name)
        self._name = name

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        n = check_image_count(n)
        index = rng.integers(0, len(self.images), size=n)
        return self.images[index]  # fancy indexing returns a copy

    def describe(self) -> str:
        return f"{self._name} ({len(self.images)} images, {shape_text(self.image_shape)})"


class NpzImages(ArrayImages):
    """Images from a ``.npy`` file, or a ``.npz`` file (key ``"images"``, or its only array)."""

    def __init__(self, path: str | Path, image_size: ImageSize = 32) -> None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"image file does not exist: {path}")
        if path.suffix not in (".npy", ".npz"):
            raise ValueError(f"image file must be .npy or .npz, got {path.name}")
        # Before numpy opens it: a FIFO would block forever, a lying header end in a MemoryError.
        # Which member is loaded is decided below; the check counts "images" when there is one.
        problem = array_file_problem(path, "image file", keys=_npz_image_keys(path))
        if problem is not None:
            raise ValueError(problem)
        # Damaged archives fail in many ways (a bad zip, a bad deflate stream, a garbled .npy
        # header that numpy's parser chokes on): all of them mean "unreadable file".
        unreadable = (
            OSError,
            ValueError,
            EOFError,
            SyntaxError,
            zipfile.BadZipFile,
            zlib.error,
            tokenize.TokenError,
        )
        try:
            loaded = np.load(path, allow_pickle=False)
        except unreadable as error:
            raise ValueError(f"could not read image file {path}: {unreadable_reason(error)}") from None
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                keys = list(loaded.keys())
                if "images" in keys:
                    key = "images"
                elif len(keys) == 1:
                    key = keys[0]
                else:
                    raise ValueError(
                        f"{path}: .npz must hold an array named 'images' or exactly one array, "
                        f"found keys {keys}"
                    )
                try:
                    array = loaded[key]
                except unreadable as error:
                    raise ValueError(
                        f"could not read array {key!r} of image file {path}: {unreadable_reason(error)}"
                    ) from None
        else:
            array = loaded
        super().__init__(array, image_size, name=str(path))


def _npz_image_keys(path: Path) -> tuple[str, ...] | None:
    """The ``.npz`` members :class:`NpzImages` would load: ``("images",)`` if there is one, else
    ``None`` (all: the only one, or none when there are several and loading is refused)."""
    if path.suffix != ".npz" or input_file_problem(path) is not None:
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    return ("images",) if "images.npy" in names or "images" in names else None


def _load_image_file(path: Path, image_shape: tuple[int, int]) -> np.ndarray:
    """The file centre-cropped to the aspect ratio of ``image_shape`` ``(height, width)``, then
    resized to it (LANCZOS); ``ValueError`` if that centre crop is smaller than ``image_shape``."""
    from PIL import Image

    target_height, target_width = image_shape
    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        # The largest centred box of the target aspect ratio (integer arithmetic: exact for squares).
        if width * target_height >= height * target_width:
            box_height = height
            box_width = min(width, round(height * target_width / target_height))
        else:
            box_width = width
            box_height = min(height, round(width * target_height / target_width))
        if box_height < target_height or box_width < target_width:
            raise ValueError(
                f"{path}: image is {height}x{width} (height x width), smaller than "
                f"image_size={canonical_image_size(image_shape)}"
                + ("" if target_height == target_width else
                   f" after a centre crop to its aspect ratio ({box_height}x{box_width})")
            )
        left, top = (width - box_width) // 2, (height - box_height) // 2
        image = image.crop((left, top, left + box_width, top + box_height))
        if (box_height, box_width) != image_shape:
            image = image.resize((target_width, target_height), Image.Resampling.LANCZOS)
        return np.asarray(image, dtype=np.uint8)


class FolderImages(ArrayImages):
    """Every png/jpg/jpeg/bmp/webp under ``path`` (recursively, sorted), centre-cropped to the
    aspect ratio of ``image_size`` (a square for an int) and resized to it; loaded once at
    construction.

    Unreadable files are skipped (counted in ``skipped``); a folder with no readable image fails.
    ``max_images`` caps how many files are read (the first ones in sorted order).
    """

    def __init__(
        self, path: str | Path, image_size: ImageSize = 32, max_images: int | None = None
    ) -> None:
        path = Path(path)
        image_shape = image_shape_of(image_size)
        if max_images is not None and (
            isinstance(max_images, bool)
            or not isinstance(max_images, (int, np.integer))
            or max_images < 1
        ):
            raise ValueError(f"max_images must be None or an int >= 1, got {max_images!r}")
        if not path.exists():
            raise FileNotFoundError(f"image folder does not exist: {path}")
        problem = input_folder_problem(path, "image folder")
        if problem is not None:
            raise ValueError(problem)
        # Entries that are neither files nor folders (a FIFO, a link to a device) are never
        # opened (a FIFO blocks forever, /dev/zero never ends): each is skipped, and said so.
        candidates = sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        special = [(f, kind) for f in candidates if (kind := special_file_kind(f)) is not None]
        files = [f for f in candidates if f.is_file()]
        if not files:
            raise ValueError(
                f"image folder is empty: {path} has no {'/'.join(IMAGE_SUFFIXES)} files"
                + "".join(f"; {f} is {kind}, not a regular file" for f, kind in special[:3])
            )
        if max_images is not None:
            files = files[:max_images]
        from PIL import Image

        images = []
        errors = [f"{f}: is {kind}, not a regular file (never opened)" for f, kind in special]
        tried = len(files) + len(special)
        for file in files:
            try:
                images.append(_load_image_file(file, image_shape))
            except ValueError as error:
                errors.append(str(error))
            except (OSError, Image.DecompressionBombError) as error:
                errors.append(f"{file}: {error}")
        if not images:
            raise ValueError(
                f"no readable images in {path} ({tried} files tried): " + "; ".join(errors[:3])
            )
        if errors:
            warnings.warn(
                f"skipped {len(errors)} of {tried} files in {path}: " + "; ".join(errors[:3]),
                stacklevel=2,
            )
        self.skipped = errors
        super().__init__(np.stack(images), image_size, name=str(path))


def make_image_source(spec: object = None, image_size: ImageSize = 32) -> ImageSource:
    """Build an image source of ``image_size`` (an int for square images, or ``(height, width)``)
    from ``None``/``"procedural"``, a folder or ``.npz``/``.npy`` path, an image array, or an
    existing :class:`ImageSource` (whose ``image_size`` must match)."""
    image_size = canonical_image_size(image_size)
    if spec is None or (isinstance(spec, str) and spec == "procedural"):
        return ProceduralImages(image_size)
    if isinstance(spec, ImageSource):
        if spec.image_shape != image_shape_of(image_size):
            raise ValueError(
                f"image source makes {shape_text(spec.image_shape)} images but "
                f"image_size={image_size}"
            )
        return spec
    if isinstance(spec, np.ndarray):
        return ArrayImages(spec, image_size)
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(f"image source path does not exist: {path}")
        if path.is_dir():
            return FolderImages(path, image_size)
        problem = input_file_problem(path, "image source")
        if problem is not None:
            raise ValueError(problem)
        return NpzImages(path, image_size)
    raise TypeError(
        "image_source must be None, 'procedural', a folder or .npz/.npy path, a uint8 array or an "
        f"ImageSource, got {type(spec).__name__}"
    )
