import os

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the suite may reach the hub


@pytest.fixture(scope="session")
def tiny_pipeline_path(tmp_path_factory):
    """A tiny random Stable Diffusion pipeline saved to disk (about 7 MB, built offline)."""
    from aimfair_plugin.synth import build_tiny_text_to_image_pipeline

    path = tmp_path_factory.mktemp("tiny_sd")
    build_tiny_text_to_image_pipeline(path, seed=0)
    return path


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """``{root}/{y}_{s}/*.png``: six 20x20 images per cell, each cell one flat colour."""
    from PIL import Image

    root = tmp_path_factory.mktemp("synthetic")
    for y in (0, 1):
        for s in (0, 1):
            folder = root / f"{y}_{s}"
            folder.mkdir()
            for i in range(6):
                Image.new("RGB", (20, 20), (60 * y + 10 * i, 120 * s, 200)).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def small_mnist():
    """A small biased coloured MNIST (16x16) shared by the estimator tests."""
    from aimfair_plugin.datasets import make_colored_mnist

    return make_colored_mnist(n_train=400, n_test=200, minority_share=0.1, image_size=16, random_state=0)


@pytest.fixture
def rng():
    return np.random.RandomState(0)
