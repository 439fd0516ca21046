"""`pipeline ingest`: Turn a raw collection into validated, deduplicated, split image shards with a manifest."""
from .common import pending

command = pending("ingest", 3, "Turn a raw collection into validated, deduplicated, split image shards with a manifest.")
