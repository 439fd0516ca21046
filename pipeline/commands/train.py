"""`pipeline train`: Train a model (PoE-GAN or a baseline) on the training shards."""
from .common import pending

command = pending("train", 7, "Train a model (PoE-GAN or a baseline) on the training shards.")
