"""The comparison's job scheduler (``benchmarks.harness.runner.Scheduler``) with a stand-in harness and pool:
every job runs whatever order they end in, rows keep one order, and a failing job stops the run at once."""

from __future__ import annotations

import sys
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import runner  # noqa: E402
from benchmarks.harness.targets import GTMSM_NAME, GTMSM_VARIANTS  # noqa: E402
from gtmsm_model.baselines import Budget  # noqa: E402


class FakeConfig:
    def flat(self) -> dict:
        return {}


class FakeHarness:
    """Jobs that return a tagged row (a string) instead of training."""

    def __init__(self, seeds: list[int], sweep: bool) -> None:
        self.plan = SimpleNamespace(seeds=seeds, sweep=sweep, quick=True)
        self.rows: list = []
        self.sweep: list = []
        self.seeds_info: list = []
        self.saves = 0

    def budget(self, config, seed, **changes):
        return Budget()

    def save_progress(self) -> None:
        self.saves += 1

    def gtmsm_job(self, seed, label):
        return {"rows": [f"gtmsm {label} {seed}"], "cpu_seconds": 10.0 + seed, "config": FakeConfig()}

    def bounds_job(self):
        return ["bounds"]

    def sweep_job(self, family, index, seed, one_x):
        return {"family": family, "id": f"{family}-{index}", "val_mse_revisited_end": 1.0 / (index + 1)}

    def peer_job(self, family, index, seed, one_x):
        return [f"peer {family} #{index} {seed} {one_x:g}"]


class ShuffledPool:
    """Runs nothing when submitted; ``runner.wait`` (patched) then finishes the newest job first."""

    def __init__(self, harness: FakeHarness) -> None:
        self.harness, self.queue = harness, []

    def submit(self, function, method, *args):
        future: Future = Future()
        self.queue.append((future, method, args))
        return future

    def finish_newest(self, futures, return_when=None):
        future, method, args = next(item for item in reversed(self.queue) if item[0] in futures)
        self.queue.remove((future, method, args))
        future.set_result(getattr(self.harness, method)(*args))
        return {future}, set()


@pytest.mark.parametrize("sweep", [True, False])
def test_every_job_runs_and_rows_keep_one_order_whatever_order_jobs_end_in(monkeypatch, sweep):
    harness = FakeHarness([0, 1, 2], sweep)
    pool = ShuffledPool(harness)
    monkeypatch.setattr(runner, "wait", pool.finish_newest)  # seed 2 ends first, then 1, then 0
    scheduler = runner.Scheduler(harness)
    scheduler.run(pool)
    families = list(scheduler.candidates)
    chosen = {family: (scheduler.candidates[family] - 1 if sweep else 0) for family in families}  # lowest score
    expected = ["bounds"]
    for seed in (0, 1, 2):
        expected += [f"gtmsm {label} {seed}" for label in GTMSM_VARIANTS]
        expected += [f"peer {family} #{chosen[family]} {seed} {10 + seed:g}" for family in families]
    assert harness.rows == expected  # every seed's peers, each with that seed's 1×, in one fixed order
    assert [info["seed"] for info in harness.seeds_info] == [0, 1, 2]
    if sweep:
        assert sorted(r["id"] for r in harness.sweep if r["chosen"]) == sorted(
            f"{family}-{chosen[family]}" for family in families)
    else:
        assert harness.sweep == []


def test_a_failing_job_stops_a_one_worker_run_at_once(monkeypatch):
    harness = FakeHarness([0, 1], sweep=False)
    monkeypatch.setattr(runner, "_HARNESS", harness)  # what _start_worker sets in a one-worker run
    calls = []

    def failing(seed, label):
        calls.append((seed, label))
        raise ValueError("broken training")

    harness.gtmsm_job = failing
    with pytest.raises(ValueError, match="broken training"):
        runner.Scheduler(harness).run(runner._Inline())
    assert calls == [(0, GTMSM_NAME)]  # not after every other seed and variant has trained
