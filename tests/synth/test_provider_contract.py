"""Every provider honours the same contract: shapes, cells, range, seeds, bad input."""

import numpy as np
import pytest

from aimfair_plugin.datasets import read_images
from aimfair_plugin.synth import (
    ArrayProvider,
    ContextualPromptBuilder,
    DiffusersProvider,
    ImageFolderProvider,
    RenderedDigitsProvider,
)

COUNTS = {(0, 0): 3, (0, 1): 0, (1, 0): 2, (1, 1): 4}


def _array_provider(tmp_path, request):
    rng = np.random.RandomState(0)
    y, s = np.repeat([0, 0, 1, 1], 5), np.tile(np.repeat([0, 1], 5), 2)
    return ArrayProvider(rng.rand(20, 3, 12, 12).astype(np.float32), y, s)


def _rendered(tmp_path, request):
    return RenderedDigitsProvider()


def _folder(tmp_path, request):
    return ImageFolderProvider(request.getfixturevalue("image_folder"))


def _diffusers(tmp_path, request):
    prompts = ContextualPromptBuilder("Smiling", "Male", n_prompts=2, random_state=0)
    return DiffusersProvider(
        request.getfixturevalue("tiny_pipeline_path"), prompts, cache_dir=tmp_path / "cache",
        num_inference_steps=2, batch_size=4, verbose=0,
    )


@pytest.fixture(params=[_array_provider, _rendered, _folder, _diffusers], ids=["array", "rendered", "folder", "diffusers"])
def provider(request, tmp_path):
    return request.param(tmp_path, request)


def pixels(X, size):
    """A provider's images as an array: arrays as they are, paths through the package's one decoder."""
    return read_images(X, image_size=size) if X.ndim == 1 else X


def test_sample_returns_the_requested_cells_and_shape(provider):
    X, y, s = provider.sample(COUNTS, image_shape=(3, 16, 16), random_state=0)
    # providers over files return paths (decoded lazily by the consumer), the others float arrays
    on_disk = isinstance(provider, (ImageFolderProvider, DiffusersProvider))
    assert (X.ndim == 1 and X.dtype.kind == "U") if on_disk else X.ndim == 4
    X = pixels(X, 16)
    assert X.shape == (9, 3, 16, 16) and X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert y.dtype.kind == "i" and s.dtype.kind == "i"
    for (cy, cs), count in COUNTS.items():
        assert int(((y == cy) & (s == cs)).sum()) == count


def test_same_random_state_same_sample(provider):
    a = provider.sample(COUNTS, image_shape=(3, 16, 16), random_state=7)
    b = provider.sample(COUNTS, image_shape=(3, 16, 16), random_state=7)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("counts", [{}, {(-1, 0): 1}, {("a", 0): 1}, {(0, 0): -1}, {(0, 0): 1.5}, [((0, 0), 1)]])
def test_bad_group_counts_raise(provider, counts):
    with pytest.raises(ValueError, match="group_counts"):
        provider.sample(counts, image_shape=(3, 16, 16))


def test_a_cell_the_provider_does_not_have_raises_naming_it(provider):
    """A class or group index beyond the provider's (its prompts' two classes and groups, its arrays' or folders'
    cells) is refused by name; the mitigator checks ``available_cells`` before any training."""
    assert (2, 0) not in provider.available_cells() and provider.n_groups == 2
    with pytest.raises(ValueError, match=r"cell \(y=2, s=0\)"):
        provider.sample({(2, 0): 1}, image_shape=(3, 16, 16))
