"""Human play and imagination mode, driven headlessly (SDL dummy driver, synthetic key events)."""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import signal
import subprocess
import sys
import threading
from pathlib import Path

import gymnasium as gym
import numpy as np
import pygame
import pytest
from PIL import Image

from gtmsm_env.play import PlaySession
from gtmsm_model.play_model import main


def key(k: int) -> pygame.event.Event:
    return pygame.event.Event(pygame.KEYDOWN, key=k)


def key_up(k: int) -> pygame.event.Event:
    return pygame.event.Event(pygame.KEYUP, key=k)


class FakeClock:
    """Milliseconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    return {**env, **extra}


# ------------------------------------------------------------------------------- plain play


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
    session.close()


def test_holding_a_key_repeats_after_the_delay_at_the_interval_and_stops_on_key_up():
    clock = FakeClock()
    session = PlaySession(seed=0, repeat_delay_ms=250, repeat_interval_ms=100, clock=clock)
    session.handle_event(key(pygame.K_DOWN))  # the press itself moves once
    for clock.now in range(0, 480, 20):  # frames every 20 ms while the key is held
        session.update()
    # repeats at 250, 350, 450 ms
    assert session.nav.position == (8, 4) and session.nav.elapsed_steps == 4
    session.handle_event(key_up(pygame.K_DOWN))
    for clock.now in range(480, 1000, 20):
        session.update()
    assert session.nav.elapsed_steps == 4

    # The last pressed key wins while two are held; releasing it hands back to the other.
    session.handle_event(key(pygame.K_LEFT))
    session.handle_event(key(pygame.K_UP))
    clock.now = 1260
    session.update()
    assert session.nav.position == (6, 3)
    session.handle_event(key_up(pygame.K_UP))
    clock.now = 1400
    session.update()
    assert session.nav.position == (6, 2)
    session.handle_event(pygame.event.Event(pygame.WINDOWFOCUSLOST))  # no key-up will come
    clock.now = 3000
    session.update()
    assert session.nav.position == (6, 2)
    session.close()


def test_key_repeat_through_the_event_queue_and_run_loop():
    session = PlaySession(seed=0, repeat_delay_ms=30, repeat_interval_ms=30, fps=100)
    pygame.event.post(key(pygame.K_RIGHT))
    session.run(max_frames=12)  # ~120 ms of frames at 100 fps, the key never released
    assert session.nav.elapsed_steps >= 3 and session.nav.position[1] >= 7
    assert not pygame.display.get_init()  # run() closes the window


def test_wall_hit_is_signalled_in_the_status_line_and_by_a_red_border():
    clock = FakeClock()
    session = PlaySession(seed=0, clock=clock)
    for _ in range(4):
        session.handle_event(key(pygame.K_UP))
    assert session.nav.position == (0, 4) and not session.wall_flash
    session.handle_event(key(pygame.K_UP))
    assert session.last_info["wall_hit"] and session.wall_flash and session.wall_hits == 1
    assert "WALL" in session.status()
    canvas = session.draw()
    assert canvas.get_at((1, 128))[:3] == (255, 40, 40)  # the image panel's border flashes red
    clock.now += 1000
    assert not session.wall_flash and "WALL" not in session.status()
    assert session.draw().get_at((1, 128))[:3] != (255, 40, 40)
    session.close()


def test_coverage_reward_is_in_the_status_line():
    env = gym.make("ImageNav-v0", render_mode="rgb_array", task="coverage")
    session = PlaySession(env, seed=0)
    for k in (pygame.K_RIGHT, pygame.K_RIGHT, pygame.K_LEFT):
        session.handle_event(key(k))
    assert session.total_reward == 2.0
    assert "coverage reward 2" in session.status()
    assert "coverage reward" not in PlaySession(seed=0).status()
    session.close()


def test_help_overlay_fog_and_scale():
    session = PlaySession(seed=0, scale=4)
    assert session.scene().help_lines is None and session.scene().visible is None
    session.handle_event(key(pygame.K_h))
    assert any("fog" in text for _, text in session.scene().help_lines)
    session.handle_event(key(pygame.K_f))
    visible = session.scene().visible
    assert visible.sum() == 64  # only the start window has been seen
    session.handle_event(key(pygame.K_d))
    assert session.scene().visible.sum() == 64 + 8 * 3  # the window moved 3 px: 8 x 3 new pixels
    canvas = session.draw()
    assert canvas.get_size()[0] == 2 * 32 * 4
    # A resized window shows the same canvas scaled; nothing breaks.
    pygame.display.set_mode((700, 300), pygame.RESIZABLE)
    session.draw()
    assert pygame.display.get_surface().get_size() == (700, 300)
    session.close()


def test_truncation_starts_a_new_episode():
    env = gym.make("ImageNav-v0", render_mode="rgb_array", max_episode_steps=2)
    session = PlaySession(env, seed=0)
    for _ in range(3):
        session.handle_event(key(pygame.K_UP))
    assert session.nav.elapsed_steps == 1 and session.path == [(4, 4), (3, 4)]
    session.close()
    with pytest.raises(ValueError, match="draws its own window"):
        PlaySession(gym.make("ImageNav-v0", render_mode="human"))


def test_quit_event_ends_the_run_loop():
    session = PlaySession(seed=0)
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    session.run(max_frames=50)
    assert not session.running and not pygame.display.get_init()


def test_main_cli_quits_on_escape(monkeypatch):
    original_init = PlaySession.__init__

    def init_then_queue_escape(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        pygame.event.post(key(pygame.K_RIGHT))
        pygame.event.post(key(pygame.K_ESCAPE))

    monkeypatch.setattr(PlaySession, "__init__", init_then_queue_escape)
    assert main(["--seed", "1"]) == 0
    assert not pygame.display.get_init()


def test_script_and_screenshot_write_a_png_of_the_last_frame(tmp_path, capsys):
    out = tmp_path / "plain.png"
    assert main(["--seed", "0", "--script", "ddw.", "--screenshot", str(out), "--task", "coverage"]) == 0
    assert "position (3, 6)  step 4" in capsys.readouterr().out
    frame = np.asarray(Image.open(out))
    assert frame.shape == (256 + 28, 512, 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--image-source", "junk"], "--image-source: "),
        (["--script", "wxz"], "--script may hold only"),
        (["--scale", "0"], "argument --scale: must be >= 1, got 0"),
        (["--screenshot", "out.jpg"], "--screenshot must name a .png"),
        (["--model", "missing.pt"], "--model: checkpoint not found"),
        (["--tau", "5"], "--tau applies only with --model"),
    ],
)
def test_bad_flags_give_one_error_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]  # argparse prints its usage lines first
    assert last.startswith("gtmsm-play: error:") and message in last and "Traceback" not in err


def test_no_display_gives_a_clear_error_and_a_nonzero_exit(monkeypatch, capsys):
    # SDL falls back to its invisible 'offscreen' driver when there is no display.
    monkeypatch.delenv("SDL_VIDEODRIVER")
    monkeypatch.setattr(pygame.display, "init", lambda: None)
    monkeypatch.setattr(pygame.display, "get_driver", lambda: "offscreen")
    assert main(["--script", "d"]) == 1
    err = capsys.readouterr().err
    assert "no display available" in err and "SDL_VIDEODRIVER=dummy" in err
    assert not pygame.display.get_init()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SDL's fallback differs by platform")
def test_no_display_subprocess_exits_instead_of_running_invisibly():
    result = subprocess.run([sys.executable, "-m", "gtmsm_env.play", "--script", "dd"],
                            env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "gtmsm-play: error: no display available" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_exits_cleanly():
    process = subprocess.Popen([sys.executable, "-m", "gtmsm_env.play", "--seed", "0"],
                               env=clean_env(SDL_VIDEODRIVER="dummy"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert "Arrow keys" in process.stdout.readline()  # the window is open, the loop runs
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "interrupted" in err and "Traceback" not in err


def sigterm_env() -> dict[str, str]:
    """A dummy display, and SDL left to install its own signal handlers unless play says otherwise."""
    env = clean_env(SDL_VIDEODRIVER="dummy")
    env.pop("SDL_NO_SIGNAL_HANDLERS", None)
    return env


def test_sigterm_while_idle_exits_143_with_one_line():
    process = subprocess.Popen([sys.executable, "-m", "gtmsm_env.play", "--seed", "0"], env=sigterm_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "Arrow keys" in process.stdout.readline()  # the window is open, the loop runs
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 143, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gtmsm-play: interrupted by SIGTERM"), err
    assert "position" not in out  # no summary as if the person had quit


SIGTERM_AT_STEP_3 = """
import os, signal, sys
import gtmsm_env.play as play
real_act = play.PlaySession.act
def act(self, action):
    if len(self.path) == 3:
        os.kill(os.getpid(), signal.SIGTERM)
    return real_act(self, action)
play.PlaySession.act = act
sys.exit(play.main(sys.argv[1:]))
"""


def test_sigterm_mid_script_saves_no_screenshot_and_prints_no_summary(tmp_path):
    out = tmp_path / "frame.png"
    result = subprocess.run([sys.executable, "-c", SIGTERM_AT_STEP_3, "--seed", "0", "--script", "d" * 50,
                             "--screenshot", str(out)], env=sigterm_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 143, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("gtmsm-play: interrupted by SIGTERM; position") and "no screenshot saved" in lines[0]
    assert not out.exists() and result.stdout.strip() == ""


def test_screenshot_path_problems_use_the_shared_wording(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(["--script", "d", "--screenshot", str(afile / "x.png")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gtmsm-play: error: --screenshot: cannot create a folder under {afile}: it is a file", err
    new = tmp_path / "new" / "folder" / "x.png"  # a missing folder is made, as every writer does
    assert main(["--seed", "0", "--script", "d", "--screenshot", str(new)]) == 0 and new.stat().st_size > 0


def test_wrong_size_image_array_advice_names_no_flag_play_lacks(tmp_path, capsys):
    images = tmp_path / "small.npy"
    np.save(images, np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(SystemExit) as exit_info:
        main(["--image-source", str(images), "--script", "d"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gtmsm-play: error: --image-source: ") and "images are 16x16" in err, err
    assert "--image-size" not in err and "command line" not in err, err


def test_env_package_never_imports_torch():
    code = "import sys, gtmsm_env, gtmsm_env.play, gtmsm_env.render; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=clean_env(SDL_VIDEODRIVER="dummy"))


def test_env_package_never_imports_the_model_package():
    code = ("import sys, gtmsm_env, gtmsm_env.play, gtmsm_env.render, gtmsm_env.rollouts; "
            "assert not [name for name in sys.modules if name.startswith('gtmsm_model')]")
    subprocess.run([sys.executable, "-c", code], check=True, env=clean_env(SDL_VIDEODRIVER="dummy"))


# -------------------------------------------------------------------- gymnasium.utils.play


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


def test_recommended_gymnasium_play_settings_take_no_steps_while_idle():
    from gymnasium.utils.play import play

    env = gym.make("ImageNav-v0", render_mode="rgb_array")
    steps = []
    timer = threading.Timer(0.3, lambda: pygame.event.post(pygame.event.Event(pygame.QUIT)))
    timer.start()
    play(env, keys_to_action=env.unwrapped.get_keys_to_action(), noop=0, fps=100,
         wait_on_player=True, callback=lambda *args: steps.append(args))
    timer.join()
    assert steps == []  # ~30 idle frames, no "stay" steps


# ------------------------------------------------------------------------- imagination


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from gtmsm_model.train import make_config, train

    out_dir = tmp_path_factory.mktemp("tiny_model")
    train(make_config("debug", out_dir=str(out_dir), progress=False, threads=1, eval_every=0))
    return out_dir / "checkpoint.pt"


def test_imagination_script_screenshot_shows_the_predicted_crop(tiny_checkpoint, tmp_path):
    from gtmsm_model.imagination import load_imagination

    imagination = load_imagination(tiny_checkpoint, tau=12)
    session = PlaySession(seed=0, imagination=imagination)
    out = tmp_path / "imagination.png"
    script = "ddwwaassdd." + "wwdda"  # 12 memorised steps (the reset counts), then 5 predicted
    session.run(script=script, screenshot=out)
    assert imagination.memorised == 12 and len(session.errors) == 5
    assert session.revisited == [True, True, False, False, False]
    frame = np.asarray(Image.open(out))
    assert frame.shape[:2] == (2 * 256 + 50, 512)
    predicted_panel = frame[256:512, 256:512]
    expected = np.repeat(np.repeat(session.predicted_crop, 32, axis=0), 32, axis=1)
    # The panel is the predicted crop (its label covers the top-left corner).
    np.testing.assert_array_equal(predicted_panel[40:], expected[40:])


def test_imagination_memorises_then_predicts_and_t_hides_the_truth(tiny_checkpoint):
    from gtmsm_model.imagination import load_imagination

    session = PlaySession(seed=0, imagination=load_imagination(tiny_checkpoint, tau=3))
    assert session.imagination_status() == "memorising step 0: predicting from step 3  m: from step 1"
    assert session.scene().progress == 1 / 3
    session.handle_event(key(pygame.K_d))
    session.handle_event(key(pygame.K_d))
    assert session.predicted_crop is None
    assert session.imagination_status() == "memorised steps 0-2: move, and the model predicts step 3"
    session.handle_event(key(pygame.K_a))
    assert session.predicted_crop is not None and session.predicted_crop.dtype == np.uint8
    assert session.imagination_status().startswith("predicted step 3  MSE ")
    assert "revisited" in session.imagination_status()
    session.handle_event(key(pygame.K_t))
    scene = session.scene()
    assert scene.hide_crop and scene.hide_image and not scene.visible.any() and scene.path == []
    session.handle_event(key(pygame.K_r))  # a new image starts memorising again
    assert session.imagination.memorised == 1 and session.errors == []
    session.close()


def test_cli_model_flag_runs_imagination_headless(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "cli.png"
    assert main(["--model", str(tiny_checkpoint), "--seed", "0", "--script", "d" * 40,
                 "--screenshot", str(out)]) == 0
    assert "imagination: 9 predicted steps" in capsys.readouterr().out  # debug preset: tau 32
    assert out.stat().st_size > 0
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(bad)])
    assert exit_info.value.code == 2


def test_m_and_enter_end_memorisation_and_the_next_step_is_predicted(tiny_checkpoint):
    from gtmsm_model.imagination import load_imagination

    plain = PlaySession(seed=0)
    assert "m / Enter" not in dict(plain.help_lines())  # plain play has no model to stop
    plain.close()
    imagination = load_imagination(tiny_checkpoint, tau=12)
    session = PlaySession(seed=0, imagination=imagination)
    help_rows = dict(session.help_lines())
    assert "stop memorising" in help_rows["m / Enter"] and help_rows["memory"].startswith("steps 0-11,")
    session.handle_event(key(pygame.K_d))
    session.handle_event(key(pygame.K_d))
    assert session.imagination_status() == "memorising step 2: predicting from step 12  m: from step 3"
    session.handle_event(key(pygame.K_m))
    assert not imagination.memorising and imagination.memorised == 3 and imagination.first_predicted_step == 3
    assert session.scene().progress is None
    assert session.imagination_status() == "memorised steps 0-2: move, and the model predicts step 3"
    session.handle_event(key(pygame.K_a))
    assert len(session.errors) == 1 and session.revisited == [True] and imagination.memorised == 3
    session.handle_event(key(pygame.K_m))  # already predicting: nothing changes
    session.handle_event(key(pygame.K_w))
    assert len(session.errors) == 2 and imagination.memorised == 3
    session.handle_event(key(pygame.K_r))  # a new episode memorises the full tau again
    assert imagination.memorising and imagination.first_predicted_step == 12
    session.handle_event(key(pygame.K_RETURN))  # Enter stops at step 0: one crop memorised
    session.handle_event(key(pygame.K_d))
    assert imagination.memorised == 1 and len(session.errors) == 1 and session.revisited == [False]
    session.close()


def test_script_m_switches_to_prediction_at_that_step(tiny_checkpoint, capsys):
    assert main(["--model", str(tiny_checkpoint), "--seed", "0", "--script", "dddmdddd"]) == 0
    out = capsys.readouterr().out  # steps 0-3 memorised, steps 4-7 predicted (tau 32 without m)
    assert "position (4, 8)  step 7" in out and "imagination: 4 predicted steps" in out
    assert main(["--model", str(tiny_checkpoint), "--seed", "0", "--script", "ddddddd"]) == 0
    assert "predicted steps" not in capsys.readouterr().out


def test_status_lines_count_the_same_steps(tiny_checkpoint):
    import re

    from gtmsm_model.imagination import load_imagination

    session = PlaySession(seed=0, imagination=load_imagination(tiny_checkpoint, tau=6))
    phases = []
    for move in [pygame.K_d] * 4 + [pygame.K_s] * 5:
        first = int(re.search(r"  step (\d+)  ", session.status()).group(1))
        second = session.imagination_status()
        match = re.match(r"(memorising|predicted) step (\d+)|memorised steps 0-(\d+):", second)
        assert match is not None, second
        assert first == session.nav.elapsed_steps == int(match.group(2) or match.group(3)), (session.status(), second)
        phases.append(match.group(1) or "memorised")
        session.handle_event(key(move))
    assert phases == ["memorising"] * 5 + ["memorised"] + ["predicted"] * 3  # steps 0-4, 5, 6-8
    session.close()


def hidden_truth_frame(checkpoint: Path, seed: int, script: str, out: Path) -> np.ndarray:
    from gtmsm_model.imagination import load_imagination

    session = PlaySession(seed=seed, imagination=load_imagination(checkpoint, tau=4))
    session.run(script=script, screenshot=out)
    return np.asarray(Image.open(out))


def test_t_hides_every_view_of_the_truth(tiny_checkpoint, tmp_path):
    walk = "ddwwdd"  # the same walk (no wall in its way) over two different images
    shown = [hidden_truth_frame(tiny_checkpoint, seed, walk, tmp_path / f"shown{seed}.png") for seed in (0, 1)]
    hidden = [hidden_truth_frame(tiny_checkpoint, seed, walk + "t", tmp_path / f"hidden{seed}.png") for seed in (0, 1)]
    top = np.s_[:256, :512]  # the image panel and the true crop's panel
    assert not np.array_equal(shown[0][top], shown[1][top])  # the truth differs between the images
    np.testing.assert_array_equal(hidden[0][top], hidden[1][top])  # and none of it is drawn
    image_panel = hidden[0][:256, :256].reshape(-1, 3)
    assert np.mean(np.all(image_panel == (45, 45, 55), axis=1)) > 0.8  # fog, the window and a note
    assert not np.array_equal(hidden[0][256:], hidden[1][256:])  # the model's panels stay
    # Interior walls are part of the truth too.
    env = gym.make("ImageNav-v0", render_mode="rgb_array", walls="maze")
    from gtmsm_model.imagination import load_imagination

    session = PlaySession(env, seed=0, imagination=load_imagination(tiny_checkpoint, tau=4))
    assert session.scene().maze_segments
    session.handle_event(key(pygame.K_t))
    assert session.scene().maze_segments == []
    session.close()


def test_script_q_quits_there_and_the_command_exits_at_once(tiny_checkpoint):
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "gtmsm_model.play_model", "--model", str(tiny_checkpoint), "--seed", "0",
         "--script", "ddmddqdddd"], env=clean_env(SDL_VIDEODRIVER="dummy"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stdout:  # the summary is the last thing printed, after the window closed
        lines.append(line)
        printed = time.monotonic()
        if line.startswith("imagination:"):
            break
    process.wait(timeout=60)
    latency = time.monotonic() - printed
    assert process.returncode == 0, process.stderr.read()
    assert lines[0].startswith("position (4, 8)  step 4") and "2 predicted steps" in lines[1], lines
    # Without ending the process itself, torch's interpreter teardown takes about a second more.
    assert latency < 0.5, f"the process took {latency:.2f} s to exit after the window closed"


def test_q_ends_the_run_loop_within_a_frame(tiny_checkpoint):
    import time

    from gtmsm_model.imagination import load_imagination

    session = PlaySession(seed=0, imagination=load_imagination(tiny_checkpoint), fps=5)  # 200 ms frames
    session.handle_event(key(pygame.K_m))
    for _ in range(3):
        session.handle_event(key(pygame.K_d))  # the model predicting
    pygame.event.post(key(pygame.K_q))
    start = time.monotonic()
    session.run()
    assert time.monotonic() - start < 0.2 and not pygame.display.get_init()


def test_default_play_tau_is_capped_at_the_window_positions(tiny_checkpoint, tmp_path, capsys):
    from types import SimpleNamespace

    from gtmsm_env.world import World
    from gtmsm_model.checkpoint import load_checkpoint, save_checkpoint
    from gtmsm_model.play_model import play_tau, tau_text

    assert play_tau(256, World()) == 81 and play_tau(32, World()) == 32
    said = tau_text(SimpleNamespace(tau=81, trained_tau=256), chosen=False)
    assert said.startswith("imagination: memorising 81 steps (the checkpoint's tau 256, capped at the 81 window")
    assert "--tau; the checkpoint was trained with tau 256" in tau_text(SimpleNamespace(tau=30, trained_tau=256), True)
    assert play_tau(1000, World(image_size=64, step_size=4)) == 225
    payload = load_checkpoint(tiny_checkpoint)
    payload["train_config"]["schedule"]["tau"] = 256
    long_tau = tmp_path / "tau256.pt"
    save_checkpoint(long_tau, payload)
    # 85 moves: steps 0-80 memorised (81 positions), steps 81-85 predicted.
    assert main(["--model", str(long_tau), "--seed", "0", "--script", "wsdd" * 21 + "a"]) == 0
    assert "imagination: 5 predicted steps" in capsys.readouterr().out
    assert main(["--model", str(long_tau), "--tau", "84", "--seed", "0", "--script", "wsdd" * 21 + "a"]) == 0
    assert "imagination: 2 predicted steps" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "at most the number of window positions" in help_text and "m or Enter" in help_text


# ----------------------------------------------------------- inputs, outputs and signals


def test_a_folder_or_fifo_as_model_is_named_for_what_it_is(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"gtmsm-play: error: --model: checkpoint {tmp_path} is a folder; give a file"
    fifo = tmp_path / "checkpoint.pt"
    os.mkfifo(fifo)
    result = subprocess.run([sys.executable, "-m", "gtmsm_model.play_model", "--model", str(fifo), "--script", "d"],
                            env=clean_env(SDL_VIDEODRIVER="dummy"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gtmsm-play: error: --model: checkpoint {fifo} is a"), lines
    assert "FIFO" in lines[0] and "not found" not in lines[0]


def test_screenshot_is_written_atomically(tmp_path, monkeypatch, capsys):
    out = tmp_path / "frame.png"
    saved_as = []
    real_save = pygame.image.save

    def spy(surface, name):
        saved_as.append(name)
        real_save(surface, name)

    monkeypatch.setattr(pygame.image, "save", spy)
    assert main(["--seed", "0", "--script", "d", "--screenshot", str(out)]) == 0
    assert len(saved_as) == 1 and Path(saved_as[0]).name != out.name and saved_as[0].endswith(".png")
    assert np.asarray(Image.open(out)).shape == (256 + 28, 512, 3) and os.listdir(tmp_path) == [out.name]
    capsys.readouterr()
    out.write_bytes(b"the previous screenshot")

    def full_disk(surface, name):
        Path(name).write_bytes(b"\x89PNG half")
        raise pygame.error("Error writing to datastream")

    monkeypatch.setattr(pygame.image, "save", full_disk)
    with pytest.raises(SystemExit) as exit_info:
        main(["--seed", "0", "--script", "d", "--screenshot", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gtmsm-play: error: --screenshot: cannot write screenshot {out}") and "\n" not in err
    assert out.read_bytes() == b"the previous screenshot" and os.listdir(tmp_path) == [out.name]


def test_play_restores_the_sigterm_handler_it_replaced():
    def mine(signum, frame):
        raise AssertionError("not called")

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert main(["--seed", "0", "--script", "d"]) == 0
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------- imagination: world, tau, hidden truth


def test_hidden_truth_hides_the_position_and_the_window_box(tiny_checkpoint, tmp_path):
    from gtmsm_model.imagination import load_imagination

    session = PlaySession(seed=0, imagination=load_imagination(tiny_checkpoint, tau=2))
    for move in (pygame.K_d, pygame.K_d, pygame.K_s):
        session.handle_event(key(move))
    assert "position (5, 6)" in session.status()
    frame = pygame.surfarray.array3d(session.draw()).transpose(1, 0, 2)
    window_colour = np.all(frame[:256, :256] == (255, 220, 0), axis=-1)
    assert window_colour.sum() > 100  # the yellow box around the window on the truth panel
    session.handle_event(key(pygame.K_t))
    assert "position (" not in session.status() and "step 3" in session.status()
    frame = pygame.surfarray.array3d(session.draw()).transpose(1, 0, 2)
    assert not np.all(frame[:256, :256] == (255, 220, 0), axis=-1).any()
    session.close()


def test_model_play_uses_the_checkpoints_whole_world_unless_flags_override(tiny_checkpoint, tmp_path,
                                                                           monkeypatch, capsys):
    from gtmsm_model.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(tiny_checkpoint)
    payload["train_config"]["world"].update(walls="maze", wall_density=0.3)
    maze = tmp_path / "maze.pt"
    save_checkpoint(maze, payload)
    worlds = []
    original_init = PlaySession.__init__

    def record(self, env, *args, **kwargs):
        worlds.append(env.unwrapped.world)
        original_init(self, env, *args, **kwargs)

    monkeypatch.setattr(PlaySession, "__init__", record)
    assert main(["--model", str(maze), "--seed", "0", "--script", "d"]) == 0
    assert worlds[-1].walls == "maze" and worlds[-1].wall_density == 0.3
    assert main(["--model", str(maze), "--seed", "0", "--script", "d", "--walls", "border"]) == 0
    assert worlds[-1].walls == "border" and worlds[-1].wall_density is None
    assert main(["--seed", "0", "--script", "d"]) == 0  # no model: the default world
    assert worlds[-1].walls == "border" and worlds[-1].start == "center"


def test_tau_above_the_trained_tau_is_refused(tiny_checkpoint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(tiny_checkpoint), "--tau", "33", "--script", "d"])  # debug preset: tau 32
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gtmsm-play: error: --tau 33 is above the tau 32") and "\n" not in err
    assert main(["--model", str(tiny_checkpoint), "--tau", "32", "--seed", "0", "--script", "d"]) == 0
