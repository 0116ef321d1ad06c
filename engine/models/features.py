"""A small Fashion-MNIST classifier whose activations feed the feature metrics.

Pretrained ImageNet networks cannot be downloaded here, so the perceptual distance and
the Fréchet distance use this network, trained by the project
(``python -m engine train features``) and shipped in ``assets/models/features/``.
Call the metrics what they are: "FD (Fashion-MNIST features)".

Decisions:

* Input: images in **[0, 1] image units**, ``(B, 1, 28, 28)`` (metrics work in image
  units; no conversion inside).
* Three conv stages (28 → 14 → 7, widths 16/32/64) and a 128-d embedding (a linear
  map of the flattened 7×7 stage) before the classifier.
  `features` returns the activations of each stage and the embedding — the layers a
  perceptual distance normalises and compares; `embedding` is the vector whose
  Gaussian statistics the Fréchet distance compares.
* ``config.json`` has ``"kind": "features"``, registered with no capabilities: the model
  catalog knows the kind but lists no such model for a method.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.core.capabilities import register_kind
from engine.core.step import BadInputError

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "assets" / "models" / "features"


@dataclass(frozen=True)
class FeatureNetConfig:
    widths: tuple[int, ...] = (16, 32, 64)
    embedding: int = 128
    classes: int = 10

    def to_dict(self) -> dict:
        return {"kind": "cnn", **asdict(self)}

    @staticmethod
    def from_dict(config: dict) -> "FeatureNetConfig":
        config = {k: v for k, v in config.items() if k != "kind"}
        config["widths"] = tuple(config.get("widths", (16, 32, 64)))
        return FeatureNetConfig(**config)


class FeatureNet(nn.Module):
    """conv-ReLU ×2 per stage, 2×2 max-pool between stages, flatten → 128-d → 10 classes."""

    def __init__(self, config: FeatureNetConfig = FeatureNetConfig()):
        super().__init__()
        self.config = config
        stages, width = [], 1
        for w in config.widths:
            stages.append(nn.Sequential(nn.Conv2d(width, w, 3, padding=1), nn.ReLU(),
                                        nn.Conv2d(w, w, 3, padding=1), nn.ReLU()))
            width = w
        self.stages = nn.ModuleList(stages)
        self.project = nn.Linear(width * 7 * 7, config.embedding)
        self.classify = nn.Linear(config.embedding, config.classes)
        self.dropout = nn.Dropout(0.3)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations of every stage ``(B, C_i, H_i, W_i)`` and the embedding ``(B, 128)``."""
        out, h = [], x
        for i, stage in enumerate(self.stages):
            if i > 0:
                h = F.max_pool2d(h, 2)
            h = stage(h)
            out.append(h)
        out.append(F.relu(self.project(h.flatten(1))))
        return out

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.classify(self.dropout(self.embedding(x)))


def load_feature_network(model_dir: Path | str = DEFAULT_DIR, device: str = "cpu") -> FeatureNet:
    """The shipped classifier (``config.json`` + ``model.safetensors``), in eval mode."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    try:
        config = json.loads((model_dir / "config.json").read_text())
        tensors = load_file(str(model_dir / "model.safetensors"))
    except OSError as err:
        raise BadInputError(f"feature network not found in {model_dir}: {err}; train it with "
                            "'python -m engine train features'") from None
    if config.get("kind") != "features":
        raise BadInputError(f"{model_dir} does not hold a feature network")
    net = FeatureNet(FeatureNetConfig.from_dict(config["architecture"]))
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    return net.eval().requires_grad_(False).to(device)


register_kind("features", load_feature_network, ())  # shipped for the metrics; no method runs it
