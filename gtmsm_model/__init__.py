"""GTM-SM (generative temporal model with spatial memory) and baselines for ImageNav-v0.

``GTMSM`` and ``GTMSMConfig`` are imported on first use (PEP 562), so importing the package, or
starting the ``gtmsm`` command (``gtmsm_model.launch``), does not pull in torch until it is needed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GTMSM", "GTMSMConfig"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gtmsm_model import model

        return getattr(model, name)
    raise AttributeError(f"module 'gtmsm_model' has no attribute {name!r}")
