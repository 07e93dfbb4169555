"""GTM-SM (generative temporal model with spatial memory) and baselines for ImageNav-v0."""

from gtmsm_model.model import GTMSM, GTMSMConfig

__all__ = ["GTMSM", "GTMSMConfig"]
