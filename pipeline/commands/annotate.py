"""`pipeline annotate`: Pseudo-label the image shards with the annotators on a Ray cluster (local by default)."""
from .common import pending

command = pending("annotate", 5, "Pseudo-label the image shards with the annotators on a Ray cluster (local by default).")
