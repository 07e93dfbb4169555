"""The comparison harness the benchmark scripts share: conditions, budgets, one metric record,
targets, plug-in loading, summaries and output files.

``benchmarks/compare_models.py`` is a thin command line over :func:`run`. Everything a number in
``benchmarks/results/compare.*`` depends on is defined here once:

* :data:`CONDITIONS` — the seven evaluation conditions and how their held-out rollouts are drawn;
* :class:`Scores` — the typed metric record, produced only by :meth:`Scores.of` (which calls
  ``gtmsm_model.evaluate.prediction_metrics``, the protocol's one home);
* :class:`Targets` — the issue's targets;
* :func:`load_model_class` — ``my_pkg.my_module:MyModel`` or ``path/to/file.py:MyModel``;
* :func:`write_outputs` — ``compare.md``, ``compare.json``, one horizon plot per condition and an
  overview figure, with the command, the machine (``run_folder.machine_description``) and the
  package versions.

The budget design (see ``compare.md``): every learned model trains once per seed on the same
training distribution (GTM-SM's sampler: procedural images, centre start, border walls, the
reference random walk, 288-step sequences with tau 256) and is evaluated on every condition.
The peers train for GTM-SM's measured wall-clock on that seed (1×); on the seeds in
``slow_seeds`` the same run continues to 4× and is evaluated again. The RSSM and LSTM are chosen
by a small sweep on the first seed (each candidate trained for a third of the 1× budget, picked by
revisited MSE on validation rollouts from the training distribution, the winner continued).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gtmsm_env.flags import error_text, output_dir_problem, signal_exit_status
from gtmsm_env.rollouts import Rollouts, collect_rollouts
from gtmsm_model.baselines import (
    RSSM,
    ActionLSTM,
    ActionLSTMConfig,
    Budget,
    CanvasOracle,
    CopyLastObserved,
    DatasetMean,
    MemorisationMean,
    OracleMemory,
    OraclePositionVAE,
    RSSMConfig,
    TrainedModel,
    TransformerConfig,
    TransformerWorldModel,
    WorldModel,
)
from gtmsm_model.data import HELDOUT_SEED_OFFSET, RolloutSampler, heldout_rollouts
from gtmsm_model.evaluate import GTMSMPredictor, json_safe, prediction_metrics
from gtmsm_model.run_folder import machine_description, package_versions
from gtmsm_model.train import TrainingInterrupted, make_config, make_sampler, resolve_device, train

GTMSM_NAME = "GTM-SM"
PPO_NAME = "GTM-SM with PPO-explored memorisation"
FLOOR_NAME = "VAE reconstruction (floor)"
TRIVIAL_NAME = MemorisationMean.name
TRAINING_DISTRIBUTION = ("procedural images, centre start, border walls only, reference random walk "
                         "(held directions), 288-step sequences (tau 256)")
VALIDATION_SEED = 500
"""Validation rollouts of the sweep: ``heldout_rollouts(..., seed=VALIDATION_SEED)``, a stream
disjoint from training's and from the test conditions' (``EVAL_SEED``)."""
EVAL_SEED = 0
"""Every condition's test rollouts come from ``heldout_rollouts(..., seed=EVAL_SEED)``: the same
for every training seed, so the spread over seeds is the models' alone."""
MAZE_WALL_DENSITY = 0.05
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PPO_POLICY = REPO_ROOT / "benchmarks" / "results" / "ppo_coverage.zip"
"""The committed PPO coverage policy, found from this file's location (so any current folder works)."""


# --------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Condition:
    """One row group of the table: which held-out rollouts, how long memorisation and prediction are."""

    name: str
    description: str
    tau: int
    horizon: int
    quick_tau: int
    quick_horizon: int
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    photos: bool = False
    uniform_policy: bool = False

    def lengths(self, quick: bool) -> tuple[int, int]:
        return (self.quick_tau, self.quick_horizon) if quick else (self.tau, self.horizon)


CONDITIONS: dict[str, Condition] = {c.name: c for c in (
    Condition("reference", "procedural images, centre start, reference random walk", 256, 256, 32, 16),
    Condition("photos", "32×32 natural-photo patches (scikit-learn's sample photos) no model trained on, "
              "centre start", 256, 256, 32, 16, photos=True),
    Condition("random start", "procedural images, uniformly random start cell", 256, 256, 32, 16,
              env_kwargs={"start": "random"}),
    Condition("uniform policy", "procedural images, centre start, a uniformly random action (of 5) every step "
              "instead of held directions", 256, 256, 32, 16, uniform_policy=True),
    Condition("long horizon", "procedural images, centre start, three times the predicted steps", 256, 768, 32, 48),
    Condition("short memory", "procedural images, centre start, a quarter of the memorisation steps", 64, 256, 8, 16),
    Condition("maze", f"procedural images, random start, interior walls (walls='maze', {MAZE_WALL_DENSITY:.0%} of "
              "interior edges, a new layout per sequence)", 256, 256, 32, 16,
              env_kwargs={"start": "random", "walls": "maze", "wall_density": MAZE_WALL_DENSITY}),
)}


def uniform_policy(seed: int) -> Callable[[Any, dict[str, Any]], np.ndarray]:
    """A uniformly random action (stay included) each step, reproducible from ``seed``."""
    rng = np.random.default_rng([seed, 7])

    def policy(observations: Any, info: dict[str, Any]) -> np.ndarray:
        return rng.integers(5, size=len(observations))

    return policy


def condition_rollouts(condition: Condition, sequences: int, *, quick: bool, photo_path: Path,
                       seed: int = EVAL_SEED) -> Rollouts:
    """The held-out test rollouts of ``condition`` (images from a stream training never uses)."""
    tau, horizon = condition.lengths(quick)
    kwargs = dict(condition.env_kwargs)
    if condition.photos:
        from gtmsm_env.photo_patches import write_photo_patches

        if not photo_path.exists():
            write_photo_patches(photo_path, 64 if quick else 256, seed=12345)
        kwargs["image_source"] = str(photo_path)
    if condition.uniform_policy:
        kwargs["policy"] = uniform_policy(seed)
    return heldout_rollouts(sequences, tau + horizon, seed, **kwargs)


def ppo_rollouts(policy_path: Path, sequences: int, tau: int, horizon: int, seed: int = EVAL_SEED) -> Rollouts:
    """The reference condition's rollouts (same images, starts and prediction-phase actions) with
    the saved SB3 policy choosing the memorisation actions (greedy)."""
    from gtmsm_env.policies import load_sb3_policy

    policy = load_sb3_policy(policy_path, deterministic=True, seed=seed)
    return collect_rollouts(sequences, tau + horizon, seed=seed + HELDOUT_SEED_OFFSET, policy=policy,
                            policy_steps=tau)


# --------------------------------------------------------------------------- one metric record


@dataclass
class Scores:
    """What the table reports for one model on one condition and one seed (pixels in [0, 1])."""

    mse: float
    mse_revisited: float
    mse_novel: float
    mse_revisited_late: float
    """Revisited steps in the last half of the horizon (steps 129–256 for a 256-step horizon)."""
    fraction_revisited: float
    psnr_revisited: float
    psnr_novel: float
    ssim: float
    horizon_bins: list[list[int]]
    horizon_revisited: list[float]
    horizon_novel: list[float]

    @classmethod
    def of(cls, predicted: np.ndarray, rollouts: Rollouts, tau: int) -> Scores:
        """The one place a prediction becomes scores (``evaluate.prediction_metrics``)."""
        m = prediction_metrics(predicted, rollouts, tau)
        return cls(
            mse=m["mse"], mse_revisited=m["mse_revisited"], mse_novel=m["mse_novel"],
            mse_revisited_late=m["mse_revisited_late_half"], fraction_revisited=m["fraction_revisited"],
            psnr_revisited=m["psnr_revisited"], psnr_novel=m["psnr_novel"], ssim=m["ssim"],
            horizon_bins=m["horizon"]["bins"], horizon_revisited=m["horizon"]["mse_revisited"],
            horizon_novel=m["horizon"]["mse_novel"],
        )


SCALAR_SCORES = ("mse", "mse_revisited", "mse_novel", "mse_revisited_late", "fraction_revisited", "ssim")


@dataclass
class Row:
    """One model on one condition, one seed."""

    condition: str
    model: str
    seed: int | None
    """None for bounds that do not depend on a training seed."""
    scores: Scores
    kind: str
    """"learned", "GTM-SM", "bound" or "oracle" (reads true positions or true future crops)."""
    trained_on: str
    train_seconds: float | None = None
    train_iterations: int | None = None


@dataclass(frozen=True)
class Targets:
    """The issue's targets, defined once."""

    late_revisited_ratio: float = 5.0
    """Reference condition: every learned peer's late revisited MSE / GTM-SM's, at least."""
    full_run_minutes: float = 90.0
    """The full benchmark's wall-clock with --threads 1 on 2 cores, at most."""
    quick_run_seconds: float = 120.0
    """--quick's wall-clock, at most."""


TARGETS = Targets()


# --------------------------------------------------------------------------- plug-ins


def load_model_class(spec: str) -> type:
    """``package.module:Class`` (importable) or ``path/to/file.py:Class`` → the class.

    The class must construct with no arguments and answer the ``WorldModel`` protocol. Every
    problem (no colon, no such file, a module that fails to import for any reason, a missing name,
    a name that is not a class or lacks the protocol) is a ``ValueError`` naming ``--model``.
    """
    module_name, sep, class_name = spec.rpartition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"--model {spec!r}: expected module:Class or path/to/file.py:Class")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise ValueError(f"--model {spec!r}: no such file {path}")
        try:
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        except Exception as error:  # noqa: BLE001  (a plug-in's own code may raise anything)
            raise ValueError(f"--model {spec!r}: running {path} failed: {type(error).__name__}: "
                             f"{error_text(error)}") from None
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ValueError(f"--model {spec!r}: cannot import {module_name}: {error_text(error)}") from None
        except Exception as error:  # noqa: BLE001  (the module was found but its code failed)
            raise ValueError(f"--model {spec!r}: importing {module_name} failed: {type(error).__name__}: "
                             f"{error_text(error)}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ValueError(f"--model {spec!r}: {module_name} has no {class_name}")
    if not inspect.isclass(cls):
        raise ValueError(f"--model {spec!r}: {class_name} is a {type(cls).__name__}, not a class")
    missing = [name for name in ("name", "uses_true_positions", "fit", "predict") if not hasattr(cls, name)]
    if missing:
        raise ValueError(f"--model {spec!r}: {class_name} lacks {', '.join(missing)} (see the WorldModel protocol)")
    return cls


# --------------------------------------------------------------------------- the run


@dataclass
class Plan:
    """What a run does (compare_models.py builds it from its flags)."""

    seeds: list[int]
    preset: str = "quick"
    slow_seeds: list[int] = field(default_factory=lambda: [0])
    slow_multiple: float = 4.0
    sweep: bool = True
    eval_sequences: int = 64
    conditions: list[str] = field(default_factory=lambda: list(CONDITIONS))
    plugins: list[str] = field(default_factory=list)
    ppo_policy: Path | None = DEFAULT_PPO_POLICY
    device: str = "cpu"
    threads: int = 0
    quick: bool = False
    run_dir: Path = Path("runs/compare")
    progress: bool = False
    time_limit_minutes: float | None = None
    """Skip a slow-budget continuation that would end the run past this (None: never skip)."""


def check_plan(plan: Plan) -> None:
    """Everything a run needs, checked before any training: ``ValueError`` naming the flag
    (``--conditions``, ``--device``, ``--run-dir``, ``--model``, ``--ppo-policy``)."""
    unknown = [c for c in plan.conditions if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"--conditions: unknown {unknown}; choose from {list(CONDITIONS)}")
    try:
        resolve_device(plan.device)
    except (ValueError, RuntimeError) as error:
        raise ValueError(error_text(error)) from None  # its message names --device
    for spec in plan.plugins:
        load_model_class(spec)
    if plan.ppo_policy is not None and "reference" in plan.conditions:
        from gtmsm_env.policies import load_sb3_policy

        try:
            load_sb3_policy(plan.ppo_policy, deterministic=True, seed=EVAL_SEED)
        except (OSError, ValueError) as error:
            raise ValueError(f"--ppo-policy: {error_text(error)} ('none' skips the PPO row)") from None
    problem = output_dir_problem(plan.run_dir)  # last: it creates the folder
    if problem is not None:
        raise ValueError(f"--run-dir: {problem}")


SAVED_KEYS = ("rows", "sweep", "seeds", "skipped")


def check_saved_run(plan: Plan, families: list[str] | None = None) -> dict[str, Any]:
    """The earlier run in ``plan.run_dir/rows.json`` that ``add_slow_rows`` (``families``) or
    ``refresh_gtmsm_rows`` (``families=None``) continues, checked before any training; returns it.
    ``ValueError`` naming ``--run-dir`` when it is missing, not JSON, not a harness record, or
    (``--add-slow``) holds no GTM-SM budget for any ``--slow-seeds``."""
    path = plan.run_dir / "rows.json"
    flag = "--add-slow" if families is not None else "--refresh-gtmsm"
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"--run-dir: {flag} continues an earlier run, but {path} does not exist (give that "
                         "run's --run-dir)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--run-dir: cannot read {path}: {error_text(error)}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"--run-dir: {path} is not valid JSON ({error_text(error)})") from None
    missing = [key for key in SAVED_KEYS if not isinstance(saved, dict) or key not in saved]
    if missing:
        raise ValueError(f"--run-dir: {path} is not a compare_models.py record (no {', '.join(missing)})")
    try:
        load_rows(path)
        seeds = [info["seed"] for info in saved["seeds"]]
        for info in saved["seeds"]:
            absent = [key for key in ("seed", "gtmsm_seconds", "gtmsm_config", "budget") if key not in info]
            if absent:
                raise KeyError(absent[0])
            Budget(**info["budget"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"--run-dir: {path} is damaged ({type(error).__name__}: {error_text(error)})") from None
    if not seeds:
        raise ValueError(f"--run-dir: {path} records no finished seed: nothing to continue")
    if families is not None:
        if not set(plan.slow_seeds) & set(seeds):
            raise ValueError(f"--slow-seeds {plan.slow_seeds}: the earlier run in {plan.run_dir} trained seeds {seeds}")
        for family in families:
            factory_of(saved["sweep"], family, plan.quick)
    return saved


class GTMSMInterrupted(TrainingInterrupted):
    """SIGINT/SIGTERM stopped GTM-SM's training inside the harness, after its checkpoint was written."""

    def __init__(self, stop: TrainingInterrupted, seed: int) -> None:
        super().__init__(stop.signal_name, stop.step, stop.checkpoint)
        self.seed = seed

    @property
    def exit_status(self) -> int:
        """128 + the signal's number, the shell's convention (130 for SIGINT, 143 for SIGTERM)."""
        return signal_exit_status(self.signal_name)


def sweep_candidates(quick: bool) -> dict[str, list[tuple[str, Callable[[], TrainedModel], float]]]:
    """The documented sweep: (label, constructor, Adam lr) per family. The first is the default."""
    if quick:
        return {
            "RSSM": [("deter 16, lr 6e-4", lambda: RSSM(RSSMConfig(deter=16, hidden=16, stoch=4)), 6e-4),
                     ("deter 16, lr 1e-3, no open-loop loss",
                      lambda: RSSM(RSSMConfig(deter=16, hidden=16, stoch=4, open_loop_weight=0)), 1e-3)],
            "action LSTM": [("hidden 16, lr 6e-4", lambda: ActionLSTM(ActionLSTMConfig(hidden=16, embed=16)), 6e-4),
                            ("hidden 16, lr 1e-3", lambda: ActionLSTM(ActionLSTMConfig(hidden=16, embed=16)), 1e-3)],
        }
    return {
        "RSSM": [
            ("deter 256, stoch 32, lr 6e-4, open-loop loss 1 (previous default)", lambda: RSSM(RSSMConfig()), 6e-4),
            ("deter 128, hidden 128, lr 1e-3 (smaller: ~2× the steps)",
             lambda: RSSM(RSSMConfig(deter=128, hidden=128)), 1e-3),
            ("deter 256, lr 3e-4, no open-loop loss, free nats 3 (Dreamer as published)",
             lambda: RSSM(RSSMConfig(open_loop_weight=0.0, free_nats=3.0)), 3e-4),
        ],
        "action LSTM": [
            ("hidden 256, lr 6e-4 (previous default)", lambda: ActionLSTM(ActionLSTMConfig()), 6e-4),
            ("hidden 128, lr 1e-3", lambda: ActionLSTM(ActionLSTMConfig(hidden=128, embed=128)), 1e-3),
            ("hidden 512, lr 3e-4", lambda: ActionLSTM(ActionLSTMConfig(hidden=512, embed=256)), 3e-4),
        ],
    }


def transformer_factory(quick: bool) -> Callable[[], TrainedModel]:
    if quick:
        return lambda: TransformerWorldModel(TransformerConfig(d_model=16, layers=1, heads=2, feedforward=32,
                                                               hidden=16, min_tau=4))
    return TransformerWorldModel


TRANSFORMER_LR = 1e-3
SWEEP_FRACTION = 1 / 3
"""Each sweep candidate trains for this fraction of the 1× budget; the winner continues."""


def predict_in_chunks(model: WorldModel, rollouts: Rollouts, tau: int, chunk: int = 32) -> np.ndarray:
    """Predictions of every rollout, ``chunk`` sequences at a time. Models see only the first
    ``tau`` observations (and the true positions if they are oracles); the VAE floor alone
    decodes the true future crops."""
    if isinstance(model, _Floor):
        return model.reconstruct_future(rollouts, tau)
    parts = []
    for start in range(0, len(rollouts), chunk):
        part = rollouts[start:start + chunk]
        positions = part.positions if model.uses_true_positions else None
        parts.append(model.predict(part.observations[:, :tau], part.actions, tau, positions))
    return np.concatenate(parts)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Harness:
    """Runs a :class:`Plan`: trains, evaluates every model on every condition, collects rows."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.rows: list[Row] = []
        self.sweep: list[dict[str, Any]] = []
        self.seeds_info: list[dict[str, Any]] = []
        self.plan.run_dir.mkdir(parents=True, exist_ok=True)
        photo_path = plan.run_dir / ("photo_patches_quick.npz" if plan.quick else "photo_patches.npz")
        self.rollouts = {name: condition_rollouts(CONDITIONS[name], plan.eval_sequences, quick=plan.quick,
                                                  photo_path=photo_path) for name in plan.conditions}
        reference_tau, reference_horizon = CONDITIONS["reference"].lengths(plan.quick)
        self.ppo = None
        if plan.ppo_policy is not None and "reference" in plan.conditions:
            self.ppo = ppo_rollouts(plan.ppo_policy, plan.eval_sequences, reference_tau, reference_horizon)
        self.validation = heldout_rollouts(8 if plan.quick else 32, reference_tau + reference_horizon, VALIDATION_SEED)
        self.winners: dict[str, tuple[str, Callable[[], TrainedModel], float, TrainedModel]] = {}
        self.pending_slow: list[tuple[Any, ...]] = []
        self.skipped: list[str] = []
        self.added: list[str] = []
        self.refreshed: list[str] = []
        self.wall_seconds: float | None = None
        """Rows a separate run added after the main one (``add_slow_rows``)."""

    # ---- evaluation

    def evaluate(self, model: WorldModel, label: str, seed: int | None, kind: str, trained_on: str,
                 train_seconds: float | None = None, train_iterations: int | None = None,
                 conditions: list[str] | None = None) -> None:
        for name in conditions or self.plan.conditions:
            rollouts = self.rollouts[name]
            tau = CONDITIONS[name].lengths(self.plan.quick)[0]
            scores = Scores.of(predict_in_chunks(model, rollouts, tau), rollouts, tau)
            self.rows.append(Row(name, label, seed, scores, kind, trained_on, train_seconds, train_iterations))
            if name == "reference":
                _log(f"  {label} (seed {seed}) reference: revisited {scores.mse_revisited:.5f} "
                     f"novel {scores.mse_novel:.5f} late {scores.mse_revisited_late:.5f}")

    def save_progress(self) -> None:
        """Every row so far to ``run_dir/rows.json`` (``load_rows`` reads it back), so a crash late
        in a long run loses no measurement."""
        payload = {"rows": [dataclasses.asdict(row) for row in self.rows], "sweep": self.sweep,
                   "seeds": self.seeds_info, "skipped": self.skipped, "added": self.added,
                   "refreshed": self.refreshed, "wall_seconds": self.wall_seconds}
        (self.plan.run_dir / "rows.json").write_text(json.dumps(json_safe(payload)))

    def validate(self, model: WorldModel) -> float:
        tau = CONDITIONS["reference"].lengths(self.plan.quick)[0]
        return Scores.of(predict_in_chunks(model, self.validation, tau), self.validation, tau).mse_revisited

    def bounds(self, config_sampler: Any, budget: Budget) -> None:
        """The bounds that need no trained model, once (they do not depend on a training seed)."""
        dataset_mean = DatasetMean()
        dataset_mean.fit(config_sampler, budget)
        self.evaluate(dataset_mean, dataset_mean.name, None, "bound", "8 batches of the training distribution")
        for model in (MemorisationMean(), CopyLastObserved()):
            self.evaluate(model, model.name, None, "bound", "none (reads the memorised crops)")
        for model in (OracleMemory(), CanvasOracle()):
            self.evaluate(model, model.name, None, "oracle", "none (reads the true positions)")

    # ---- one seed

    def gtmsm(self, seed: int):
        plan = self.plan
        overrides: dict[str, Any] = dict(seed=seed, device=plan.device, threads=plan.threads, eval_every=0,
                                         out_dir=str(plan.run_dir / f"gtmsm-seed{seed}"), overwrite=True,
                                         progress=plan.progress)
        if plan.quick:
            overrides.update(iterations=6, vae_warmup_iters=4)
        else:
            overrides.update(eval_sequences=8)  # train()'s closing evaluation; ours is below
        config = make_config("debug" if plan.quick else plan.preset, **overrides)
        _log(f"[seed {seed}] training GTM-SM (preset {config.preset}) ...")
        try:
            trained = train(config, progress=plan.progress)
        except TrainingInterrupted as stop:
            raise GTMSMInterrupted(stop, seed) from None
        return trained, config

    def gtmsm_rows(self, seed: int) -> tuple[Any, float]:
        """Train GTM-SM on ``seed`` and add its rows and the rows built on its VAE (the PPO row,
        the oracle-position VAE, the floor). Returns its config and training wall-clock (the 1× budget)."""
        plan = self.plan
        trained, config = self.gtmsm(seed)
        model = trained.model.to(plan.device).eval()
        one_x = trained.seconds
        _log(f"[seed {seed}] GTM-SM trained in {one_x:.0f} s ({trained.iterations} steps)")
        gtmsm_trained_on = (f"{TRAINING_DISTRIBUTION}; preset {config.preset}: {config.schedule.vae_warmup_iters} VAE "
                            f"warm-up + {config.schedule.iterations} main steps")
        predictor = GTMSMPredictor(model, device=plan.device)
        self.evaluate(predictor, GTMSM_NAME, seed, "GTM-SM", gtmsm_trained_on, one_x, trained.iterations)
        if self.ppo is not None:
            tau = CONDITIONS["reference"].lengths(plan.quick)[0]
            scores = Scores.of(predict_in_chunks(predictor, self.ppo, tau), self.ppo, tau)
            self.rows.append(Row("reference", PPO_NAME, seed, scores, "GTM-SM",
                                 gtmsm_trained_on + "; memorisation actions by the PPO coverage policy at test time",
                                 one_x, trained.iterations))
            _log(f"  {PPO_NAME} (seed {seed}): mse {scores.mse:.5f} novel fraction {1 - scores.fraction_revisited:.3f}")
        self.evaluate(OraclePositionVAE(model), OraclePositionVAE.name, seed, "oracle", "GTM-SM's VAE (this seed)")
        self.evaluate(_Floor(model, plan.device), FLOOR_NAME, seed, "oracle",
                      "GTM-SM's VAE (this seed); decodes the true future crops")
        return config, one_x

    def run_seed(self, seed: int) -> None:
        plan = self.plan
        config, one_x = self.gtmsm_rows(seed)

        sampler = make_sampler(config)
        budget = Budget(iterations=10**9, batch_size=config.schedule.batch_size, seq_len=config.schedule.seq_len,
                        tau=config.schedule.tau,
                        device=plan.device, seed=seed, first_key=config.schedule.vae_warmup_iters)
        if not any(row.model == DatasetMean.name for row in self.rows):
            self.bounds(sampler, budget)

        slow = seed in plan.slow_seeds and plan.slow_multiple > 1
        peers: list[tuple[str, TrainedModel, float]] = []
        for family, candidates in sweep_candidates(plan.quick).items():
            if family not in self.winners:
                self.winners[family] = self.run_sweep(family, candidates, sampler, budget, one_x, seed)
                label, _, lr, winner = self.winners[family]
                peers.append((family, winner, lr))
            else:
                label, factory, lr, _ = self.winners[family]
                peers.append((family, factory(), lr))
        peers.append(("transformer", transformer_factory(plan.quick)(), TRANSFORMER_LR))
        trained_on = f"{TRAINING_DISTRIBUTION}; GTM-SM's sampler and keys"
        for family, peer, lr in peers:
            peer_budget = dataclasses.replace(budget, lr=lr, max_seconds=one_x)
            _log(f"[seed {seed}] fitting {family} to 1× ({one_x:.0f} s) ...")
            peer.fit(sampler, peer_budget)
            self.evaluate(peer, f"{family} @1×", seed, "learned", trained_on, peer.train_seconds, peer.iterations_done)
            if slow:  # continued after every seed's 1× rows exist (see extend_slow)
                self.pending_slow.append((seed, family, peer, sampler,
                                          dataclasses.replace(peer_budget, max_seconds=plan.slow_multiple * one_x),
                                          trained_on, one_x))
        for spec in plan.plugins:
            cls = load_model_class(spec)
            plugin = cls()
            _log(f"[seed {seed}] fitting plug-in {plugin.name} to 1× ...")
            start = time.perf_counter()
            plugin.fit(sampler, dataclasses.replace(budget, max_seconds=one_x))
            kind = "oracle" if plugin.uses_true_positions else "learned"
            self.evaluate(plugin, f"{plugin.name} @1×", seed, kind, f"{TRAINING_DISTRIBUTION} (plug-in {spec})",
                          time.perf_counter() - start, getattr(plugin, "iterations_done", None))
        self.seeds_info.append({"seed": seed, "gtmsm_seconds": one_x, "gtmsm_config": config.flat(),
                                "budget": dataclasses.asdict(budget)})
        self.save_progress()

    def extend_slow(self, started: float) -> None:
        """Continue the slow seeds' peers to the slow multiple, each only if the projected
        wall-clock stays within ``plan.time_limit_minutes`` (what is skipped is recorded)."""
        plan = self.plan
        for seed, family, peer, sampler, budget, trained_on, _one_x in self.pending_slow:
            label = f"{family} @{plan.slow_multiple:g}×"
            needed = budget.max_seconds - peer.train_seconds + 60
            elapsed = time.perf_counter() - started
            if plan.time_limit_minutes and elapsed + needed > plan.time_limit_minutes * 60:
                self.skipped.append(f"{label} (seed {seed}): {needed / 60:.0f} more minutes would pass the "
                                    f"{plan.time_limit_minutes:g}-minute limit at {elapsed / 60:.0f} min")
                _log(f"skipping {self.skipped[-1]}")
                continue
            _log(f"[seed {seed}] continuing {family} to {plan.slow_multiple:g}× ({budget.max_seconds:.0f} s) ...")
            peer.fit(sampler, budget)
            self.evaluate(peer, label, seed, "learned", trained_on, peer.train_seconds, peer.iterations_done)
            self.save_progress()
        self.pending_slow = []

    def run_sweep(self, family: str, candidates, sampler, budget: Budget, one_x: float, seed: int):
        """Train each candidate for ``SWEEP_FRACTION`` of the 1× budget (snapshot at half that),
        pick the lowest validation revisited MSE at the end, return the winner (to be continued)."""
        if not self.plan.sweep:
            label, factory, lr = candidates[0]
            return label, factory, lr, factory()
        best = None
        end = one_x * SWEEP_FRACTION
        early = end / 2
        for label, factory, lr in candidates:
            model = factory()
            model.fit(sampler, dataclasses.replace(budget, lr=lr, max_seconds=end, snapshot_seconds=[early]))
            final = model.latest()
            at_early = model.use_snapshot(early)
            val_early = self.validate(model)
            model.restore(final)
            val_end = self.validate(model)
            record = {"family": family, "candidate": label, "lr": lr, "seed": seed,
                      "seconds_early": early, "iterations_early": at_early["iterations"], "val_mse_revisited_early": val_early,
                      "seconds_end": model.train_seconds, "iterations_end": model.iterations_done,
                      "val_mse_revisited_end": val_end}
            self.sweep.append(record)
            _log(f"  sweep {family} [{label}]: {model.iterations_done} steps, validation revisited MSE "
                 f"{val_early:.5f} at {early:.0f} s, {val_end:.5f} at {model.train_seconds:.0f} s")
            if best is None or val_end < best[0]:
                best = (val_end, label, factory, lr, model)
        for record in self.sweep:
            if record["family"] == family:
                record["chosen"] = record["candidate"] == best[1]
        return best[1], best[2], best[3], best[4]


class _Floor:
    """GTM-SM's VAE reconstructing the true future crops: a bound (it reads the future)."""

    name = FLOOR_NAME
    uses_true_positions = False

    def __init__(self, model: Any, device: str) -> None:
        self.model, self.device = model, device

    def fit(self, sampler: Any, budget: Budget) -> None:
        pass

    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        raise RuntimeError("the floor reads the future crops; call reconstruct_future")

    @torch.no_grad()
    def reconstruct_future(self, rollouts: Rollouts, tau: int) -> np.ndarray:
        future = torch.as_tensor(rollouts.observations[:, tau:]).to(self.device)
        return self.model.reconstruct(future).cpu().numpy()


# --------------------------------------------------------------------------- summaries and targets


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    return float(np.mean(finite)), float(np.std(finite)) if len(finite) > 1 else float("nan")


def summarise(rows: list[Row]) -> list[dict[str, Any]]:
    """One entry per (condition, model), in table order: means and stds over seeds."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.condition, row.model), []).append(row)
    order = {name: i for i, name in enumerate(CONDITIONS)}
    summary = []
    for (condition, model), group in sorted(groups.items(), key=lambda item: order[item[0][0]]):
        entry: dict[str, Any] = {"condition": condition, "model": model,
                                 "seeds": len(group), "kind": group[0].kind, "trained_on": group[0].trained_on}
        for key in SCALAR_SCORES:
            entry[key], entry[f"{key}_std"] = _mean_std([getattr(row.scores, key) for row in group])
        for key in ("train_seconds", "train_iterations"):
            entry[key], _ = _mean_std([getattr(row, key) for row in group])
        bins = group[0].scores.horizon_bins
        entry["horizon_bins"] = bins
        for part in ("horizon_revisited", "horizon_novel"):
            entry[part] = [_mean_std([getattr(row.scores, part)[i] for row in group])[0] for i in range(len(bins))]
        summary.append(entry)
    trivial = {e["condition"]: e["mse_revisited"] for e in summary if e["model"] == TRIVIAL_NAME}
    for entry in summary:
        bar = trivial.get(entry["condition"])
        entry["below_trivial"] = bool(entry["kind"] == "learned" and bar is not None
                                      and not entry["mse_revisited"] < bar)
    return summary


def check_targets(summary: list[dict[str, Any]], wall_seconds: float, quick: bool) -> list[dict[str, Any]]:
    """PASS/FAIL of each of the issue's targets that this run can judge."""
    checks = []
    reference = {e["model"]: e for e in summary if e["condition"] == "reference"}
    gtmsm = reference.get(GTMSM_NAME)
    if gtmsm is not None:
        for name, entry in reference.items():
            if entry["kind"] != "learned":
                continue
            ratio = entry["mse_revisited_late"] / gtmsm["mse_revisited_late"]
            checks.append({"target": f"reference: {name}'s late revisited MSE ≥ {TARGETS.late_revisited_ratio:g}× "
                                     f"GTM-SM's ({entry['seeds']} seed(s))",
                           "value": f"{name} / GTM-SM = {ratio:.2f}×", "ratio": ratio,
                           "passed": bool(ratio >= TARGETS.late_revisited_ratio)})
    trivial = {e["condition"]: e["mse_revisited"] for e in summary if e["model"] == TRIVIAL_NAME}
    for name, entry in reference.items():
        if entry["kind"] == "learned":
            checks.append({"target": f"reference: {name} beats the memorisation mean on revisited steps",
                           "value": f"{entry['mse_revisited']:.5f} vs {trivial.get('reference', float('nan')):.5f}",
                           "passed": not entry["below_trivial"]})
    others = [e for e in summary if e["kind"] == "learned" and e["condition"] != "reference"]
    below = [f"{e['model']} on {e['condition']}" for e in others if e["below_trivial"]]
    if others:
        checks.append({"target": "other conditions: every learned model beats the memorisation mean on revisited steps "
                                 "(failures are marked 'below trivial' in the tables)",
                       "value": f"below trivial in {len(below)} of {len(others)} cells"
                                + (f" ({', '.join(below)})" if 0 < len(below) <= 6 else ""),
                       "passed": not below})
    limit = TARGETS.quick_run_seconds if quick else TARGETS.full_run_minutes * 60
    checks.append({"target": f"{'--quick' if quick else 'full benchmark'} wall-clock ≤ {limit / 60:g} min",
                   "value": f"{wall_seconds / 60:.1f} min", "passed": bool(wall_seconds <= limit)})
    return checks


# --------------------------------------------------------------------------- outputs


def _cell(entry: dict[str, Any], key: str, digits: str) -> str:
    value, std = entry.get(key), entry.get(f"{key}_std")
    if value is None or not math.isfinite(value):
        return "—"
    text = format(value, digits)
    return text if std is None or not math.isfinite(std) else f"{text} ± {format(std, digits)}"


def condition_table(entries: list[dict[str, Any]]) -> str:
    lines = ["| model | kind | seeds | MSE | MSE revisited | MSE novel | revisited, last half | fraction revisited "
             "| SSIM | train s | train steps | note |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for e in entries:
        note = "**below trivial**" if e["below_trivial"] else ""
        seconds = "—" if not math.isfinite(e["train_seconds"]) else f"{e['train_seconds']:.0f}"
        steps = "—" if not math.isfinite(e["train_iterations"]) else f"{e['train_iterations']:.0f}"
        lines.append(f"| {e['model']} | {e['kind']} | {e['seeds']} | {_cell(e, 'mse', '.5f')} | "
                     f"{_cell(e, 'mse_revisited', '.5f')} | {_cell(e, 'mse_novel', '.5f')} | "
                     f"{_cell(e, 'mse_revisited_late', '.5f')} | {_cell(e, 'fraction_revisited', '.3f')} | "
                     f"{_cell(e, 'ssim', '.3f')} | {seconds} | {steps} | {note} |")
    return "\n".join(lines)


def plot_condition(entries: list[dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for axis, part, label in ((axes[0], "horizon_revisited", "revisited steps"), (axes[1], "horizon_novel", "novel steps")):
        for e in entries:
            centres = [(a + b) / 2 for a, b in e["horizon_bins"]]
            values = np.array(e[part], dtype=float)
            values[~(values > 0)] = np.nan  # exact zeros (oracles on revisited steps) cannot sit on a log axis
            if np.isnan(values).all():
                continue
            style = "--" if e["kind"] in ("oracle", "bound") else "-"
            axis.plot(centres, values, style, marker="o", markersize=2.5, label=e["model"],
                      linewidth=2.5 if e["model"] == GTMSM_NAME else 1.3)
        axis.set_yscale("log")
        axis.set_xlabel("steps after memorisation (bin centre)")
        axis.set_title(f"{title}: {label}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("per-pixel MSE (pixels in [0, 1]), mean over seeds")
    axes[1].legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_overview(summary: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = list(dict.fromkeys(e["condition"] for e in summary))
    models = [m for m in dict.fromkeys(e["model"] for e in summary) if m != "oracle memory"]
    lookup = {(e["condition"], e["model"]): e for e in summary}
    figure, axes = plt.subplots(1, 2, figsize=(15, 5.5), sharey=True)
    width = 0.8 / max(1, len(models))
    for axis, key, label in ((axes[0], "mse_revisited", "revisited steps"), (axes[1], "mse_novel", "novel steps")):
        for index, model in enumerate(models):
            values = [lookup[(c, model)][key] if (c, model) in lookup else np.nan for c in conditions]
            values = [v if v is not None and v > 0 else np.nan for v in values]
            axis.bar(np.arange(len(conditions)) + (index - len(models) / 2) * width, values, width, label=model)
        axis.set_yscale("log")
        axis.set_xticks(np.arange(len(conditions)), conditions, rotation=20)
        axis.set_title(f"MSE on {label}, every condition (mean over seeds)")
        axis.grid(True, axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("per-pixel MSE")
    axes[1].legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def slug(condition: str) -> str:
    return condition.replace(" ", "_")


def write_outputs(harness: Harness, out_dir: Path, command: str, wall_seconds: float,
                  args: dict[str, Any]) -> dict[str, Any]:
    plan = harness.plan
    summary = summarise(harness.rows)
    checks = check_targets(summary, wall_seconds, plan.quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    versions = package_versions()
    threads = plan.threads or torch.get_num_threads()
    machine_line = (f"{machine['platform']}, {machine['cpu_count']} logical cores (shared with other jobs), "
                    f"{threads} torch thread(s), device {plan.device}, torch {versions.get('torch')}, "
                    f"Python {versions.get('python')}")
    report = {
        "command": command, "date": machine["date"], "machine": machine, "machine_line": machine_line,
        "package_versions": versions, "wall_seconds": wall_seconds,
        "args": json_safe({k: str(v) if isinstance(v, Path) else v for k, v in args.items()}),
        "training_distribution": TRAINING_DISTRIBUTION,
        "conditions": {name: dataclasses.asdict(CONDITIONS[name]) for name in plan.conditions},
        "targets": dataclasses.asdict(TARGETS), "checks": checks,
        "summary": summary, "sweep": harness.sweep, "seeds": harness.seeds_info, "skipped": harness.skipped,
        "added": harness.added, "refreshed": harness.refreshed,
        "rows": [dataclasses.asdict(row) for row in harness.rows],
    }
    (out_dir / "compare.json").write_text(json.dumps(json_safe(report), indent=1, allow_nan=False))
    for name in plan.conditions:
        entries = [e for e in summary if e["condition"] == name]
        plot_condition(entries, name, out_dir / f"compare_horizon_{slug(name)}.png")
    plot_overview(summary, out_dir / "compare_overview.png")
    (out_dir / "compare.md").write_text(format_markdown(report, plan))
    if harness.sweep:
        write_sweep(harness, out_dir, command, machine_line, machine["date"])
    return report


def write_sweep(harness: Harness, out_dir: Path, command: str, machine_line: str, date: str) -> None:
    lines = ["# Peer sweep: RSSM and action LSTM", "",
             f"- command: `{command}` (the sweep is the first part of the comparison run)",
             f"- machine: {machine_line}", f"- date: {date}", "",
             "Each candidate trains on the first seed, on GTM-SM's training distribution and sampler keys, for "
             f"{SWEEP_FRACTION:.2g} of GTM-SM's measured wall-clock on that seed (a weight snapshot is kept at half "
             f"of that). Score: revisited MSE on {len(harness.validation)} validation rollouts of the reference "
             f"setup (training distribution; seed stream {VALIDATION_SEED} + {HELDOUT_SEED_OFFSET}, disjoint from "
             "the test conditions). The lowest score at the end is chosen, continued in the same run to 1× (and "
             "to the slow multiple on the slow seeds) and used for every other seed. The longer budgets' effect "
             "(training length) is in compare.md's @1× and @4× rows.", "",
             "| family | candidate | lr | s (early) | steps | validation revisited MSE | s (end) | steps | "
             "validation revisited MSE | chosen |", "|---|---|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in harness.sweep:
        lines.append(f"| {r['family']} | {r['candidate']} | {r['lr']:g} | {r['seconds_early']:.0f} | "
                     f"{r['iterations_early']} | {r['val_mse_revisited_early']:.5f} | {r['seconds_end']:.0f} | "
                     f"{r['iterations_end']} | {r['val_mse_revisited_end']:.5f} | {'yes' if r.get('chosen') else ''} |")
    trivial = MemorisationMean()
    tau = CONDITIONS["reference"].lengths(harness.plan.quick)[0]
    bar = Scores.of(predict_in_chunks(trivial, harness.validation, tau), harness.validation, tau).mse_revisited
    lines += ["", f"Memorisation mean on the same validation rollouts (the trivial bar): {bar:.5f}."]
    (out_dir / "peer_sweep.md").write_text("\n".join(lines) + "\n")
    (out_dir / "peer_sweep.json").write_text(json.dumps(json_safe({
        "command": command, "machine": machine_line, "date": date, "sweep_fraction_of_1x": SWEEP_FRACTION,
        "validation_memorisation_mean_mse_revisited": bar, "candidates": harness.sweep}), indent=1))


def format_markdown(report: dict[str, Any], plan: Plan) -> str:
    summary = report["summary"]
    seeds_info = report["seeds"]
    one_x = ", ".join(f"seed {s['seed']}: {s['gtmsm_seconds']:.0f} s" for s in seeds_info)
    slow = [s for s in plan.slow_seeds if s in plan.seeds]
    lines = [
        "# Model comparison: GTM-SM vs learned peers and bounds, seven conditions",
        "",
        f"- command: `{report['command']}`",
        f"- machine: {report['machine_line']}",
        f"- date: {report['date']}; total wall-clock {report['wall_seconds'] / 60:.1f} min",
        f"- evaluation: {plan.eval_sequences} held-out sequences per condition, the same for every training seed "
        f"(seed stream {EVAL_SEED} + {HELDOUT_SEED_OFFSET}, images no model trained on); predicted from actions "
        "alone after tau memorised steps; pixels in [0, 1]; revisited = the true position was seen while "
        "memorising, novel = it was not; 'last half' = revisited steps in the last half of the horizon.",
        f"- **what every learned model saw in training**: {TRAINING_DISTRIBUTION}. GTM-SM, the RSSM, the action "
        "LSTM and the transformer read the same sampler with the same keys (GTM-SM's main-phase keys). No model "
        "trained on photos, random starts, uniform actions, long horizons, short memories or mazes: those "
        "conditions test transfer, and the rows say so by this line.",
        f"- **budgets**: GTM-SM trains with its preset (`{plan.preset}`); its measured wall-clock per seed is the "
        f"1× budget of the peers on that seed ({one_x}). Each peer is one run: evaluated at 1× "
        + (f"and, on seed(s) {slow}, continued in the same run (same optimiser, next data keys) to "
           f"{plan.slow_multiple:g}× and evaluated again (so the @{plan.slow_multiple:g}× rows have "
           f"{len(slow)} seed(s)). " if slow else ". ")
        + "Wall-clock on a shared 2-core machine is noisy; the step counts are in the table. "
        "The RSSM's and LSTM's settings come from the sweep in `peer_sweep.md` (first seed, a third of the 1× "
        "budget per candidate); the transformer's design is in `gtmsm_model/baselines/transformer.py`.",
        "- bounds: dataset mean, memorisation mean (the trivial bar: a learned model that does not beat it on "
        "revisited steps is marked **below trivial**), copy last observed; oracles read the true positions "
        "(oracle memory, canvas oracle, oracle-position VAE) or the true future crops (VAE floor). Bounds without "
        "a trained part are deterministic and computed once (seeds = 1).",
        f"- {PPO_NAME} (reference condition only): the same trained GTM-SM, the same test images, starts and "
        "prediction-phase random walk, but the memorisation actions chosen by the committed PPO coverage policy "
        "(`benchmarks/results/ppo_coverage.zip`, greedy).",
        "",
        *([f"- **cut to stay within {plan.time_limit_minutes:g} minutes**: " + "; ".join(report["skipped"])]
          if report["skipped"] else []),
        *([f"- **added by a separate run after the main one** (the main run's time limit had cut them; the "
           f"second command above; wall-clock of both together in the date line): {'; '.join(report['added'])}"]
          if report.get("added") else []),
        *([f"- **refreshed by a separate run after the main one**: {'; '.join(report['refreshed'])}"]
          if report.get("refreshed") else []),
        "",
        "## Targets",
        "",
        *[f"- {'PASS' if c['passed'] else 'FAIL'}: {c['target']} — {c['value']}" for c in report["checks"]],
        "",
        "![overview](compare_overview.png)",
        "",
    ]
    for name in plan.conditions:
        condition = CONDITIONS[name]
        tau, horizon = condition.lengths(plan.quick)
        entries = [e for e in summary if e["condition"] == name]
        lines += [f"## {name}", "", f"{condition.description}; tau {tau} + {horizon} predicted steps.", "",
                  condition_table(entries), "", f"![{name}](compare_horizon_{slug(name)}.png)", ""]
    return "\n".join(lines)


def load_rows(path: Path) -> list[Row]:
    """The rows ``Harness.save_progress`` wrote (NaN scores come back as None)."""
    rows = []
    for raw in json.loads(Path(path).read_text())["rows"]:
        scores = {k: float("nan") if v is None else v for k, v in raw.pop("scores").items()}
        rows.append(Row(**raw, scores=Scores(**scores)))
    return rows


def factory_of(harness_sweep: list[dict[str, Any]], family: str, quick: bool) -> tuple[Callable[[], TrainedModel], float]:
    """The chosen candidate of ``family`` in a saved sweep (the transformer has no sweep)."""
    if family == "transformer":
        return transformer_factory(quick), TRANSFORMER_LR
    candidates = sweep_candidates(quick)[family]
    chosen = next((r["candidate"] for r in harness_sweep if r.get("family") == family and r.get("chosen")), None)
    if chosen is None:  # a run without the sweep (--no-sweep) used the first candidate
        return candidates[0][1], candidates[0][2]
    for label, factory, lr in candidates:
        if label == chosen:
            return factory, lr
    raise ValueError(f"--add-slow {family}: the earlier run chose {chosen!r}, not a candidate of "
                     f"{'--quick' if quick else 'a full run'}; run with the earlier run's --quick setting")


def add_slow_rows(plan: Plan, families: list[str]) -> tuple[Harness, float]:
    """Finish a run whose time limit cut slow-budget continuations: reload ``run_dir/rows.json``
    and train each of ``families`` afresh on the slow seeds to the slow multiple of that seed's
    GTM-SM wall-clock (a separate run with the same seed, data keys and settings), evaluate it on
    every condition and add the rows, marked as coming from a separate run. Returns the harness
    (ready for ``write_outputs``) and the seconds this took."""
    started = time.perf_counter()
    if plan.threads:
        torch.set_num_threads(plan.threads)
    saved = check_saved_run(plan, families)
    check_plan(plan)
    harness = Harness(plan)
    harness.rows = load_rows(plan.run_dir / "rows.json")
    harness.sweep, harness.seeds_info = saved["sweep"], saved["seeds"]
    for info in saved["seeds"]:
        seed = info["seed"]
        if seed not in plan.slow_seeds:
            continue
        config, budget = info["gtmsm_config"], Budget(**info["budget"])
        sampler = RolloutSampler(config["seed"], dataset=config["dataset"], image_source=config["image_source"])
        for family in families:
            label = f"{family} @{plan.slow_multiple:g}×"
            factory, lr = factory_of(harness.sweep, family, plan.quick)
            peer = factory()
            _log(f"[seed {seed}] training {family} to {plan.slow_multiple:g}× in a separate run ...")
            peer.fit(sampler, dataclasses.replace(budget, lr=lr, max_seconds=plan.slow_multiple * info["gtmsm_seconds"]))
            trained_on = (f"{TRAINING_DISTRIBUTION}; GTM-SM's sampler and keys; a separate run after the main one "
                          "(the main run's time limit cut its continuation)")
            harness.evaluate(peer, label, seed, "learned", trained_on, peer.train_seconds, peer.iterations_done)
    harness.skipped = [item for item in saved["skipped"]
                       if not any(item.startswith(f"{family} @") for family in families)]
    harness.added = [f"{family} @{plan.slow_multiple:g}× (seeds {plan.slow_seeds})" for family in families]
    harness.save_progress()
    return harness, time.perf_counter() - started


GTMSM_DEPENDENT_ROWS = (GTMSM_NAME, PPO_NAME, OraclePositionVAE.name, FLOOR_NAME)


def refresh_gtmsm_rows(plan: Plan, note: str) -> tuple[Harness, float]:
    """Re-train GTM-SM on every seed of an earlier run with the code as it is now and replace its
    rows and the rows built on its VAE (``GTMSM_DEPENDENT_ROWS``), keeping every peer's and bound's
    row as measured. For a model change after a long run: the peers' budgets stay what the earlier
    GTM-SM's wall-clock set (``note`` says so in compare.md). Returns the harness and its seconds."""
    started = time.perf_counter()
    if plan.threads:
        torch.set_num_threads(plan.threads)
    saved = check_saved_run(plan)
    check_plan(plan)
    harness = Harness(plan)
    harness.rows = [row for row in load_rows(plan.run_dir / "rows.json") if row.model not in GTMSM_DEPENDENT_ROWS]
    harness.sweep, harness.seeds_info = saved["sweep"], saved["seeds"]
    harness.skipped, harness.added = saved["skipped"], saved.get("added", [])
    for info in harness.seeds_info:
        _config, seconds = harness.gtmsm_rows(info["seed"])
        info["gtmsm_seconds_refreshed"] = seconds
        harness.save_progress()
    harness.refreshed = [note]  # these rows replace any earlier refresh's, so its note goes too
    harness.save_progress()
    return harness, time.perf_counter() - started


def run(plan: Plan) -> Harness:
    """Train and evaluate everything the plan asks for; returns the harness with its rows."""
    if plan.threads:
        torch.set_num_threads(plan.threads)
    check_plan(plan)  # fail before any training
    started = time.perf_counter()
    harness = Harness(plan)
    for seed in plan.seeds:  # every seed's 1× rows first: the slow budget is the part that may be cut
        harness.run_seed(seed)
    harness.extend_slow(started)
    harness.wall_seconds = time.perf_counter() - started
    harness.save_progress()
    return harness
