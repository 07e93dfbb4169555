"""What a comparison run does (``compare_models.py`` builds a ``Plan`` from its flags), checked
before any training."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import REPO_ROOT
from benchmarks.harness.conditions import CONDITIONS, EVAL_SEED
from benchmarks.harness.models import load_model_class
from benchmarks.harness.plugins import CONSTRUCTOR_LIMIT_S, build_plugin, default_time_limit
from gtmsm_cli.checks import output_dir_problem
from gtmsm_cli.flags import error_text, flag_text
from gtmsm_cli.signals import signal_exit_status
from gtmsm_model.train import TrainingInterrupted, resolve_device

DEFAULT_PPO_POLICY = REPO_ROOT / "benchmarks" / "results" / "ppo_coverage.zip"
"""The committed PPO coverage policy, found from this file's location (so any current folder works)."""


@dataclass
class Plan:
    """What a run does."""

    seeds: list[int]
    preset: str = "quick"
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
    workers: int = 2
    """Processes that train and evaluate at once (``runner.Scheduler``); 1 runs everything in this one."""
    model_timeout_s: float | None = None
    """Each plug-in's time limit per seed, in seconds, for its construction, ``fit`` and every
    ``predict`` together (None: ``plugins.default_time_limit`` of its budget, 3× + 60 s)."""

    def plugin_time_limit(self, budget_seconds: float) -> float:
        """The time limit of a plug-in given ``budget_seconds`` of training."""
        return self.model_timeout_s if self.model_timeout_s is not None else default_time_limit(budget_seconds)


def check_plan(plan: Plan) -> None:
    """Everything a run needs, checked before any training: ``ValueError`` naming the flag
    (``--conditions``, ``--device``, ``--workers``, ``--run-dir``, ``--model``, ``--ppo-policy``). Every plug-in is
    loaded and constructed here, so a constructor that fails stops the run before any training."""
    unknown = [c for c in plan.conditions if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"--conditions: unknown {unknown}; choose from {list(CONDITIONS)}")
    try:
        resolve_device(plan.device)
    except (ValueError, RuntimeError) as error:
        raise ValueError(flag_text(error_text(error))) from None  # its message names `device`
    if plan.workers > 1 and plan.device != "cpu":
        raise ValueError(f"--workers {plan.workers}: worker processes share the CPU only (they are forked, which "
                         f"CUDA does not survive); use --workers 1 with --device {plan.device}")
    if plan.model_timeout_s is not None and not plan.model_timeout_s > 0:
        raise ValueError(f"--model-timeout-s must be > 0, got {plan.model_timeout_s:g}")
    for spec in plan.plugins:
        limit_s = plan.model_timeout_s or CONSTRUCTOR_LIMIT_S
        build_plugin(spec, load_model_class(spec, limit_s), limit_s)
    if plan.ppo_policy is not None and "reference" in plan.conditions:
        from gtmsm_env.policies import load_sb3_policy

        try:
            load_sb3_policy(plan.ppo_policy, deterministic=True, seed=EVAL_SEED)
        except (OSError, ValueError) as error:
            raise ValueError(f"--ppo-policy: {error_text(error)} ('none' skips the PPO row)") from None
    problem = output_dir_problem(plan.run_dir)  # last: it creates the folder
    if problem is not None:
        raise ValueError(f"--run-dir: {problem}")


class GTMSMInterrupted(TrainingInterrupted):
    """SIGINT/SIGTERM stopped GTM-SM's training inside the harness, after its checkpoint was written."""

    def __init__(self, stop: TrainingInterrupted, seed: int) -> None:
        super().__init__(stop.signal_name, stop.step, stop.checkpoint)
        self.seed = seed

    @property
    def exit_status(self) -> int:
        """128 + the signal's number, the shell's convention (130 for SIGINT, 143 for SIGTERM)."""
        return signal_exit_status(self.signal_name)
