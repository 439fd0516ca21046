"""Params of training: one section per model family under `train`."""
from pydantic import Field

from .base import Section


class ModelTrainParams(Section):
    """Training of one model family: which configuration profile, how long, which seed."""

    config: str = "tiny"
    steps: int = Field(200, ge=1)
    seed: int = Field(0, ge=0)


class TrainParams(Section):
    """All model families."""

    poegan: ModelTrainParams = ModelTrainParams()
