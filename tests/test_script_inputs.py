"""Every entry point checks its inputs before any expensive work: a bad flag, a missing
or damaged file, an unusable output path or device is ONE ``prog: error: ...`` line naming the
flag, exit status 2, no traceback; SIGINT/SIGTERM during training is one line saying what was cut
and what was kept, exit 128 + the signal's number.

The benchmark scripts are called in-process (``main(argv)``) with their expensive functions
replaced by ones that fail the test if reached; signals go to a subprocess.
"""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import importlib
import importlib.util
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import pytest

from gtmsm_cli.flags import SEED_MAX

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmark harness lives in the checkout (benchmarks/harness)
TOO_BIG_SEED = str(SEED_MAX + 1)


def load_script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (under its own name, so other tests' copies stay)."""
    spec = importlib.util.spec_from_file_location(f"script_inputs_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building Args
    spec.loader.exec_module(module)
    return module


def forbid(monkeypatch: pytest.MonkeyPatch, target: object, *names: str) -> None:
    """Replace expensive functions with ones that fail the test: the check must come first."""
    for name in names:
        def reached(*args, _name=name, **kwargs):
            pytest.fail(f"{_name} ran before the inputs were checked")

        monkeypatch.setattr(target, name, reached)


def usage_error(capsys: pytest.CaptureFixture, call, prog: str, *fragments: str) -> str:
    """Run ``call``; it must exit 2 with one ``prog: error:`` line holding every fragment."""
    with pytest.raises(SystemExit) as stop:
        call()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def write_checkpoint(path: Path, *, train_overrides: dict | None = None, **world) -> Path:
    """An untrained model in a real checkpoint, trained (so it says) on ``world`` (no training)."""
    import torch

    from gtmsm_model.checkpoint import save_checkpoint
    from gtmsm_model.config import SECTIONS
    from gtmsm_model.model import GTMSM
    from gtmsm_model.train import make_config

    config = make_config("debug", **world)
    torch.manual_seed(0)
    model = GTMSM(config.model)
    train_config = config.to_dict()
    for name, value in (train_overrides or {}).items():
        train_config[SECTIONS[name]][name] = value
    save_checkpoint(path, {"model_config": asdict(model.config),
                           "train_config": train_config,
                           "model": model.state_dict(), "step": 0})
    return path


@pytest.fixture(scope="module")
def compare_models() -> ModuleType:
    return load_script("compare_models")


@pytest.fixture
def no_harness(monkeypatch, compare_models):
    from benchmarks.harness import runner

    forbid(monkeypatch, runner, "run", "Harness", "train")
    return compare_models


# ----------------------------------------------------------------------------- compare_models.py


def test_compare_models_bad_model_specs_are_one_line_errors(no_harness, tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "script_inputs_bad_module.py").write_text("1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = {
        "junk": "expected module:Class",
        "/nonexist.py:X": "no such file /nonexist.py",
        "no_such_module_for_tests:X": "cannot import no_such_module_for_tests",
        f"{tmp_path / 'broken_plugin.py'}:X": "RuntimeError: boom at import",
        "script_inputs_bad_module:X": "ZeroDivisionError",
        "math:pi": "pi is a float, not a class",
        "json:JSONDecodeError": "lacks name",
    }
    for spec, message in cases.items():
        usage_error(capsys, lambda spec=spec: no_harness.main(["--quick", "--ppo-policy", "none", "--model", spec,
                                                               "--run-dir", str(tmp_path / "runs"),
                                                               "--out-dir", str(tmp_path / "out")]),
                    "compare_models.py", f"--model {spec!r}", message)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()  # nothing created


def test_compare_models_bad_ppo_policy_device_and_out_dir(no_harness, tmp_path, capsys):
    base = ["--quick", "--run-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")]
    usage_error(capsys, lambda: no_harness.main([*base, "--ppo-policy", str(tmp_path / "missing.zip")]),
                "compare_models.py", "--ppo-policy: policy file does not exist")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a policy")
    usage_error(capsys, lambda: no_harness.main([*base, "--ppo-policy", str(junk)]),
                "compare_models.py", "--ppo-policy: ", "is not a saved SB3 model")
    usage_error(capsys, lambda: no_harness.main([*base, "--ppo-policy", "none", "--device", "gpu"]),
                "compare_models.py", "--device 'gpu' is not a torch device")
    import torch

    if not torch.cuda.is_available():
        usage_error(capsys, lambda: no_harness.main([*base, "--ppo-policy", "none", "--device", "cuda"]),
                    "compare_models.py", "--device cuda asked for, but CUDA is not available")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    usage_error(capsys, lambda: no_harness.main([*base, "--ppo-policy", "none", "--out-dir", str(a_file)]),
                "compare_models.py", "--out-dir: ", "is not a folder")
    usage_error(capsys, lambda: no_harness.main([*base, "--ppo-policy", "none", "--run-dir", str(a_file)]),
                "compare_models.py", "--run-dir: ", "is not a folder")


def test_compare_models_default_ppo_policy_is_found_from_any_folder(compare_models, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    plan = compare_models.make_plan(compare_models.parse_args([]))
    assert plan.ppo_policy == ROOT / "benchmarks" / "results" / "ppo_coverage.zip" and plan.ppo_policy.is_file()
    given = compare_models.make_plan(compare_models.parse_args(["--ppo-policy", "mine.zip"]))
    assert given.ppo_policy == Path("mine.zip")  # a path the user gives is theirs: relative to the current folder
    with pytest.raises(SystemExit):
        compare_models.parse_args(["--help"])
    assert "found from this script's location" in " ".join(capsys.readouterr().out.split())


# ------------------------------------------------------------------------------ train_gtmsm.py


def test_train_gtmsm_checks_runs_dir_and_out_before_training(tmp_path, monkeypatch, capsys):
    script = load_script("train_gtmsm")
    forbid(monkeypatch, script, "make_conditions", "train")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    usage_error(capsys, lambda: script.main(["--runs-dir", str(a_file), "--out", str(tmp_path / "r")]),
                "train_gtmsm.py", "--runs-dir: ", "is not a folder")
    (tmp_path / "taken.json").mkdir()
    usage_error(capsys, lambda: script.main(["--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "taken")]),
                "train_gtmsm.py", "--out: ", "taken.json is a folder")
    usage_error(capsys, lambda: script.main(["--runs-dir", str(tmp_path / "runs"), "--out", str(a_file / "r")]),
                "train_gtmsm.py", "--out: ", "it is a file")


# ------------------------------------------------------------------- the other benchmark scripts


def test_scaling_checks_out_before_measuring(tmp_path, monkeypatch, capsys):
    script = load_script("scaling")
    forbid(monkeypatch, script, "data_path", "threads", "memory")
    (tmp_path / "s.md").mkdir()
    usage_error(capsys, lambda: script.main(["--parts", "data", "--out", str(tmp_path / "s")]),
                "scaling.py", "--out: ", "s.md is a folder")


def test_env_throughput_checks_json_before_measuring(tmp_path, monkeypatch, capsys):
    script = load_script("env_throughput")
    forbid(monkeypatch, script, "single_env_steps_per_second", "vector_env_steps_per_second")
    (tmp_path / "taken.json").mkdir()
    usage_error(capsys, lambda: script.main(["--json", str(tmp_path / "taken.json")]),
                "env_throughput.py", "--json: ", "taken.json is a folder")
    usage_error(capsys, lambda: script.main(["--json", str(tmp_path / "out.txt")]),
                "env_throughput.py", "--json: ", "must end in .json")


def test_imagination_latency_reports_a_damaged_checkpoint(tmp_path, capsys):
    script = load_script("imagination_latency")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    usage_error(capsys, lambda: script.main(["--checkpoint", str(empty)]),
                "imagination_latency.py", "--checkpoint: ", "is empty (0 bytes)")
    usage_error(capsys, lambda: script.main(["--checkpoint", str(tmp_path / "missing.pt")]),
                "imagination_latency.py", "--checkpoint: ", "not found")


def test_ppo_memories_checks_checkpoint_world_and_out_before_any_work(tmp_path, monkeypatch, capsys):
    import gtmsm_env.policies

    script = load_script("ppo_memories")
    forbid(monkeypatch, gtmsm_env.policies, "load_sb3_policy")
    forbid(monkeypatch, script, "collect_rollouts")
    out = ["--out", str(tmp_path / "result")]
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    usage_error(capsys, lambda: script.main(["--checkpoint", str(empty), *out]),
                "ppo_memories.py", "--checkpoint: ", "is empty (0 bytes)")
    other = write_checkpoint(tmp_path / "other.pt", image_size=40, crop_size=12, step_size=4)
    usage_error(capsys, lambda: script.main(["--checkpoint", str(other), *out]),
                "ppo_memories.py", "--checkpoint was trained on 40x40 images, 12x12 crops, step 4")
    (tmp_path / "taken.md").mkdir()
    usage_error(capsys, lambda: script.main(["--checkpoint", str(other), "--out", str(tmp_path / "taken")]),
                "ppo_memories.py", "--out: ", "taken.md is a folder")


def test_train_ppo_checks_out_before_training(tmp_path, monkeypatch, capsys):
    import gtmsm_model.sb3

    script = load_script("train_ppo")
    forbid(monkeypatch, gtmsm_model.sb3, "make_sb3_vec_env")
    (tmp_path / "policy.zip").mkdir()
    usage_error(capsys, lambda: script.main(["--out", str(tmp_path / "policy")]),
                "train_ppo.py", "--out: ", "policy.zip is a folder")


EXPENSIVE = {  # what each script would start if a seed got through
    "compare_models": [("benchmarks.harness.runner", "run")],
    "train_gtmsm": [("script", "make_conditions"), ("script", "train")],
    "env_throughput": [("script", "single_env_steps_per_second")],
    "imagination_latency": [("gtmsm_model.imagination", "load_imagination")],
    "ppo_memories": [("gtmsm_env.policies", "load_sb3_policy"), ("script", "collect_rollouts")],
    "train_ppo": [("gtmsm_model.sb3", "make_sb3_vec_env")],
}


@pytest.mark.parametrize(("name", "argv"), [
    ("compare_models", ["--seeds", TOO_BIG_SEED]),
    ("train_gtmsm", ["--seeds", "0", TOO_BIG_SEED]),
    ("env_throughput", ["--seed", TOO_BIG_SEED]),
    ("imagination_latency", ["--seed", TOO_BIG_SEED]),
    ("ppo_memories", ["--seed", TOO_BIG_SEED]),
    ("train_ppo", ["--seed", TOO_BIG_SEED]),
])
def test_seeds_are_bounded_by_seed_max(name, argv, monkeypatch, capsys):
    script = load_script(name)
    for owner, function in EXPENSIVE[name]:
        forbid(monkeypatch, script if owner == "script" else importlib.import_module(owner), function)
    usage_error(capsys, lambda: script.main(argv), f"{name}.py", f"must be <= {SEED_MAX}, got {TOO_BIG_SEED}")


# ------------------------------------------------ review round 3: impossible or contradictory runs

EXPENSIVE["scaling"] = [("script", "data_path"), ("script", "threads"), ("script", "memory")]
TOO_MANY_THREADS = str((os.cpu_count() or 1) + 1)
HUGE = "1000000000000"


@pytest.mark.parametrize(("name", "argv", "fragments"), [
    ("train_gtmsm", ["--threads", TOO_MANY_THREADS], [f"--threads {TOO_MANY_THREADS} is more than", "CPU cores"]),
    ("compare_models", ["--threads", TOO_MANY_THREADS], [f"--threads {TOO_MANY_THREADS} is more than"]),
    ("ppo_memories", ["--threads", TOO_MANY_THREADS], [f"--threads {TOO_MANY_THREADS} is more than"]),
    ("train_ppo", ["--threads", TOO_MANY_THREADS], [f"--threads {TOO_MANY_THREADS} is more than"]),
    ("train_gtmsm", ["--seeds", "0", "0"], ["--seeds 0 0: 0 is given more than once"]),
    ("train_gtmsm", ["--conditions", "centre", "centre"], ["--conditions centre centre: centre is given more"]),
    ("compare_models", ["--seeds", "0", "0"], ["--seeds 0 0: 0 is given more than once"]),
    ("compare_models", ["--conditions", "reference", "reference"], ["--conditions reference reference: "]),
    ("compare_models", ["--quick", "--preset", "paper"], ["--quick trains GTM-SM with the debug preset; --preset paper"]),
    ("train_gtmsm", ["--out", "{tmp}/x/"], ["--out: ", "x/ is a folder; give a path stem"]),
    ("ppo_memories", ["--out", "{tmp}/x/"], ["--out: ", "x/ is a folder; give a path stem"]),
    ("scaling", ["--parts", "data", "--folder-images", "100000000000"], ["--folder-images: this run needs about", "GB of memory"]),
    ("env_throughput", ["--num-envs", HUGE], ["--num-envs: this run needs about", "GB of memory"]),
    ("train_ppo", ["--num-envs", HUGE], ["--num-envs: this run needs about", "GB of memory"]),
    ("train_ppo", ["--eval-episodes", HUGE], ["--eval-episodes/--horizon: this run needs about"]),
])
def test_impossible_or_contradictory_runs_are_refused_before_any_work(name, argv, fragments, tmp_path, monkeypatch,
                                                                      capsys):
    import gtmsm_cli.checks

    monkeypatch.chdir(tmp_path)  # default output folders land here, if any check let them be made
    monkeypatch.setattr(gtmsm_cli.checks, "physical_memory", lambda: 64 * 10**9)  # the same verdict everywhere
    script = load_script(name)
    for owner, function in EXPENSIVE[name]:
        forbid(monkeypatch, script if owner == "script" else importlib.import_module(owner), function)
    if name == "compare_models":
        from benchmarks.harness import plan

        forbid(monkeypatch, plan, "check_plan")
        argv = [*argv, "--ppo-policy", "none"]
    usage_error(capsys, lambda: script.main([a.format(tmp=tmp_path) for a in argv]), f"{name}.py", *fragments)
    assert not list(tmp_path.iterdir())  # nothing created


def test_ppo_memories_creates_the_out_folder(tmp_path, monkeypatch, capsys):
    import numpy as np

    import gtmsm_env.policies

    script = load_script("ppo_memories")
    monkeypatch.setattr(gtmsm_env.policies, "load_sb3_policy",  # every move right; no SB3 needed
                        lambda *a, **k: lambda obs, info: np.full(len(info["position"]), 4, np.int64))
    checkpoint = write_checkpoint(tmp_path / "default.pt")
    out = tmp_path / "new" / "folder" / "o"
    script.main(["--checkpoint", str(checkpoint), "--num-sequences", "1", "--tau", "2", "--horizon", "2",
                 "--out", str(out)])
    assert out.with_suffix(".json").is_file() and out.with_suffix(".md").is_file()
    assert "ratio PPO / random walk" in capsys.readouterr().out


# --------------------------------------------------------------------- Ctrl-C and SIGTERM anywhere

SIGNAL_IN = """
import importlib, runpy, signal, sys
target, name = sys.argv[1], sys.argv[2]
module, path = target.split(":")
owner = importlib.import_module(module)
*parents, attr = path.split(".")
for parent in parents:
    owner = getattr(owner, parent)
real = getattr(owner, attr)
def reached(*args, **kwargs):
    signal.raise_signal(getattr(signal, name))
    return real(*args, **kwargs)
setattr(owner, attr, reached)
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize(("signal_name", "script", "target", "argv"), [
    ("SIGINT", "env_throughput.py", "gymnasium:make", []),
    ("SIGTERM", "env_throughput.py", "gymnasium:make", []),
    ("SIGINT", "train_ppo.py", "stable_baselines3.common.on_policy_algorithm:OnPolicyAlgorithm.collect_rollouts",
     ["--timesteps", "512", "--num-envs", "4", "--eval-episodes", "1", "--out", "{tmp}/ppo"]),
    ("SIGINT", "ppo_memories.py", "gtmsm_env.policies:load_sb3_policy",
     ["--checkpoint", "{checkpoint}", "--out", "{tmp}/o"]),
    ("SIGINT", "imagination_latency.py", "gtmsm_model.imagination:load_imagination", ["--checkpoint", "{checkpoint}"]),
    ("SIGTERM", "scaling.py", "gtmsm_env.images:procedural_images",
     ["--parts", "data", "--folder-images", "2", "--out", "{tmp}/s"]),
])
def test_a_signal_anywhere_in_a_benchmark_is_one_line_and_128_plus_its_number(signal_name, script, target, argv,
                                                                               tmp_path):
    checkpoint = write_checkpoint(tmp_path / "c.pt") if "{checkpoint}" in " ".join(argv) else None
    argv = [a.format(tmp=tmp_path, checkpoint=checkpoint) for a in argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", SIGNAL_IN, target, signal_name, str(ROOT / "benchmarks" / script),
                             *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == (130 if signal_name == "SIGINT" else 143), result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{script}: interrupted by {signal_name}"), lines[0]
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".json", ".md", ".zip", ".png")]


# ---------------------------------------------------------------------------------- gtmsm-play


def test_play_device_needs_model(monkeypatch, capsys):
    import gtmsm_env.play
    from gtmsm_model.play_model import main

    forbid(monkeypatch, gtmsm_env.play, "PlaySession")
    usage_error(capsys, lambda: main(["--device", "cuda"]), "gtmsm-play", "--device needs --model")
    usage_error(capsys, lambda: main(["--device", "cpu", "--script", "d"]), "gtmsm-play", "--device needs --model")


def test_play_model_opens_the_world_the_checkpoint_was_trained_on(tmp_path, capsys):
    from gtmsm_model.play_model import main

    # 44x36 images, 12x12 crops, step 4: a 9 x 7 grid (ImageNav-v0's default is 32x32, 8x8, step 3: 9 x 9)
    checkpoint = write_checkpoint(tmp_path / "world.pt", image_size=44, image_width=36, crop_size=12, step_size=4)
    screenshot = tmp_path / "frame.png"
    assert main(["--model", str(checkpoint), "--tau", "2", "--seed", "0", "--script", "ddd",
                 "--screenshot", str(screenshot)]) == 0
    out = capsys.readouterr().out
    assert "seen 4/63" in out and "imagination: 2 predicted steps" in out
    usage_error(capsys, lambda: main(["--model", str(checkpoint), "--device", "gpu"]),
                "gtmsm-play", "--device 'gpu' is not a torch device")


def test_play_model_refuses_a_world_no_env_can_show(tmp_path, capsys):
    from gtmsm_model.play_model import main

    checkpoint = write_checkpoint(tmp_path / "tiny.pt", train_overrides={"image_size": 6})
    usage_error(capsys, lambda: main(["--model", str(checkpoint), "--script", "d"]),
                "gtmsm-play", "--model was trained on 6x6 images, 8x8 crops, step 3")
    mixed = write_checkpoint(tmp_path / "mixed.pt", train_overrides={"crop_size": 4})
    usage_error(capsys, lambda: main(["--model", str(mixed), "--script", "d"]),
                "gtmsm-play", "--model: ", "says 4x4 crops but its model reads 8x8")


def test_play_refuses_a_random_start_for_an_absolute_wall_model(tmp_path, capsys):
    from gtmsm_model.play_model import main

    checkpoint = write_checkpoint(tmp_path / "absolute.pt", wall_model="absolute")
    usage_error(capsys, lambda: main(["--model", str(checkpoint), "--start", "random", "--script", "d"]),
                "gtmsm-play", "--start random: this --model's wall model is 'absolute'", "--start center")


# ------------------------------------------------------------------------------------ signals

STOP_AT_STEP_2 = """
import runpy, signal, sys
import gtmsm_model.train as training
real_train = training.train
def train(config, **kwargs):
    def stop(state):
        if state.step == 2:
            signal.raise_signal(signal.{signal})
    return real_train(config, on_step=stop, **kwargs)
training.train = train
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_with_signal(signal_name: str, script: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """``script argv`` whose GTM-SM training receives ``signal_name`` at step 2 (a real signal)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", STOP_AT_STEP_2.format(signal=signal_name),
                           str(ROOT / "benchmarks" / script), *argv],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_compare_models_sigterm_during_gtmsm_training_is_one_line_and_exit_143(tmp_path):
    result = run_with_signal("SIGTERM", "compare_models.py", "--quick", "--threads", "1", "--no-sweep",
                             "--conditions", "reference", "--ppo-policy", "none", "--out-dir",
                             str(tmp_path / "out"), "--run-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 143, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("compare_models.py: interrupted by SIGTERM while training GTM-SM on seed 0 (step 2")
    assert "rerun the same command" in lines[-1]
    # two workers train two GTM-SM variants at once; the first to stop is named, and its checkpoint exists
    checkpoint = re.search(r"its checkpoint is kept at (\S+?\.pt)", lines[-1])
    assert checkpoint and "seed0" in checkpoint.group(1) and Path(checkpoint.group(1)).is_file()
    assert not (tmp_path / "out" / "compare.json").exists()


def test_compare_models_sigterm_to_the_parent_ends_every_worker_with_one_line(tmp_path):
    """``kill <pid>`` of the comparison (not of its process group): the parent forwards the stop to its worker
    processes, ends them and exits 143 with one line; no worker outlives it."""
    run_dir = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "compare_models.py"), "--quick",
                                "--threads", "1", "--conditions", "reference", "--ppo-policy", "none", "--out-dir",
                                str(tmp_path / "out"), "--run-dir", str(run_dir)],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:  # the workers have started
        if "training GTM-SM" in line:
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=90)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("compare_models.py: interrupted by SIGTERM")
    if shutil.which("pgrep"):
        time.sleep(1)
        survivors = subprocess.run(["pgrep", "-f", str(run_dir)], capture_output=True, text=True).stdout.split()
        assert survivors == []
    assert not (tmp_path / "out" / "compare.json").exists()


def test_train_gtmsm_sigterm_is_one_line_and_exit_143(tmp_path):
    result = run_with_signal("SIGTERM", "train_gtmsm.py", "--preset", "debug", "--seeds", "0", "--threads", "1",
                             "--conditions", "centre", "--eval-sequences", "1", "--runs-dir", str(tmp_path / "runs"),
                             "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert result.returncode == 143, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("train_gtmsm.py: interrupted by SIGTERM while training seed 0 (step 2")
    assert "rerun the same command" in lines[-1]
    assert not (tmp_path / "report.md").exists()


def test_gtmsm_interrupted_exit_status_is_128_plus_the_signal():
    from benchmarks.harness.plan import GTMSMInterrupted
    from gtmsm_model.train import TrainingInterrupted

    for name, status in (("SIGINT", 130), ("SIGTERM", 143)):
        stop = GTMSMInterrupted(TrainingInterrupted(name, 3, Path("c.pt")), seed=1)
        assert stop.exit_status == status and stop.seed == 1 and stop.step == 3
