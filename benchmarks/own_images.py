"""A folder of "your own" PNG images for trying ``aimfair-bench custom`` on data the package's defaults were not
chosen on: ``python -m aimfair_bench.own_images OUT``.

Writes ``OUT/meta.csv`` (columns ``path, y, s, split``) and the images it names: a biased training split of
coloured Fashion-MNIST (``--n-train`` images, ``--minority-share`` of the rare background colour within each
class), a balanced validation split and a balanced test split (from Fashion-MNIST's official test images), and
``OUT/synthetic/{y}_{s}/*.png``: a synthetic stand-in with a **resolution gap**: other Fashion-MNIST training
images (an independent draw from the same official split, so a few may coincide with training images), coloured
the same way, shrunk to ``--synthetic-size`` pixels and blown back up, with pixel noise (a kind of
gap the embedded rendered digits do not have). Then::

    aimfair-bench custom --metadata OUT/meta.csv --synthetic-dir OUT/synthetic --image-size 32 --width 16 \\
        --epochs 15 --finetune-epochs 10 --out results/own

Needs Fashion-MNIST's IDX files (Debian's ``dataset-fashion-mnist``, or ``--fashion-path``).
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from aimfair_plugin.datasets import make_colored_fashion_mnist, resize_images, write_images


def degrade(X, size, noise, rng):
    """Shrink to ``size`` pixels and back, then add Gaussian pixel noise (clipped to [0, 1])."""
    small = resize_images(X, (size, size))
    back = resize_images(small, X.shape[2:])
    return np.clip(back + rng.normal(0, noise, back.shape).astype(np.float32), 0, 1)


def write_own_images(out, *, n_train=800, n_val=200, n_test=400, minority_share=0.05, image_size=32,
                     synthetic_per_cell=400, synthetic_size=10, noise=0.05, fashion_path=None, random_state=0):
    """Write the dataset described in the module docstring; returns the path of ``meta.csv``."""
    out = Path(out)
    rng = np.random.RandomState(random_state)
    real = make_colored_fashion_mnist(path=fashion_path, n_train=n_train, n_test=n_val + n_test,
                                      minority_share=minority_share, image_size=image_size,
                                      random_state=random_state)
    cells = real.y_test * 2 + real.s_test
    is_val = np.zeros(len(cells), dtype=bool)
    for cell in range(4):  # the same share of every cell to validation: both splits stay balanced
        members = rng.permutation(np.flatnonzero(cells == cell))
        is_val[members[: round(len(members) * n_val / (n_val + n_test))]] = True
    rows = []
    for split, X, y, s in (("train", real.X_train, real.y_train, real.s_train),
                           ("val", real.X_test[is_val], real.y_test[is_val], real.s_test[is_val]),
                           ("test", real.X_test[~is_val], real.y_test[~is_val], real.s_test[~is_val])):
        paths = write_images(X, out / "images" / split)
        rows += [{"path": str(Path(p).relative_to(out)), "y": int(a), "s": int(b), "split": split}
                 for p, a, b in zip(paths, y, s)]
    meta = out / "meta.csv"
    pd.DataFrame(rows).to_csv(meta, index=False)
    other = make_colored_fashion_mnist(path=fashion_path, n_train=4 * synthetic_per_cell, n_test=4,
                                       minority_share=0.5, image_size=image_size, random_state=random_state + 1)
    for y in (0, 1):
        for s in (0, 1):
            X = other.X_train[(other.y_train == y) & (other.s_train == s)][:synthetic_per_cell]
            write_images(degrade(X, synthetic_size, noise, rng), out / "synthetic" / f"{y}_{s}")
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write (meta.csv, images/, synthetic/)")
    parser.add_argument("--n-train", type=int, default=800)
    parser.add_argument("--minority-share", type=float, default=0.05)
    parser.add_argument("--synthetic-size", type=int, default=10, help="side the synthetic images are shrunk to")
    parser.add_argument("--fashion-path", help="Fashion-MNIST IDX folder (default: Debian's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_own_images(args.out, n_train=args.n_train, minority_share=args.minority_share,
                           synthetic_size=args.synthetic_size, fashion_path=args.fashion_path,
                           random_state=args.seed))


if __name__ == "__main__":
    main()
