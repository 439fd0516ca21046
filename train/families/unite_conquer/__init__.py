"""Unite-and-Conquer (Nair et al., CVPR 2023): diffusion experts per modality, combined at sampling time
(docs/unite-conquer.md), and its declaration (imports no torch)."""
from ..base import Declaration
from .config import CONFIGS
from .params import UniteConquerParams
from .published import PUBLISHED


def build():
    """Diffusion experts per modality trained in one phase, no discriminator, no VGG; the generator samples."""
    import torch

    from ...models import ModelFamily, Network, SharedAdam, count_parameters
    from .config import get_config, with_params
    from .experts import Experts
    from .loss import PHASES, ExpertsLoss

    def training_forward(nets, cond, masks):  # one expert's activations are alive at a time: the largest's
        G = nets["G"]
        name = max(G.experts, key=lambda n: count_parameters(G.experts[n]))
        t = torch.zeros(len(cond["image"]), dtype=torch.long, device=cond["image"].device)
        return G.expert(name, cond["image"], t, cond, masks[name], train=True)

    return ModelFamily(get_config, lambda cfg, n: (Experts(cfg, n),), ExpertsLoss,
                       lambda cfg: SharedAdam(cfg.lr, (0.9, 0.999), None),  # ADM: AdamW defaults, no clipping
                       network_keys=(Network("G", "generator"),), phases=PHASES, uses_vgg=False,
                       training_forward=training_forward, with_params=with_params,
                       eval_images=lambda cfg: cfg.eval_images,
                       initialisation="PyTorch's default; the residual and attention output convolutions zeroed (ADM's "
                       "zero_module)")


UNITE_CONQUER = Declaration(UniteConquerParams, tuple(CONFIGS), build, PUBLISHED)
