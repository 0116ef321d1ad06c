"""Training of the feature network (`engine.models.features`): a Fashion-MNIST classifier.

Cross-entropy, Adam, random horizontal flips (clothing is left–right symmetric), the
shared loop (EMA weights are shipped). Test accuracy is measured at every checkpoint
and recorded in ``config.json``; it is the model's measured quality. Registered as the
training family ``features`` (3000 steps by default).
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.io.data import load_fashion_mnist
from engine.models.features import FeatureNet, FeatureNetConfig
from engine.models.unet import parameter_count
from engine.train import Family, register_family
from engine.train.loop import TrainSettings, git_revision, init_network, save_model, train


@torch.no_grad()
def accuracy(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    net.eval()
    correct = sum(int((net(images[i:i + batch]).argmax(1) == labels[i:i + batch]).sum())
                  for i in range(0, len(images), batch))
    return correct / len(images)


def classifier_loss(net: FeatureNet, batch: tuple[torch.Tensor, torch.Tensor],
                    generator: torch.Generator) -> torch.Tensor:
    images, labels = batch
    flip = (torch.rand(len(images), generator=generator) < 0.5).to(images.device)
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return F.cross_entropy(net(images), labels)


def train_features(out: Path, settings: TrainSettings, architecture: FeatureNetConfig = FeatureNetConfig(),
                   data: tuple[torch.Tensor, torch.Tensor] | None = None,
                   test: tuple[torch.Tensor, torch.Tensor] | None = None,
                   resume: bool = False, progress: bool = True, data_dir: Path | None = None) -> dict:
    """Train the classifier into ``out``; images in [0, 1] (default: Fashion-MNIST, read
    from ``data_dir`` or `engine.io.data.data_dir`'s default)."""
    data = data or load_fashion_mnist("train", data_dir)
    test = test or load_fashion_mnist("test", data_dir)
    model = init_network(lambda: FeatureNet(architecture), settings.seed)

    def write_model(ema_net, info):
        config = {"kind": "features", "architecture": architecture.to_dict(),
                  "parameters": parameter_count(ema_net), "input_range": [0.0, 1.0],
                  "shape": [1, 28, 28], "dataset": {"name": "fashion-mnist", "split": "train"},
                  "test_accuracy": accuracy(ema_net, *test),
                  "training": {**info, "batch": settings.batch, "lr": settings.lr,
                               "ema": settings.ema, "seed": settings.seed,
                               "threads": torch.get_num_threads(), "machine": platform.machine(),
                               "command": settings.extra.get("command", ""),
                               "git_revision": git_revision()}}
        save_model(out, ema_net, config, {})
        info["test_accuracy"] = config["test_accuracy"]

    return train(out, model, classifier_loss, data, settings, write_model,
                 resume=resume, progress=progress)


register_family(Family(
    "features", lambda out, settings, args: train_features(out, settings, resume=args.resume,
                                                           progress=not args.quiet,
                                                           data_dir=args.data),
    steps=3000, summary="the Fashion-MNIST classifier behind the feature metrics"))
