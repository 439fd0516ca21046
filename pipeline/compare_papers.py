"""The published tables `pipeline compare` sets a run's numbers beside: which paper table measured which model
on which dataset profile, under which condition and metric, and the number it printed.

A number goes into NUMBERS only as read in the paper itself, with the table, row and column in its comment. The
tables are listed even where no number is recorded yet: a run on their dataset is then shown as "no number
recorded" rather than as matching nothing (docs/known-gaps.md)."""
from dataclasses import dataclass

POEGAN = "Huang et al., Multimodal Conditional Image Synthesis with Product-of-Experts GANs, arXiv:2112.05130"
INADE = "Tan et al., Diverse Semantic Image Synthesis via Probability Distribution Modeling, CVPR 2021"
UNITE = "Nair et al., Unite and Conquer: Cross Dataset Multimodal Synthesis using Diffusion Models, arXiv:2212.00793"


@dataclass(frozen=True)
class PaperTable:
    """One published table: where it is, the dataset profile it was measured on, the models (our names) it has a
    row for, the metrics (our metrics.json names) it reports, and its protocol in a sentence."""

    source: str
    dataset: str
    models: tuple[str, ...]
    metrics: tuple[str, ...]
    protocol: str


TABLES = (
    PaperTable(f"{POEGAN}, supplement Table 6", "mm-celeba-hq", ("poegan",), ("fid",),
               "PoE-GAN at 1024 px on the MM-CelebA-HQ test split, one FID per condition"),
    PaperTable(f"{POEGAN}, supplement Table 7", "coco", ("poegan",), ("fid",),
               "PoE-GAN at 256 px on the COCO 2017 validation split, one FID per condition"),
    PaperTable(f"{INADE}, Table 1", "mm-celeba-hq", ("inade", "spade-seg"), ("fid", "seg_miou", "lpips_diversity"),
               "segmentation-conditioned synthesis on CelebAMask-HQ; LPIPS between outputs of one map"),
    PaperTable(f"{UNITE}, Table 1", "mm-celeba-hq", ("unite-conquer",), ("fid", "lpips_diversity"),
               "multimodal synthesis on MM-CelebA-HQ (text, segmentation, sketch)"),
    PaperTable(f"{UNITE}, Table 2", "coco", ("unite-conquer",), ("fid",),
               "multimodal synthesis on COCO-Stuff (text, segmentation)"),
)

# (table index in TABLES, model, condition, metric) -> the number printed there. Each entry's comment names the
# row and column it was read from.
NUMBERS: dict[tuple[int, str, str, str], float] = {}


def tables_for(dataset: str, model: str, metric: str) -> list[tuple[int, PaperTable]]:
    """(index, table) of each published table that reports `model`'s `metric` on the dataset profile `dataset`."""
    return [(i, t) for i, t in enumerate(TABLES) if t.dataset == dataset and model in t.models and metric in t.metrics]
