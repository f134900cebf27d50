"""ImageFolderProvider: reads the {root}/{y}_{s} layout, with clear errors."""

import shutil

import numpy as np
import pytest

from aimfair_plugin.datasets import read_images
from aimfair_plugin.synth import ImageFolderProvider


def test_images_come_from_their_cell_folder(image_folder):
    paths, y, s = ImageFolderProvider(image_folder).sample({(1, 0): 6, (0, 1): 2}, random_state=0)
    assert paths.shape == (8,) and all(p.startswith(str(image_folder)) for p in paths)
    assert all(f"/{a}_{b}/" in p for p, a, b in zip(paths, y, s))
    X = read_images(paths, image_size=10)
    # cell colours: red = 60*y + 10*i, green = 120*s, blue = 200
    np.testing.assert_allclose(X[s == 1, 1], 120 / 255, atol=1e-6)
    np.testing.assert_allclose(X[s == 0, 1], 0, atol=1e-6)
    reds = sorted(np.round(X[y == 1, 0, 0, 0] * 255).astype(int).tolist())
    assert reds == [60, 70, 80, 90, 100, 110]  # all six, each once (no replacement)


def test_missing_or_small_cell_folders_raise(image_folder, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(image_folder, root)
    shutil.rmtree(root / "1_1")
    provider = ImageFolderProvider(root)
    with pytest.raises(ValueError, match=r"No folder .*1_1 for cell \(y=1, s=1\)"):
        provider.sample({(1, 1): 1})
    with pytest.raises(ValueError, match="holds 6 images, 7 requested"):
        provider.sample({(0, 0): 7})
    X, _, _ = ImageFolderProvider(root, replace=True).sample({(0, 0): 7}, image_shape=(3, 8, 8))
    assert X.shape == (7,) and all("/0_0/" in p for p in X)  # drawn with replacement


def test_truncated_image_gives_a_clear_error(image_folder, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(image_folder, root)
    path = root / "0_0" / "000.png"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"Cannot read image .*0_0/000\.png"):
        ImageFolderProvider(root).sample({(0, 0): 6})
