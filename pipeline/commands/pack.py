"""`pipeline pack`: Join image and annotation shards into training shards and write the dataset card."""
from .common import pending

command = pending("pack", 5, "Join image and annotation shards into training shards and write the dataset card.")
