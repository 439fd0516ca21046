"""Cluster-guided synthesis (Georgopoulos et al., ../shared/papers/004_…txt): the trained PoE-GAN in unconditional
mode conditioned through k-means clusters of its decoder features and one IMLE-fitted latent mapper per cluster."""
