"""PoE-GAN's published numbers that `pipeline compare` sets a run's beside: its own method's row, "Ours (All)", of
supplement Tables 6 and 7; each number's comment names its column."""
from ..base import PaperTable

SOURCE = "PoE-GAN (Huang et al., arXiv:2112.05130) supplement"

PUBLISHED = {
    "poegan-6": PaperTable(f"{SOURCE} Table 6, row Ours (All)", "mm-celeba-hq", 256, None, {
        ("unconditional", "fid"): 14.9,  # Table 6, Ours (All), column Uncond
        ("text", "fid"): 13.7,  # Table 6, Ours (All), column Text
        ("seg", "fid"): 12.9,  # Table 6, Ours (All), column Seg
        ("sketch", "fid"): 9.9,  # Table 6, Ours (All), column Sketch
        ("all", "fid"): 8.5,  # Table 6, Ours (All), column All
    }),
    "poegan-7": PaperTable(f"{SOURCE} Table 7, row Ours (All)", "coco", 64, None, {
        ("unconditional", "fid"): 26.6,  # Table 7, Ours (All), column Uncond
        ("text", "fid"): 22.2,  # Table 7, Ours (All), column Text
        ("seg", "fid"): 17.1,  # Table 7, Ours (All), column Seg
        ("sketch", "fid"): 30.2,  # Table 7, Ours (All), column Sketch
        ("all", "fid"): 17.1,  # Table 7, Ours (All), column All
    }),
}
