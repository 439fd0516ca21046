"""The base every params section derives from: unknown keys and loose types are errors."""
from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A typed, frozen params section; a key it does not declare is rejected."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
