"""Peak memory and wall time of a mitigator fit on 224 px PNG files, as the synthetic sets grow.

The paper's scale is 20,000 real images at 224 px plus a biased and a balanced synthetic set of the same
size: 12 GB each as float32 arrays. Here every image is a file, read batch by batch, so the peak resident
memory of a fit must not grow with the number of images.

Data (written once under ``--data``, reused by later runs):

- ``real/``: the embedded task's 2,000 biased training digits (coloured MNIST, minority share 0.04),
  upscaled to 224 px, as PNG files, with ``real/labels.csv``;
- ``synthetic/{y}_{s}/``: 4,000 rendered digits per cell at 224 px (``RenderedDigitsProvider``), the layout
  of :class:`~aimfair_plugin.synth.ImageFolderProvider`; ``synthetic_1000/`` links the first 1,000 per cell.

Each run is a fresh Python process (``ru_maxrss`` is a high-water mark over a process's life) that fits
``SelectiveFinetuneMitigator(ImageFolderProvider(..., replace=True))`` on the 2,000 real paths (S1's majority
cells need up to 45 % of ``n``, more than a folder's 4,000 files at ``n = 16,000``, so files are drawn with
replacement there): a narrow ResNet-18
(``--width``, 224 px) pre-trained for 1 epoch, S1 and S2 of ``n`` images each (``synthetic_ratio = n /
2000``), mask gradients on ``--mask-batches`` batches of each set, fine-tuning for 1 epoch on S2. It reports
the peak resident memory of the process (``getrusage(RUSAGE_SELF)``), of its largest DataLoader worker
(``RUSAGE_CHILDREN``), and the wall time.

Run: ``python -m aimfair_bench.scale [--sizes 1000 4000 16000] [--data results/scale_data]``.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from aimfair_plugin.datasets import resize_images, write_images
from aimfair_plugin.utils import atomic_path

REAL = 2000
PER_CELL = 4000
SIZE = 224
CELLS = ((0, 0), (0, 1), (1, 0), (1, 1))


def write_real(folder, chunk=100):
    from .suites import embedded_task
    from .tasks import load_task

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "labels.csv").is_file():
        return
    data = load_task(dict(embedded_task(n_train=REAL), image_size=28), 0)
    for start in range(0, REAL, chunk):
        write_images(resize_images(data.X_train[start : start + chunk], (SIZE, SIZE)), folder, start=start)
    labels = pd.DataFrame({"file": [f"{i:05d}.png" for i in range(REAL)], "y": data.y_train, "s": data.s_train})
    with atomic_path(folder / "labels.csv") as tmp:
        labels.to_csv(tmp, index=False)


def write_synthetic(root, per_cell=PER_CELL, chunk=200):
    from aimfair_plugin.synth import RenderedDigitsProvider

    provider = RenderedDigitsProvider(image_size=SIZE)
    for cell in CELLS:
        folder = root / f"{cell[0]}_{cell[1]}"
        folder.mkdir(parents=True, exist_ok=True)
        done = len(list(folder.glob("*.png")))
        for start in range(done - done % chunk, per_cell, chunk):
            X, _, _ = provider.sample({cell: chunk}, image_shape=(3, SIZE, SIZE), random_state=start + 7919 * cell[0]
                                      + 104729 * cell[1])
            write_images(X, folder, start=start)


def link_subset(root, subset, per_cell):
    for cell in CELLS:
        folder = subset / f"{cell[0]}_{cell[1]}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_cell):
            link = folder / f"{i:05d}.png"
            if not link.exists():
                link.symlink_to((root / f"{cell[0]}_{cell[1]}" / f"{i:05d}.png").resolve())


def prepare(data):
    start = time.perf_counter()
    write_real(data / "real")
    write_synthetic(data / "synthetic")
    link_subset(data / "synthetic", data / "synthetic_1000", 1000)
    return time.perf_counter() - start


def one_fit(data, root, n_synthetic, width, mask_batches, batch_size):
    """Fit once in this process; returns the measurements (called in a fresh subprocess by :func:`main`)."""
    import torch

    from aimfair_plugin.estimators import ImageClassifier, SelectiveFinetuneMitigator, SelectiveMask
    from aimfair_plugin.synth import ImageFolderProvider

    labels = pd.read_csv(data / "real" / "labels.csv")
    paths = np.array([str(data / "real" / f) for f in labels["file"]])
    y = labels["y"].to_numpy()
    estimator = ImageClassifier(width=width, max_epochs=1, lr=0.05, batch_size=batch_size, lr_milestones=(),
                                image_size=SIZE, augment=False, random_state=0)
    mitigator = SelectiveFinetuneMitigator(
        ImageFolderProvider(root, image_size=SIZE, replace=True), estimator=estimator, synthetic_ratio=n_synthetic / len(y),
        strategy=SelectiveMask(top_k=55, bias_ratio=0.9, max_batches=mask_batches), finetune_epochs=1,
        finetune_batch_size=batch_size, memory=None, random_state=0)
    start = time.perf_counter()
    mitigator.fit(paths, y)
    wall = time.perf_counter() - start
    kb = 1024  # ru_maxrss is in kilobytes on Linux
    return {"n_real": len(y), "n_synthetic": n_synthetic, "provider_per_cell": len(list((Path(root) / "0_0").glob("*.png"))),
            "wall_s": round(wall, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kb, 1),
            "peak_worker_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kb, 1),
            "n_selected": int(mitigator.n_selected_), "torch_threads": torch.get_num_threads(),
            "loader_workers": estimator.get_params()["num_workers"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000],
                        help="synthetic set sizes (S1 and S2 each), from the 4,000-per-cell folder")
    parser.add_argument("--data", default="results/scale_data", help="where the PNG files are written once")
    parser.add_argument("--out", default="results/scale")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mask-batches", type=int, default=4)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one fit in this process
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    data = Path(args.data).resolve()
    if args.one is not None:
        print(json.dumps(one_fit(data, args.root, args.one, args.width, args.mask_batches, args.batch_size)))
        return
    print(f"Writing the PNG files under {data} (once)...", flush=True)
    print(f"  ready after {prepare(data):.0f} s", flush=True)
    runs = [(str(data / "synthetic_1000"), 2000)] + [(str(data / "synthetic"), n) for n in args.sizes]
    rows = []
    for root, n in runs:
        command = [sys.executable, "-m", "benchmarks.scale", "--data", str(data), "--one", str(n), "--root", root,
                   "--width", str(args.width), "--mask-batches", str(args.mask_batches),
                   "--batch-size", str(args.batch_size)]
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
        if done.returncode:
            raise SystemExit(f"The fit with {n} synthetic images failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "scale.csv", index=False)
    sized = table.iloc[1:]
    spread = sized["peak_rss_mb"].max() - sized["peak_rss_mb"].min()
    text = (f"Mitigator fit on {REAL} real PNG paths at {SIZE} px, ResNet-18 width {args.width}, 1 + 1 epochs, mask "
            f"gradients on {args.mask_batches} batches of {args.batch_size}; one fresh process per row.\n\n"
            f"{table.to_markdown(index=False)}\n\nPeak resident memory of the fitting process across the synthetic "
            f"sizes {args.sizes}: spread {spread:.0f} MB.\n")
    print("\n" + text)
    (out / "summary.md").write_text(text)


if __name__ == "__main__":
    main()
