"""`pipeline evaluate`: Evaluate a trained model on the test split (FID/KID, mIoU, CLIP score, LPIPS)."""
import click

from .common import stage_options


@click.command("evaluate")
@stage_options
@click.option("--model", default="poegan", show_default=True,
              help="Model family whose run to evaluate: poegan, spade-seg, spade-sketch, spade-seg-monce, inade, "
              "unite-conquer, cluster-guided.")
@click.option("--num-images", type=click.IntRange(min=1), help="At most this many test images (and reference "
              "images) [default: params evaluate.num_images].")
def command(stage, model, num_images):
    """Evaluate the newest snapshot (G_ema) of data/runs/<dataset>/<model>/train/ on the test shards
    data/<dataset>/shards/test-*.tar under each of evaluate.conditions (a SPADE baseline only under its own; cluster-guided as its mixture and each
    cluster, unconditionally);
    writes metrics.json, report.md and plots into data/runs/<dataset>/<model>/eval/. Inception and AlexNet weights
    come from the weight registry (`pipeline weights`); params `evaluate.inception_weights: random` /
    `lpips_weights: random` allow untrained networks, with a warning."""
    import logging
    import os

    from annotators.weights import WeightsError
    from train.evaluate import EvaluationError, evaluate_run
    from train.metrics.base import MetricError

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise click.ClickException(f"evaluation runs as one process on one device, but WORLD_SIZE is {world} "
                                   "(torchrun): run `pipeline evaluate` without torchrun")
    logging.basicConfig(format="%(levelname)s: %(message)s")
    try:
        written = evaluate_run(stage, model, num_images)
    except KeyError as e:
        raise click.UsageError(str(e).strip("'\"")) from None
    except (EvaluationError, WeightsError, MetricError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"metrics: {written['metrics']}\nreport: {written['report']}")
