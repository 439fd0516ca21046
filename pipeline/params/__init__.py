"""Typed, validated params: `load_params(path)` reads params.yaml into `Params` or fails naming the key."""
import difflib
import typing
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from train.families import REGISTRY

from .annotate import AnnotateParams
from .base import Section
from .datasets import DatasetProfile
from .stages import CompareParams, EvaluateParams, IngestParams, PackParams, PreviewParams, SampleParams
from .train import DvcModel, TrainParams


class Params(Section):
    """The whole params.yaml."""

    dataset: str = Field("sample", description="the dataset profile `dvc repro` runs")
    sample: SampleParams = SampleParams()
    ingest: IngestParams = IngestParams()
    annotate: AnnotateParams = AnnotateParams()
    pack: PackParams = PackParams()
    preview: PreviewParams = PreviewParams()
    models: dict[str, DvcModel] = Field({}, description="the model families `dvc repro` trains and evaluates")
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    compare: CompareParams = CompareParams()
    datasets: dict[str, DatasetProfile]

    @model_validator(mode="after")
    def _dataset_is_a_profile(self):
        if self.dataset not in self.datasets:
            raise ValueError(f"dataset {self.dataset!r} is not a profile under `datasets` ({', '.join(self.datasets)})")
        return self

    @model_validator(mode="after")
    def _models_are_families(self):
        unknown = [name for name in self.models if name not in REGISTRY]
        if unknown:
            raise ValueError(f"models {', '.join(unknown)} are no model family (train/families/: "
                             f"{', '.join(REGISTRY)})")
        return self

    def profile(self, name: str | None = None) -> DatasetProfile:
        """The dataset profile `name` (default: the `dataset` param); unknown names raise ParamsError."""
        name = name or self.dataset
        if name not in self.datasets:
            raise ParamsError(f"unknown dataset {name!r}: params define {', '.join(sorted(self.datasets))}")
        return self.datasets[name]

    def for_dataset(self, name: str | None = None) -> "Params":
        """These params as dataset `name` sees them: its `overrides` applied over the stage sections."""
        overrides = self.profile(name).overrides
        if not overrides:
            return self
        raw = {**self.model_dump(), "train": self.train.given()}  # so an override of a default reaches the families
        for dotted, value in overrides.items():
            *parents, leaf = dotted.split(".")
            node = raw
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict) or parents[:1] in (["datasets"], ["dataset"]) or not parents:
                raise ParamsError(f"datasets.{name or self.dataset}.overrides: {dotted!r} names no stage param")
            node[leaf] = value
        return Params.model_validate(raw)


    def shadowed(self, name: str | None = None) -> list[str]:
        """What the file sets, for a stage param that dataset `name`'s overrides replace, to other than its default
        and the override: an edit there changes nothing for that dataset; one sentence each."""
        name = name or self.dataset
        raw = self.model_dump()
        defaults = {key: field.get_default(call_default_factory=True).model_dump()
                    for key, field in type(self).model_fields.items() if key not in ("dataset", "datasets", "models")}
        found = []
        for dotted, override in self.profile(name).overrides.items():
            value, default = _at(raw, dotted), _at(defaults, dotted)
            if value not in (default, override):
                found.append(f"{dotted} is {value!r} in the params file, but dataset {name!r} overrides it with "
                             f"{override!r} (datasets.{name}.overrides), so it changes nothing for this dataset")
        return found


def _at(tree, dotted: str):
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


class ParamsError(ValueError):
    """A params file that cannot be used; the message names the file and the key."""


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file; every problem is reported with its full key path."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    params = _validate(path, "", lambda: Params.model_validate(raw))
    for name in params.datasets:  # each profile's overrides must give valid params too
        _validate(path, f"datasets.{name}.overrides: ", lambda: params.for_dataset(name))
    return params


def _validate(path: Path, prefix: str, make):
    try:
        return make()
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None
    except ValidationError as e:
        problems = "\n".join(f"  {prefix}{_describe(err)}" for err in e.errors())
        raise ParamsError(f"{path}: {e.error_count()} invalid param(s):\n{problems}") from None


def _describe(err: dict) -> str:
    key = ".".join(str(part) for part in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key{_suggestion(err['loc'])}"
    if err["type"] == "missing":
        return f"{key}: required key is missing"
    got = err["input"]
    if isinstance(got, dict):  # a whole section (a model validator's error): the message names what is wrong
        return f"{key}: {err['msg'].lower()}"
    shown = repr(got)
    return f"{key}: {err['msg'].lower()} (got {shown if len(shown) <= 200 else shown[:200] + ' ...'})"


def _suggestion(loc: tuple) -> str:
    section = _section_at(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), list(section.model_fields), n=1) if section else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _section_at(path: tuple) -> type[Section] | None:
    """The Section class found at a key path (dict-valued fields step over their own key)."""
    model, parts = Params, iter(path)
    for part in parts:
        field = model.model_fields.get(str(part)) or next(
            (f for f in model.model_fields.values() if f.alias == str(part)), None)  # a hyphenated name: an alias
        if field is None:
            return None
        annotation = field.annotation
        if typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
            next(parts, None)
        if not (isinstance(annotation, type) and issubclass(annotation, Section)):
            return None
        model = annotation
    return model


__all__ = ["Params", "ParamsError", "DatasetProfile", "load_params"]
