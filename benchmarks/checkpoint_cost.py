"""What per-epoch checkpoint selection costs the benchmark, per epoch: ``python -m aimfair_bench.checkpoint_cost``.

On the quick suite's image size and network (32 px, width-16 ResNet-18, batch 64, one torch thread), times in
one process, alternating, what scoring an epoch adds (see :mod:`benchmarks.checkpoints`) against one training
epoch on the 2,000 training images: one pass predicting both validation sets (500 + 200 images), and the
BatchNorm re-estimation a fine-tuning checkpoint needs before it is scored under ``bn_statistics="real"``, on
all 2,000 real images and on the subset the benchmark uses per scored epoch (``BN_IMAGES``). Prints the medians
and the ratios to a training epoch. The whole suite's cost is measured by running it (the records keep each run's scoring time).
"""

import argparse
import time

import numpy as np
import torch

from aimfair_plugin.datasets import make_colored_mnist
from aimfair_plugin.estimators import ImageClassifier

from .checkpoints import BN_IMAGES


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = make_colored_mnist(n_train=2700, n_test=200, minority_share=0.04, image_size=32, random_state=0)
    X, y, X_val = data.X_train[:2000], data.y_train[:2000], data.X_train[2000:2700]
    model = ImageClassifier(width=16, max_epochs=1, lr=0.05, batch_size=64, augment=False, random_state=0).fit(X, y)
    subset = X[:BN_IMAGES]
    times = {"training epoch": [], "validation predictions": [], "BatchNorm re-estimation": [],
             f"BatchNorm re-estimation ({BN_IMAGES} images)": []}
    for _ in range(args.repeats):
        for name, step in (("training epoch", lambda: model.net_.partial_fit(X, y)),
                           ("validation predictions", lambda: model.predict(X_val)),
                           ("BatchNorm re-estimation", lambda: model.reestimate_batchnorm(X)),
                           (f"BatchNorm re-estimation ({BN_IMAGES} images)", lambda: model.reestimate_batchnorm(subset))):
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    median = {name: float(np.median(values)) for name, values in times.items()}
    for name, value in median.items():
        print(f"{name}: {value:.3f} s (median of {args.repeats})")
    epoch = median["training epoch"]
    print(f"scoring both validation sets per epoch: {median['validation predictions'] / epoch:.1%} of a training epoch")
    print(f"with the BatchNorm pass on all real images first: "
          f"{(median['validation predictions'] + median['BatchNorm re-estimation']) / epoch:.1%}")
    print(f"with the BatchNorm pass on {BN_IMAGES} real images first (what the benchmark does): "
          f"{(median['validation predictions'] + median[f'BatchNorm re-estimation ({BN_IMAGES} images)']) / epoch:.1%}")


if __name__ == "__main__":
    main()
