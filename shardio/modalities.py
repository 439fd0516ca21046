"""The modalities a training sample carries, in one table: for each, the shard member that holds it, the annotator
that makes it, whether a dataset may provide it instead, and the name the models use for it. Every other module
reads its names from here (docs/architecture.md, "Data contracts").

A sample's member is `<key>.<ext>` in the tars. `name` is the modality's name in the dataset card's coverage and
`pipeline browse`'s "missing" filter. An annotator (its params section `annotate.<annotator>`, its folder
`<dataset>/<annotator>/`, a name in `pack.modalities` and a profile's `annotate` list) writes every member whose
`annotator` it is. The models see a sample through the generator modalities of `MODEL_MODALITIES`.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Modality:
    """One row of the table: a member of a training sample besides the image and its json."""

    name: str  # in the card's coverage and browse's filter
    ext: str  # the member `<key>.<ext>` in image, annotation and training shards
    annotator: str | None  # the annotator that writes it; None: only a dataset provides it
    provided: bool  # a dataset may carry it in its image shards (ingest); it then wins over the annotator's
    model: str | None  # the generator modality it conditions; None: not a model input itself


MODALITIES = (
    Modality("seg", "seg.png", "seg", True, "seg"),
    Modality("sketch", "sketch.png", "sketch", True, "sketch"),
    Modality("clip", "clip.npy", "clip", False, "text"),  # the text, for a profile whose `text` is `image`
    Modality("txt", "txt", None, True, None),  # captions; the models read their CLIP embeddings (clip_text)
    Modality("clip_text", "clip_text.npy", "clip", False, "text"),
)
# The generator modalities, in the order the models' masks and sample grids take them; `style` is the image itself
# (the `jpg` member).
MODEL_MODALITIES = ("text", "seg", "sketch", "style")

MEMBER_OF = {m.name: m.ext for m in MODALITIES}  # modality name -> its member
ANNOTATORS = tuple(dict.fromkeys(m.annotator for m in MODALITIES if m.annotator))  # seg, sketch, clip
# annotator -> the members it writes
ANNOTATOR_MEMBERS = {a: tuple(m.ext for m in MODALITIES if m.annotator == a) for a in ANNOTATORS}
PROVIDED_MEMBERS = tuple(m.ext for m in MODALITIES if m.provided)  # seg.png, sketch.png, txt
