"""The comparison run: train GTM-SM and the peers on each seed, evaluate every model on every
condition, collect rows.

The budget design (see ``compare.md``): every learned model trains once per seed on the same
training distribution (GTM-SM's sampler and keys) and is evaluated on every condition. The peers train
for the default GTM-SM's measured training CPU seconds on that seed (1×). Each peer family's settings
come from a sweep on the first seed (each candidate trained for ``SWEEP_FRACTION`` of the 1× budget,
picked by revisited MSE on validation rollouts from the training distribution); the winner then trains
from scratch to 1× on every seed. The jobs run in worker processes (``Scheduler``).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from benchmarks.harness.conditions import (
    CONDITIONS,
    TRAINING_DISTRIBUTION,
    VALIDATION_SEED,
    condition_rollouts,
    image_file,
    ppo_rollouts,
)
from benchmarks.harness.models import (
    FAMILY_KIND,
    MEMORY_PEER,
    PPO_NAME,
    SWEEP_FRACTION,
    Floor,
    load_model_class,
    predict_in_chunks,
    sweep_candidates,
)
from benchmarks.harness.plan import GTMSMInterrupted, Plan, check_plan
from benchmarks.harness.plugins import Guard, PluginFailed, checked_predictions, plugin_name
from benchmarks.harness.records import Row, failed_scores
from benchmarks.harness.targets import GTMSM_NAME, GTMSM_VARIANTS
from gtmsm_cli.files import write_text
from gtmsm_cli.signals import interrupt_signal
from gtmsm_env.rollouts import Rollouts
from gtmsm_model.baselines import (
    Budget,
    CanvasOracle,
    CopyLastObserved,
    DatasetMean,
    LocaliseCanvas,
    LocaliseLookup,
    MemorisationMean,
    OracleMemory,
    OraclePositionVAE,
    WorldModel,
)
from gtmsm_model.data import heldout_rollouts
from gtmsm_model.evaluate import GTMSMPredictor, PredictionScores, json_safe, prediction_metrics
from gtmsm_model.train import TrainingInterrupted, make_config, make_sampler, train


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def score(model: WorldModel, rollouts: Rollouts, tau: int) -> PredictionScores:
    """One model's scores on one rollout set (the protocol's ``prediction_metrics``)."""
    return prediction_metrics(predict_in_chunks(model, rollouts, tau), rollouts, tau)


class Harness:
    """Runs a :class:`Plan`: trains, evaluates every model on every condition, collects rows."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.rows: list[Row] = []
        self.sweep: list[dict[str, Any]] = []
        self.seeds_info: list[dict[str, Any]] = []
        self.plan.run_dir.mkdir(parents=True, exist_ok=True)
        images = lambda kind: image_file(plan.run_dir, kind, 64 if plan.quick else 256, reuse=True)  # noqa: E731
        self.rollouts = {name: condition_rollouts(CONDITIONS[name], plan.eval_sequences, quick=plan.quick,
                                                  images=images) for name in plan.conditions}
        reference_tau, reference_horizon = CONDITIONS["reference"].lengths(plan.quick)
        self.ppo = None
        if plan.ppo_policy is not None and "reference" in plan.conditions:
            self.ppo = ppo_rollouts(plan.ppo_policy, plan.eval_sequences, reference_tau, reference_horizon)
        self.validation = heldout_rollouts(8 if plan.quick else 32, reference_tau + reference_horizon, VALIDATION_SEED)
        self.wall_seconds: float | None = None
        self.plugin_classes = {spec: load_model_class(spec) for spec in plan.plugins}
        self.plugin_labels: set[str] = set()
        """The rows' names of the plug-ins (``--model``)."""
        self.failed_plugins: dict[str, int] = {}
        """Plug-in spec → the seed it failed on."""

    # ---- evaluation

    def evaluate(self, model: WorldModel, label: str, seed: int | None, kind: str, trained_on: str,
                 train_seconds: float | None = None, train_iterations: int | None = None) -> list[Row]:
        """One model's rows, one per condition."""
        rows = []
        for name in self.plan.conditions:
            tau = CONDITIONS[name].lengths(self.plan.quick)[0]
            scores = score(model, self.rollouts[name], tau)
            rows.append(Row(name, label, seed, scores, kind, trained_on, train_seconds, train_iterations))
            if name == "reference":
                _log(f"  {label} (seed {seed}) reference: revisited {scores.mse_revisited:.5f} "
                     f"novel {scores.mse_novel:.5f} late {scores.mse_revisited_late_half:.5f}")
        return rows

    def save_progress(self) -> None:
        """Every row so far to ``run_dir/rows.json`` (atomically: the previous save or this one, never
        half of one), so a crash late in a long run loses no measurement."""
        payload = {"rows": [row.to_dict() for row in self.rows], "sweep": self.sweep,
                   "seeds": self.seeds_info, "wall_seconds": self.wall_seconds}
        write_text(self.plan.run_dir / "rows.json", json.dumps(json_safe(payload)))

    def validate(self, model: WorldModel) -> float:
        tau = CONDITIONS["reference"].lengths(self.plan.quick)[0]
        return score(model, self.validation, tau).mse_revisited

    # ---- the jobs (each runs in a worker process: ``Scheduler``)

    def gtmsm_config(self, seed: int, label: str):
        """The training config of the GTM-SM variant ``label`` on ``seed``: its own run folder (the default's
        is gtmsm-seed<N>), the default's preset from ``--preset``, the debug sizes in a quick run."""
        plan = self.plan
        preset = plan.preset if label == GTMSM_NAME else GTMSM_VARIANTS[label]
        variant = "" if label == GTMSM_NAME else f"{GTMSM_VARIANTS[label]}-"
        overrides: dict[str, Any] = dict(seed=seed, device=plan.device, threads=plan.threads, eval_every=0,
                                         out_dir=str(plan.run_dir / f"gtmsm-{variant}seed{seed}"), overwrite=True,
                                         progress=plan.progress)
        if plan.quick:  # the debug preset's sizes, the variant's wall model
            overrides.update(iterations=6, vae_warmup_iters=4, wall_model=make_config(preset).model.wall_model)
        else:
            overrides.update(eval_sequences=8)  # train()'s closing evaluation; ours is in evaluate()
        return preset, make_config("debug" if plan.quick else preset, **overrides)

    def budget(self, config: Any, seed: int, **changes: Any) -> Budget:
        """The peers' budget on ``seed``: GTM-SM's batch, sequence length, tau and keys."""
        schedule = config.schedule
        return dataclasses.replace(Budget(iterations=10**9, batch_size=schedule.batch_size, seq_len=schedule.seq_len,
                                          tau=schedule.tau, device=self.plan.device, seed=seed,
                                          first_key=schedule.vae_warmup_iters), **changes)

    def bounds_job(self) -> list[Row]:
        """The bounds and references that need no trained model (they do not depend on a training seed)."""
        _, config = self.gtmsm_config(self.plan.seeds[0], GTMSM_NAME)
        dataset_mean = DatasetMean()
        dataset_mean.fit(make_sampler(config), self.budget(config, self.plan.seeds[0]))
        rows = self.evaluate(dataset_mean, dataset_mean.name, None, "bound", "8 batches of the training distribution")
        for model in (MemorisationMean(), CopyLastObserved()):
            rows += self.evaluate(model, model.name, None, "bound", "none (reads the memorised crops)")
        for model in (LocaliseLookup(), LocaliseCanvas()):
            rows += self.evaluate(model, model.name, None, "no learning",
                                  "none: path integration (blocked iff the crop did not change) and raw memorised crops")
        for model in (OracleMemory(), CanvasOracle()):
            rows += self.evaluate(model, model.name, None, "oracle", "none (reads the true positions)")
        return rows

    def gtmsm_job(self, seed: int, label: str) -> dict[str, Any]:
        """Train one GTM-SM variant on ``seed`` and return its rows, and for the default the rows built on its
        VAE (the PPO row, the oracle-position VAE, the floor) and its training CPU seconds (the peers' 1×).
        A stop by SIGINT/SIGTERM comes back as ``{"interrupted": ...}`` (its checkpoint written)."""
        plan = self.plan
        preset, config = self.gtmsm_config(seed, label)
        _log(f"[seed {seed}] training {label} (preset {preset}, wall model {config.model.wall_model}) ...")
        cpu_before = time.process_time()
        try:
            trained = train(config, progress=plan.progress)
        except TrainingInterrupted as stop:
            return {"interrupted": (stop.signal_name, stop.step, str(stop.checkpoint))}
        cpu_seconds = time.process_time() - cpu_before
        model = trained.model.to(plan.device).eval()
        _log(f"[seed {seed}] {label} trained in {cpu_seconds:.0f} CPU s ({trained.iterations} steps)")
        trained_on = (f"{TRAINING_DISTRIBUTION}; preset {preset}: {config.schedule.vae_warmup_iters} VAE "
                      f"warm-up + {config.schedule.iterations} main steps")
        predictor = GTMSMPredictor(model, device=plan.device)
        rows = self.evaluate(predictor, label, seed, "GTM-SM", trained_on, cpu_seconds, trained.iterations)
        if label == GTMSM_NAME:
            if self.ppo is not None:
                tau = CONDITIONS["reference"].lengths(plan.quick)[0]
                scores = score(predictor, self.ppo, tau)
                rows.append(Row("reference", PPO_NAME, seed, scores, "GTM-SM",
                                trained_on + "; memorisation actions by the PPO coverage policy at test time",
                                cpu_seconds, trained.iterations))
                _log(f"  {PPO_NAME} (seed {seed}): mse {scores.mse:.5f} novel fraction {1 - scores.fraction_revisited:.3f}")
            rows += self.evaluate(OraclePositionVAE(model), OraclePositionVAE.name, seed, "oracle",
                                  "GTM-SM's VAE (this seed)")
            rows += self.evaluate(Floor(model, plan.device), Floor.name, seed, "oracle",
                                  "GTM-SM's VAE (this seed); decodes the true future crops")
        return {"rows": rows, "cpu_seconds": cpu_seconds, "config": config}

    def sweep_job(self, family: str, index: int, seed: int, one_x: float) -> dict[str, Any]:
        """Train sweep candidate ``index`` of ``family`` for ``SWEEP_FRACTION`` of the 1× budget (snapshot at
        half that) and return its record: validation revisited MSE at both."""
        candidate = sweep_candidates(self.plan.quick)[family][index]
        _, config = self.gtmsm_config(seed, GTMSM_NAME)
        end = one_x * SWEEP_FRACTION
        early = end / 2
        model = candidate.factory()
        model.fit(make_sampler(config), self.budget(config, seed, lr=candidate.lr, max_seconds=end,
                                                    snapshot_seconds=[early]))
        final = model.latest()
        at_early = model.use_snapshot(early)
        val_early = self.validate(model)
        model.restore(final)
        val_end = self.validate(model)
        _log(f"  sweep {family} [{candidate.label}]: {model.iterations_done} steps, validation revisited MSE "
             f"{val_early:.5f} at {early:.0f} s, {val_end:.5f} at {model.train_seconds:.0f} s")
        return {"family": family, "id": candidate.id, "candidate": candidate.label, "lr": candidate.lr,
                "seed": seed, "seconds_early": early, "iterations_early": at_early["iterations"],
                "val_mse_revisited_early": val_early, "seconds_end": model.train_seconds,
                "iterations_end": model.iterations_done, "val_mse_revisited_end": val_end}

    def peer_job(self, family: str, index: int, seed: int, one_x: float) -> list[Row]:
        """Train ``family``'s chosen candidate (``index``) from scratch on ``seed`` to 1× and return its rows."""
        candidate = sweep_candidates(self.plan.quick)[family][index]
        _, config = self.gtmsm_config(seed, GTMSM_NAME)
        peer = candidate.factory()
        _log(f"[seed {seed}] fitting {family} [{candidate.label}] to 1× ({one_x:.0f} CPU s) ...")
        peer.fit(make_sampler(config), self.budget(config, seed, lr=candidate.lr, max_seconds=one_x))
        return self.evaluate(peer, f"{family} @1×", seed, FAMILY_KIND[family],
                             f"{TRAINING_DISTRIBUTION}; GTM-SM's sampler and keys", peer.train_seconds,
                             peer.iterations_done)

    def plugin_rows(self, spec: str, cls: type, seed: int, sampler: Any, budget: Budget) -> None:
        """Build, fit and evaluate one plug-in on ``seed`` at 1× under its time limit; add its rows,
        or, if it fails in any way (``plugins.PluginFailed``), one row per condition marked failed
        with the reason. A plug-in that failed on an earlier seed is not run again."""
        label = f"{cls.name if isinstance(getattr(cls, 'name', None), str) else spec} @1×"
        kind = "oracle" if getattr(cls, "uses_true_positions", False) is True else MEMORY_PEER
        trained_on = f"{TRAINING_DISTRIBUTION} (plug-in {spec})"
        self.plugin_labels.add(label)
        earlier = self.failed_plugins.get(spec)
        if earlier is not None:
            self.add_failed_rows(label, seed, kind, trained_on, f"not run (failed on seed {earlier})")
            return
        guard = Guard(self.plan.plugin_time_limit(budget.max_seconds), who=f"plug-in {spec}")
        try:
            model = guard.call("the constructor", cls)
            label, kind = f"{plugin_name(model)} @1×", "oracle" if model.uses_true_positions else MEMORY_PEER
            self.plugin_labels.add(label)
            _log(f"[seed {seed}] fitting plug-in {label} (limit {guard.limit_s:.0f} s) ...")
            before = guard.used_s
            guard.call("fit", model.fit, sampler, budget)
            fit_seconds = guard.used_s - before
            iterations = guard.call("iterations_done", getattr, model, "iterations_done", None)
            rows = []
            for name in self.plan.conditions:
                rollouts, tau = self.rollouts[name], CONDITIONS[name].lengths(self.plan.quick)[0]
                predicted = checked_predictions(model, rollouts, tau, guard, name)
                rows.append(Row(name, label, seed, prediction_metrics(predicted, rollouts, tau), kind, trained_on,
                                fit_seconds, iterations if isinstance(iterations, int) else None))
        except PluginFailed as failure:
            _log(f"[seed {seed}] plug-in {spec} failed: {failure.reason}; its rows are marked failed")
            self.failed_plugins[spec] = seed
            self.add_failed_rows(label, seed, kind, trained_on, failure.reason)
            return
        self.rows.extend(rows)
        reference = next((row.scores for row in rows if row.condition == "reference"), None)
        if reference is not None:
            _log(f"  {label} (seed {seed}) reference: revisited {reference.mse_revisited:.5f} "
                 f"novel {reference.mse_novel:.5f} late {reference.mse_revisited_late_half:.5f}")

    def add_failed_rows(self, label: str, seed: int, kind: str, trained_on: str, reason: str) -> None:
        """One row per condition for a model that produced no scores on ``seed``, saying why."""
        for name in self.plan.conditions:
            rollouts, tau = self.rollouts[name], CONDITIONS[name].lengths(self.plan.quick)[0]
            scores = failed_scores(tau, rollouts.observations.shape[1] - tau, len(rollouts))
            self.rows.append(Row(name, label, seed, scores, kind, trained_on, failed=reason))

class _Inline:
    """A one-worker stand-in for the process pool: runs each job when it is submitted."""

    def submit(self, function, *args) -> Future:
        future: Future = Future()
        future.set_result(function(*args))  # an error is raised here, at once, not after the other jobs
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


STOP_GRACE_S = 30.0
"""How long a stopped run waits for its GTM-SM trainings to write their checkpoints before ending the workers."""

_HARNESS: Harness | None = None
"""The worker process's harness (inherited from the parent by fork: rollouts and test sets are built once)."""


def _start_worker(harness: Harness, pooled: bool = True) -> None:
    """A worker's set-up: the harness, its torch threads; a pooled worker ignores SIGINT and SIGTERM, which
    only the parent acts on (``Scheduler.stop`` forwards them to GTM-SM's training, which stops at a safe
    step; anything else a worker runs is ended)."""
    import torch

    global _HARNESS
    _HARNESS = harness
    if pooled:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    plan = harness.plan
    torch.set_num_threads(plan.threads or max(1, (os.cpu_count() or 1) // plan.workers))


def _job(method: str, *args: Any) -> Any:
    return getattr(_HARNESS, method)(*args)


class Scheduler:
    """Runs the plan's jobs in ``plan.workers`` processes, each job as soon as what it needs exists:

    * every GTM-SM variant on every seed (the default first: its CPU seconds are the peers' 1× budget on
      that seed), and the bounds;
    * once the first seed's default is trained, every sweep candidate of every peer family on that seed;
    * once a family's sweep is decided and a seed's 1× is known, that family's winner, trained from scratch
      to 1× on that seed.

    Each job trains and evaluates in its own process and hands back rows, so timing is per process (CPU
    seconds) and two workers do not share a budget. The rows are kept in one fixed order (bounds, then
    per seed GTM-SM's and the peers') whatever order the jobs end in."""

    def __init__(self, harness: Harness) -> None:
        self.harness, self.plan = harness, harness.plan
        self.pending: dict[Future, tuple[str, tuple]] = {}
        self.results: dict[tuple, list[Row]] = {}
        self.one_x: dict[int, float] = {}
        self.configs: dict[int, Any] = {}
        self.sweeps: dict[str, dict[int, dict[str, Any]]] = {}
        self.chosen: dict[str, int] = {}
        self.candidates = {family: len(c) for family, c in sweep_candidates(self.plan.quick).items()}
        if not self.plan.sweep:  # --no-sweep: every family's first candidate, on every seed as it comes
            self.chosen = {family: 0 for family in self.candidates}

    def submit(self, pool: Any, key: tuple, method: str, *args: Any) -> None:
        self.pending[pool.submit(_job, method, *args)] = (method, key)

    def run(self, pool: Any) -> None:
        plan = self.plan
        for seed in plan.seeds:
            self.submit(pool, ("gtmsm", seed, GTMSM_NAME), "gtmsm_job", seed, GTMSM_NAME)
        self.submit(pool, ("bounds",), "bounds_job")
        for seed in plan.seeds:
            for label in GTMSM_VARIANTS:
                if label != GTMSM_NAME:
                    self.submit(pool, ("gtmsm", seed, label), "gtmsm_job", seed, label)
        while self.pending:
            done, _ = wait(list(self.pending), return_when=FIRST_COMPLETED)
            for future in done:
                method, key = self.pending.pop(future)
                self.finished(pool, method, key, future.result())
            self.harness.rows = [row for k in self.order() for row in self.results.get(k, [])]
            self.harness.save_progress()
        missing = [key for key in self.order() if key not in self.results]
        if missing:
            raise RuntimeError(f"the comparison's scheduler left jobs unrun: {missing}")

    def stop(self, pool: Any, signal_name: str) -> GTMSMInterrupted | None:
        """After the parent was stopped (``signal_name``) or a job failed: forward the signal to the workers, so a
        GTM-SM training stops at its next step and writes its checkpoint; wait up to ``STOP_GRACE_S`` for
        those jobs; end every worker. Returns the stop of a GTM-SM training it caught (None if none)."""
        processes = [p for p in getattr(pool, "_processes", {}).values() if p.is_alive()]
        for process in processes:
            os.kill(process.pid, getattr(signal, signal_name))
        training = [f for f, (method, _) in self.pending.items() if method == "gtmsm_job" and f.running()]
        done, _ = wait(training, timeout=STOP_GRACE_S) if training else (set(), set())
        for process in processes:
            if process.is_alive():
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        for future in done:
            result = future.result() if future.exception() is None else None
            if result and "interrupted" in result:
                name, step, checkpoint = result["interrupted"]
                return GTMSMInterrupted(TrainingInterrupted(name, step, Path(checkpoint)), self.pending[future][1][1])
        return None

    def finished(self, pool: Any, method: str, key: tuple, result: Any) -> None:
        plan = self.plan
        if method == "gtmsm_job":
            if "interrupted" in result:
                signal_name, step, checkpoint = result["interrupted"]
                raise GTMSMInterrupted(TrainingInterrupted(signal_name, step, Path(checkpoint)), key[1])
            self.results[key] = result["rows"]
            seed, label = key[1], key[2]
            if label != GTMSM_NAME:
                return
            self.one_x[seed], self.configs[seed] = result["cpu_seconds"], result["config"]
            self.harness.seeds_info.append({"seed": seed, "gtmsm_seconds": result["cpu_seconds"],
                                            "gtmsm_config": result["config"].flat(),
                                            "budget": dataclasses.asdict(self.harness.budget(result["config"], seed))})
            self.harness.seeds_info.sort(key=lambda info: plan.seeds.index(info["seed"]))
            if seed == plan.seeds[0] and plan.sweep:
                for family, count in self.candidates.items():
                    for index in range(count):
                        self.submit(pool, ("sweep", family, index), "sweep_job", family, index, seed, self.one_x[seed])
            for family, index in self.chosen.items():
                self.submit(pool, ("peer", seed, family), "peer_job", family, index, seed, self.one_x[seed])
        elif method == "sweep_job":
            family, index = key[1], key[2]
            self.sweeps.setdefault(family, {})[index] = result
            if len(self.sweeps[family]) == self.candidates[family]:
                records = [self.sweeps[family][i] for i in range(self.candidates[family])]
                best = min(range(len(records)), key=lambda i: records[i]["val_mse_revisited_end"])
                for i, record in enumerate(records):
                    record["chosen"] = i == best
                self.harness.sweep.extend(records)
                self.chosen[family] = best
                for seed in plan.seeds:
                    if seed in self.one_x:
                        self.submit(pool, ("peer", seed, family), "peer_job", family, best, seed, self.one_x[seed])
        else:
            self.results[key] = result

    def order(self) -> list[tuple]:
        """The rows' fixed order."""
        keys: list[tuple] = [("bounds",)]
        for seed in self.plan.seeds:
            keys += [("gtmsm", seed, label) for label in GTMSM_VARIANTS]
            keys += [("peer", seed, family) for family in self.candidates]
        return keys


def run(plan: Plan) -> Harness:
    """Train and evaluate everything the plan asks for, in ``plan.workers`` processes; then the plug-ins,
    one seed at a time in this process. Returns the harness with its rows."""
    import torch

    if plan.threads:
        torch.set_num_threads(plan.threads)
    check_plan(plan)  # fail before any training
    started = time.perf_counter()
    harness = Harness(plan)
    scheduler = Scheduler(harness)
    pool = (_Inline() if plan.workers == 1 else
            ProcessPoolExecutor(plan.workers, mp_context=multiprocessing.get_context("fork"),
                                initializer=_start_worker, initargs=(harness,)))
    if plan.workers == 1:
        _start_worker(harness, pooled=False)
    try:
        scheduler.run(pool)
    except BaseException as stop:
        if plan.workers > 1:
            caught = scheduler.stop(pool, getattr(stop, "signal_name", None) or interrupt_signal(stop))
            if caught is not None and not isinstance(stop, GTMSMInterrupted):
                raise caught from None
        raise
    pool.shutdown()
    for seed in plan.seeds:
        for spec, cls in harness.plugin_classes.items():
            config = scheduler.configs[seed]
            harness.plugin_rows(spec, cls, seed, make_sampler(config),
                                harness.budget(config, seed, max_seconds=scheduler.one_x[seed]))
            harness.save_progress()
    harness.wall_seconds = time.perf_counter() - started
    harness.save_progress()
    return harness
