"""The per-condition evaluation of the PoE-GAN supplement's Tables 6 and 7: the same test set generated under
each condition (unconditional, text, seg, sketch, all), each scored by the metrics its inputs allow."""
import numpy as np

from ..conditions import CONDITIONS
from . import evaluate
from .base import EvalContext, EvalInputs, MetricError, Reference


def given_inputs(condition: str) -> set[str]:
    """The EvalInputs fields a row generated under `condition` gets: the reference set and diversity groups, the
    modalities the condition gives, and the test images as ground truth unless it gives none (an unconditional
    sample was not drawn from any test image)."""
    return {"reference", "groups", *CONDITIONS[condition], *(("real",) if CONDITIONS[condition] else ())}


def inputs_for(condition: str, generated: np.ndarray, reference: Reference | None = None,
               groups: np.ndarray | None = None, real: np.ndarray | None = None,
               **modalities: np.ndarray | None) -> EvalInputs:
    """EvalInputs of images generated under `condition`, keeping only the modalities that condition gave the
    generator (seg=, sketch=, text=), so that e.g. the unconditional row gets no seg mIoU, and the test
    images `real` only where `given_inputs` says."""
    if condition not in CONDITIONS:
        raise MetricError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}")
    unknown = set(modalities) - set(CONDITIONS["all"])
    if unknown:
        raise MetricError(f"unknown modalities {sorted(unknown)}; expected {', '.join(CONDITIONS['all'])}")
    missing = [m for m in CONDITIONS[condition] if modalities.get(m) is None]
    if missing:
        raise MetricError(f"condition {condition!r} needs {', '.join(missing)}")
    given = {m: modalities[m] for m in CONDITIONS[condition]}
    return EvalInputs(generated, reference=reference, groups=groups,
                      real=real if "real" in given_inputs(condition) else None, **given)


def evaluate_conditions(names, inputs: dict[str, EvalInputs], ctx: EvalContext) -> dict[str, dict[str, float]]:
    """{condition: scores} for every condition's inputs: the table `train.report.write_report` writes."""
    return {condition: evaluate(names, condition_inputs, ctx) for condition, condition_inputs in inputs.items()}
