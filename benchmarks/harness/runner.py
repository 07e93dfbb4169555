"""The comparison run: train GTM-SM and the peers on each seed, evaluate every model on every
condition, collect rows.

The budget design (see ``compare.md``): every learned model trains once per seed on the same
training distribution (GTM-SM's sampler) and is evaluated on every condition. The peers train for
GTM-SM's measured wall-clock on that seed (1×); on the seeds in ``slow_seeds`` the same run
continues to the slow multiple and is evaluated again. The RSSM and LSTM are chosen by a small
sweep on the first seed (each candidate trained for ``SWEEP_FRACTION`` of the 1× budget, picked by
revisited MSE on validation rollouts from the training distribution, the winner continued).
"""

from __future__ import annotations

import dataclasses
import json
import time
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
    Candidate,
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
    TrainedModel,
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
        self.winners: dict[str, tuple[Candidate, TrainedModel]] = {}
        self.pending_slow: list[tuple[Any, ...]] = []
        self.skipped: list[str] = []
        self.wall_seconds: float | None = None
        self.plugin_classes = {spec: load_model_class(spec) for spec in plan.plugins}
        self.plugin_labels: set[str] = set()
        """The rows' names of the plug-ins (``--model``)."""
        self.failed_plugins: dict[str, int] = {}
        """Plug-in spec → the seed it failed on."""

    # ---- evaluation

    def evaluate(self, model: WorldModel, label: str, seed: int | None, kind: str, trained_on: str,
                 train_seconds: float | None = None, train_iterations: int | None = None) -> None:
        for name in self.plan.conditions:
            tau = CONDITIONS[name].lengths(self.plan.quick)[0]
            scores = score(model, self.rollouts[name], tau)
            self.rows.append(Row(name, label, seed, scores, kind, trained_on, train_seconds, train_iterations))
            if name == "reference":
                _log(f"  {label} (seed {seed}) reference: revisited {scores.mse_revisited:.5f} "
                     f"novel {scores.mse_novel:.5f} late {scores.mse_revisited_late_half:.5f}")

    def save_progress(self) -> None:
        """Every row so far to ``run_dir/rows.json`` (atomically: the previous save or this one, never
        half of one), so a crash late in a long run loses no measurement."""
        payload = {"rows": [row.to_dict() for row in self.rows], "sweep": self.sweep,
                   "seeds": self.seeds_info, "skipped": self.skipped, "wall_seconds": self.wall_seconds}
        write_text(self.plan.run_dir / "rows.json", json.dumps(json_safe(payload)))

    def validate(self, model: WorldModel) -> float:
        tau = CONDITIONS["reference"].lengths(self.plan.quick)[0]
        return score(model, self.validation, tau).mse_revisited

    def bounds(self, config_sampler: Any, budget: Budget) -> None:
        """The bounds that need no trained model, once (they do not depend on a training seed)."""
        dataset_mean = DatasetMean()
        dataset_mean.fit(config_sampler, budget)
        self.evaluate(dataset_mean, dataset_mean.name, None, "bound", "8 batches of the training distribution")
        for model in (MemorisationMean(), CopyLastObserved()):
            self.evaluate(model, model.name, None, "bound", "none (reads the memorised crops)")
        for model in (LocaliseLookup(), LocaliseCanvas()):
            self.evaluate(model, model.name, None, "no learning",
                          "none: path integration (blocked iff the crop did not change) and raw memorised crops")
        for model in (OracleMemory(), CanvasOracle()):
            self.evaluate(model, model.name, None, "oracle", "none (reads the true positions)")

    # ---- one seed

    def gtmsm(self, seed: int, preset: str, label: str = GTMSM_NAME):
        plan = self.plan
        variant = "" if label == GTMSM_NAME else f"{GTMSM_VARIANTS[label]}-"  # the default's folder: gtmsm-seed<N>
        overrides: dict[str, Any] = dict(seed=seed, device=plan.device, threads=plan.threads, eval_every=0,
                                         out_dir=str(plan.run_dir / f"gtmsm-{variant}seed{seed}"), overwrite=True,
                                         progress=plan.progress)
        if plan.quick:  # the debug preset's sizes, the variant's wall model
            overrides.update(iterations=6, vae_warmup_iters=4, wall_model=make_config(preset).model.wall_model)
        else:
            overrides.update(eval_sequences=8)  # train()'s closing evaluation; ours is below
        config = make_config("debug" if plan.quick else preset, **overrides)
        _log(f"[seed {seed}] training GTM-SM (preset {preset}, wall model {config.model.wall_model}) ...")
        cpu_before = time.process_time()
        try:
            trained = train(config, progress=plan.progress)
        except TrainingInterrupted as stop:
            raise GTMSMInterrupted(stop, seed) from None
        return trained, config, time.process_time() - cpu_before

    def gtmsm_rows(self, seed: int) -> tuple[Any, float]:
        """Train every GTM-SM variant on ``seed`` and add its rows, and for the default the rows built on
        its VAE (the PPO row, the oracle-position VAE, the floor). Returns the default's config and its
        training CPU seconds (the 1× budget of the peers)."""
        plan = self.plan
        default = None
        for label, preset in GTMSM_VARIANTS.items():
            preset = plan.preset if label == GTMSM_NAME else preset  # --preset chooses the default's
            trained, config, cpu_seconds = self.gtmsm(seed, preset, label)
            model = trained.model.to(plan.device).eval()
            _log(f"[seed {seed}] {label} trained in {cpu_seconds:.0f} CPU s ({trained.iterations} steps)")
            trained_on = (f"{TRAINING_DISTRIBUTION}; preset {preset}: {config.schedule.vae_warmup_iters} VAE "
                          f"warm-up + {config.schedule.iterations} main steps")
            predictor = GTMSMPredictor(model, device=plan.device)
            self.evaluate(predictor, label, seed, "GTM-SM", trained_on, cpu_seconds, trained.iterations)
            if label != GTMSM_NAME:
                continue
            default = (config, cpu_seconds)
            if self.ppo is not None:
                tau = CONDITIONS["reference"].lengths(plan.quick)[0]
                scores = score(predictor, self.ppo, tau)
                self.rows.append(Row("reference", PPO_NAME, seed, scores, "GTM-SM",
                                     trained_on + "; memorisation actions by the PPO coverage policy at test time",
                                     cpu_seconds, trained.iterations))
                _log(f"  {PPO_NAME} (seed {seed}): mse {scores.mse:.5f} novel fraction {1 - scores.fraction_revisited:.3f}")
            self.evaluate(OraclePositionVAE(model), OraclePositionVAE.name, seed, "oracle", "GTM-SM's VAE (this seed)")
            self.evaluate(Floor(model, plan.device), Floor.name, seed, "oracle",
                          "GTM-SM's VAE (this seed); decodes the true future crops")
        assert default is not None
        return default

    def run_seed(self, seed: int) -> None:
        plan = self.plan
        config, one_x = self.gtmsm_rows(seed)

        sampler = make_sampler(config)
        budget = Budget(iterations=10**9, batch_size=config.schedule.batch_size, seq_len=config.schedule.seq_len,
                        tau=config.schedule.tau, device=plan.device, seed=seed,
                        first_key=config.schedule.vae_warmup_iters)
        if not any(row.model == DatasetMean.name for row in self.rows):
            self.bounds(sampler, budget)

        slow = seed in plan.slow_seeds and plan.slow_multiple > 1
        peers: list[tuple[str, TrainedModel, float]] = []
        for family, candidates in sweep_candidates(plan.quick).items():
            if family not in self.winners:
                self.winners[family] = self.run_sweep(family, candidates, sampler, budget, one_x, seed)
                chosen, winner = self.winners[family]
                peers.append((family, winner, chosen.lr))
            else:
                chosen, _ = self.winners[family]
                peers.append((family, chosen.factory(), chosen.lr))
        trained_on = f"{TRAINING_DISTRIBUTION}; GTM-SM's sampler and keys"
        for family, peer, lr in peers:
            peer_budget = dataclasses.replace(budget, lr=lr, max_seconds=one_x)
            _log(f"[seed {seed}] fitting {family} to 1× ({one_x:.0f} CPU s) ...")
            peer.fit(sampler, peer_budget)
            self.evaluate(peer, f"{family} @1×", seed, FAMILY_KIND[family], trained_on, peer.train_seconds,
                          peer.iterations_done)
            if slow:  # continued after every seed's 1× rows exist (see extend_slow)
                self.pending_slow.append((seed, family, peer, sampler,
                                          dataclasses.replace(peer_budget, max_seconds=plan.slow_multiple * one_x),
                                          trained_on))
        self.seeds_info.append({"seed": seed, "gtmsm_seconds": one_x, "gtmsm_config": config.flat(),
                                "budget": dataclasses.asdict(budget)})
        self.save_progress()  # this seed's rows are kept whatever a plug-in does next
        for spec, cls in self.plugin_classes.items():
            self.plugin_rows(spec, cls, seed, sampler, dataclasses.replace(budget, max_seconds=one_x))
            self.save_progress()

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

    def extend_slow(self, started: float) -> None:
        """Continue the slow seeds' peers to the slow multiple, each only if the projected
        wall-clock stays within ``plan.time_limit_minutes`` (what is skipped is recorded)."""
        plan = self.plan
        for seed, family, peer, sampler, budget, trained_on in self.pending_slow:
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
            self.evaluate(peer, label, seed, FAMILY_KIND[family], trained_on, peer.train_seconds, peer.iterations_done)
            self.save_progress()
        self.pending_slow = []

    def run_sweep(self, family: str, candidates: list[Candidate], sampler, budget: Budget, one_x: float,
                  seed: int) -> tuple[Candidate, TrainedModel]:
        """Train each candidate for ``SWEEP_FRACTION`` of the 1× budget (snapshot at half that),
        pick the lowest validation revisited MSE at the end, return the winner (to be continued)."""
        if not self.plan.sweep:
            return candidates[0], candidates[0].factory()
        best: tuple[float, Candidate, TrainedModel] | None = None
        end = one_x * SWEEP_FRACTION
        early = end / 2
        for candidate in candidates:
            model = candidate.factory()
            model.fit(sampler, dataclasses.replace(budget, lr=candidate.lr, max_seconds=end, snapshot_seconds=[early]))
            final = model.latest()
            at_early = model.use_snapshot(early)
            val_early = self.validate(model)
            model.restore(final)
            val_end = self.validate(model)
            record = {"family": family, "id": candidate.id, "candidate": candidate.label, "lr": candidate.lr,
                      "seed": seed, "seconds_early": early, "iterations_early": at_early["iterations"],
                      "val_mse_revisited_early": val_early, "seconds_end": model.train_seconds,
                      "iterations_end": model.iterations_done, "val_mse_revisited_end": val_end}
            self.sweep.append(record)
            _log(f"  sweep {family} [{candidate.label}]: {model.iterations_done} steps, validation revisited MSE "
                 f"{val_early:.5f} at {early:.0f} s, {val_end:.5f} at {model.train_seconds:.0f} s")
            if best is None or val_end < best[0]:
                best = (val_end, candidate, model)
        for record in self.sweep:
            if record["family"] == family:
                record["chosen"] = record["id"] == best[1].id
        return best[1], best[2]


def run(plan: Plan) -> Harness:
    """Train and evaluate everything the plan asks for; returns the harness with its rows."""
    import torch

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
