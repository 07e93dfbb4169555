"""The models a comparison runs: the peers and their sweep candidates, the VAE floor, plug-ins,
and predicting a rollout set in chunks."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.harness.plugins import CONSTRUCTOR_LIMIT_S, Guard, PluginFailed
from gtmsm_cli.flags import error_text
from gtmsm_cli.inputs import input_file_problem
from gtmsm_env.rollouts import Rollouts
from gtmsm_model.baselines import (
    RSSM,
    ActionLSTM,
    ActionLSTMConfig,
    Budget,
    PoseRetrieval,
    PoseRetrievalConfig,
    RetrievalTransformer,
    RetrievalTransformerConfig,
    RSSMConfig,
    TrainedModel,
    WorldModel,
)

PPO_NAME = "GTM-SM with PPO-explored memorisation"
FLOOR_NAME = "VAE reconstruction (floor)"
SWEEP_FRACTION = 1 / 3
"""Each sweep candidate trains for this fraction of the 1× budget; the winner then trains from scratch to 1×."""
MEMORY_PEER = "learned peer"
CONTROL = "control"
FAMILY_KIND = {"retrieval transformer": MEMORY_PEER, "pose retrieval": MEMORY_PEER,
               "RSSM": CONTROL, "action LSTM": CONTROL}
"""Each peer family's kind: a generic learned peer with a memory of the memorised crops, or a memory-less
control (its whole memory is a recurrent state; shown to say what memory buys, not as a contender)."""
FAMILY_GIVEN = {
    "retrieval transformer": "crops, actions, a view-changed bit per memorised step",
    "pose retrieval": "crops, actions, a view-changed bit per memorised step",
    "RSSM": "crops and actions",
    "action LSTM": "crops and actions",
}


@dataclass(frozen=True)
class Candidate:
    """One setting of a peer family in the sweep: a stable ``id`` (what records and choices use),
    a human-readable ``label`` (what the tables show), a constructor and its Adam learning rate."""

    id: str
    label: str
    factory: Callable[[], TrainedModel]
    lr: float


def sweep_candidates(quick: bool) -> dict[str, list[Candidate]]:
    """The documented sweep, per family (learning rate at least; width where it matters). The first
    candidate is the default (``--no-sweep``)."""
    if quick:
        tiny_rt = dict(d_model=16, layers=1, heads=2, feedforward=32, hidden=16, pose=4, min_tau=4)
        tiny_pose = dict(pose=4, neighbours=4, d_model=16, heads=2, hidden=16, min_tau=4)
        return {
            "retrieval transformer": [Candidate(f"rt-quick-{lr:g}", f"tiny, lr {lr:g}",
                                                lambda: RetrievalTransformer(RetrievalTransformerConfig(**tiny_rt)), lr)
                                      for lr in (1e-3, 3e-3)],
            "pose retrieval": [Candidate(f"pose-quick-{lr:g}", f"tiny, lr {lr:g}",
                                         lambda: PoseRetrieval(PoseRetrievalConfig(**tiny_pose)), lr)
                               for lr in (1e-3, 3e-3)],
            "RSSM": [Candidate("rssm-quick-a", "deter 16, lr 6e-4",
                               lambda: RSSM(RSSMConfig(deter=16, hidden=16, stoch=4, train_horizon=16)), 6e-4),
                     Candidate("rssm-quick-b", "deter 16, lr 1e-3, no open-loop loss",
                               lambda: RSSM(RSSMConfig(deter=16, hidden=16, stoch=4, open_loop_weight=0,
                                                       train_horizon=16)), 1e-3)],
            "action LSTM": [Candidate("lstm-quick-a", "hidden 16, lr 6e-4",
                                      lambda: ActionLSTM(ActionLSTMConfig(hidden=16, embed=16, train_horizon=16)), 6e-4),
                            Candidate("lstm-quick-b", "hidden 16, lr 1e-3",
                                      lambda: ActionLSTM(ActionLSTMConfig(hidden=16, embed=16, train_horizon=16)), 1e-3)],
        }
    return {
        "retrieval transformer": [
            Candidate("rt-lr1e-3", "d 96, 2 layers, lr 1e-3", RetrievalTransformer, 1e-3),
            Candidate("rt-lr3e-3", "d 96, 2 layers, lr 3e-3", RetrievalTransformer, 3e-3),
            Candidate("rt-lr3e-4", "d 96, 2 layers, lr 3e-4", RetrievalTransformer, 3e-4),
        ],
        "pose retrieval": [
            Candidate("pose-lr1e-3", "pose 8, lr 1e-3", PoseRetrieval, 1e-3),
            Candidate("pose-lr3e-3", "pose 8, lr 3e-3", PoseRetrieval, 3e-3),
            Candidate("pose-lr3e-4", "pose 8, lr 3e-4", PoseRetrieval, 3e-4),
        ],
        "RSSM": [
            Candidate("rssm-default", "deter 256, stoch 32, lr 6e-4, open loop over 256 steps (TBPTT 64)",
                      lambda: RSSM(RSSMConfig()), 6e-4),
            Candidate("rssm-small", "deter 128, hidden 128, lr 1e-3, open loop over 256 steps (smaller: ~2× the steps)",
                      lambda: RSSM(RSSMConfig(deter=128, hidden=128)), 1e-3),
        ],
        "action LSTM": [
            Candidate("lstm-default", "hidden 256, lr 6e-4, free-running over 256 steps (TBPTT 64)",
                      lambda: ActionLSTM(ActionLSTMConfig()),
                      6e-4),
            Candidate("lstm-small", "hidden 128, lr 1e-3, free-running over 256 steps",
                      lambda: ActionLSTM(ActionLSTMConfig(hidden=128, embed=128)),
                      1e-3),
        ],
    }


class Floor:
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


def predict_in_chunks(model: WorldModel, rollouts: Rollouts, tau: int, chunk: int = 32) -> np.ndarray:
    """Predictions of every rollout, ``chunk`` sequences at a time. Models see only the first
    ``tau`` observations (and the true positions if they are oracles); the VAE floor alone
    decodes the true future crops."""
    if isinstance(model, Floor):
        return model.reconstruct_future(rollouts, tau)
    parts = []
    for start in range(0, len(rollouts), chunk):
        part = rollouts[start:start + chunk]
        positions = part.positions if model.uses_true_positions else None
        parts.append(model.predict(part.observations[:, :tau], part.actions, tau, positions))
    return np.concatenate(parts)


def load_model_class(spec: str, limit_s: float = CONSTRUCTOR_LIMIT_S) -> type:
    """``package.module:Class`` (importable) or ``path/to/file.py:Class`` → the class.

    The class must construct with no arguments and answer the ``WorldModel`` protocol. Every
    problem (no colon, no such file, a module that fails to import for any reason — ``SystemExit``
    included — or takes longer than ``limit_s`` seconds, a missing name, a name that is not a class
    or lacks the protocol) is a ``ValueError`` naming ``--model``.
    """
    module_name, sep, class_name = spec.rpartition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"--model {spec!r}: expected module:Class or path/to/file.py:Class")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.exists():
            raise ValueError(f"--model {spec!r}: no such file {path}")
        problem = input_file_problem(path, "plug-in file")  # a FIFO or device is never opened
        if problem is not None:
            raise ValueError(f"--model {spec!r}: {problem}")

        def load() -> Any:
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return module

        phase = f"running {path}"
    else:
        try:
            found = importlib.util.find_spec(module_name)
        except (ImportError, ValueError) as error:
            raise ValueError(f"--model {spec!r}: cannot import {module_name}: {error_text(error)}") from None
        if found is None:
            raise ValueError(f"--model {spec!r}: cannot import {module_name}: no module named {module_name!r}")

        def load() -> Any:
            return importlib.import_module(module_name)

        phase = f"importing {module_name}"
    try:  # a plug-in's module code may raise anything, exit or hang: the same guard as its calls
        module = Guard(limit_s, who=f"--model {spec!r}").call(phase, load)
    except PluginFailed as failure:
        raise ValueError(f"--model {spec!r}: {failure.reason}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ValueError(f"--model {spec!r}: {module_name} has no {class_name}")
    if not inspect.isclass(cls):
        raise ValueError(f"--model {spec!r}: {class_name} is a {type(cls).__name__}, not a class")
    missing = [name for name in ("name", "uses_true_positions", "fit", "predict") if not hasattr(cls, name)]
    if missing:
        raise ValueError(f"--model {spec!r}: {class_name} lacks {', '.join(missing)} (see the WorldModel protocol)")
    return cls
