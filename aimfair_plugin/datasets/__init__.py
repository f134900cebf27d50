"""Datasets: the embedded coloured MNIST, Fashion-MNIST, CelebA, UTKFace, Adult, German and COMPAS loaders and bias
tools."""

from ._adult import adult_design_matrix, load_adult
from ._bias import CELLS, cell_shares, make_balanced_subset, make_biased_subset, shares_to_counts
from ._celeba import load_celeba
from ._colored import BACKGROUND_COLORS, binarize_target, colorize, resize_gray
from ._credit_recidivism import load_compas, load_german
from ._fashion import load_fashion_mnist, make_colored_fashion_mnist
from ._images import check_image_files, read_image, read_images, resize_images, write_images
from ._mnist import load_mnist_5k, make_colored_mnist
from ._utkface import load_utkface

__all__ = [
    "BACKGROUND_COLORS",
    "CELLS",
    "adult_design_matrix",
    "binarize_target",
    "cell_shares",
    "check_image_files",
    "colorize",
    "load_adult",
    "load_celeba",
    "load_compas",
    "load_fashion_mnist",
    "load_german",
    "load_mnist_5k",
    "load_utkface",
    "make_balanced_subset",
    "make_biased_subset",
    "make_colored_fashion_mnist",
    "make_colored_mnist",
    "read_image",
    "read_images",
    "resize_gray",
    "resize_images",
    "shares_to_counts",
    "write_images",
]
