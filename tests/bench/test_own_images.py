"""``python -m aimfair_bench.own_images``: a PNG dataset of one's own, in the layout ``aimfair-bench custom`` reads."""

import gzip

import numpy as np
import pandas as pd

from aimfair_bench.cli import main
from aimfair_bench.own_images import degrade, write_own_images
from aimfair_plugin.datasets import read_images


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_the_dataset_has_a_biased_train_split_balanced_val_and_test_and_a_synthetic_folder(tmp_path):
    rng = np.random.RandomState(0)
    idx = tmp_path / "idx"
    idx.mkdir()
    for prefix, n in (("train", 1200), ("t10k", 400)):
        _write_idx(idx / f"{prefix}-images-idx3-ubyte.gz", rng.randint(0, 256, size=(n, 28, 28)))
        _write_idx(idx / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    out = tmp_path / "own"
    meta = write_own_images(out, n_train=200, n_val=40, n_test=80, minority_share=0.1, image_size=16,
                            synthetic_per_cell=100, fashion_path=idx)
    frame = pd.read_csv(meta)
    counts = frame.groupby(["split", "y", "s"]).size().unstack(["y", "s"])
    assert counts.loc["train"].tolist() == [10, 90, 90, 10]  # 10 % of each class in the rare colour
    assert counts.loc["val"].tolist() == [10] * 4 and counts.loc["test"].tolist() == [20] * 4
    images = read_images(np.array([str(out / p) for p in frame["path"]]))
    assert images.shape == (320, 3, 16, 16)
    for y in (0, 1):
        for s in (0, 1):
            assert len(list((out / "synthetic" / f"{y}_{s}").glob("*.png"))) == 100
    # the command reads it: every check passes (nothing trained with --list)
    assert main(["custom", "--metadata", str(meta), "--synthetic-dir", str(out / "synthetic"), "--image-size", "16",
                 "--out", str(tmp_path / "run"), "--n-train", "200", "--list"]) == 0


def test_degrade_removes_detail_and_keeps_the_range():
    rng = np.random.RandomState(0)
    X = rng.rand(4, 3, 32, 32).astype(np.float32)
    out = degrade(X, 8, 0.0, rng)
    assert out.shape == X.shape and out.min() >= 0 and out.max() <= 1
    detail = lambda a: np.abs(np.diff(a, axis=-1)).mean()  # noqa: E731
    assert detail(out) < detail(X) / 2
