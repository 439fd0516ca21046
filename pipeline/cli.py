"""The `pipeline` command line: one subcommand per stage, each with --dataset, --params and --data-dir."""
import importlib

import click

# Subcommand name -> module under pipeline.commands exposing `command`. A new stage is one line here.
COMMANDS = {
    "sample": "sample",
    "ingest": "ingest",
    "annotate": "annotate",
    "annotate-one": "annotate_one",
    "pack": "pack",
    "preview": "preview",
    "browse": "browse",
    "train": "train",
    "evaluate": "evaluate",
    "generate": "generate",
    "compare": "compare",
    "weights": "weights",
    "where": "where",
}


class LazyGroup(click.Group):
    """Imports a subcommand's module only when it runs, so `--help` stays fast."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"pipeline.commands.{COMMANDS[name]}").command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="mmsynth")
def main():
    """mmsynth: prepare, pseudo-label and pack multimodal image datasets, then train and evaluate PoE-GAN.

    \b
    The chain (each stage also a DVC stage; `dvc repro` runs them all):
      sample -> ingest -> annotate (seg, sketch, clip; Ray) -> pack -> preview -> train -> evaluate
    Then `generate` draws images from a trained model under the conditions you give.
    Every stage takes --dataset NAME (a profile in params.yaml), --params FILE and --data-dir DIR.
    """
