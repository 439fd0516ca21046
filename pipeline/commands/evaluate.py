"""`pipeline evaluate`: Evaluate a trained model on the test split (FID/KID, mIoU, CLIP score, LPIPS)."""
from .common import pending

command = pending("evaluate", 8, "Evaluate a trained model on the test split (FID/KID, mIoU, CLIP score, LPIPS).")
