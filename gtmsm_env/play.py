"""Play ImageNav-v0 with the keyboard: ``python -m gtmsm_env.play`` (or ``gtmsm-play``).

Arrow keys / WASD move, space stays, ``r`` draws a new image, Esc or closing the window quits.
The window shows the image with the window and path, the crop zoomed, and a status line.
"""

from __future__ import annotations

import argparse
from typing import Any

import gymnasium as gym
import pygame

import gtmsm_env  # noqa: F401  (registers ImageNav-v0)
from gtmsm_env.env import DOWN, LEFT, RIGHT, STAY, UP, ImageNavEnv

KEY_TO_ACTION: dict[int, int] = {
    pygame.K_UP: UP,
    pygame.K_DOWN: DOWN,
    pygame.K_LEFT: LEFT,
    pygame.K_RIGHT: RIGHT,
    pygame.K_w: UP,
    pygame.K_s: DOWN,
    pygame.K_a: LEFT,
    pygame.K_d: RIGHT,
    pygame.K_SPACE: STAY,
}


class PlaySession:
    """A human-driven episode. ``handle_event`` applies one pygame event; ``run`` is the loop.

    Tests drive it by posting synthetic events (``pygame.event.post``) under
    ``SDL_VIDEODRIVER=dummy``, or by calling ``handle_event`` directly.
    """

    def __init__(self, env: gym.Env | None = None, seed: int | None = None) -> None:
        self.env = env if env is not None else gym.make("ImageNav-v0", render_mode="human")
        if self.env.unwrapped.render_mode != "human":
            raise ValueError("PlaySession needs an env made with render_mode='human'")
        self.running = True
        self.last_info: dict[str, Any] = {}
        self.total_reward = 0.0
        _, self.last_info = self.env.reset(seed=seed)

    @property
    def nav(self) -> ImageNavEnv:
        return self.env.unwrapped  # type: ignore[return-value]

    def status(self) -> str:
        row, col = self.nav.position
        rows, cols = self.nav.grid_shape
        return (
            f"position ({row}, {col})  step {self.nav.elapsed_steps}  "
            f"positions seen {self.nav.num_seen}/{rows * cols}"
        )

    def act(self, action: int) -> None:
        _, reward, terminated, truncated, self.last_info = self.env.step(action)
        self.total_reward += float(reward)
        if terminated or truncated:
            _, self.last_info = self.env.reset()

    def handle_event(self, event: pygame.event.Event) -> bool:
        """Apply one event; returns whether the session is still running."""
        if event.type == pygame.QUIT:
            self.running = False
        elif event.type == pygame.KEYDOWN:
            if event.key == pygame.K_ESCAPE:
                self.running = False
            elif event.key == pygame.K_r:
                _, self.last_info = self.env.reset()
            elif event.key in KEY_TO_ACTION:
                self.act(KEY_TO_ACTION[event.key])
        return self.running

    def run(self, max_frames: int | None = None) -> None:
        """Process events until quit (or ``max_frames`` loop iterations), then close the env."""
        frames = 0
        try:
            while self.running and (max_frames is None or frames < max_frames):
                for event in pygame.event.get():
                    if not self.handle_event(event):
                        break
                if self.running:
                    self.env.render()  # also keeps the window responsive and caps the frame rate
                frames += 1
        finally:
            self.env.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="gtmsm-play",
        description="Play ImageNav-v0 with the keyboard (arrows/WASD, space, r, Esc).",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the first image")
    parser.add_argument(
        "--image-source",
        default=None,
        help="'procedural' (default), a folder of images or a .npz/.npy file",
    )
    parser.add_argument(
        "--start", choices=["center", "random"], default="center", help="start position"
    )
    parser.add_argument("--task", choices=["coverage"], default=None, help="optional reward task")
    args = parser.parse_args(argv)
    env = gym.make(
        "ImageNav-v0",
        render_mode="human",
        image_source=args.image_source,
        start=args.start,
        task=args.task,
    )
    session = PlaySession(env, seed=args.seed)
    print(__doc__.strip().splitlines()[2])
    session.run()
    print(session.status())


if __name__ == "__main__":
    main()
