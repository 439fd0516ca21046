"""Unite-and-Conquer's published numbers that `pipeline compare` sets a run's beside: its own row, OURS, of Table 1
(each number's comment names its column). Table 2 (FFHQ) is left out: no profile here is FFHQ."""
from ..base import PaperTable

SOURCE = "Unite and Conquer (Nair et al., arXiv:2212.00793)"

PUBLISHED = {
    "unite-1": PaperTable(f"{SOURCE} Table 1, row OURS", "mm-celeba-hq", None, None, {
        ("seg", "fid"): 26.09,  # Table 1, Combined, OURS, FID
        ("seg", "lpips_gt"): 0.519,  # same row, LPIPS (to the ground truth)
        ("seg", "ssim"): 0.416,  # same row, SSIM
        ("seg", "seg_miou"): 0.911,  # same row, mIoU
        ("seg", "seg_f1"): 0.948,  # same row, F1
    }, "the paper gives two label maps (hair from CelebA, skin from FFHQ) and parses with FaRL; here the 19-class map "
       "and the BiSeNet face parser"),
}
