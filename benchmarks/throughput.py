"""Training throughput of ImageClassifier (skorch) against a plain PyTorch loop: same model, data and decoder.

Both sides train the same ResNet-18 (same width, same initial weights, channels-last, the same SGD settings)
for the same epochs and batch size, on the embedded task's training images (the quick suite's task loader),
given two ways:

- ``arrays``: float32 images in memory. The plain loop gathers each shuffled batch by indexing one tensor
  (the fastest hand-written loop); the plugin goes through its Dataset and a DataLoader.
- ``paths``: the same images written once as PNG files. Both sides decode them with the package's one decoder
  (:func:`aimfair_plugin.datasets.read_image`) in DataLoader workers, as many as the plugin's
  ``num_workers="auto"`` picks.

The two sides alternate ``--repeats`` times (plain, plugin, plain, plugin, ...) after one warm-up epoch
each, in one process, and the ratio plugin / plain images-per-second is reported from the best time of each
side (the least disturbed run, as ``timeit`` does) and as the median of the per-pair ratios. On CUDA both
use bfloat16 autocast.

Run: ``python -m aimfair_bench.throughput [--repeats 4] [--epochs 2] [--device auto]``.
"""

import argparse
import copy
import statistics
import tempfile
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from aimfair_plugin.datasets import read_image, write_images
from aimfair_plugin.estimators import ImageClassifier
from aimfair_plugin.utils import autocast, resolve_device, resolve_num_workers

from .suites import EMBEDDED_RECIPE, embedded_task
from .tasks import load_task


class PathDataset(Dataset):
    """What a user's own loop over image files looks like: decode one file per item."""

    def __init__(self, paths, y):
        self.paths, self.y = paths, torch.as_tensor(y, dtype=torch.int64)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return torch.from_numpy(read_image(self.paths[i])), self.y[i]


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def plain_loop(module, X, y, *, epochs, batch_size, lr, weight_decay, device, num_workers=0):
    """Train ``module`` in place with a hand-written loop; returns the seconds it took."""
    module = module.to(device).train()
    opt = torch.optim.SGD(module.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    if X.ndim == 1:
        loader = DataLoader(PathDataset(X, y), batch_size=batch_size, shuffle=True, num_workers=num_workers,
                            persistent_workers=num_workers > 0, pin_memory=str(device).startswith("cuda"))
        batches = lambda: loader  # noqa: E731
    else:
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))

        def batches():
            order = torch.randperm(len(Xt))
            for i in range(0, len(Xt), batch_size):
                idx = order[i : i + batch_size]
                yield Xt[idx], yt[idx]

    _sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in batches():
            xb = xb.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            opt.zero_grad()
            with autocast(device):
                out = module(xb)
            nn.functional.cross_entropy(out.float(), yb.to(device)).backward()
            opt.step()
    _sync(device)
    return time.perf_counter() - start


def measure(X, y, *, params, epochs, repeats, device, module):
    """Alternating timings: ``(plain seconds, plugin seconds)`` lists, after one warm-up run of each."""
    workers = resolve_num_workers(params.get("num_workers", "auto"), X.ndim == 1)
    plain_s, plugin_s = [], []
    for r in range(repeats + 1):
        plain_s.append(plain_loop(copy.deepcopy(module), X, y, epochs=epochs if r else 1,
                                  batch_size=params["batch_size"], lr=params["lr"],
                                  weight_decay=params["weight_decay"], device=device,
                                  num_workers=workers))
        start = time.perf_counter()
        ImageClassifier(**{**params, "max_epochs": epochs if r else 1}).fit(X, y)
        _sync(device)
        plugin_s.append(time.perf_counter() - start)
    return plain_s[1:], plugin_s[1:], workers  # the first pair is the warm-up


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=EMBEDDED_RECIPE["width"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (CPU)")
    parser.add_argument("--inputs", nargs="+", default=["arrays", "paths"], choices=["arrays", "paths"])
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    data = load_task(dict(embedded_task(n_train=args.n_train)), 0)
    X, y = data.X_train, data.y_train
    params = dict(width=args.width, max_epochs=args.epochs, lr=0.01, batch_size=args.batch_size, lr_milestones=(),
                  augment=False, random_state=0, device=device, weight_decay=1e-4, momentum=0.9)
    module = ImageClassifier(**{**params, "max_epochs": 1}).fit(X[:256], y[:256]).net_.module_
    print(f"device {device}, {args.threads} torch threads, ResNet-18 width {args.width}, {len(X)} images "
          f"{X.shape[-1]} px, {args.epochs} epochs x {args.repeats} alternating repeats, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.inputs:
            inputs = write_images(X, folder) if kind == "paths" else X
            plain_s, plugin_s, workers = measure(inputs, y, params=params, epochs=args.epochs,
                                                 repeats=args.repeats, device=device, module=module)
            n = len(X) * args.epochs
            ratios = [p / q for p, q in zip(plain_s, plugin_s)]
            print(f"\n{kind} ({workers} loader workers on both sides):")
            print(f"  plain PyTorch loop: best {n / min(plain_s):7.0f} img/s, runs "
                  + " ".join(f"{s:.2f}" for s in plain_s) + " s")
            print(f"  ImageClassifier:    best {n / min(plugin_s):7.0f} img/s, runs "
                  + " ".join(f"{s:.2f}" for s in plugin_s) + " s")
            print(f"  ratio plugin / plain throughput: {min(plain_s) / min(plugin_s):.3f} (best of "
                  f"{args.repeats}); per-pair median {statistics.median(ratios):.3f}, range "
                  f"{min(ratios):.3f}-{max(ratios):.3f}")


if __name__ == "__main__":
    main()
