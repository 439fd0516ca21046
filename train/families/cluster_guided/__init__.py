"""Cluster-guided synthesis (Georgopoulos et al., arXiv:2112.12911): the trained PoE-GAN in unconditional
mode conditioned through k-means clusters of its decoder features and one IMLE-fitted latent mapper per cluster."""
