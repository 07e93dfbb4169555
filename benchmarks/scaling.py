"""Scaling measurements: the data path, torch threads, longer memories and bigger worlds.

Parts (``--parts``, default all), each printed as a table and written to ``--out`` (.md + .json):

* ``data``: training batches/s from a folder of ``--folder-images`` PNG files, the old path
  (the folder decoded again for every batch: ``collect_rollouts(image_source=path)``) against
  the sampler (decoded once, one uint8 array).
* ``threads``: seconds per main-phase training step (``quick`` sizes, full-length sequences) with
  1 and 2 torch threads, on a quiet machine and with one busy process on another core, side by side.
* ``memory``: seconds per training step and peak resident memory as tau and the horizon grow
  (256 → 1024) and as the image grows (32 → 64); each configuration runs in its own process so the
  peak is its own.

    python benchmarks/scaling.py --parts data threads memory --out benchmarks/results/scaling
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gtmsm_cli.checks import GB, memory_problem, output_stem_problem
from gtmsm_cli.files import write_text
from gtmsm_cli.flags import bounded, fail, parse_dataclass
from gtmsm_cli.signals import run_script

PROG = "scaling.py"
PARTS = ("data", "threads", "memory")


@dataclass
class Args:
    """Options of benchmarks/scaling.py."""

    parts: list[str] = field(default_factory=lambda: list(PARTS))
    """Which measurements to run: data, threads, memory."""
    folder_images: int = bounded(1000, ge=1)
    """PNG files in the folder of the data-path measurement."""
    batches: int = bounded(5, ge=1)
    """Batches timed per data-path variant."""
    steps: int = bounded(6, ge=2)
    """Training steps timed per configuration (the first is a warm-up, not timed)."""
    out: str = "benchmarks/results/scaling"
    """Results path stem: writes OUT.md and OUT.json."""


# --------------------------------------------------------------------------- data path


def make_folder(path: Path, count: int) -> None:
    from PIL import Image

    from gtmsm_env.images import procedural_images

    for index, image in enumerate(procedural_images(count, seed=0, image_size=48)):
        Image.fromarray(image).save(path / f"{index:05d}.png")


FOLDER_IMAGE_BYTES = 48 * 48 * 3
"""One decoded image of the data-path folder (48x48 RGB); its PNG is at most about as big."""


def data_path_problem(args: Args) -> str | None:
    """Why the data-path folder cannot be built here: memory (the images are generated at once and
    decoded into one array, about twice their size) or the temporary folder's free space."""
    problem = memory_problem({"--folder-images": ("the folder's images, generated and decoded",
                                                  3 * args.folder_images * FOLDER_IMAGE_BYTES)})
    if problem is not None:
        return problem
    folder = tempfile.gettempdir()
    need, free = args.folder_images * (FOLDER_IMAGE_BYTES + 1024), shutil.disk_usage(folder).free
    if need > free:
        return (f"--folder-images: {args.folder_images} PNG files need about {need / GB:.1f} GB in {folder}, "
                f"which has {free / GB:.1f} GB free")
    return None


def data_path(args: Args) -> dict[str, Any]:
    from gtmsm_env.rollouts import collect_rollouts
    from gtmsm_model.data import RolloutSampler

    with tempfile.TemporaryDirectory() as folder:
        make_folder(Path(folder), args.folder_images)
        started = time.perf_counter()
        for key in range(args.batches):  # what every training batch did before: rebuild the source
            collect_rollouts(16, 288, seed=key, image_source=folder)
        before = args.batches / (time.perf_counter() - started)
        started = time.perf_counter()
        sampler = RolloutSampler(0, image_source=folder)
        build = time.perf_counter() - started
        batches = args.batches * 20
        started = time.perf_counter()
        for key in range(batches):
            sampler.sample(16, 288, key=key)
        after = batches / (time.perf_counter() - started)
    return {"folder_images": args.folder_images, "batch": "16 x 288 steps",
            "batches_per_second_before": before, "batches_per_second_after": after,
            "speedup": after / before, "one_time_decode_seconds": build}


# --------------------------------------------------------------------------- training steps


def step_seconds(overrides: dict[str, Any], threads: int, steps: int) -> dict[str, float]:
    """Seconds per full-length main-phase step and peak RSS (MB) of this process."""
    import torch

    from gtmsm_model.data import RolloutSampler
    from gtmsm_model.model import GTMSM
    from gtmsm_model.train import make_config, make_optimizer

    torch.set_num_threads(threads)
    if overrides.pop("_one_block", False):  # the prior KL as one (B, T, tau) block, as before chunking
        from gtmsm_model import memory

        memory.all_key_memory_kl.__defaults__ = (10**9,)
    config = make_config("quick", **overrides)
    torch.manual_seed(0)
    model = GTMSM(config.model)
    optimizer = make_optimizer(model, config)
    sampler = RolloutSampler(0, world=config.world)
    batches = [sampler.sample(config.schedule.batch_size, config.schedule.seq_len, key=k) for k in range(steps)]
    times = []
    for batch in batches:
        started = time.perf_counter()
        parts = model.loss(batch.observations, batch.actions, tau=config.schedule.tau, kl_weight=1.0)
        optimizer.zero_grad()
        parts["loss"].backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds_per_step": float(np.median(times[1:])), "peak_rss_mb": peak_mb}


def _child(queue: mp.Queue, overrides: dict[str, Any], threads: int, steps: int) -> None:
    try:
        queue.put(step_seconds(overrides, threads, steps))
    except Exception as error:  # reported in the table, e.g. out of memory
        queue.put({"error": f"{type(error).__name__}: {error}"})
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent says it once
        pass


def in_fresh_process(overrides: dict[str, Any], threads: int, steps: int) -> dict[str, Any]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, overrides, threads, steps), daemon=True)
    process.start()
    result = queue.get()
    process.join()
    return result


def busy_process() -> subprocess.Popen:
    """One process spinning on one core: the 'loaded machine' of the threads measurement."""
    return subprocess.Popen([sys.executable, "-c", "import signal\nsignal.signal(signal.SIGINT, signal.SIG_DFL)\n"
                             "while True: pass"])


def threads(args: Args) -> list[dict[str, Any]]:
    rows = []
    for load in ("quiet", "one busy process"):
        spinner = busy_process() if load != "quiet" else None
        try:
            for count in (1, 2):
                rows.append({"machine": load, "threads": count,
                             **in_fresh_process({}, count, args.steps)})
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    return rows


MEMORY_GRID = [
    ("tau 256 + 256", dict(tau=256, seq_len=512)),
    ("tau 512 + 512", dict(tau=512, seq_len=1024)),
    ("tau 1024 + 1024", dict(tau=1024, seq_len=2048)),
    ("tau 1024 + 1024, one block (before chunking)", dict(tau=1024, seq_len=2048, _one_block=True)),
    ("image 64, tau 256 + 256", dict(tau=256, seq_len=512, image_size=64)),
]


def memory(args: Args) -> list[dict[str, Any]]:
    baseline = in_fresh_process({"tau": 2, "seq_len": 4, "curriculum_start": 4}, 1, 2)["peak_rss_mb"]
    rows = []
    for name, overrides in MEMORY_GRID:
        result = in_fresh_process(dict(overrides), 1, min(args.steps, 3))
        if "peak_rss_mb" in result:
            result["training_mb"] = result["peak_rss_mb"] - baseline
        rows.append({"configuration": name, **{k: v for k, v in overrides.items() if not k.startswith("_")}, **result})
    reference = rows[0].get("training_mb")
    for row in rows[:3]:
        if reference and "training_mb" in row:
            row["linear_prediction_mb"] = reference * row["seq_len"] / rows[0]["seq_len"]
            row["ratio_to_linear"] = row["training_mb"] / row["linear_prediction_mb"]
    return rows


# --------------------------------------------------------------------------- output


def write(args: Args, results: dict[str, Any]) -> None:
    from gtmsm_model.run_folder import machine_description, package_versions

    record = {"command": "python " + " ".join(sys.argv), "machine": machine_description(),
              "packages": package_versions(), "args": {k: str(v) for k, v in asdict(args).items()}, **results}
    lines = ["# Scaling", "", f"`{record['command']}` — {record['machine']['date']}, "
             f"{record['machine']['platform']}, {record['machine']['cpu_count']} CPUs", ""]
    if "data" in results:
        d = results["data"]
        lines += ["## Data path (folder source)", "", "| path | batches/s |", "|---|---:|",
                  f"| before: folder decoded per batch ({d['folder_images']} PNGs) | {d['batches_per_second_before']:.2f} |",
                  f"| after: decoded once ({d['one_time_decode_seconds']:.1f} s), then reused | {d['batches_per_second_after']:.1f} |",
                  f"| speedup | {d['speedup']:.0f}× |", ""]
    if "threads" in results:
        lines += ["## Torch threads (quick sizes, one full-length training step)", "",
                  "| machine | threads | s/step |", "|---|---:|---:|"]
        lines += [f"| {r['machine']} | {r['threads']} | {r.get('seconds_per_step', float('nan')):.3f} |"
                  for r in results["threads"]]
        lines.append("")
    if "memory" in results:
        lines += ["## Longer memories, bigger images (1 thread, one training step)", "",
                  "| configuration | s/step | training memory (MB) | linear prediction from 256+256 | ratio |",
                  "|---|---:|---:|---:|---:|"]
        for r in results["memory"]:
            if "error" in r:
                lines.append(f"| {r['configuration']} | failed: {r['error'][:80]} | | | |")
                continue
            linear = f"{r['linear_prediction_mb']:.0f}" if "linear_prediction_mb" in r else "—"
            ratio = f"{r['ratio_to_linear']:.2f}" if "ratio_to_linear" in r else "—"
            lines.append(f"| {r['configuration']} | {r['seconds_per_step']:.2f} | {r['training_mb']:.0f} | {linear} | {ratio} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".md"), text)
    write_text(out.with_suffix(".json"), json.dumps(record, indent=1))


def main(argv: list[str] | None = None) -> None:
    args = parse_dataclass(Args, argv, prog=PROG, description=__doc__)
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        fail(PROG, f"--parts: unknown {unknown}; choose from {list(PARTS)}")
    problem = output_stem_problem(args.out, (".md", ".json"))  # checked before the measurements
    if problem is not None:
        fail(PROG, f"--out: {problem}")
    problem = data_path_problem(args) if "data" in args.parts else None
    if problem is not None:
        fail(PROG, problem)
    results: dict[str, Any] = {}
    if "data" in args.parts:
        results["data"] = data_path(args)
    if "threads" in args.parts:
        results["threads"] = threads(args)
    if "memory" in args.parts:
        results["memory"] = memory(args)
    write(args, results)


if __name__ == "__main__":
    run_script(PROG, main, "nothing was written (--out is written at the end)")
