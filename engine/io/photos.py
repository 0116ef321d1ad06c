"""Natural photographs from scikit-image's wheel: the photo prior's training and test set.

Decisions:

* Source: the image files inside the installed ``skimage.data`` package, read with
  Pillow straight from the package folder (`importlib.resources`), never through
  ``skimage.data``'s fetchers: nothing is downloaded, and a file that the wheel does not
  carry (``skimage.data`` fetches some with pooch) is simply not on the list.
* The set (`PHOTOS`) is every bundled *photograph*: synthetic or non-photographic files
  are excluded (text, page, logo, chessboard, color wheel, phantom, the binary horse
  silhouette), and so are clock_motion (already motion-blurred: a degraded photo is no
  prior for clean ones) and microaneurysms (102×102, smaller than the eval crops).
* Held out (`TEST_PHOTOS`): chelsea, coffee and rocket, three everyday RGB photos.
  Training never reads them (`training_photos` filters by split). motorcycle_left and
  motorcycle_right are a stereo pair, so both stay in training (one held out would leak).
* Grayscale photos are replicated to three equal channels (recorded per photo as
  ``"gray"`` in `PHOTOS`): the prior is RGB, and R = G = B is a valid colour photo.
* Crops (`CropSampler`): photo uniformly at random, a mild rescale s = 2^U(−½, ½) (the
  crop of side ``round(size/s)`` is resized to ``size`` with antialiasing), a random
  horizontal flip and a random multiple of 90°. Every draw comes from the caller's
  ``torch.Generator`` so training is reproducible and resumable.
* Eval crops (`test_crops`): the centre ``size × size`` of each held-out photo
  (256 by default: all three are at least 300 pixels on each side).
"""

from __future__ import annotations

import importlib.resources
import math

import numpy as np
import torch
import torch.nn.functional as F

from engine.core.step import BadInputError

# name: (file in skimage/data, colour as stored, split)
PHOTOS = {
    "astronaut": ("astronaut.png", "rgb", "train"),
    "brick": ("brick.png", "gray", "train"),
    "camera": ("camera.png", "gray", "train"),
    "cell": ("cell.png", "gray", "train"),
    "coins": ("coins.png", "gray", "train"),
    "grass": ("grass.png", "gray", "train"),
    "gravel": ("gravel.png", "gray", "train"),
    "hubble_deep_field": ("hubble_deep_field.jpg", "rgb", "train"),
    "ihc": ("ihc.png", "rgb", "train"),
    "moon": ("moon.png", "gray", "train"),
    "motorcycle_left": ("motorcycle_left.png", "rgb", "train"),
    "motorcycle_right": ("motorcycle_right.png", "rgb", "train"),
    "retina": ("retina.jpg", "rgb", "train"),
    "chelsea": ("chelsea.png", "rgb", "test"),
    "coffee": ("coffee.png", "rgb", "test"),
    "rocket": ("rocket.jpg", "rgb", "test"),
}
TEST_PHOTOS = tuple(name for name, (_, _, split) in PHOTOS.items() if split == "test")
TRAIN_PHOTOS = tuple(name for name, (_, _, split) in PHOTOS.items() if split == "train")
EVAL_CROP = 256
RESCALE_OCTAVES = 0.5  # s = 2^U(−½, ½): at most ≈ 1.41× up or down


def load_photo(name: str) -> torch.Tensor:
    """One photo as float32 ``(3, H, W)`` in [0, 1] (grayscale replicated to RGB)."""
    if name not in PHOTOS:
        raise BadInputError(f"unknown photo {name!r}; photos: {', '.join(PHOTOS)}")
    from PIL import Image

    filename, colour, _ = PHOTOS[name]
    try:
        path = importlib.resources.files("skimage.data") / filename
        with importlib.resources.as_file(path) as file, Image.open(file) as image:
            pixels = np.asarray(image.convert("L" if colour == "gray" else "RGB"), np.float32) / 255.0
    except (ModuleNotFoundError, OSError) as err:
        raise BadInputError(f"photo {name!r} needs scikit-image's bundled data ({err})") from None
    x = torch.from_numpy(pixels.copy())
    return x.expand(3, -1, -1).contiguous() if x.ndim == 2 else x.permute(2, 0, 1).contiguous()


def training_photos() -> dict[str, torch.Tensor]:
    return {name: load_photo(name) for name in TRAIN_PHOTOS}


def test_crops(size: int = EVAL_CROP) -> torch.Tensor:
    """The centre ``size × size`` crop of every held-out photo, ``(len(TEST_PHOTOS), 3, size, size)``."""
    crops = []
    for name in TEST_PHOTOS:
        x = load_photo(name)
        _, h, w = x.shape
        if min(h, w) < size:
            raise BadInputError(f"photo {name} ({w}×{h}) is smaller than a {size}-pixel crop")
        top, left = (h - size) // 2, (w - size) // 2
        crops.append(x[:, top:top + size, left:left + size])
    return torch.stack(crops)


class CropSampler:
    """Random augmented ``size × size`` crops of a set of photos (see module doc)."""

    def __init__(self, photos: dict[str, torch.Tensor], size: int):
        smallest = min(min(x.shape[1:]) for x in photos.values())
        if smallest < math.ceil(size * 2 ** RESCALE_OCTAVES):
            raise BadInputError(f"a photo of side {smallest} is too small for {size}-pixel crops")
        self.photos, self.size = list(photos.values()), size

    def crop(self, generator: torch.Generator) -> torch.Tensor:
        draw = lambda: float(torch.rand((), generator=generator))
        photo = self.photos[int(torch.randint(len(self.photos), (), generator=generator))]
        side = round(self.size * 2 ** (RESCALE_OCTAVES * (2 * draw() - 1)))
        _, h, w = photo.shape
        top = int(torch.randint(h - side + 1, (), generator=generator))
        left = int(torch.randint(w - side + 1, (), generator=generator))
        x = photo[:, top:top + side, left:left + side]
        if side != self.size:
            x = F.interpolate(x[None], size=(self.size, self.size), mode="bilinear",
                              antialias=True, align_corners=False)[0].clamp(0, 1)
        if draw() < 0.5:
            x = x.flip(-1)
        return x.rot90(int(torch.randint(4, (), generator=generator)), dims=(-2, -1))

    def __call__(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """A batch ``(batch, 3, size, size)`` in [0, 1]."""
        return torch.stack([self.crop(generator) for _ in range(batch)]).contiguous()
