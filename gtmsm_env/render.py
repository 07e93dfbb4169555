"""The pygame window of ``render_mode="human"`` and of ``gtmsm-play``; imported only when needed.

``Scene`` says what one frame shows (plain numpy data); ``PlayView`` draws it into a fixed-size
canvas and scales that canvas to the (resizable) window. ``HumanRenderer`` is the env's
``render_mode="human"`` on top of the same view.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pygame

from gtmsm_cli.files import atomic_path

if TYPE_CHECKING:
    from gtmsm_env.env import ImageNavEnv

_PANEL = 256  # pixels per side of each panel of the env's human window
_WINDOW_COLOR = (255, 220, 0)
_WALL_HIT_COLOR = (255, 40, 40)
_PATH_COLOR = (80, 200, 255)
_TEXT_COLOR = (230, 230, 230)
_BACKGROUND = (20, 20, 20)
_FOG = np.array([45, 45, 55], np.uint8)
# SDL falls back to these when there is no display: they open nothing a person can see.
HEADLESS_DRIVERS = ("offscreen", "dummy")


class NoDisplayError(RuntimeError):
    """No window can be shown (no display, or SDL fell back to a driver that shows nothing)."""


def open_display(size: tuple[int, int], caption: str, *, resizable: bool, hint: str) -> pygame.Surface:
    """Open the pygame window, or raise ``NoDisplayError`` naming the fix (``hint``).

    Without a display SDL silently picks its ``offscreen`` driver, and the program would run on
    with no window anyone can see. A headless driver is accepted only when asked for explicitly
    (``SDL_VIDEODRIVER=dummy`` for tests and scripted screenshots).
    """
    try:
        # Only the display and fonts: pygame.init() would also open audio devices.
        pygame.display.init()
        pygame.font.init()
        driver = pygame.display.get_driver()
        requested = os.environ.get("SDL_VIDEODRIVER", "").lower()
        if driver in HEADLESS_DRIVERS and driver not in requested:
            raise NoDisplayError(
                f"no display available (SDL fell back to its {driver!r} video driver, which shows "
                f"nothing; is DISPLAY set?); {hint}"
            )
        pygame.display.set_caption(caption)
        return pygame.display.set_mode(size, pygame.RESIZABLE if resizable else 0)
    except pygame.error as error:
        pygame.quit()
        raise NoDisplayError(f"could not open a pygame window ({error}); {hint}") from error
    except NoDisplayError:
        pygame.quit()
        raise


def _surface(image: np.ndarray, size: int) -> pygame.Surface:
    """``image`` scaled to fit a ``size`` x ``size`` panel, keeping its aspect ratio (its longer
    side becomes ``size``; drawn from the panel's top-left corner)."""
    # pygame surfaces are indexed (x, y): transpose rows and columns.
    surface = pygame.surfarray.make_surface(np.ascontiguousarray(image.transpose(1, 0, 2)))
    height, width = image.shape[:2]
    scale = size / max(height, width)
    return pygame.transform.scale(surface, (round(width * scale), round(height * scale)))


@dataclass
class Scene:
    """What one frame shows. Arrays are uint8 ``(H, W, 3)`` images; positions are grid cells."""

    image: np.ndarray
    """The full image (what the truth panel shows)."""
    crop: np.ndarray
    """The crop under the window."""
    position: tuple[int, int]
    crop_size: int
    step_size: int
    path: list[tuple[int, int]] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    """Status lines under the panels."""
    visible: np.ndarray | None = None
    """``(H, W)`` bool: pixels of the image to show; the rest is fog (None: show everything)."""
    wall_hit: bool = False
    """Flash the image border and the window red."""
    maze_segments: list[tuple[tuple[float, float], tuple[float, float]]] = field(default_factory=list)
    """Interior walls as line segments in image pixels."""
    hide_crop: bool = False
    """Cover the true crop (imagination mode with the truth hidden)."""
    hide_image: bool = False
    """Draw the image panel as fog with a note, without the path or the window's outline (the
    truth hidden)."""
    predicted_crop: np.ndarray | None = None
    predicted_canvas: np.ndarray | None = None
    progress: float | None = None
    """Memorisation progress in [0, 1], drawn as a bar (None: no bar)."""
    help_lines: list[tuple[str, str]] | None = None
    """Key help, (keys, what they do) rows drawn over everything (None: hidden)."""


class PlayView:
    """Panels of ``panel`` pixels: [image | crop], plus [predicted canvas | predicted crop] below
    in imagination mode, then ``status_lines`` lines of text. The canvas keeps its size; the
    window may be resized and shows the canvas scaled to fit."""

    def __init__(self, panel: int, *, imagination: bool = False, status_lines: int = 1,
                 caption: str = "ImageNav-v0", resizable: bool = True,
                 hint: str = "set SDL_VIDEODRIVER=dummy to run without one") -> None:
        self.panel = panel
        self.imagination = imagination
        self.font_size = max(12, round(22 * panel / 256))
        self.line_height = self.font_size
        self.status_height = 6 + self.line_height * status_lines
        rows = 2 if imagination else 1
        self.size = (2 * panel, rows * panel + self.status_height)
        self.window = open_display(self.size, caption, resizable=resizable, hint=hint)
        self.canvas = pygame.Surface(self.size)
        self.font = pygame.font.Font(None, self.font_size)
        self.small_font = pygame.font.Font(None, max(11, round(18 * panel / 256)))
        self.clock = pygame.time.Clock()

    # -- drawing -----------------------------------------------------------------------------

    def draw(self, scene: Scene) -> pygame.Surface:
        """Draw ``scene`` into the canvas, show it in the window and return the canvas."""
        canvas, panel = self.canvas, self.panel
        canvas.fill(_BACKGROUND)
        scale = panel / max(scene.image.shape[:2])  # image pixels -> panel pixels
        image = scene.image
        if scene.hide_image:
            image = np.broadcast_to(_FOG, image.shape)
        elif scene.visible is not None:
            image = np.where(scene.visible[..., None], image, _FOG)
        canvas.blit(_surface(image, panel), (0, 0))
        if scene.hide_image:
            self._centered_text("truth hidden (t shows it)", (panel // 2, panel // 2))
        else:
            self._draw_walk(scene, scale, (0, 0))
        if scene.wall_hit:
            pygame.draw.rect(canvas, _WALL_HIT_COLOR, pygame.Rect(0, 0, panel, panel), max(3, panel // 40))
        if scene.hide_crop:
            canvas.fill((60, 60, 60), pygame.Rect(panel, 0, panel, panel))
            self._centered_text("truth hidden (t shows it)", (panel + panel // 2, panel // 2))
        else:
            canvas.blit(_surface(scene.crop, panel), (panel, 0))
        self._label("truth" if self.imagination else "image", (0, 0))
        self._label("true crop" if self.imagination else "crop", (panel, 0))
        if self.imagination:
            if scene.predicted_canvas is not None:
                canvas.blit(_surface(scene.predicted_canvas, panel), (0, panel))
                self._draw_window(scene, scale, (0, panel))
            if scene.predicted_crop is not None:
                canvas.blit(_surface(scene.predicted_crop, panel), (panel, panel))
            else:
                self._centered_text("the model predicts after memorising",
                                    (panel + panel // 2, panel + panel // 2))
            self._label("model's canvas so far", (0, panel))
            self._label("model's prediction", (panel, panel))
        top = self.size[1] - self.status_height
        if scene.progress is not None:
            bar = pygame.Rect(0, top, round(self.size[0] * min(max(scene.progress, 0.0), 1.0)), self.status_height)
            canvas.fill((40, 90, 160), bar)
        for i, line in enumerate(scene.status):
            canvas.blit(self.font.render(line, True, _TEXT_COLOR), (6, top + 5 + i * self.line_height))
        if scene.help_lines:
            self._overlay(scene.help_lines)
        self.present()
        return canvas

    def _draw_walk(self, scene: Scene, scale: float, origin: tuple[int, int]) -> None:
        from gtmsm_env.drawing import WALL_CORE, WALL_OUTLINE, wall_widths

        ox, oy = origin
        core, outline = wall_widths(max(scale * 4 / 3, 8))  # at least 2 px of core in the play window
        # Two tones, as in rgb_array frames: all outlines, then all cores (see drawing.draw_frame).
        for color, width in ((WALL_OUTLINE, core + 2 * outline), (WALL_CORE, core)):
            for (x0, y0), (x1, y1) in scene.maze_segments:
                start, end = (ox + x0 * scale, oy + y0 * scale), (ox + x1 * scale, oy + y1 * scale)
                pygame.draw.line(self.canvas, color, start, end, width)
                if color is WALL_OUTLINE:  # square the outline's ends past the core's
                    for x, y in (start, end):
                        pygame.draw.rect(self.canvas, color, pygame.Rect(round(x - width / 2), round(y - width / 2), width, width))
        half = scene.crop_size * scale / 2
        if len(scene.path) > 1:
            points = [(ox + c * scene.step_size * scale + half, oy + r * scene.step_size * scale + half)
                      for r, c in scene.path]
            pygame.draw.lines(self.canvas, _PATH_COLOR, False, points, 2)
        self._draw_window(scene, scale, origin)

    def _draw_window(self, scene: Scene, scale: float, origin: tuple[int, int]) -> None:
        row, col = scene.position
        rect = pygame.Rect(
            origin[0] + round(col * scene.step_size * scale),
            origin[1] + round(row * scene.step_size * scale),
            round(scene.crop_size * scale),
            round(scene.crop_size * scale),
        )
        color = _WALL_HIT_COLOR if scene.wall_hit else _WINDOW_COLOR
        pygame.draw.rect(self.canvas, color, rect, 4 if scene.wall_hit else 2)

    def _label(self, text: str, origin: tuple[int, int]) -> None:
        rendered = self.small_font.render(text, True, _TEXT_COLOR)
        box = pygame.Surface((rendered.get_width() + 6, rendered.get_height() + 4), pygame.SRCALPHA)
        box.fill((0, 0, 0, 150))
        self.canvas.blit(box, origin)
        self.canvas.blit(rendered, (origin[0] + 3, origin[1] + 2))

    def _centered_text(self, text: str, centre: tuple[int, int]) -> None:
        rendered = self.small_font.render(text, True, _TEXT_COLOR)
        self.canvas.blit(rendered, rendered.get_rect(center=centre))

    def _overlay(self, rows: list[tuple[str, str]]) -> None:
        shade = pygame.Surface(self.size, pygame.SRCALPHA)
        shade.fill((0, 0, 0, 200))
        self.canvas.blit(shade, (0, 0))
        keys = [self.font.render(k, True, _WINDOW_COLOR) for k, _ in rows]
        column = 16 + max(k.get_width() for k in keys) + 16
        for i, (key, (_, text)) in enumerate(zip(keys, rows, strict=True)):
            y = 16 + i * (self.line_height + 4)
            self.canvas.blit(key, (16, y))
            self.canvas.blit(self.font.render(text, True, _TEXT_COLOR), (column, y))

    # -- window ------------------------------------------------------------------------------

    def present(self) -> None:
        """Show the canvas, scaled to fit the window (which the person may have resized)."""
        window = pygame.display.get_surface()
        if window is None:
            return
        width, height = window.get_size()
        if (width, height) == self.size:
            window.blit(self.canvas, (0, 0))
        else:
            factor = min(width / self.size[0], height / self.size[1])
            scaled = (max(1, round(self.size[0] * factor)), max(1, round(self.size[1] * factor)))
            window.fill((0, 0, 0))
            window.blit(pygame.transform.scale(self.canvas, scaled),
                        ((width - scaled[0]) // 2, (height - scaled[1]) // 2))
        pygame.display.flip()

    def screenshot(self, path: str | Path) -> None:
        """Save the last drawn frame (at canvas size) as a PNG, atomically: ``path`` is either its
        old self or the whole new image. A refused write raises ``OSError`` naming ``path``."""
        with atomic_path(path, "screenshot") as tmp:  # keeps the .png suffix pygame reads the format from
            try:
                pygame.image.save(self.canvas, str(tmp))
            except pygame.error as error:
                raise OSError(f"cannot write screenshot {path}: {error}") from None

    def tick(self, fps: int) -> None:
        self.clock.tick(fps)

    def close(self) -> None:
        pygame.display.quit()
        pygame.quit()


def env_scene(env: ImageNavEnv, status: list[str]) -> Scene:
    """A ``Scene`` of the env as it is now (image, window, path, interior walls)."""
    assert env.image is not None
    row, col = env.position
    top, left = row * env.step_size, col * env.step_size
    segments = []
    if getattr(env, "walls", "border") == "maze":
        from gtmsm_env.drawing import wall_segments

        segments = wall_segments(env.blocked_moves, env.geometry, 1.0)
    return Scene(
        image=env.image,
        crop=env.image[top : top + env.crop_size, left : left + env.crop_size],
        position=(row, col),
        crop_size=env.crop_size,
        step_size=env.step_size,
        path=list(env.path),
        status=status,
        maze_segments=segments,
    )


class HumanRenderer:
    """The env's ``render_mode="human"``: left the full image with the window and the path so
    far, right the crop zoomed, below a status line (position, step, positions seen)."""

    def __init__(self, render_scale: int, fps: int) -> None:
        try:
            self.view = PlayView(
                _PANEL, caption="ImageNav-v0",
                hint="on a machine without a display use render_mode='rgb_array', or set "
                     "SDL_VIDEODRIVER=dummy",
            )
        except NoDisplayError as error:
            raise RuntimeError(f"render_mode='human': {error}") from error.__cause__
        self.fps = fps
        self.render_scale = render_scale

    def draw(self, env: ImageNavEnv) -> None:
        pygame.event.pump()
        row, col = env.position
        rows, cols = env.grid_shape
        status = f"pos ({row},{col})  step {env.elapsed_steps}  seen {env.num_seen}/{rows * cols}"
        self.view.draw(env_scene(env, [status]))
        self.view.tick(self.fps)

    def close(self) -> None:
        self.view.close()
