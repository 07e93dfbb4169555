"""The human-driven play session of ``gtmsm-play``: :class:`PlaySession` (one episode in its own
window: key handling with hold-to-repeat, imagination mode's memorise-then-predict walk, the frame
each moment shows) and the keys it understands. :mod:`gtmsm_env.play` is the command around it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

# SDL would turn SIGTERM into a quit event, and the run would end as if the person had quit (exit
# 0, screenshot, summary); without its handler, the command's own ends the run with one line, exit 143.
os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
import pygame

import gtmsm_env  # noqa: F401  (registers ImageNav-v0)
from gtmsm_env.drawing import wall_segments
from gtmsm_env.env import ImageNavEnv, movement_keys
from gtmsm_env.render import NoDisplayError, PlayView, Scene
from gtmsm_env.world import Action

KEY_TO_ACTION: dict[int, Action] = {**movement_keys(), pygame.K_PERIOD: Action.STAY}
SCRIPT_ACTIONS: dict[str, Action] = {"w": Action.UP, "a": Action.LEFT, "s": Action.DOWN,
                                     "d": Action.RIGHT, ".": Action.STAY}
SCRIPT_KEYS: dict[str, int] = {"m": pygame.K_m, "t": pygame.K_t, "q": pygame.K_q}
"""Script letters that press a key instead of moving: stop memorising, hide the truth, quit."""
STOP_MEMORISING_KEYS = (pygame.K_m, pygame.K_RETURN, pygame.K_KP_ENTER)
QUIT_KEYS = (pygame.K_ESCAPE, pygame.K_q)
WALL_FLASH_MS = 300.0

HELP_LINES = [
    ("arrows / WASD", "move (hold to repeat)"),
    ("space / .", "stay"),
    ("r", "new image (a new episode)"),
    ("f", "fog of war: only what was seen"),
    ("h", "show / hide this help"),
    ("Esc / q", "quit"),
]


def imagination_help(tau: int) -> list[tuple[str, str]]:
    """The help rows of imagination mode: how long memorisation lasts and why."""
    return [
        ("m / Enter", "stop memorising: predict from now on"),
        ("t", "hide / show every view of the truth"),
        ("memory", f"steps 0-{tau - 1}, then the model predicts"),
        ("", "(--tau; unset: the trained tau, at most"),
        ("", "one step per window position)"),
    ]



class PlaySession:
    """A human-driven episode in its own window (opened here: ``NoDisplayError`` without a display).

    ``handle_event`` applies one pygame event, ``update`` applies held-key repeats, ``draw``
    draws a frame, ``run`` is the loop. Tests drive it with synthetic events under
    ``SDL_VIDEODRIVER=dummy`` and a fake ``clock`` (milliseconds).

    ``imagination`` (optional) is any object with the imagination protocol: ``tau``,
    ``memorising``, ``memorised``, ``first_predicted_step``, ``reset()``, ``stop_memorising()``,
    ``observe(crop, action)`` and ``imagine(action)`` returning something with ``crop``,
    ``near_memory`` (and optionally ``from_canvas``) — e.g. a
    ``gtmsm_model.imagination.Imagination``; this module never imports torch itself.
    """

    def __init__(
        self,
        env: gym.Env | None = None,
        seed: int | None = None,
        *,
        scale: int = 8,
        fps: int = 30,
        repeat_delay_ms: float = 250.0,
        repeat_interval_ms: float = 110.0,
        fog: bool = False,
        imagination: Any = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.env = env if env is not None else gym.make("ImageNav-v0", render_mode="rgb_array")
        if self.env.unwrapped.render_mode == "human":
            raise ValueError(
                "PlaySession draws its own window; make the env with render_mode='rgb_array' or None"
            )
        self.scale, self.fps = scale, fps
        self.repeat_delay_ms, self.repeat_interval_ms = repeat_delay_ms, repeat_interval_ms
        self.fog = fog
        self.imagination = imagination
        self.clock = clock if clock is not None else (lambda: time.monotonic() * 1000.0)
        self.view: PlayView | None = None
        self.running = True
        self.show_help = False
        self.hide_truth = False
        self.total_reward = 0.0
        self.wall_hits = 0
        self.last_info: dict[str, Any] = {}
        self._wall_flash_until = -math.inf
        self._held: dict[int, float] = {}  # key -> time of its next repeat; the last pressed wins
        self.new_episode(seed=seed)
        try:
            self.open()
        except NoDisplayError:
            self.env.close()
            raise

    # -- episode state -----------------------------------------------------------------------

    @property
    def nav(self) -> ImageNavEnv:
        return self.env.unwrapped  # type: ignore[return-value]

    def new_episode(self, seed: int | None = None) -> None:
        obs, self.last_info = self.env.reset(seed=seed)
        self.path = [self.nav.position]
        size = self.nav.image_shape  # (height, width)
        self.seen_pixels = np.zeros(size, bool)
        self.memorised_pixels = np.zeros(size, bool)
        self.memorised_positions: set[tuple[int, int]] = set()
        self.predicted_canvas = np.full((*size, 3), 45, np.uint8)
        self.predicted_crop: np.ndarray | None = None
        self.near_memory: bool | None = None
        self.from_canvas = False
        self.errors: list[float] = []
        self.revisited: list[bool] = []
        self._mark_seen()
        if self.imagination is not None:
            self.imagination.reset()
            self.imagination.observe(obs, None)
            self._mark_memorised()

    def _window_slice(self) -> tuple[slice, slice]:
        row, col = self.nav.position
        step, crop = self.nav.step_size, self.nav.crop_size
        return slice(row * step, row * step + crop), slice(col * step, col * step + crop)

    def _mark_seen(self) -> None:
        self.seen_pixels[self._window_slice()] = True

    def _mark_memorised(self) -> None:
        self.memorised_positions.add(self.nav.position)
        self.memorised_pixels[self._window_slice()] = True

    def act(self, action: int) -> None:
        obs, reward, terminated, truncated, self.last_info = self.env.step(action)
        self.total_reward += float(reward)
        self.path.append(self.nav.position)
        self._mark_seen()
        if self.last_info.get("wall_hit"):
            self.wall_hits += 1
            self._wall_flash_until = self.clock() + WALL_FLASH_MS
        if self.imagination is not None:
            if self.imagination.memorising:
                self.imagination.observe(obs, action)
                self._mark_memorised()
            else:
                imagined = self.imagination.imagine(action)
                self.predicted_crop = imagined.crop
                self.near_memory = bool(imagined.near_memory)
                self.from_canvas = bool(getattr(imagined, "from_canvas", False))
                error = (imagined.crop.astype(np.float32) - obs.astype(np.float32)) / 255.0
                self.errors.append(float(np.mean(error**2)))
                self.revisited.append(self.nav.position in self.memorised_positions)
                self.predicted_canvas[self._window_slice()] = imagined.crop
        if terminated or truncated:
            self.new_episode()

    def stop_memorising(self) -> None:
        """End memorisation now (imagination mode): the next step is the first one predicted."""
        if self.imagination is not None and self.imagination.memorising:
            self.imagination.stop_memorising()

    @property
    def wall_flash(self) -> bool:
        """Whether the last wall hit is still being signalled."""
        return self.clock() < self._wall_flash_until

    # -- input -------------------------------------------------------------------------------

    def handle_event(self, event: pygame.event.Event) -> bool:
        """Apply one event; returns whether the session is still running."""
        if event.type == pygame.QUIT:
            self.running = False
        elif event.type == pygame.KEYDOWN:
            if event.key in QUIT_KEYS:
                self.running = False
            elif event.key in STOP_MEMORISING_KEYS:
                self.stop_memorising()
            elif event.key == pygame.K_r:
                self._held.clear()
                self.new_episode()
            elif event.key == pygame.K_h:
                self.show_help = not self.show_help
            elif event.key == pygame.K_f:
                self.fog = not self.fog
            elif event.key == pygame.K_t:
                self.hide_truth = not self.hide_truth
            elif event.key in KEY_TO_ACTION:
                self.act(KEY_TO_ACTION[event.key])
                self._held.pop(event.key, None)
                self._held[event.key] = self.clock() + self.repeat_delay_ms
        elif event.type == pygame.KEYUP:
            self._held.pop(event.key, None)
        elif event.type == pygame.WINDOWFOCUSLOST:
            self._held.clear()  # the key-up would go to another window: stop repeating
        return self.running

    def update(self) -> None:
        """Repeat the most recently pressed key that is still held, at most one step per frame."""
        if not self._held:
            return
        key = next(reversed(self._held))
        now = self.clock()
        if now >= self._held[key]:
            self.act(KEY_TO_ACTION[key])
            # Steady rate; after a stall (a slow frame) do not burst to catch up.
            self._held[key] = max(self._held[key] + self.repeat_interval_ms, now)

    # -- display -----------------------------------------------------------------------------

    @property
    def truth_hidden(self) -> bool:
        """Whether every view of the truth is hidden (``t`` in imagination mode)."""
        return self.imagination is not None and self.hide_truth

    def status(self) -> str:
        """One line: position (not while the truth is hidden), step, positions seen, and the task's
        reward if there is one."""
        row, col = self.nav.position
        rows, cols = self.nav.grid_shape
        where = "position hidden" if self.truth_hidden else f"position ({row}, {col})"
        text = f"{where}  step {self.nav.elapsed_steps}  seen {self.nav.num_seen}/{rows * cols}"
        if self.nav.task is not None:
            text += f"  {self.nav.task} reward {self.total_reward:g}"
        if self.wall_flash:
            text += "  WALL"
        return text

    def imagination_status(self) -> str:
        """The second status line of imagination mode. Its step is the first line's: steps since the
        reset (step 0), so the crops of steps 0 .. first_predicted_step - 1 are the memorised ones."""
        im = self.imagination
        step, first = self.nav.elapsed_steps, im.first_predicted_step
        if im.memorising:
            return f"memorising step {step}: predicting from step {first}  m: from step {step + 1}"
        if not self.errors:
            return f"memorised steps 0-{first - 1}: move, and the model predicts step {step + 1}"
        place = "revisited" if self.revisited[-1] else "NEW place"
        belief = "remembers" if self.near_memory else "composes" if self.from_canvas else "unsure"
        return f"predicted step {step}  MSE {np.mean(self.errors):.4f}  {place}  model: {belief}"

    def help_lines(self) -> list[tuple[str, str]]:
        """The rows of the help overlay (``h``)."""
        if self.imagination is None:
            return HELP_LINES
        return HELP_LINES + imagination_help(self.imagination.tau)

    def scene(self) -> Scene:
        """The frame as it is now. With the truth hidden (imagination mode) no panel shows any of
        the image, its walls or where the window is: the image panel is fog, the crop panel blank."""
        hide = self.truth_hidden
        visible = None
        if hide:
            visible = np.zeros(self.nav.image_shape, bool)
        elif self.fog:
            visible = self.seen_pixels
        row_slice, col_slice = self._window_slice()
        assert self.nav.image is not None
        status = [self.status() + "  h: help"]
        progress = None
        if self.imagination is not None:
            status.append(self.imagination_status())
            if self.imagination.memorising:
                progress = self.imagination.memorised / self.imagination.tau
        segments = []
        if getattr(self.nav, "walls", "border") == "maze" and not hide:
            segments = wall_segments(self.nav.blocked_moves, self.nav.geometry, 1.0)
        return Scene(
            image=self.nav.image,
            crop=self.nav.image[row_slice, col_slice],
            position=self.nav.position,
            crop_size=self.nav.crop_size,
            step_size=self.nav.step_size,
            path=[] if hide else self.path[-200:],
            status=status,
            visible=visible,
            wall_hit=self.wall_flash,
            maze_segments=segments,
            hide_crop=hide,
            hide_image=hide,
            predicted_crop=self.predicted_crop,
            predicted_canvas=self.predicted_canvas if self.imagination is not None else None,
            progress=progress,
            help_lines=self.help_lines() if self.show_help else None,
        )

    def open(self) -> PlayView:
        """Open the window (raises ``NoDisplayError`` when there is no display)."""
        if self.view is None:
            self.view = PlayView(
                max(self.nav.image_shape) * self.scale,
                imagination=self.imagination is not None,
                status_lines=2 if self.imagination is not None else 1,
                caption="ImageNav-v0 imagination" if self.imagination is not None else "ImageNav-v0",
                hint="run it on a desktop, or set SDL_VIDEODRIVER=dummy for a headless run "
                     "(e.g. --script ... --screenshot out.png)",
            )
        return self.view

    def draw(self) -> pygame.Surface:
        """Draw the current frame; returns the canvas surface."""
        return self.open().draw(self.scene())

    def run(self, max_frames: int | None = None, script: str | None = None,
            screenshot: str | Path | None = None) -> None:
        """Process events until quit (or ``max_frames`` frames, or the end of ``script``: one
        scripted key per frame, uncapped; a move steps, a ``SCRIPT_KEYS`` letter is pressed),
        save ``screenshot``, then close the window and env."""
        frames = 0
        steps = iter(script) if script is not None else None
        try:
            view = self.open()
            while self.running and (max_frames is None or frames < max_frames):
                for event in pygame.event.get():
                    if not self.handle_event(event):
                        break
                if not self.running:
                    break
                if steps is not None:
                    key = next(steps, None)
                    if key is None:
                        break
                    if key in SCRIPT_KEYS:
                        self.handle_event(pygame.event.Event(pygame.KEYDOWN, key=SCRIPT_KEYS[key]))
                        if not self.running:
                            break
                    else:
                        self.act(SCRIPT_ACTIONS[key])
                self.update()
                view.draw(self.scene())
                if steps is None:
                    view.tick(self.fps)
                frames += 1
            if screenshot is not None:
                view.draw(self.scene())
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                view.screenshot(screenshot)
        finally:
            self.close()

    def close(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None
        self.env.close()
