"""Every model of the comparison benchmark behind one ``WorldModel`` protocol, one file per family.

* ``base`` — the ``WorldModel`` protocol, the ``Budget`` and the shared training loop;
* ``bounds`` — dataset mean, memorisation mean, copy-last-observed, oracle memory, canvas oracle,
  oracle-position VAE (no learning over time; the oracles read the true positions);
* ``localise_lookup`` — the no-learning reference: path integration ("blocked iff the crop did not
  change") and the raw memorised crop looked up (or read off a canvas) at the predicted cell;
* ``rssm`` — PlaNet/Dreamer's recurrent state-space model;
* ``lstm`` — an action-conditioned LSTM;
* ``retrieval_transformer`` — a masked-token transformer over the whole episode with a learned
  (action, view-change) integrator and a copy head over the memorised crops; ``pose_retrieval`` — a learned pose per step, memory retrieved by pose,
  an attention decoder (``memory_peer``: what both share, the view-changed bit they are given).

GTM-SM itself answers the same protocol through ``gtmsm_model.evaluate.GTMSMPredictor``.
"""

from gtmsm_model.baselines.base import Budget, TrainedModel, WorldModel, check_prediction_inputs
from gtmsm_model.baselines.bounds import (
    CanvasOracle,
    CopyLastObserved,
    DatasetMean,
    MemorisationMean,
    OracleMemory,
    OraclePositionVAE,
)
from gtmsm_model.baselines.localise_lookup import LocaliseCanvas, LocaliseLookup
from gtmsm_model.baselines.lstm import ActionLSTM, ActionLSTMConfig
from gtmsm_model.baselines.pose_retrieval import PoseRetrieval, PoseRetrievalConfig
from gtmsm_model.baselines.retrieval_transformer import (
    RetrievalTransformer,
    RetrievalTransformerConfig,
)
from gtmsm_model.baselines.rssm import RSSM, RSSMConfig

__all__ = [
    "RSSM",
    "ActionLSTM",
    "ActionLSTMConfig",
    "Budget",
    "CanvasOracle",
    "CopyLastObserved",
    "DatasetMean",
    "LocaliseCanvas",
    "LocaliseLookup",
    "MemorisationMean",
    "OracleMemory",
    "OraclePositionVAE",
    "PoseRetrieval",
    "PoseRetrievalConfig",
    "RetrievalTransformer",
    "RetrievalTransformerConfig",
    "RSSMConfig",
    "TrainedModel",
    "WorldModel",
    "check_prediction_inputs",
]
