import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def small_mnist():
    """A small biased coloured MNIST (16x16) shared by the estimator tests."""
    from aimfair_plugin.datasets import make_colored_mnist

    return make_colored_mnist(n_train=400, n_test=200, minority_share=0.1, image_size=16, random_state=0)


@pytest.fixture
def rng():
    return np.random.RandomState(0)
