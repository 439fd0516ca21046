"""The model families the trainer knows, one line each: the family's name (`--model`, params `train.<name>`, its
run folder) -> where its Declaration (train/families/base.py) is, "module:attribute", the module relative to this
package. A family's folder holds its code, its configurations, its params section and that declaration. The first
line is the project's own method: the commands' default `--model`, and what a benchmark or check measures unless
told otherwise (`default_model`).

Nothing is imported here until asked for, and a declaration imports no torch: the params schema, `--help` and the
`--model` / `--config` choices read names, sections and configuration names cheaply; a family's networks and loss
load when it is built."""
import importlib

REGISTRY: dict[str, str] = {
    "poegan": ".poegan:POEGAN",
    "spade-seg": ".spade:SPADE_SEG",
    "spade-sketch": ".spade:SPADE_SKETCH",
    "spade-seg-monce": ".spade:SPADE_SEG_MONCE",
    "inade": ".inade:INADE",
    "cluster-guided": ".cluster_guided:CLUSTER_GUIDED",
    "unite-conquer": ".unite_conquer:UNITE_CONQUER",
}


def declaration(name: str):
    """The Declaration of family `name`; unknown names raise KeyError listing the known ones."""
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}")
    module, attribute = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module, __name__), attribute)


def default_model() -> str:
    """The registry's first family, the project's own method: the commands' default `--model`, and what a benchmark
    or check measures unless told otherwise."""
    return next(iter(REGISTRY))
