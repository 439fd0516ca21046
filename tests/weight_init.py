"""Expected standard deviations of freshly initialised conv/linear weights: Xavier normal at the SPADE family's
gain, and PyTorch's default (Kaiming uniform with a = sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)))."""


def xavier_std(weight, gain: float = 0.02) -> float:
    """Xavier normal: gain * sqrt(2 / (fan_in + fan_out)), as NVlabs/SPADE's --init_type xavier --init_variance 0.02."""
    fan_in, fan_out = weight[0].numel(), weight.shape[0] * weight[0, 0].numel()
    return gain * (2 / (fan_in + fan_out)) ** 0.5


def torch_default_std(weight) -> float:
    """The standard deviation of PyTorch's default Conv/Linear weight: 1 / sqrt(3 fan_in)."""
    return (3 * weight[0].numel()) ** -0.5
