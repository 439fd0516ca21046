"""Each DVC stage depends on exactly the project code it runs: the import graph of its command (imports inside
functions included, registry entries followed) equals the code files its `deps` cover."""
from pathlib import Path

import pytest
from dvc.repo import Repo

from import_closure import REPO, closure, has_code
from train.families import REGISTRY

CODE_DIRS = ("pipeline", "annotators", "train", "shardio")
FAMILIES = sorted({f"train.families{REGISTRY[m].split(':')[0]}" for m in REGISTRY})  # the registry names modules
# Stage (or foreach prefix) -> modules it runs; registries that load modules by name add theirs here.
ROOTS = {
    "sample": ["pipeline.commands.sample"],
    "ingest": ["pipeline.commands.ingest", *[f"pipeline.sources.{m}" for m in
                                             ("sample", "folder", "filelist", "tars", "coco", "celeba")]],
    "weights": ["pipeline.commands.weights", "annotators.sketch.hed"],
    "annotate@seg": ["pipeline.commands.annotate", "annotators.seg"],
    "annotate@sketch": ["pipeline.commands.annotate", "annotators.sketch"],
    "annotate@clip": ["pipeline.commands.annotate", "annotators.clip"],
    "pack": ["pipeline.commands.pack"],
    "preview": ["pipeline.commands.preview"],
    # every model family trains and is evaluated, each stage with train/families whole (the families' code imports
    # other families': cluster-guided PoE-GAN's generator, INADE SPADE's discriminator)
    **{f"train@{m}": ["pipeline.commands.train", *FAMILIES] for m in REGISTRY},
    **{f"evaluate@{m}": ["pipeline.commands.evaluate", *FAMILIES] for m in REGISTRY},
    "compare": ["pipeline.commands.compare", *FAMILIES],
}
# Stages that build annotators and metrics by registry name ("package.module:Name" strings) follow them.
FOLLOW_REGISTRIES = {"evaluate"}

# A foreach stage takes one path per item, so modules two annotators share are listed for all three: the only
# dependencies allowed beyond the import graph.
SHARED_BY_SOME_ANNOTATORS = {
    "annotate@clip": {"annotators/resize.py", "annotators/labelmaps/__init__.py"},
    "annotate@sketch": {"annotators/labelmaps/__init__.py"},
}


def stage_deps() -> dict[str, set[Path]]:
    """Stage name -> the project source files its deps cover (directories expanded)."""
    with Repo(str(REPO)) as repo:
        stages = {stage.addressing: [Path(d.def_path) for d in stage.deps] for stage in repo.index.stages}
    covered = {}
    for name, deps in stages.items():
        files = set()
        for dep in deps:
            if dep.parts[0] not in CODE_DIRS:
                continue
            files |= {p.relative_to(REPO) for p in (REPO / dep).rglob("*.py")} if (REPO / dep).is_dir() else {dep}
        covered[name] = {f for f in files if f.suffix == ".py" and has_code(REPO / f)}
    return covered


@pytest.mark.parametrize("stage", sorted(ROOTS))
def test_stage_depends_on_exactly_the_code_it_imports(stage):
    deps = stage_deps()[stage]
    follow = stage.split("@")[0] in FOLLOW_REGISTRIES
    imported = closure(ROOTS[stage], registries=follow) | set(map(Path, SHARED_BY_SOME_ANNOTATORS.get(stage, ())))
    assert (sorted(map(str, imported - deps)), sorted(map(str, deps - imported))) == ([], []), \
        "(imported but not a dependency, a dependency it never imports)"


def test_every_stage_is_checked():
    assert {name.split("@")[0] for name in stage_deps()} <= {name.split("@")[0] for name in ROOTS}


# what the params schema reads of the trainer: the family registry and the sections' base classes (a data stage's
# command validates the whole params file, `train` included)
REGISTRY_MODULES = {"train/sections.py", "train/families/__init__.py", "train/families/base.py"}


@pytest.mark.parametrize("stage", [s for s in sorted(ROOTS)
                                   if s.split("@")[0] not in ("train", "evaluate", "compare")])
def test_a_data_stage_depends_on_no_trainer_code(stage):
    """Registering a metric or changing a model family's code reruns no data stage (adding a family does: the
    params schema lists it)."""
    assert not [str(p) for p in closure(ROOTS[stage]) if p.parts[0] == "train" and str(p) not in REGISTRY_MODULES]
