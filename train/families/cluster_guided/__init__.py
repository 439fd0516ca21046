"""Cluster-guided synthesis (Georgopoulos et al., arXiv:2112.12911): the trained PoE-GAN in unconditional
mode conditioned through k-means clusters of its decoder features and one IMLE-fitted latent mapper per cluster;
and its declaration (imports no torch): fitted from PoE-GAN's run, with PoE-GAN's configurations."""
from ..base import Declaration
from ..poegan.configs import CONFIGS
from .params import ClusterGuidedParams


def build():
    """Cluster-guided synthesis over PoE-GAN's unconditional generator, fitted from the newest PoE-GAN snapshot."""
    from ...models import EvalRow, FitFrom, ModelFamily
    from ..poegan.configs import get_config
    from .fit import fit
    from .generator import ClusterGuidedGenerator

    def unavailable(*_):
        raise TypeError("cluster-guided is fitted from a PoE-GAN run, not trained with a loss and optimizer")

    def rows(G):  # the mixture of all clusters, then each cluster alone
        return [EvalRow("unconditional", "unconditional", G)] + [
            EvalRow(name, "unconditional", call) for name, call in G.rows()]

    return ModelFamily(get_config, lambda cfg, n: (ClusterGuidedGenerator(cfg, n), None), unavailable, unavailable,
                       conditions=("unconditional",), rows=rows, fitted=FitFrom("poegan", fit))


CLUSTER_GUIDED = Declaration(ClusterGuidedParams, tuple(CONFIGS), build)
