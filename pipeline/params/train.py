"""Params of training: `train.defaults`, the loop settings every trained family inherits, and one section per model
family, of the class its folder declares (train/families/; the registry there lists the families)."""
from typing import Literal

from pydantic import ConfigDict, Field, ValidationError, create_model, model_validator

from train.families import REGISTRY, declaration
from train.families.base import ModelTrainParams, VGGTrainParams

from .base import Section

DEFAULTS = "defaults"


class TrainSections(Section):
    """`defaults` and every family's section, keyed by the model name (a hyphenated name `a-b` is the attribute
    `a_b`). A trained family's section (a ModelTrainParams) takes each `defaults` key it declares and does not set
    itself."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    defaults: VGGTrainParams = Field(VGGTrainParams(), description="loop settings (and the VGG-19's weights) "
                                     "every trained family takes unless its own section sets them")

    @model_validator(mode="wrap")
    @classmethod
    def _inherit_defaults(cls, data, handler):
        if not isinstance(data, dict):
            return handler(data)
        try:
            VGGTrainParams.model_validate(data.get(DEFAULTS, {}))
        except ValidationError:
            return handler(data)  # reported once, at train.defaults, not again under every family
        defaults, merged, own = data.get(DEFAULTS, {}), dict(data), {}
        for attr, field in cls.model_fields.items():
            key = attr if attr in data and field.alias not in data else field.alias or attr
            section = data.get(key, {})
            if attr == DEFAULTS or not issubclass(field.annotation, ModelTrainParams) or not isinstance(section, dict):
                continue
            own[attr] = set(section)
            merged[key] = {**{k: v for k, v in defaults.items() if k in field.annotation.model_fields}, **section}
        result = handler(merged)
        for attr, keys in own.items():  # what the family's own section sets, as `given` returns it
            object.__setattr__(getattr(result, attr), "__pydantic_fields_set__", keys)
        return result

    def given(self) -> dict:
        """The section as a params file gives it: `defaults`, and of each family only what its own section sets
        (a dataset's overrides apply to this, so an override of a default reaches every family taking it)."""
        return {field.alias or attr: getattr(self, attr).model_dump(exclude_unset=True)
                for attr, field in type(self).model_fields.items()}

    def model(self, name: str) -> Section:
        """The section of model family `name`; unknown names raise KeyError."""
        field = name.replace("-", "_")
        if field == DEFAULTS or field not in type(self).model_fields:
            raise KeyError(f"params have no section train.{name}")
        return getattr(self, field)


def train_sections() -> type[TrainSections]:
    """The `train` section's model for the registered families: `defaults` and each family's section."""
    fields = {}
    for name in REGISTRY:
        section = declaration(name).params
        fields[name.replace("-", "_")] = (section, Field(section(), alias=name))
    return create_model("TrainParams", __base__=TrainSections, **fields)


TrainParams = train_sections()


class DvcModel(Section):
    """A family `dvc repro` trains and evaluates, and what its train stage reads (dvc.yaml: data/<under><dataset>/
    <reads>): the training shards (`under` "", `reads` "shards"), or the run of the family it is fitted from
    (`under` "runs/", `reads` "<base>/train"); `demo`: `make demo` trains it."""

    under: Literal["", "runs/"] = ""
    reads: str = "shards"
    demo: bool = False
