"""`pipeline annotate-one`: run one annotator on one image file and write its output."""
from pathlib import Path

import click

from .common import stage_options


@click.command("annotate-one")
@click.argument("annotator")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Output file: .png for seg/sketch, .npy for clip and --raw "
              "[default: IMAGE's name + .ANNOTATOR.png/.npy, next to it].")
@click.option("--raw", is_flag=True, help="Write the model's own output before post-processing as float32 .npy "
              "(seg: class logits [C, h, w] at the network's resolution; sketch: HED's fused edge probability at "
              "the image's size; clip: the normalised image embedding as float32).")
@click.option("--caption", "captions", multiple=True, help="A caption for the CLIP text embedding (repeatable).")
@click.option("--device", default="cpu", show_default=True, help="torch device: cpu, cuda, cuda:1, ...")
@stage_options
def command(stage, annotator, image, out, raw, captions, device):
    """Run ANNOTATOR (seg, sketch, clip) with the dataset's params on IMAGE and write its output to --out.

    The quick look before committing GPU-days; also the way to compare these models with other implementations.
    """
    import numpy as np

    from annotators.base import REGISTRY, Item, build, encode
    from annotators.weights import WeightsError
    from pipeline.imageio import DECODE_ERRORS, Rejected, open_checked, to_rgb

    if annotator not in REGISTRY:
        raise click.UsageError(f"unknown annotator {annotator!r}; known: {', '.join(REGISTRY)}")
    if out is None:
        out = image.with_name(f"{image.stem}.{annotator}{'.npy' if raw or annotator == 'clip' else '.png'}")
    limits = stage.params.ingest.model_copy(update={"min_size": 1})  # bounded decoding; any size is fine here
    try:
        pixels = np.asarray(to_rgb(open_checked(image.read_bytes(), limits)))
    except (Rejected, *DECODE_ERRORS) as err:
        raise click.ClickException(f"{image}: not a usable image ({err})") from None
    model = build(annotator, getattr(stage.params.annotate, annotator), stage.layout.weights)
    try:
        model.setup(device)
    except WeightsError as err:
        raise click.ClickException(str(err)) from None
    if model.metadata().get("sha256") == "random":
        click.secho(f"warning: {annotator} runs with RANDOM weights (params say so): the output is not meaningful",
                    fg="yellow", err=True)
    item = Item(pixels, list(captions))
    if raw:
        array = raw_output(model, item)
        out.write_bytes(encode(".npy", array.astype(np.float32)))
    else:
        outputs = model([item])[0]
        if annotator == "clip":
            for ext, array in outputs.items():
                target = out if ext == "clip.npy" else out.with_name(out.stem + "_text.npy")
                target.write_bytes(encode(".npy", array))
        else:
            ((ext, array),) = outputs.items()
            out.write_bytes(encode(ext, array))
    click.echo(f"{annotator}: {image} -> {out} ({model.metadata()})")


def raw_output(model, item):
    """The model's output before post-processing, as a float array."""
    if model.name == "sketch":
        return model.edges([item.image])[0]
    if model.name == "seg":
        image, _ = model.prepare(item)  # at the network's input size
        return model.logits([image])[0].cpu().numpy()
    return model([item])[0]["clip.npy"]
