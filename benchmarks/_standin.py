"""Stand-in synthetic data until a real provider exists: held-out real digits, visibly transformed.

The coloured-MNIST benchmark draws its synthetic sets from MNIST digits that
are in neither the training nor the test split, coloured into all four (y, s)
cells and pushed away from the real domain (random rotation and scaling,
thicker strokes, blur, colour jitter and pixel noise), so the mask has a real
domain gap to avoid. Two kinds of gap (``gap=``): ``"stroke"`` (the affine, dilation and blur above) or
``"resolution"`` (each image shrunk to a few pixels and blown back up: blocky, no geometric change); both
then get the colour jitter and pixel noise.
"""

import numpy as np
import torch
import torch.nn.functional as F

from aimfair_plugin.datasets import binarize_target, colorize, load_mnist_5k, resize_gray, resize_images
from aimfair_plugin.synth import ArrayProvider


def transformed_digits(gray, rng):
    """Random affine (rotation +-20 deg, scale 0.8-1.1), stroke dilation and blur of (N, H, W) images."""
    n = len(gray)
    x = torch.from_numpy(gray[:, None])
    angle = torch.from_numpy(rng.uniform(-20, 20, n) * np.pi / 180).float()
    scale = torch.from_numpy(rng.uniform(0.8, 1.1, n)).float()
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle) / scale, -torch.sin(angle) / scale
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) / scale, torch.cos(angle) / scale
    x = F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=False), align_corners=False)
    x = F.max_pool2d(x, 3, stride=1, padding=1)  # thicker strokes
    x = F.avg_pool2d(x, 3, stride=1, padding=1)  # slight blur
    return x[:, 0].clamp(0, 1).numpy()


def low_resolution(gray, size):
    """Shrink ``(N, H, W)`` images to ``size`` pixels a side and blow them back up (bilinear, antialiased)."""
    small = resize_images(gray[:, None], (size, size))
    return resize_images(small, gray.shape[1:])[:, 0]


GAPS = ("stroke", "resolution")


def heldout_provider(data, images=None, labels=None, *, image_size=32, target=5, max_images=None, gap="stroke",
                     low_size=10, random_state=0):
    """ArrayProvider over the pool images unused by ``data``, each coloured both ways and transformed.

    ``images, labels``: the grey pool ``data`` was drawn from (default: MNIST-5k). For Fashion-MNIST
    pass its official training split (the test images come from another pool, so only the training
    indices are excluded). ``max_images`` caps how many unused images are kept (memory). ``gap``: which
    transformation separates them from the real images (see the module docstring; ``low_size`` is the side
    ``"resolution"`` shrinks to).
    """
    if gap not in GAPS:
        raise ValueError(f"gap must be one of {GAPS}, got {gap!r}.")
    rng = np.random.RandomState(random_state)
    if images is None:
        images, labels = load_mnist_5k()
        used = np.r_[data.source_index_train, data.source_index_test]
    else:
        used = data.source_index_train
    used = np.r_[used, data.get("source_index_val_train", [])].astype(int)  # the held-out validation images too
    unused = np.setdiff1d(np.arange(len(labels)), used)
    if not len(unused):
        raise ValueError("No pool image is left for the held-out stand-in provider; lower n_train.")
    if max_images is not None and len(unused) > max_images:
        unused = np.sort(rng.choice(unused, size=max_images, replace=False))
    gray = images[unused].astype(np.float32) / 255.0
    gray = transformed_digits(gray, rng) if gap == "stroke" else low_resolution(gray, low_size)
    gray = resize_gray(gray, image_size)
    y = binarize_target(labels[unused], target)
    X, ys, ss = [], [], []
    for s_value in (0, 1):
        rgb = colorize(gray, np.full(len(gray), s_value), color_by="background")
        jitter = rng.uniform(0.8, 1.2, size=(len(gray), 3, 1, 1)).astype(np.float32)
        noise = rng.normal(0, 0.05, size=rgb.shape).astype(np.float32)
        X.append(np.clip(rgb * jitter + noise, 0, 1))
        ys.append(y)
        ss.append(np.full(len(gray), s_value))
    return ArrayProvider(np.concatenate(X), np.concatenate(ys), np.concatenate(ss))
