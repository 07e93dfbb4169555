"""The benchmarks' targets (the bars docs/results.md reports runs against), defined once, and the
checks that judge a run against them.

The per-run targets of one trained GTM-SM (k-NN hit, ratio to the VAE floor, drift, novel steps
against the canvas oracle) live with the protocol in ``gtmsm_model.evaluate.TARGETS`` (``gtmsm
run`` checks them); the training benchmark reads their bounds from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gtmsm_model.baselines import MemorisationMean
from gtmsm_model.evaluate import TARGETS as RUN_TARGETS
from gtmsm_model.evaluate import GTMSMEvaluation, GTMSMPredictor

GTMSM_NAME = GTMSMPredictor.name
TRIVIAL_NAME = MemorisationMean.name
GTMSM_VARIANTS = {GTMSM_NAME: "quick", "GTM-SM, learned localiser": "learned", "GTM-SM, seed formulation": "seed-gate"}
"""The comparison's GTM-SM rows → their training presets: the default (edges: blocked moves read off the
pixels of a sliding window), the learned localiser (no pixel-shift rule) and the 2018 seed's absolute gate."""


@dataclass(frozen=True)
class CompareTargets:
    """The comparison benchmark's targets."""

    best_peer_to_trivial: float = 0.5
    """Reference condition: the best learned generic peer's revisited MSE / the memorisation mean's, at most."""
    full_run_minutes: float = 90.0
    """The full benchmark's wall-clock with --threads 1 on 2 cores, at most."""
    quick_run_seconds: float = 120.0
    """--quick's wall-clock, at most."""


@dataclass(frozen=True)
class TrainingTargets:
    """The training benchmark's targets (each checked per seed)."""

    ratio_to_floor: float = RUN_TARGETS.ratio_to_vae_revisited
    """Revisited MSE / VAE floor, centre and random start."""
    knn_hit: float = RUN_TARGETS.knn_hit_rate
    """k-NN hit rate, centre and random start."""
    drift: float = RUN_TARGETS.drift_ratio
    """Revisited MSE, last 64 / first 64 predicted steps, centre and random start."""
    novel_to_canvas_oracle: float = RUN_TARGETS.ratio_to_canvas_oracle_novel
    """Novel-step MSE / the canvas oracle's, default images (centre) and photos."""
    default_revisited_mse: float = 0.0015
    """Revisited MSE on the default images (centre start)."""
    photo_revisited_mse: float = 0.001
    """Revisited MSE on natural-photo patches."""
    train_seconds: float = 300.0
    """Training time per seed (the quick preset), CPU seconds of the training process."""
    maze_ratio_stretch: float = 2.0
    """Stretch goal: maze revisited MSE / VAE floor."""
    stress_ratio_to_floor: float = 1.1
    """Photos and the flat-area stress sets, centre / random start / tau 64: revisited MSE / VAE floor."""
    stress_max_rollout: float = 0.01
    """... the worst rollout's revisited MSE (no rollout loses its place) ..."""
    stress_drift: float = 1.1
    """... and the drift (revisited MSE, last 64 / first 64 predicted steps)."""
    learned_ratio_to_floor: float = 1.2
    """wall_model "learned": revisited MSE / VAE floor, centre and random start (in place of ratio_to_floor) ..."""
    learned_flat_ratio_to_floor: float = 1.5
    """... and on the flat-area stress sets (its only stress target)."""


COMPARE_TARGETS = CompareTargets()
TRAINING_TARGETS = TrainingTargets()


STRESS_CONDITIONS = tuple(f"{kind}{variant}" for kind in ("photos", "flat-photos", "flat-scenes")
                          for variant in ("", "-random", "-tau64"))
"""The training benchmark's stress conditions (photos and flat areas; centre, random start, tau 64)."""


def check_training(evaluations: dict[str, GTMSMEvaluation], cpu_seconds: float,
                   targets: TrainingTargets = TRAINING_TARGETS, wall_model: str = "edges",
                   preset: str = "quick") -> dict[str, bool]:
    """PASS/FAIL of each training target one seed can be judged on (only the conditions evaluated),
    ``evaluations`` keyed by the training benchmark's condition names. The seed's formulation
    (``absolute``) is reported against the default's targets; the ``learned`` wall model has its own."""
    passed: dict[str, bool] = {}
    if preset == "quick":
        passed["train_cpu_seconds"] = cpu_seconds <= targets.train_seconds
    learned = wall_model == "learned"
    for name in ("centre", "random"):
        if name in evaluations:
            s, d = evaluations[name].scores, evaluations[name].diagnostics
            bound = targets.learned_ratio_to_floor if learned else targets.ratio_to_floor
            passed[f"{name}_ratio"] = d.ratio_to_vae_revisited <= bound
            if learned:
                continue
            passed[f"{name}_knn_hit"] = d.knn_hit_rate >= targets.knn_hit
            passed[f"{name}_drift"] = s.drift_ratio <= targets.drift
    for name, bound in (("centre", targets.default_revisited_mse), ("photos", targets.photo_revisited_mse)):
        if name in evaluations:
            s, d = evaluations[name].scores, evaluations[name].diagnostics
            passed[f"{name}_novel_vs_canvas_oracle"] = d.ratio_to_canvas_oracle_novel <= targets.novel_to_canvas_oracle
            passed[f"{name}_revisited_mse"] = s.mse_revisited <= bound
    for name in STRESS_CONDITIONS:
        if name not in evaluations:
            continue
        s, d = evaluations[name].scores, evaluations[name].diagnostics
        if learned:
            if name.startswith("flat-"):
                passed[f"{name}_ratio"] = d.ratio_to_vae_revisited <= targets.learned_flat_ratio_to_floor
            continue
        passed[f"{name}_ratio"] = d.ratio_to_vae_revisited <= targets.stress_ratio_to_floor
        passed[f"{name}_max_rollout"] = s.revisited_max <= targets.stress_max_rollout
        passed[f"{name}_drift"] = s.drift_ratio <= targets.stress_drift
    return passed


def check_comparison(summary: list[dict[str, Any]], wall_seconds: float, quick: bool,
                     targets: CompareTargets = COMPARE_TARGETS) -> list[dict[str, Any]]:
    """PASS/FAIL of each comparison target that this run can judge (``records.summarise``'s entries).
    A model that failed (a plug-in whose rows are marked ``failed``) is one FAIL line and takes no
    part in the other targets."""
    checks = []
    failed: dict[str, str] = {}
    for entry in summary:
        if entry.get("failed"):
            failed.setdefault(entry["model"], entry["failed"])
    for name, reason in failed.items():  # one line per failed model; its rows are judged by nothing else
        checks.append({"target": f"{name} ran to the end", "value": f"failed: {reason}", "passed": False})
    summary = [e for e in summary if e["model"] not in failed]
    reference = {e["model"]: e for e in summary if e["condition"] == "reference"}
    trivial = {e["condition"]: e["mse_revisited"] for e in summary if e["model"] == TRIVIAL_NAME}
    peers = {name: e for name, e in reference.items() if e["kind"] == "learned peer"}
    if peers and "reference" in trivial:
        best = min(peers.values(), key=lambda e: e["mse_revisited"])
        ratio = best["mse_revisited"] / trivial["reference"]
        checks.append({"target": f"reference: the best learned peer's revisited MSE ≤ {targets.best_peer_to_trivial:g}× "
                                 f"the memorisation mean's ({best['seeds']} seed(s))",
                       "value": f"{best['model']}: {best['mse_revisited']:.5f} = {ratio:.2f}× {trivial['reference']:.5f}",
                       "ratio": ratio, "passed": bool(ratio <= targets.best_peer_to_trivial)})
    for name, entry in peers.items():
        checks.append({"target": f"reference: {name} beats the memorisation mean on revisited steps",
                       "value": f"{entry['mse_revisited']:.5f} vs {trivial.get('reference', float('nan')):.5f}",
                       "passed": not entry["below_trivial"]})
    controls = [e for e in summary if e["kind"] == "control"]
    if controls:  # reported, not a target: a memory-less control is expected to stay near the trivial bar
        below = sum(e["below_trivial"] for e in controls)
        checks.append({"target": "memory-less controls (RSSM, LSTM), reported: cells below the memorisation mean",
                       "value": f"{below} of {len(controls)}", "passed": True, "report_only": True})
    limit = targets.quick_run_seconds if quick else targets.full_run_minutes * 60
    checks.append({"target": f"{'--quick' if quick else 'full benchmark'} wall-clock ≤ {limit / 60:g} min",
                   "value": f"{wall_seconds / 60:.1f} min", "passed": bool(wall_seconds <= limit)})
    return checks
