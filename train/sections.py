"""The base every params section derives from: unknown keys and loose types are errors. It sits on the train floor
so that a model family declares its own params section (train/families/); pipeline/params builds on it."""
from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A typed, frozen params section; a key it does not declare is rejected."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
