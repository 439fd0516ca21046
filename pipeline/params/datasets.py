"""Dataset profiles: where the raw images are, how they split, and which modalities are provided."""
from typing import Any, Literal

from pydantic import Field, model_validator

from shardio.modalities import ANNOTATORS
from .base import Section

# Source kind (`datasets.<name>.source.kind`) -> the module of `pipeline.sources` that lists it.
SOURCE_KINDS = {
    "sample": "sample",
    "folder": "folder",
    "list": "filelist",
    "webdataset": "tars",
    "coco": "coco",
    "mm-celeba-hq": "celeba",
}


class SourceParams(Section):
    """A raw collection; a relative `path` is resolved against `--data-dir`."""

    kind: Literal[tuple(SOURCE_KINDS)]
    path: str


class DatasetProfile(Section):
    """One dataset: its source, split, label map, what to pseudo-label and what text conditions it."""

    source: SourceParams
    test_size: float = Field(0.1, gt=0, description="a fraction (< 1) or a count (>= 1) of test images")
    label_map: str = "coco-stuff-182"
    annotate: list[Literal[ANNOTATORS]] = Field(default_factory=lambda: list(ANNOTATORS))
    text: Literal["captions", "image"] = Field(
        "captions", description="pseudo-text: CLIP text of captions, or the CLIP image embedding (landscape)"
    )
    train_config: str = "tiny"
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="stage params for this dataset only, as dotted keys: annotate.seg.weights"
    )

    @model_validator(mode="after")
    def _test_count_is_whole(self):
        if self.test_size >= 1 and self.test_size != int(self.test_size):
            raise ValueError(f"test_size {self.test_size} is neither a fraction (< 1) nor a whole count")
        return self
