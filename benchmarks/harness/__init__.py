"""The one benchmark harness: everything a number in ``benchmarks/results`` depends on, defined once.

* ``conditions`` — the evaluation conditions and how their held-out rollouts are drawn;
* ``targets`` — the benchmarks' targets (the per-run ones come from ``gtmsm_model.evaluate``);
* ``records`` — one row per model, condition and seed, and the summary over seeds;
* ``models`` — the peers, their sweep candidates (by stable id), plug-in loading, chunked prediction;
* ``plugins`` — plug-ins built before training, run under a time limit, their predictions checked;
* ``plan`` and ``runner`` — what a comparison run does, checked before any training, and the run;
* ``report`` and ``figures`` — ``compare.md``/``.json``, ``peer_sweep.*`` and the plots.

``benchmarks/compare_models.py`` and ``benchmarks/train_gtmsm.py`` are thin plans over it.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout the benchmarks run from (the harness is never installed)."""
