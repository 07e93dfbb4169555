"""The embedded default image source: photo-like procedural scenes, drawn from a generator.

:class:`ProceduralImages` (and :func:`procedural_images`) draw every random parameter of a scene
in a fixed order from the generator, then render the scenes vectorised over a batch, so the same
seed always gives the same images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gtmsm_env.image_source import ImageSize, ImageSource, canonical_image_size, check_image_count

# Shape kinds of the procedural scenes.
_ELLIPSE, _RECTANGLE, _POLYGON, _BAND, _BLOB = range(5)
_MAX_SHAPES = 8
_MAX_EDGES = 6


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
        n = check_image_count(n)
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
