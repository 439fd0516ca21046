"""`pipeline weights`: List, fetch and verify model weights in the weights cache."""
from .common import pending

command = pending("weights", 4, "List, fetch and verify model weights in the weights cache.")
