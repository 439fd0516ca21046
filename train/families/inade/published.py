"""INADE's published numbers that `pipeline compare` sets a run's beside: its own row, INADE-64 (default), of
supplement Table 1 on CelebAMask-HQ; each number's comment names its column."""
from ..base import PaperTable

SOURCE = ("INADE (Tan et al., Diverse Semantic Image Synthesis via Probability Distribution Modeling, CVPR 2021) "
          "supplement")

PUBLISHED = {
    "inade-1": PaperTable(f"{SOURCE} Table 1, CelebAMask-HQ, row INADE-64 (default)", "mm-celeba-hq", None, "train", {
        ("seg", "seg_miou"): 0.7408,  # Table 1, CelebAMask-HQ, INADE-64 (default), mIoU 74.08 (%)
        ("seg", "seg_pixel_accuracy"): 0.9431,  # same row, acc 94.31 (%)
        ("seg", "fid"): 22.55,  # same row, FID
        ("seg", "lpips_diversity"): 0.365,  # same row, LPIPS
    }, "the paper splits CelebAMask-HQ 28,000/2,000, the profile 24,000/6,000, and INADE's code keeps the epoch of "
       "best FID"),
}
