"""Unite-and-Conquer (Nair et al., CVPR 2023): diffusion experts per modality, combined at sampling time
(docs/unite-conquer.md)."""
