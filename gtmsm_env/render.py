"""The pygame window of ``render_mode="human"``; imported only when a human render is asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pygame

if TYPE_CHECKING:
    from gtmsm_env.env import ImageNavEnv

_PANEL = 256  # pixels per side of each panel
_STATUS_HEIGHT = 28
_WINDOW_COLOR = (255, 220, 0)
_PATH_COLOR = (255, 60, 60)


def _surface(image: np.ndarray, size: int) -> pygame.Surface:
    # pygame surfaces are indexed (x, y): transpose rows and columns.
    surface = pygame.surfarray.make_surface(np.ascontiguousarray(image.transpose(1, 0, 2)))
    return pygame.transform.scale(surface, (size, size))


class HumanRenderer:
    """Left: the full image with the window and the path so far. Right: the crop zoomed. Below: a
    status line (position, step, positions seen)."""

    def __init__(self, render_scale: int, fps: int) -> None:
        # Only the display and fonts: pygame.init() would also open audio devices.
        try:
            pygame.display.init()
            pygame.font.init()
            pygame.display.set_caption("ImageNav-v0")
            self.screen = pygame.display.set_mode((2 * _PANEL, _PANEL + _STATUS_HEIGHT))
        except pygame.error as error:
            pygame.quit()
            raise RuntimeError(
                f"render_mode='human' could not open a pygame window ({error}); on a machine "
                "without a display use render_mode='rgb_array', or set SDL_VIDEODRIVER=dummy"
            ) from error
        self.clock = pygame.time.Clock()
        self.font = pygame.font.Font(None, 22)
        self.fps = fps
        self.render_scale = render_scale

    def draw(self, env: ImageNavEnv) -> None:
        assert env.image is not None
        pygame.event.pump()
        self.screen.fill((20, 20, 20))
        scale = _PANEL / env.image_size
        self.screen.blit(_surface(env.image, _PANEL), (0, 0))
        half = env.crop_size * scale / 2

        def centre(row: int, col: int) -> tuple[float, float]:
            return col * env.step_size * scale + half, row * env.step_size * scale + half

        if len(env.path) > 1:
            pygame.draw.lines(self.screen, _PATH_COLOR, False, [centre(*p) for p in env.path], 2)
        row, col = env.position
        rect = pygame.Rect(
            round(col * env.step_size * scale),
            round(row * env.step_size * scale),
            round(env.crop_size * scale),
            round(env.crop_size * scale),
        )
        pygame.draw.rect(self.screen, _WINDOW_COLOR, rect, 2)
        top, left = row * env.step_size, col * env.step_size
        crop = env.image[top : top + env.crop_size, left : left + env.crop_size]
        self.screen.blit(_surface(crop, _PANEL), (_PANEL, 0))
        rows, cols = env.grid_shape
        status = f"pos ({row},{col})  step {env.elapsed_steps}  seen {env.num_seen}/{rows * cols}"
        self.screen.blit(self.font.render(status, True, (230, 230, 230)), (6, _PANEL + 6))
        pygame.display.flip()
        self.clock.tick(self.fps)

    def close(self) -> None:
        pygame.display.quit()
        pygame.quit()
