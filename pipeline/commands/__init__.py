"""One module per `pipeline` subcommand, each exposing `command`; `pipeline.cli` registers them."""
