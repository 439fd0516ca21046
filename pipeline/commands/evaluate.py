"""`pipeline evaluate`: Evaluate a trained model on the test split (FID/KID, mIoU, CLIP score, LPIPS)."""
import click

from train.families import REGISTRY, default_model

from .common import stage_options
from .model_args import resolve


@click.command("evaluate")
@stage_options
@click.option("--model", type=click.Choice(list(REGISTRY)), default=default_model(), show_default=True,
              help="Model family whose run to evaluate (train/families/).")
@click.option("--num-images", type=click.IntRange(min=1), help="At most this many test images (and reference "
              "images) [default: params evaluate.num_images].")
@click.option("--dry-run", is_flag=True, help="Print what the evaluation will compute, its per-GPU batch and "
              "estimated peak memory, and stop.")
@click.option("--gpu-memory", type=click.FloatRange(min=1), default=80, show_default=True, metavar="GB",
              help="With --dry-run: the GPU memory the per-GPU batch must fit (a real run reads its GPU's).")
def command(stage, model, num_images, dry_run, gpu_memory):
    """Evaluate the newest snapshot (G_ema) of data/runs/<dataset>/<model>/train/ on the test shards
    data/<dataset>/shards/test-*.tar under each of evaluate.conditions the family can be scored under, in the
    family's rows (e.g. a fitted family's mixture and each cluster);
    writes metrics.json, report.md and plots into data/runs/<dataset>/<model>/eval/. Inception and AlexNet weights
    come from the weight registry (`pipeline weights`); params `evaluate.inception_weights: random` /
    `lpips_weights: random` allow untrained networks, with a warning (and a mark on each number they made).
    Runs under `torchrun --nproc-per-node N` too: each process evaluates its share of the test batches and rank 0
    writes the report, with the numbers of one process. On a GPU the generator takes batches of evaluate.batch_size,
    or fewer when the memory estimate says that does not fit (`--dry-run` shows it)."""
    import logging

    from annotators.weights import WeightsError
    from train import distributed
    from train.evaluate import EvaluationError, evaluate_run
    from train.metrics import UnknownMetricError, check_names
    from train.metrics.base import MetricError

    logging.basicConfig(format="%(levelname)s: %(message)s")
    resolve(stage, model)  # unknown names are usage errors, before any work
    try:
        check_names(stage.params.evaluate.metrics)
    except UnknownMetricError as e:
        raise click.UsageError(f"evaluate.metrics: {e}") from None
    if dry_run:
        from train.eval_plan import describe

        try:
            click.echo("\n".join(describe(stage, model, num_images, gpu_memory)))
        except EvaluationError as e:
            raise click.ClickException(str(e)) from None
        return
    processes = distributed.start()  # one process, or one per GPU under torchrun (each its share of the batches)
    try:
        written = evaluate_run(stage, model, num_images, processes)
    except (EvaluationError, WeightsError, MetricError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        distributed.stop()
    if written:
        click.echo(f"metrics: {written['metrics']}\nreport: {written['report']}")
