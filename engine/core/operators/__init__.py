"""Linear corruption operators ``A`` and the measurement model ``y = A x + σ_y ε``.

The package, along its seams:

* `base`: the `Operator` interface (forward, adjoint, pinv, prox), conjugate gradients,
  `Identity`, `Scale` and `Compose`;
* `blur`: separable Gaussian blur (`Blur`, `blur_matrix`);
* `masks`: element-wise masks (`Mask`);
* `resample`: block-average downsampling and grayscale (`Downsample`, `Grayscale`);
* `degradation`: the operators declared as data (`OperatorInfo`, `register_operator`),
  the measurement model `Degradation` and the one measurement function `measure_image`.

Every name is importable from here (``from engine.core.operators import Blur``).
`degradation` is loaded on first use of one of its names: it declares its parameters
with `engine.core.registry.param`, and the registry itself imports `Operator` from here.
"""

from engine.core.operators.base import (Compose, Identity, Operator, Scale, Shape, cg_iterates,
                                        conjugate_gradient)
from engine.core.operators.blur import Blur, blur_matrix
from engine.core.operators.masks import MASK_KINDS, Mask
from engine.core.operators.resample import Downsample, Grayscale

_DEGRADATION_NAMES = ("Degradation", "OperatorInfo", "register_operator", "operator_infos",
                      "degradation_rows", "allowed_values", "measure_image", "measurement_noise",
                      "StageMemo")

__all__ = ["Blur", "Compose", "Downsample", "Grayscale", "Identity", "MASK_KINDS", "Mask",
           "Operator", "Scale", "Shape", "blur_matrix", "cg_iterates", "conjugate_gradient",
           *_DEGRADATION_NAMES]


def __getattr__(name: str):
    if name in _DEGRADATION_NAMES:
        from engine.core.operators import degradation

        return getattr(degradation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
