"""Params of Unite-and-Conquer: its section train.unite-conquer, the loop's settings and how the experts are
combined at sampling."""
from typing import Annotated, Literal

from pydantic import Field

from ..base import ModelTrainParams


class UniteConquerParams(ModelTrainParams):
    """Unite-and-Conquer: ADM's moving average, and how its experts are combined at sampling (paper Eq. 10)."""

    ema_rate: float | None = Field(0.9999, gt=0, lt=1, description="decay of the moving average per step (ADM's "
                                   "--ema_rate, the official train.py), replacing ema_kimg and ema_rampup; null: "
                                   "the half-life")

    sampler: Literal["ddim", "ancestral"] | None = Field(None, description="DDIM (eta 0) or ancestral sampling; "
                                                         "null: the profile's (DDIM)")
    sample_steps: int | None = Field(None, ge=1, le=1000, description="respaced sampling steps; null: the "
                                     "profile's (100; tiny 50)")
    weights: dict[Literal["seg", "sketch", "text"], Annotated[float, Field(ge=1)]] = Field(
        {"seg": 1.0, "sketch": 1.0, "text": 1.0}, description="guidance weight w_i >= 1 per expert (Eq. 10)")
    reliabilities: dict[Literal["seg", "sketch", "text"], Annotated[float, Field(ge=0)]] | None = Field(
        None, description="reliability a_j of each expert's unconditional estimate, normalised over the experts "
        "in use; null: 1/N (paper Sec. 4.1)")
    eval_images: int | None = Field(None, ge=1, description="at most this many test images per evaluation "
                                    "condition (sampling costs steps x (experts + 1) passes); null: the profile's")
