"""Image sources for ImageNav: the embedded procedural default plus array, file and folder loaders.

Every source yields RGB ``uint8`` images of one fixed ``image_size``: an int for square images, or a
``(height, width)`` pair. Bad sources fail at construction with a message that names the problem,
never later inside ``reset``.
"""

from __future__ import annotations

import abc
import tokenize
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# Shape kinds of the procedural scenes.
_ELLIPSE, _RECTANGLE, _POLYGON, _BAND, _BLOB = range(5)
_MAX_SHAPES = 8
_MAX_EDGES = 6


ImageSize = int | tuple[int, int]


def image_shape_of(image_size: object) -> tuple[int, int]:
    """``(height, width)`` of an ``image_size``: an int ``S`` (square, ``(S, S)``) or a
    ``(height, width)`` pair of ints; ``TypeError``/``ValueError`` naming the problem otherwise."""
    if isinstance(image_size, (tuple, list)):
        if len(image_size) != 2:
            raise ValueError(
                f"image_size must be an int or a (height, width) pair, got {len(image_size)} "
                f"values {tuple(image_size)}"
            )
        height = _check_side("image_size height", image_size[0])
        width = _check_side("image_size width", image_size[1])
        return height, width
    side = _check_side("image_size", image_size)
    return side, side


class ImageSizeError(ValueError):
    """Images whose size is not the ``image_size`` asked for; ``image_shape`` is their own
    ``(height, width)``, so an entry point can say which of its flags would match them."""

    def __init__(self, message: str, image_shape: tuple[int, int]) -> None:
        super().__init__(message)
        self.image_shape = image_shape


def canonical_image_size(image_size: object) -> ImageSize:
    """``image_size`` in its one stored form: an int for a square image, else ``(height, width)``."""
    height, width = image_shape_of(image_size)
    return height if height == width else (height, width)


def shape_text(shape: tuple[int, int]) -> str:
    """``(32, 48)`` -> ``"32x48 (height x width)"``; square shapes read ``"32x32"``."""
    height, width = shape
    return f"{height}x{width}" if height == width else f"{height}x{width} (height x width)"


class ImageSource(abc.ABC):
    """A supply of RGB uint8 images of ``image_size``: an int for square images, else
    ``(height, width)``; ``image_shape`` is always ``(height, width)``."""

    image_size: ImageSize

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(height, width)`` of every image."""
        return image_shape_of(self.image_size)

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Return ``n`` images, shape ``(n, height, width, 3)``, uint8, drawn with ``rng``."""

    def sample_each(self, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """One image per generator; image ``i`` equals ``sample(rngs[i], 1)[0]``.

        The vector env uses this so that env ``i`` draws exactly what a single env with the same
        generator would draw. Sources may override it with a batched implementation.
        """
        if len(rngs) == 0:
            return np.zeros((0, *self.image_shape, 3), np.uint8)
        return np.concatenate([self.sample(rng, 1) for rng in rngs], axis=0)

    def describe(self) -> str:
        """A short human-readable description, stored in dataset metadata."""
        return type(self).__name__


def _check_side(name: str, value: object) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _check_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    return int(n)


# ---------------------------------------------------------------------------------------------
# Procedural scenes
# ---------------------------------------------------------------------------------------------


def _draw_scene_params(rng: np.random.Generator, n: int, size: int) -> dict[str, np.ndarray]:
    """Draw the random parameters of ``n`` scenes, in a fixed order, from ``rng``."""
    shape_slots = (n, _MAX_SHAPES)
    p: dict[str, np.ndarray] = {}
    # Background: linear or radial gradient between three colours (the third often near the second).
    p["bg_colors"] = rng.random((n, 3, 3))
    p["bg_radial"] = rng.random(n) < 0.35
    p["bg_angle"] = rng.uniform(0, 2 * np.pi, n)
    p["bg_center"] = rng.uniform(-0.2, 1.2, (n, 2))
    p["bg_three"] = rng.random(n) < 0.5
    # 1/f^beta coloured noise: random exponent and amplitude, mostly luminance plus some chroma.
    p["noise_beta"] = rng.uniform(1.8, 3.0, n)
    p["noise_amp"] = rng.uniform(0.02, 0.16, n)
    p["noise_chroma"] = rng.uniform(0.1, 0.6, n)
    p["noise"] = rng.standard_normal((n, 4, size, size)).astype(np.float32)
    # Occluding shapes; slots beyond the drawn count stay inactive.
    p["num_shapes"] = rng.integers(3, _MAX_SHAPES + 1, n)
    p["kind"] = rng.choice(5, size=shape_slots, p=[0.28, 0.24, 0.24, 0.1, 0.14])
    p["center"] = rng.uniform(-0.1, 1.1, (n, _MAX_SHAPES, 2))
    p["radius"] = rng.uniform(0.08, 0.42, (n, _MAX_SHAPES, 2))
    p["angle"] = rng.uniform(0, 2 * np.pi, shape_slots)
    p["edges"] = rng.integers(3, _MAX_EDGES + 1, shape_slots)
    p["edge_jitter"] = rng.uniform(-0.35, 0.35, (n, _MAX_SHAPES, _MAX_EDGES))
    p["edge_radius"] = rng.uniform(0.6, 1.0, (n, _MAX_SHAPES, _MAX_EDGES))
    p["color0"] = rng.random((n, _MAX_SHAPES, 3))
    p["color1"] = rng.random((n, _MAX_SHAPES, 3))
    p["gradient"] = rng.random(shape_slots) < 0.4
    p["grad_angle"] = rng.uniform(0, 2 * np.pi, shape_slots)
    p["textured"] = rng.random(shape_slots) < 0.25
    p["tex_freq"] = rng.uniform(4.0, 11.0, shape_slots)
    p["tex_angle"] = rng.uniform(0, 2 * np.pi, shape_slots)
    p["tex_phase"] = rng.uniform(0, 2 * np.pi, shape_slots)
    p["tex_amp"] = rng.uniform(0.1, 0.35, shape_slots)
    p["opacity"] = rng.uniform(0.75, 1.0, shape_slots)
    # Occasional fine grating over the whole scene, then global contrast/brightness/gamma.
    p["grating"] = rng.random(n) < 0.15
    p["grating_freq"] = rng.uniform(5.0, 12.0, n)
    p["grating_angle"] = rng.uniform(0, 2 * np.pi, n)
    p["grating_amp"] = rng.uniform(0.03, 0.12, n)
    p["contrast"] = rng.uniform(0.6, 1.3, n)
    p["brightness"] = rng.uniform(-0.18, 0.08, n)
    p["gamma"] = rng.uniform(0.7, 1.4, n)
    # Photos are far less saturated than uniform RGB: pull every colour towards its grey level.
    p["saturation"] = rng.uniform(0.2, 0.9, n)
    for key in ("bg_colors", "color0", "color1"):
        grey = p[key].mean(axis=-1, keepdims=True)
        sat = p["saturation"].reshape((n,) + (1,) * (p[key].ndim - 1))
        p[key] = grey + sat * (p[key] - grey)
    # float32 throughout keeps rendering fast.
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in p.items()}


def _concat_params(params: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([p[key] for p in params], axis=0) for key in params[0]}


def _pink_noise(white: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Shape white noise ``(n, c, S, S)`` to a 1/f^beta spectrum, unit std per image and channel."""
    size = white.shape[-1]
    freq = np.fft.fftfreq(size).astype(np.float32)
    radius = np.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2)
    radius[0, 0] = 1.0
    # Amplitude ~ f^(-beta/2) gives a power spectrum ~ f^(-beta).
    gain = radius[None] ** (-beta[:, None, None].astype(np.float32) / 2)
    gain[:, 0, 0] = 0.0
    spectrum = np.fft.fft2(white) * gain[:, None]
    field = np.fft.ifft2(spectrum).real.astype(np.float32)
    field /= field.std(axis=(-2, -1), keepdims=True) + 1e-6
    return field


def _shape_alpha(p: dict[str, np.ndarray], xs: np.ndarray, ys: np.ndarray, slot: int) -> np.ndarray:
    """Anti-aliased coverage ``(n, S, S)`` of shape ``slot`` in every scene.

    Edges use a signed distance ramp one pixel wide, which approximates area coverage of the pixel
    (anti-aliasing without supersampling).
    """
    n = p["kind"].shape[0]
    size = xs.shape[-1]
    pixel = 1.0 / size
    cx = p["center"][:, slot, 0, None, None].astype(np.float32)
    cy = p["center"][:, slot, 1, None, None].astype(np.float32)
    angle = p["angle"][:, slot, None, None]
    cos, sin = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    dx, dy = xs - cx, ys - cy
    u = dx * cos + dy * sin
    v = -dx * sin + dy * cos
    ra = p["radius"][:, slot, 0, None, None].astype(np.float32)
    rb = p["radius"][:, slot, 1, None, None].astype(np.float32)
    kind = p["kind"][:, slot]
    alpha = np.zeros((n, size, size), np.float32)

    def ramp(sdf: np.ndarray) -> np.ndarray:
        return np.clip(0.5 - sdf / pixel, 0.0, 1.0)

    sel = kind == _ELLIPSE
    if sel.any():
        a, b = ra[sel], rb[sel] * 0.8 + 0.02
        norm = np.sqrt((u[sel] / a) ** 2 + (v[sel] / b) ** 2)
        alpha[sel] = ramp((norm - 1.0) * np.minimum(a, b))
    sel = kind == _RECTANGLE
    if sel.any():
        a, b = ra[sel] * 0.9, rb[sel] * 0.7 + 0.02
        alpha[sel] = ramp(np.maximum(np.abs(u[sel]) - a, np.abs(v[sel]) - b))
    sel = kind == _POLYGON
    if sel.any():
        # A convex polygon as the intersection of half-planes with roughly even normal directions.
        edges = p["edges"][sel, slot]
        j = np.arange(_MAX_EDGES)
        theta = 2 * np.pi * j[None] / edges[:, None] + p["edge_jitter"][sel, slot] * (
            2 * np.pi / edges[:, None]
        )
        dist = p["edge_radius"][sel, slot] * ra[sel][:, 0, 0, None]
        dist = np.where(j[None] < edges[:, None], dist, 10.0).astype(np.float32)
        nx = np.cos(theta).astype(np.float32)[:, :, None, None]
        ny = np.sin(theta).astype(np.float32)[:, :, None, None]
        sdf = (u[sel][:, None] * nx + v[sel][:, None] * ny - dist[:, :, None, None]).max(axis=1)
        alpha[sel] = ramp(sdf)
    sel = kind == _BAND
    if sel.any():
        alpha[sel] = ramp(np.abs(v[sel]) - (rb[sel] * 0.35 + 0.03))
    sel = kind == _BLOB
    if sel.any():
        sigma2 = (ra[sel] * 0.6 + 0.03) ** 2
        alpha[sel] = np.exp(-(u[sel] ** 2 + (v[sel] * ra[sel] / rb[sel]) ** 2) / (2 * sigma2))
    return alpha


def _render_scenes(p: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Render scenes from their parameters; fully vectorised over scenes."""
    n = p["num_shapes"].shape[0]
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    xs = np.broadcast_to(coords[None, None, :], (1, size, size))
    ys = np.broadcast_to(coords[None, :, None], (1, size, size))

    # Background gradient.
    angle = p["bg_angle"][:, None, None]
    linear = (xs - 0.5) * np.cos(angle) + (ys - 0.5) * np.sin(angle) + 0.5
    cx, cy = p["bg_center"][:, 0, None, None], p["bg_center"][:, 1, None, None]
    radial = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    t = np.where(p["bg_radial"][:, None, None], radial, linear).astype(np.float32)
    t = np.clip(t, 0.0, 1.0)[..., None]
    c0, c1, c2 = (p["bg_colors"][:, k, None, None, :].astype(np.float32) for k in range(3))
    c2 = np.where(p["bg_three"][:, None, None, None], c2, c1)
    image = np.where(t < 0.5, c0 + (c1 - c0) * (2 * t), c1 + (c2 - c1) * (2 * t - 1)).astype(
        np.float32
    )

    # Low-frequency coloured noise texture (photo-like lighting and surface variation).
    field = _pink_noise(p["noise"], p["noise_beta"])
    luminance = field[:, 0, :, :, None]
    chroma = field[:, 1:].transpose(0, 2, 3, 1)
    amp = p["noise_amp"].astype(np.float32)[:, None, None, None]
    chroma_amp = p["noise_chroma"].astype(np.float32)[:, None, None, None]
    image += amp * (luminance + chroma_amp * chroma)

    # Occluding shapes, painted back to front.
    for slot in range(_MAX_SHAPES):
        active = (slot < p["num_shapes"]).astype(np.float32)
        alpha = _shape_alpha(p, xs, ys, slot) * (active * p["opacity"][:, slot])[:, None, None]
        g_angle = p["grad_angle"][:, slot, None, None]
        gcx = p["center"][:, slot, 0, None, None]
        gcy = p["center"][:, slot, 1, None, None]
        ramp = (xs - gcx) * np.cos(g_angle) + (ys - gcy) * np.sin(g_angle)
        ramp = np.clip(ramp / (2 * p["radius"][:, slot, 0, None, None]) + 0.5, 0, 1)
        ramp = (ramp * p["gradient"][:, slot, None, None]).astype(np.float32)[..., None]
        col0 = p["color0"][:, slot, None, None, :].astype(np.float32)
        col1 = p["color1"][:, slot, None, None, :].astype(np.float32)
        fill = col0 + (col1 - col0) * ramp
        t_angle = p["tex_angle"][:, slot, None, None]
        phase = (
            2
            * np.pi
            * p["tex_freq"][:, slot, None, None]
            * (xs * np.cos(t_angle) + ys * np.sin(t_angle))
            + p["tex_phase"][:, slot, None, None]
        )
        tex_amp = (p["tex_amp"][:, slot] * p["textured"][:, slot])[:, None, None]
        fill = fill * (1.0 + (tex_amp * np.sin(phase)).astype(np.float32)[..., None])
        # Shapes carry their own share of the scene noise so they are not perfectly flat.
        fill += 0.5 * amp * luminance
        a = alpha[..., None]
        image = image * (1.0 - a) + fill * a

    # Occasional fine grating over the whole scene.
    g_angle = p["grating_angle"][:, None, None]
    grating = np.sin(
        2 * np.pi * p["grating_freq"][:, None, None] * (xs * np.cos(g_angle) + ys * np.sin(g_angle))
    )
    image += ((p["grating_amp"] * p["grating"])[:, None, None] * grating).astype(np.float32)[
        ..., None
    ]

    # Global contrast, brightness and gamma.
    mean = image.mean(axis=(1, 2, 3), keepdims=True)
    contrast = p["contrast"].astype(np.float32)[:, None, None, None]
    brightness = p["brightness"].astype(np.float32)[:, None, None, None]
    image = (image - mean) * contrast + mean + brightness
    image = np.clip(image, 0.0, 1.0) ** p["gamma"].astype(np.float32)[:, None, None, None]
    return (image * 255.0 + 0.5).astype(np.uint8).reshape(n, size, size, 3)


class ProceduralImages(ImageSource):
    """The embedded default: photo-like procedural scenes, no download, deterministic given the rng.

    Each scene is a smooth two- or three-colour background (linear or radial gradient), 1/f-type
    coloured noise of random amplitude and spectral slope, 3-8 occluding shapes (ellipses, rotated
    rectangles, convex polygons, bands, soft blobs) with flat, gradient or grating-textured fills and
    anti-aliased edges, an occasional fine grating, and random contrast, brightness and gamma.

    A ``(height, width)`` image is the centred part of the square scene of side
    ``max(height, width)`` (so shapes keep their proportions, as a centre-cropped photo does).
    """

    _chunk = 256  # scenes rendered per batch; bounds temporary memory

    def __init__(self, image_size: ImageSize = 32) -> None:
        self.image_size = canonical_image_size(image_size)
        self._side = max(self.image_shape)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        n = _check_n(n)
        params = _draw_scene_params(rng, n, self._side)
        return self._render(params, n)

    def sample_each(self, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        if len(rngs) == 0:
            return np.zeros((0, *self.image_shape, 3), np.uint8)
        params = _concat_params([_draw_scene_params(rng, 1, self._side) for rng in rngs])
        return self._render(params, len(rngs))

    def _render(self, params: dict[str, np.ndarray], n: int) -> np.ndarray:
        height, width = self.image_shape
        top, left = (self._side - height) // 2, (self._side - width) // 2
        out = np.empty((n, height, width, 3), np.uint8)
        for start in range(0, n, self._chunk):
            chunk = {k: v[start : start + self._chunk] for k, v in params.items()}
            scenes = _render_scenes(chunk, self._side)
            out[start : start + self._chunk] = scenes[:, top : top + height, left : left + width]
        return out

    def describe(self) -> str:
        return f"procedural(image_size={self.image_size})"


def procedural_images(n: int, seed: int, image_size: ImageSize = 32) -> np.ndarray:
    """``n`` procedural scenes, ``(n, height, width, 3)`` uint8, reproducible from ``seed``."""
    return ProceduralImages(image_size).sample(np.random.default_rng(seed), n)


# ---------------------------------------------------------------------------------------------
# Arrays, files and folders
# ---------------------------------------------------------------------------------------------


def unreadable_reason(error: BaseException) -> str:
    """Why numpy could not read a file, in our words (numpy's own text advises ``allow_pickle``,
    which we never do)."""
    text = str(error)
    if "allow_pickle" in text or "pickled" in text:
        return "it is not a numpy .npy/.npz file, or it holds pickled objects (never loaded)"
    lines = [line for line in text.splitlines() if line.strip()]
    return f"corrupt or truncated ({type(error).__name__}: {lines[0][:120] if lines else 'no details'})"


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
        n = _check_n(n)
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
        if not path.is_dir():
            raise ValueError(f"not a folder: {path}")
        files = sorted(
            f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise ValueError(
                f"image folder is empty: {path} has no {'/'.join(IMAGE_SUFFIXES)} files"
            )
        if max_images is not None:
            files = files[:max_images]
        images, errors = [], []
        for file in files:
            try:
                images.append(_load_image_file(file, image_shape))
            except ValueError as error:
                errors.append(str(error))
            except OSError as error:
                errors.append(f"{file}: {error}")
        if not images:
            raise ValueError(
                f"no readable images in {path} ({len(files)} files tried): " + "; ".join(errors[:3])
            )
        if errors:
            warnings.warn(
                f"skipped {len(errors)} of {len(files)} files in {path}: " + "; ".join(errors[:3]),
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
        return NpzImages(path, image_size)
    raise TypeError(
        "image_source must be None, 'procedural', a folder or .npz/.npy path, a uint8 array or an "
        f"ImageSource, got {type(spec).__name__}"
    )
