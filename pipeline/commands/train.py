"""`pipeline train`: Train a model (PoE-GAN or a baseline) on the training shards."""
import os
from contextlib import nullcontext

import click

from train.families import REGISTRY, declaration, default_model

from .common import lock, stage_options
from .model_args import resolve


@click.command("train")
@stage_options
@click.option("--model", type=click.Choice(list(REGISTRY)), default=default_model(), show_default=True,
              help="Model family (train/families/); a fitted family is fitted from the newest snapshot of its base "
              "family's run instead of trained.")
@click.option("--config", "config_name", metavar="CONFIG", help="Architecture configuration of the model family: "
              + "; ".join(f"{name}: {', '.join(declaration(name).configs)}" for name in REGISTRY)
              + " [default: params train.<model>.config, else the dataset's train_config].")
@click.option("--steps", type=click.IntRange(min=1), help="Train up to this step [default: params].")
@click.option("--dry-run", is_flag=True, help="Without data or a GPU: print parameter counts, the per-GPU batch "
              "and its estimated peak memory, the accumulation rounds, the save plan and the most disk the run will "
              "use, the steps, batch and learning-rate schedule (the steps where it changes); stop.")
@click.option("--gpu-memory", type=click.FloatRange(min=0, min_open=True), metavar="GB", help="Memory per GPU "
              "that a null train.<model>.batch_gpu is sized for [default: the visible GPU's; a dry run without "
              "one: 80]. A CPU run takes its whole share in one round unless this is given.")
@click.option("--nproc", type=click.IntRange(min=1), help="Processes (GPUs) a --dry-run plans for [default: "
              "WORLD_SIZE, else 1]; a run has torchrun's.")
@click.option("--allow-cpu", is_flag=True, help="Train on the CPU even where GPUs were expected (NVIDIA GPUs "
              "present that torch cannot use, or WORLD_SIZE > 1), which is otherwise refused.")
@click.option("--restart-if-changed", is_flag=True, help="When the run folder holds a run started under other "
              "params or shards, delete it and start over (DVC's cache keeps the old one) instead of refusing.")
def command(stage, model, config_name, steps, dry_run, gpu_memory, nproc, allow_cpu, restart_if_changed):
    """Train a model on data/<dataset>/shards/train-*.tar; resumes from the newest training state in
    data/runs/<dataset>/<model>/train/ (snapshots, training state, sample grids, log.jsonl)."""
    fam, section, cfg, labels = resolve(stage, model, config_name)
    config_name = config_name or section.config or stage.profile.train_config
    if fam.fitted is not None:
        with _run_lock(stage.layout.training(model), dry_run):
            _fit(stage, fam, cfg, config_name, section, labels, model, dry_run)
        return
    if dry_run:
        _dry_run(fam, cfg, section, labels.num_classes, model, steps or section.steps, gpu_memory, nproc)
        from train.recipe import recipe

        click.echo("\n".join(recipe(fam, cfg, section, steps)))
        return
    if nproc:
        raise click.UsageError("--nproc is for --dry-run; start several processes with torchrun --nproc-per-node")
    with _run_lock(stage.layout.training(model)):
        _train(stage, fam, cfg, config_name, section, labels, model, steps, restart_if_changed, gpu_memory,
               allow_cpu)


def _dry_run(fam, cfg, section, num_classes, model, steps, gpu_memory, nproc):
    """Networks built on the meta device (no memory), their parameter counts, then the plan of the run."""
    import torch

    from train.devices import describe
    from train.models import count_parameters

    from .train_plan import choose_batch_gpu, dry_run_world, gpu_capacity, print_save_plan

    click.echo(describe())
    with torch.device("meta"):
        nets = fam.build(cfg, num_classes)
    for network, net in zip(fam.network_keys, nets.values()):
        click.echo(f"{network.label} parameters: {count_parameters(net)}")
        if hasattr(net, "encoder"):  # an image/noise encoder inside G: papers count the generator without it
            click.echo(f"{network.label} parameters without the encoder: "
                       f"{count_parameters(net) - count_parameters(net.encoder)}")
    world, source = dry_run_world(nproc)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    capacity, where = gpu_capacity(gpu_memory, device, dry_run=True)
    batch_size = section.batch_size or cfg.batch_size
    click.echo(f"processes: {world} ({source})")
    choose_batch_gpu(fam, cfg, num_classes, model, section.batch_gpu, batch_size, world, capacity, where)
    print_save_plan(nets, section, model, steps, cfg.resolution, batch_size)


def _run_lock(run_dir, dry_run: bool = False):
    """The run folder's lock, taken before anything loads so that a second run stops at once; held by the process
    of global rank 0 alone (under torchrun the others are the same run), none for a dry run."""
    if dry_run or os.environ.get("RANK", "0") != "0":
        return nullcontext()
    return lock(run_dir, "train")


def _fit(stage, fam, cfg, config_name, section, labels, model, dry_run):
    """A family fitted from the newest snapshot of its base family's run on the same dataset (no training loop),
    in the configuration that run was trained with (its snapshot's record; before records: `cfg`)."""
    import torch

    from train.checkpoint import newest_snapshot
    from train.data import DataError, fit_to_shards, shard_urls
    from train.run_config import read, rebuild, record

    base_run = stage.layout.training(fam.fitted.base)
    snapshot = newest_snapshot(base_run)
    missing = (f"{model} is fitted from a trained {fam.fitted.base} run, but {base_run} holds no "
               f"network-snapshot-*.pt: run `pipeline train --dataset {stage.dataset} --model {fam.fitted.base}` (or "
               f"`dvc repro train@{fam.fitted.base}`) first")
    if dry_run:  # the fit's plan: no training loop, so its settings (train.<model>) stand for steps and schedule
        click.echo(f"would fit {model} from {snapshot or 'the newest snapshot of ' + str(base_run) + ' (none yet)'}")
        click.echo(f"fit settings (train.{model}): " + ", ".join(f"{k} {v}" for k, v in section.model_dump().items()))
        if snapshot is None:
            click.echo(f"note: {missing}", err=True)
        return
    if snapshot is None:
        raise click.ClickException(missing)
    try:
        base = read(snapshot)
        if base is None:
            cfg = fit_to_shards(cfg, shard_urls(stage.layout.shards, "train"))
        else:
            if base["config_name"] != config_name:
                click.echo(f"note: {snapshot} was trained with configuration {base['config_name']}; {model} is "
                           f"fitted in it, not in {config_name} (train.{model}.config)", err=True)
            cfg, config_name = rebuild(fam, base, snapshot), base["config_name"]
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        summary = fam.fitted.fit(snapshot, stage.layout.training(model), cfg, labels.num_classes, section, device,
                                 run_record=record(model, config_name, cfg, section))
    except (DataError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    for c in summary["clusters"]:
        click.echo(f"{c['name']}: {c['size']} codes, self-consistency {c['self_consistency']:.3f}")
    click.echo(f"fitted {model} from {snapshot}; outputs in {stage.layout.training(model)}")


def _train(stage, fam, cfg, config_name, section, labels, model, steps, restart_if_changed, gpu_memory, allow_cpu):
    import dataclasses
    import importlib.util

    from annotators.weights import WeightsError, resolve
    from train import distributed
    from train.data import DataError, Preprocess, fit_to_shards, shard_urls
    from train.devices import DeviceError, describe
    from train.loop import RunSpec, train
    from train.recipe import run_schedule
    from train.run_config import record
    from train.run_identity import RunMismatch, claim, identity
    from train.vgg import VGGRelu51

    from .train_plan import choose_batch_gpu, gpu_capacity

    if section.wandb_project and importlib.util.find_spec("wandb") is None:
        raise click.ClickException(f"train.{model}.wandb_project is {section.wandb_project!r} but the wandb package "
                                   "is not installed: `pip install wandb`, or set it to null")
    try:
        urls = shard_urls(stage.layout.shards, "train")
        cfg = fit_to_shards(cfg, urls)
        try:
            sample_urls = shard_urls(stage.layout.shards, "test")
        except DataError:
            sample_urls = urls
        if not fam.uses_vgg:
            vgg = None
        elif section.vgg_weights == "random":
            click.echo(f"warning: train.{model}.vgg_weights is 'random': the VGG-19 loss uses an "
                       "untrained VGG-19", err=True)
            vgg = VGGRelu51(None)
        else:
            vgg = VGGRelu51(resolve(section.vgg_weights, stage.layout.weights))
    except (DataError, WeightsError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    spec = RunSpec(
        run_dir=stage.layout.training(model), train_urls=urls, sample_urls=sample_urls, num_classes=labels.num_classes,
        label_colours=labels.colours, steps=steps or section.steps, seed=section.seed,
        batch_size=section.batch_size, batch_gpu=section.batch_gpu, workers=section.workers,
        shuffle_buffer=section.shuffle_buffer, epoch_batches=section.epoch_batches, ema_kimg=section.ema_kimg,
        ema_rampup=section.ema_rampup, ema_rate=section.ema_rate, snapshot_every=section.snapshot_every,
        keep_states=section.keep_states, keep_snapshot_every=section.keep_snapshot_every,
        sample_every=section.sample_every, log_every=section.log_every, mixed_precision=section.mixed_precision,
        preprocess=Preprocess(section.fit, section.flip), tensorboard=section.tensorboard,
        wandb_project=section.wandb_project, lr_schedule=run_schedule(fam, section, steps),
        skip_bad_samples=section.skip_bad_samples, record=record(model, config_name, cfg, section))
    try:  # before the claim: rank 0 alone touches the run folder, the others wait
        processes = distributed.start(allow_cpu=allow_cpu)
    except DeviceError as e:
        raise click.ClickException(str(e)) from None
    try:
        if processes.rank == 0:
            click.echo(describe())
        capacity, where = gpu_capacity(gpu_memory, processes.device, dry_run=False)
        batch_gpu = distributed.on_rank0(lambda: choose_batch_gpu(  # every rank takes rank 0's choice
            fam, cfg, labels.num_classes, model, section.batch_gpu, section.batch_size or cfg.batch_size,
            processes.world, capacity, where), processes)
        spec = dataclasses.replace(spec, batch_gpu=batch_gpu)
        ident = identity(model, cfg, section, urls)
        replaced = distributed.on_rank0(lambda: claim(spec.run_dir, ident, restart_if_changed), processes)
        if replaced and processes.rank == 0:
            click.echo(f"{spec.run_dir}: params or shards changed since its run started; started over", err=True)
        records = train(fam, cfg, vgg, dataclasses.replace(spec, identity=ident), processes=processes)
    except (RunMismatch, DataError) as e:  # DataError: a shard that reads badly mid-run
        raise click.ClickException(str(e)) from None
    finally:
        distributed.stop()
    click.echo(f"trained to step {spec.steps} ({len(records)} steps in this run); outputs in {spec.run_dir}")
