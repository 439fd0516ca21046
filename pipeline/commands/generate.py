"""`pipeline generate`: Images from a trained model under any subset of text, segmentation, sketch and style."""
from pathlib import Path

import click

from train.families import REGISTRY, default_model

from .common import stage_options
from .model_args import resolve

IMAGE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("generate")
@stage_options
@click.option("--model", type=click.Choice(list(REGISTRY)), default=default_model(), show_default=True,
              help="Model family whose run to sample (train/families/).")
@click.option("--text", metavar="PROMPT", help="A prompt, encoded by the CLIP text encoder that made the training "
              "shards' embeddings (named in their json).")
@click.option("--seg", type=IMAGE, metavar="MAP.png", help="Segmentation map: a PNG of class ids of the dataset's "
              "label map (gray or palette indices; 255 = ignore), e.g. a training sample's seg.png.")
@click.option("--sketch", type=IMAGE, metavar="SKETCH.png", help="A sketch: dark lines on a light ground (light "
              "strokes on black, like a sample's sketch.png, also work).")
@click.option("--style", type=IMAGE, metavar="IMAGE", help="Style reference image (JPEG, PNG, ...).")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed: the same seed and inputs give "
              "the same images, byte for byte.")
@click.option("--n", "n", type=click.IntRange(min=1), default=4, show_default=True, help="Images to draw.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder for image-NNNN.png and "
              "generate.json (what made them) [default: data/runs/<dataset>/<model>/generate/].")
def command(stage, model, text, seg, sketch, style, seed, n, out):
    """Draw --n images from the newest snapshot (G_ema) of data/runs/<dataset>/<model>/train/ under exactly the
    conditions given: any subset of --text, --seg, --sketch, --style; none is unconditional (where the model
    allows it). Each condition is encoded as training saw it (the profile's label map, its resize or crop to the
    model's resolution, the style image through ingest's JPEG). A model that does not take a given condition
    says which it takes.

    \b
    Example:
      pipeline generate --dataset sample --text "snowy mountains above a lake" \\
          --seg data/my-map.png --n 4 --out generated/
    """
    import logging

    from annotators.weights import WeightsError
    from train.evaluate import EvaluationError

    from train.generate import GenerateError

    from ..generate import Request, generate

    logging.basicConfig(format="%(levelname)s: %(message)s")
    resolve(stage, model)  # unknown names are usage errors, before any work
    out = out or stage.layout.run(model) / "generate"
    try:
        written = generate(stage, model, Request(text, seg, sketch, style, seed, n), out)
    except (GenerateError, EvaluationError, WeightsError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{n} image(s) in {out} (record: {written[-1].name})")
