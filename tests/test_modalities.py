"""The modality table (shardio/modalities.py) is the one vocabulary: the annotators, their params sections, the
generator's inputs, the evaluation conditions and the Unite-and-Conquer experts all use its names."""
from annotators.base import REGISTRY as ANNOTATOR_REGISTRY
from pipeline.params import AnnotateParams
from shardio.modalities import ANNOTATOR_MEMBERS, ANNOTATORS, MEMBER_OF, MODALITIES, MODEL_MODALITIES
from train.families.unite_conquer.config import EXPERTS
from train.conditions import CONDITIONS


def test_every_annotator_of_the_table_is_registered_with_a_params_section_and_no_other():
    assert set(ANNOTATORS) == set(ANNOTATOR_REGISTRY)
    assert set(ANNOTATORS) <= set(AnnotateParams.model_fields)
    assert all(ANNOTATOR_MEMBERS[name] for name in ANNOTATORS)


def test_each_modality_has_its_own_name_and_member_and_something_that_makes_it():
    assert len(MEMBER_OF) == len(MODALITIES) == len({m.ext for m in MODALITIES})
    assert all(m.annotator or m.provided for m in MODALITIES)


def test_the_models_condition_on_the_table_s_modalities():
    fed = {m.model for m in MODALITIES if m.model}
    assert fed | {"style"} == set(MODEL_MODALITIES)
    assert {m for given in CONDITIONS.values() for m in given} == fed
    assert set(EXPERTS) == fed
