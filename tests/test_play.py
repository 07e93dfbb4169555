"""Human play, driven headlessly by synthetic pygame events."""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import gymnasium as gym
import numpy as np
import pygame

from gtmsm_env.play import PlaySession, main


def key(k: int) -> pygame.event.Event:
    return pygame.event.Event(pygame.KEYDOWN, key=k)


def test_handle_event_moves_the_window_and_r_draws_a_new_image():
    session = PlaySession(seed=0)
    assert session.nav.position == (4, 4)
    session.handle_event(key(pygame.K_RIGHT))
    session.handle_event(key(pygame.K_w))
    assert session.nav.position == (3, 5)
    session.handle_event(key(pygame.K_SPACE))
    assert session.nav.position == (3, 5) and session.nav.elapsed_steps == 3
    assert "position (3, 5)" in session.status() and "seen 3/81" in session.status()
    image = session.nav.image.copy()
    session.handle_event(key(pygame.K_r))
    assert not np.array_equal(image, session.nav.image) and session.nav.position == (4, 4)
    assert not session.handle_event(key(pygame.K_ESCAPE))
    session.env.close()


def test_run_loop_consumes_posted_events_then_quits_and_releases_pygame():
    session = PlaySession(seed=0)
    for k in (pygame.K_DOWN, pygame.K_DOWN, pygame.K_LEFT, pygame.K_a):
        pygame.event.post(key(k))
    session.run(max_frames=3)
    assert session.nav.position == (6, 2)
    assert not pygame.display.get_init()  # run() closes the env

    session = PlaySession(seed=0)
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    session.run(max_frames=50)
    assert not session.running


def test_truncation_resets_during_play():
    env = gym.make("ImageNav-v0", render_mode="human", max_episode_steps=2)
    session = PlaySession(env, seed=0)
    for _ in range(3):
        session.handle_event(key(pygame.K_UP))
    assert session.nav.elapsed_steps == 1
    env.close()


def test_main_cli_quits_on_escape(monkeypatch):
    original_init = PlaySession.__init__

    def init_then_queue_escape(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        pygame.event.post(key(pygame.K_RIGHT))
        pygame.event.post(key(pygame.K_ESCAPE))

    monkeypatch.setattr(PlaySession, "__init__", init_then_queue_escape)
    main(["--seed", "1"])
    assert not pygame.display.get_init()


def test_gymnasium_utils_play_accepts_keys_to_action_and_does_not_drift():
    from gymnasium.utils.play import play

    env = gym.make("ImageNav-v0", render_mode="rgb_array")
    positions = []

    def record(obs_t, obs_tp1, action, rew, terminated, truncated, info):
        positions.append(tuple(info["position"]))
        if len(positions) == 5:
            pygame.event.post(pygame.event.Event(pygame.QUIT))

    play(env, keys_to_action=env.unwrapped.get_keys_to_action(), noop=0, fps=200, callback=record)
    assert positions == [(4, 4)] * 5  # no key pressed: noop (stay) every frame
