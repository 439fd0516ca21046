"""INADE (Tan et al., CVPR 2021): instance-adaptive normalisation and noise remapping on SPADE's discriminator."""
