"""Training throughput of ImageClassifier (skorch) against a plain PyTorch loop, same model and data.

Both train the same ResNet-18 (same width, same initial weights) for the same
epochs, batch size and optimiser on the same in-memory images; the ratio
plugin / plain images-per-second is measured in one run. On CUDA both use
bfloat16 autocast.

Run: ``python -m benchmarks.throughput [--width 16] [--epochs 3] [--device auto]``.
"""

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn

from aimfair_plugin._device import autocast, resolve_device
from aimfair_plugin.datasets import make_colored_mnist
from aimfair_plugin.estimators import ImageClassifier


def plain_loop(module, X, y, *, epochs, batch_size, lr, device):
    module = module.to(device).train()
    opt = torch.optim.SGD(module.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(Xt))
        for i in range(0, len(Xt), batch_size):
            idx = order[i : i + batch_size]
            xb, yb = Xt[idx].to(device), yt[idx].to(device)
            opt.zero_grad()
            with autocast(device):
                out = module(xb)
            nn.functional.cross_entropy(out.float(), yb).backward()
            opt.step()
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    data = make_colored_mnist(image_size=args.image_size, random_state=0)
    X, y = data.X_train, data.y_train
    params = dict(width=args.width, max_epochs=args.epochs, lr=0.01, batch_size=args.batch_size,
                  lr_milestones=(), augment=False, random_state=0, device=device)
    clf = ImageClassifier(**{**params, "max_epochs": 1}).fit(X[:256], y[:256])  # warm-up, builds the module
    module = copy.deepcopy(clf.net_.module_)
    plain_s = plain_loop(module, X, y, epochs=args.epochs, batch_size=args.batch_size, lr=0.01, device=device)
    start = time.perf_counter()
    ImageClassifier(**params).fit(X, y)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    plugin_s = time.perf_counter() - start
    n = len(X) * args.epochs
    print(f"device {device}, ResNet-18 width {args.width}, {len(X)} images {args.image_size}px, "
          f"{args.epochs} epochs, batch {args.batch_size}")
    print(f"plain PyTorch loop: {n / plain_s:8.0f} img/s ({plain_s:.2f} s)")
    print(f"ImageClassifier:    {n / plugin_s:8.0f} img/s ({plugin_s:.2f} s)")
    print(f"ratio plugin / plain throughput: {plain_s / plugin_s:.2f}")


if __name__ == "__main__":
    main()
