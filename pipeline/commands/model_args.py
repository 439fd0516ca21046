"""What a model command (train, evaluate, generate) resolves by name before any work: the family, its params
section, its configuration and the profile's label map."""
import click


def resolve(stage, model: str, config: str | None = None):
    """(family, params section, configuration, label map) of `model` on the stage's dataset; the configuration is
    `config`, else `train.<model>.config`, else the profile's `train_config`. A name its registry does not know (a
    configuration, a params section, a label map) is a UsageError naming it; a KeyError raised later is a bug, and
    shows as one."""
    from annotators.labelmaps import load_label_map
    from train.models import family

    try:
        fam = family(model)
        section = stage.params.train.model(model)
        cfg = fam.configure(config or section.config or stage.profile.train_config, section)
        labels = load_label_map(stage.profile.label_map)
    except KeyError as e:
        raise click.UsageError(str(e).strip("'\"")) from None
    return fam, section, cfg, labels
