"""mmsynth data stages: sources, ingest, annotate (Ray), pack, preview, stats, and the `pipeline` CLI."""
