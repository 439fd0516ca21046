"""What the annotators share: strict state-dict loading with named errors, safe reading, autocast only on GPU,
memory-bounded upsampling + argmax equal to the plain one."""
import contextlib
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from annotators.resize import resize_long_side, upsampled_argmax
from annotators.runtime import autocast, computed_on, load_strict, pick_device, read_state_dict
from annotators.weights import WeightsError


def tiny():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def test_strict_loading_names_missing_unexpected_and_misshapen_keys():
    state = tiny().state_dict()
    with pytest.raises(WeightsError, match=r"missing keys \['1.running_var'\]"):
        load_strict(tiny(), {k: v for k, v in state.items() if k != "1.running_var"}, "tiny")
    with pytest.raises(WeightsError, match=r"unexpected keys \['2.weight'\]"):
        load_strict(tiny(), {**state, "2.weight": torch.zeros(1)}, "tiny")
    with pytest.raises(WeightsError, match=r"'0.weight' has shape \(4, 3, 5, 5\), the model expects \(4, 3, 3, 3\)"):
        load_strict(tiny(), {**state, "0.weight": torch.zeros(4, 3, 5, 5)}, "tiny")


def test_optional_batchnorm_counter_may_be_absent_and_values_are_loaded():
    source = tiny()
    nn.init.constant_(source[0].weight, 0.5)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    target = tiny()
    load_strict(target, state, "tiny", optional_suffixes=("num_batches_tracked",))
    assert (target[0].weight == 0.5).all()


class NotATensor:
    pass


def test_reading_refuses_pickled_objects_and_non_state_dicts(tmp_path):
    torch.save({"w": NotATensor()}, tmp_path / "pickled.pth")
    with pytest.raises(WeightsError, match="cannot read weights file .*pickled.pth"):
        read_state_dict(tmp_path / "pickled.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="not a state dict of tensors"):
        read_state_dict(tmp_path / "list.pth")


def test_autocast_only_on_gpu_devices():
    assert isinstance(autocast(torch.device("cpu"), "fp16"), contextlib.nullcontext)
    assert isinstance(autocast(torch.device("cuda"), "fp32"), contextlib.nullcontext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when building a CUDA autocast on a machine without CUDA
        assert autocast(torch.device("cuda"), "bf16").fast_dtype == torch.bfloat16
        assert autocast(torch.device("cuda:1"), "fp16").fast_dtype == torch.float16


def test_a_shard_records_the_precision_its_device_computes_in(monkeypatch):
    assert computed_on(torch.device("cpu"), "fp16") == {"device": "cpu", "precision": "fp32"}  # no CPU autocast
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"GPU {device}")
    assert computed_on(torch.device("cuda", 1), "bf16") == {"device": "cuda", "gpu": "GPU cuda:1", "precision": "bf16"}


def test_asking_for_cuda_without_it_is_a_clear_error():
    if torch.cuda.is_available():
        assert pick_device("cuda").type == "cuda"
    else:
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            pick_device("cuda")


def test_banded_upsampled_argmax_equals_full_interpolation():
    logits = torch.randn(7, 9, 13, generator=torch.Generator().manual_seed(0))
    full = F.interpolate(logits[None], size=(61, 83), mode="bilinear", align_corners=False)[0].argmax(0)
    assert (upsampled_argmax(logits, (61, 83), band=8) == full.numpy()).all()


def test_long_side_resize():
    image = np.zeros((300, 200, 3), np.uint8)
    assert resize_long_side(image, 150).shape == (150, 100, 3)
    assert resize_long_side(image, 0) is image
