"""PoE-GAN (Huang et al., ECCV 2022): encoders, product-of-experts layers, generator, discriminator."""
