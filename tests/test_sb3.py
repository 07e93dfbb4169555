"""Stable-Baselines3 on ImageNav: check_env, the shipped extractors under PPO, the VecEnv adapter
and its monitor, the examples of docs/sb3.md as written (shortened), and datasets written by an SB3
policy."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
import torch  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.env_checker import check_env  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor  # noqa: E402

import gtmsm_env  # noqa: E402
from gtmsm_env import REGISTERED_ENVS, ImageNavEnv, Rollouts, World, collect_rollouts  # noqa: E402
from gtmsm_env.observations import OBSERVATION_MODES  # noqa: E402
from gtmsm_model.sb3 import (  # noqa: E402
    NET_ARCH,
    PPO_SETTINGS,
    CropCNN,
    ImageNavExtractor,
    ImageNavVecEnv,
    egocentric_map,
    make_sb3_vec_env,
    ppo_kwargs,
)

ROOT = Path(__file__).resolve().parent.parent

torch.set_num_threads(1)


@pytest.mark.parametrize("mode", list(OBSERVATION_MODES))
def test_sb3_check_env_on_every_mode(mode):
    check_env(ImageNavEnv(observation=mode, task="coverage"), warn=True)


@pytest.mark.parametrize("env_id", list(REGISTERED_ENVS))
def test_sb3_check_env_on_every_registered_id(env_id):
    check_env(gym.make(env_id), warn=True)


def small_ppo(policy, env, extractor, **extractor_kwargs):
    return PPO(policy, env, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu",
               policy_kwargs=dict(features_extractor_class=extractor,
                                  features_extractor_kwargs=extractor_kwargs))


def test_ppo_with_the_crop_cnn_on_the_bare_crop():
    # SB3's NatureCNN rejects 8 x 8 images; the shipped CropCNN takes them (and 1 x 1).
    model = small_ppo("CnnPolicy", gym.make("ImageNav-v0", task="coverage"), CropCNN, features_dim=32)
    model.learn(256)
    tiny = small_ppo("CnnPolicy", gym.make("ImageNav-v0", image_size=3, crop_size=1), CropCNN)
    tiny.learn(64)


@pytest.mark.parametrize("mode", [m for m in OBSERVATION_MODES if m != "crop"])
def test_ppo_with_the_dict_extractor_on_each_dict_mode(mode):
    venv = make_sb3_vec_env("ImageNavCoverage-v0", num_envs=2, seed=0, observation=mode)
    model = small_ppo("MultiInputPolicy", venv, ImageNavExtractor, crop_dim=16)
    model.learn(256)
    obs = venv.reset()
    actions, _ = model.predict(obs)
    assert actions.shape == (2,)


def assert_same_obs(a, b, where):
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), where
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{key} {where}")
    else:
        np.testing.assert_array_equal(a, b, err_msg=where)


@pytest.mark.parametrize(("env_id", "kwargs"), [
    ("ImageNav-v0", {"start": "random"}),
    ("ImageNavCoverage-v0", {}),
    ("ImageNavCoverageMaze-v0", {"terminate_when_covered": True, "image_size": 17}),
])
def test_vec_env_adapter_equals_dummy_vec_env(env_id, kwargs):
    n, steps = 3, 70
    kwargs = {**kwargs, "max_episode_steps": 25}
    ours = make_sb3_vec_env(env_id, num_envs=n, seed=5, monitor=False, **kwargs)
    dummy = DummyVecEnv([lambda: gym.make(env_id, **kwargs)] * n)
    dummy.seed(5)
    assert ours.observation_space == dummy.observation_space
    assert_same_obs(ours.reset(), dummy.reset(), "at reset")
    rng = np.random.default_rng(0)
    dones = 0
    for t in range(steps):
        actions = rng.integers(0, 5, n)
        ours.step_async(actions)
        dummy.step_async(actions)
        (o1, r1, d1, i1), (o2, r2, d2, i2) = ours.step_wait(), dummy.step_wait()
        assert_same_obs(o1, o2, f"at step {t}")
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(d1, d2)
        for x, y in zip(i1, i2, strict=True):
            assert x["TimeLimit.truncated"] == y["TimeLimit.truncated"]
            np.testing.assert_array_equal(x["position"], y["position"])
            assert x["wall_hit"] == y["wall_hit"]
            assert ("terminal_observation" in x) == ("terminal_observation" in y)
            if "terminal_observation" in y:
                assert_same_obs(x["terminal_observation"], y["terminal_observation"], f"step {t}")
        dones += int(d1.sum())
    assert dones >= 2 * n


def test_the_adapter_is_monitored_and_reports_each_episode_with_its_coverage():
    venv = make_sb3_vec_env("ImageNavCoverage-v0", num_envs=3, seed=0, max_episode_steps=20)
    assert isinstance(venv, VecMonitor) and isinstance(venv.venv, ImageNavVecEnv)
    venv.reset()
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, _, dones, infos = venv.step(rng.integers(0, 5, 3))
    assert dones.all()
    for info in infos:
        episode = info["episode"]
        assert episode["l"] == 20
        assert episode["r"] + 1 == episode["coverage"] == info["coverage"]  # the start is seen unrewarded
    # Without the coverage task there is no coverage to record, but episodes are still reported.
    plain = make_sb3_vec_env("ImageNav-v0", num_envs=2, seed=0, max_episode_steps=5)
    plain.reset()
    for _ in range(5):
        _, _, _, infos = plain.step(np.zeros(2, np.int64))
    assert infos[0]["episode"]["r"] == 0 and "coverage" not in infos[0]["episode"]
    assert isinstance(make_sb3_vec_env("ImageNav-v0", num_envs=1, monitor=False), ImageNavVecEnv)


def test_ppo_kwargs_are_fresh_and_carry_the_benchmark_settings():
    kwargs = ppo_kwargs()
    kwargs["policy_kwargs"]["net_arch"].append(1)
    assert ppo_kwargs()["policy_kwargs"] == {"features_extractor_class": ImageNavExtractor, "net_arch": NET_ARCH}
    assert ppo_kwargs(CropCNN)["policy_kwargs"]["features_extractor_class"] is CropCNN
    assert {k: v for k, v in ppo_kwargs().items() if k != "policy_kwargs"} == PPO_SETTINGS


def doc_example(heading: str) -> str:
    """The first Python block under ``heading`` in docs/sb3.md."""
    text = (ROOT / "docs" / "sb3.md").read_text()
    section = text[text.index(f"## {heading}"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize(("heading", "saved"), [
    ("Train PPO on the coverage task", "runs/ppo_coverage.zip"),
    ("The bare crop", "runs/ppo_crop.zip"),
])
def test_the_docs_examples_run_as_written_and_report_episode_rewards(heading, saved, tmp_path, monkeypatch,
                                                                    capsys):
    code = doc_example(heading)
    # Two rollouts of 16 envs x 128 steps: every env finishes a 256-step episode in the second.
    code, calls = re.subn(r"model\.learn\([\d_]+\)", "model.learn(4_096)", code)
    assert calls == 1, "the example must call model.learn(steps) once"
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    namespace: dict = {}
    try:
        exec(compile(code, f"docs/sb3.md ({heading})", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    model = namespace["model"]
    assert model.n_steps == PPO_SETTINGS["n_steps"] and model.batch_size == PPO_SETTINGS["batch_size"]
    assert model.num_timesteps == 4_096
    assert len(model.ep_info_buffer) == 16  # one 256-step episode per env, each with its coverage
    assert all(ep["r"] + 1 == ep["coverage"] for ep in model.ep_info_buffer)
    printed = capsys.readouterr().out
    assert re.search(r"ep_rew_mean\s*\|\s*\d", printed), printed  # verbose=1 logs the episode reward
    events = list((tmp_path / "runs" / "ppo_tensorboard").glob("PPO_1/events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0  # tensorboard_log wrote its event file
    assert (tmp_path / saved).is_file()


def test_egocentric_map_centres_the_agent_and_pads_with_seen():
    visited = torch.zeros(1, 9, 9)
    visited[0, 0, 1] = 1
    ego = egocentric_map(visited, torch.tensor([[0.0, 0.0]]))  # agent at (0, 0)
    assert ego.shape == (1, 17, 17)
    assert ego[0, 8, 9] == 1  # the cell right of the agent
    assert ego[0, 7, 8] == 1 and ego[0, 8, 7] == 1  # outside the grid reads as seen
    assert ego[0, 9, 8] == 0  # below the agent: unseen


@pytest.fixture(scope="module")
def saved_policy(tmp_path_factory):
    venv = make_sb3_vec_env("ImageNavCoverage-v0", num_envs=2, seed=0)
    model = small_ppo("MultiInputPolicy", venv, ImageNavExtractor, crop_dim=16)
    model.learn(128)
    path = tmp_path_factory.mktemp("policy") / "ppo.zip"
    model.save(path)
    return path


def test_rollouts_from_an_sb3_policy_load_in_the_model_data_pipeline(saved_policy, tmp_path):
    from gtmsm_env.rollouts_cli import main
    from gtmsm_model.data import RolloutSampler

    out = tmp_path / "ppo.npz"
    main(["--num-sequences", "3", "--seq-len", "40", "--policy", str(saved_policy),
          "--policy-steps", "20", "--out", str(out)])
    rollouts = Rollouts.load(out)
    assert rollouts.metadata["policy"].startswith("sb3:PPO:")
    assert rollouts.metadata["observation"] == "crop+position+visited"
    again = collect_rollouts(3, 40, seed=0, policy=saved_policy, policy_steps=20)
    np.testing.assert_array_equal(rollouts.actions, again.actions)  # reproducible
    walk = collect_rollouts(3, 40, seed=0)
    np.testing.assert_array_equal(rollouts.actions[:, 20:], walk.actions[:, 20:])
    batch = RolloutSampler(seed=0, dataset=out).sample(2, 32)
    assert tuple(batch.observations.shape) == (2, 32, 8, 8, 3)
    assert tuple(batch.actions.shape) == (2, 32)


def test_a_policy_for_another_grid_or_a_junk_file_is_rejected(saved_policy, tmp_path, capsys):
    from gtmsm_env.rollouts_cli import main

    with pytest.raises(ValueError, match="grid"):
        collect_rollouts(2, 5, seed=0, world=World(image_size=20), policy=saved_policy)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    for flags, message in [
        (["--policy", str(junk)], "--policy: "),
        (["--policy", str(tmp_path / "none.zip")], "--policy: policy file does not exist"),
        (["--policy", str(saved_policy), "--image-size", "20"], "--policy: the policy was trained"),
        (["--policy", str(saved_policy), "--seq-len", "5", "--policy-steps", "6"],
         "--policy-steps 6 is more than --seq-len 5"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main([*flags, "--out", str(tmp_path / "x.npz")])
        assert exit_info.value.code == 2
        assert f"gtmsm-rollouts: error: {message}" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()
    assert gtmsm_env.ENV_ID == "ImageNav-v0"


@pytest.mark.parametrize(("observation", "policy"), [
    ("crop+position+visited", "MultiInputPolicy"), ("crop", "CnnPolicy"),
])
def test_train_ppo_benchmark_smoke(observation, policy, tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import train_ppo

    train_ppo.main(["--timesteps", "256", "--num-envs", "2", "--eval-episodes", "3",
                    "--horizon", "81", "--observation", observation, "--out", str(tmp_path / "ppo")])
    result = json.loads((tmp_path / "ppo.json").read_text())
    env = gym.make("ImageNav-v0", **result["env_kwargs"])
    assert env.unwrapped.task == "coverage" and env.spec.max_episode_steps == 256
    assert env.unwrapped.observation == observation
    assert result["coverage"]["optimum"]["covered_in_81"] == 81
    assert result["ppo_kwargs"] == PPO_SETTINGS and result["policy"] == policy
    assert (tmp_path / "ppo.zip").is_file() and (tmp_path / "ppo.png").is_file()


def test_train_ppo_rejects_an_unknown_observation_mode(capsys):
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import train_ppo

    with pytest.raises(SystemExit) as exit_info:
        train_ppo.main(["--observation", "pixels"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("train_ppo.py: error: argument --observation") and "crop+position+visited" in err
    assert len(err.strip().splitlines()) == 1
