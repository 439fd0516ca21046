"""Baseline model families trained and evaluated with the same loop, data, checkpoints and evaluation as PoE-GAN."""
