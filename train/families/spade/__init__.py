"""SPADE (Park et al., CVPR 2019) and MoNCE's paired setting on it (Zhan et al., CVPR 2022): networks, configurations, losses."""
