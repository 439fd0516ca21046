"""The published tables `pipeline compare` sets a run's numbers beside: which paper table measured which model on
which dataset profile, at which resolution and against which reference images, and the numbers it printed, in
metrics.json's units (fractions where a paper prints percentages). Each number's comment names its row and
column. Unite-and-Conquer's Table 2 (FFHQ) is left out: no profile here is FFHQ."""
from dataclasses import dataclass

POEGAN = "PoE-GAN (Huang et al., arXiv:2112.05130) supplement"
INADE = ("INADE (Tan et al., Diverse Semantic Image Synthesis via Probability Distribution Modeling, CVPR 2021) "
         "supplement")
UNITE = "Unite and Conquer (Nair et al., arXiv:2212.00793)"


@dataclass(frozen=True)
class PaperTable:
    """One published table: where it is, the dataset profile it corresponds to, the model (our name) whose row is
    recorded, the resolution and FID reference split it was measured at (None: not stated), and what differs
    from the project's profile even when those match."""

    source: str
    dataset: str
    model: str
    resolution: int | None
    reference: str | None
    caveat: str = ""


TABLES = {
    "poegan-6": PaperTable(f"{POEGAN} Table 6, row Ours (All)", "mm-celeba-hq", "poegan", 256, None),
    "poegan-7": PaperTable(f"{POEGAN} Table 7, row Ours (All)", "coco", "poegan", 64, None),
    "inade-1": PaperTable(f"{INADE} Table 1, CelebAMask-HQ, row INADE-64 (default)", "mm-celeba-hq", "inade", None,
                          "train", "the paper splits CelebAMask-HQ 28,000/2,000, the profile 24,000/6,000, and "
                          "INADE's code keeps the epoch of best FID"),
    "unite-1": PaperTable(f"{UNITE} Table 1, row OURS", "mm-celeba-hq", "unite-conquer", None, None,
                          "the paper gives two label maps (hair from CelebA, skin from FFHQ) and parses with FaRL; "
                          "here the 19-class map and the BiSeNet face parser"),
}

# (table, condition, metric key) -> the printed number
NUMBERS: dict[tuple[str, str, str], float] = {
    ("poegan-6", "unconditional", "fid"): 14.9,  # Table 6, Ours (All), column Uncond
    ("poegan-6", "text", "fid"): 13.7,  # Table 6, Ours (All), column Text
    ("poegan-6", "seg", "fid"): 12.9,  # Table 6, Ours (All), column Seg
    ("poegan-6", "sketch", "fid"): 9.9,  # Table 6, Ours (All), column Sketch
    ("poegan-6", "all", "fid"): 8.5,  # Table 6, Ours (All), column All
    ("poegan-7", "unconditional", "fid"): 26.6,  # Table 7, Ours (All), column Uncond
    ("poegan-7", "text", "fid"): 22.2,  # Table 7, Ours (All), column Text
    ("poegan-7", "seg", "fid"): 17.1,  # Table 7, Ours (All), column Seg
    ("poegan-7", "sketch", "fid"): 30.2,  # Table 7, Ours (All), column Sketch
    ("poegan-7", "all", "fid"): 17.1,  # Table 7, Ours (All), column All
    ("inade-1", "seg", "seg_miou"): 0.7408,  # Table 1, CelebAMask-HQ, INADE-64 (default), mIoU 74.08 (%)
    ("inade-1", "seg", "seg_pixel_accuracy"): 0.9431,  # same row, acc 94.31 (%)
    ("inade-1", "seg", "fid"): 22.55,  # same row, FID
    ("inade-1", "seg", "lpips_diversity"): 0.365,  # same row, LPIPS
    ("unite-1", "seg", "fid"): 26.09,  # Table 1, Combined, OURS, FID
    ("unite-1", "seg", "lpips_gt"): 0.519,  # same row, LPIPS (to the ground truth)
    ("unite-1", "seg", "ssim"): 0.416,  # same row, SSIM
    ("unite-1", "seg", "seg_miou"): 0.911,  # same row, mIoU
    ("unite-1", "seg", "seg_f1"): 0.948,  # same row, F1
}


def published(dataset: str, model: str, condition: str, metric: str) -> list[tuple[PaperTable, float]]:
    """(table, number) of each published number for `model`'s `metric` under `condition` on profile `dataset`."""
    return [(TABLES[t], value) for (t, c, m), value in NUMBERS.items()
            if c == condition and m == metric and TABLES[t].dataset == dataset and TABLES[t].model == model]
