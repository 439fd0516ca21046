"""Training on the packed shards: data loading, models (PoE-GAN and baselines), losses, loop, evaluation."""
