"""Images from disk: one decoder for every door, lazy path inputs everywhere, clear errors for broken files."""

import numpy as np
import pytest
import torch
from PIL import Image

from aimfair_plugin.datasets import check_image_files, read_image, read_images
from aimfair_plugin.estimators import (
    CVaRDROClassifier,
    GroupDROClassifier,
    ImageClassifier,
    InfluenceReweightingClassifier,
    JTTClassifier,
    LfFClassifier,
    SelectiveFinetuneMitigator,
    SelectiveMask,
)
from aimfair_plugin.estimators._data import ImageDataset, loader_options, resolve_num_workers
from aimfair_plugin.estimators._fairif import Batches
from aimfair_plugin.estimators._selective import SyntheticSet
from aimfair_plugin.synth import ImageFolderProvider, SyntheticDataProvider

FAST = dict(width=4, max_epochs=2, lr=0.05, batch_size=32, lr_milestones=(), augment=False, num_workers=0)


def write_pngs(X, folder, size=None):
    """Float images -> 8-bit PNG files (optionally at another size, so decoding must resize)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(X):
        img = Image.fromarray((image.transpose(1, 2, 0) * 255).round().astype(np.uint8))
        if size is not None:
            img = img.resize((size, size), Image.NEAREST)
        path = folder / f"{i:04d}.png"
        img.save(path)
        paths.append(str(path))
    return np.array(paths)


@pytest.fixture(scope="module")
def png_data(small_mnist, tmp_path_factory):
    """120 training images written as 20 px PNGs (decoded to the 16 px the models train on) + 40 validation."""
    d = small_mnist
    folder = tmp_path_factory.mktemp("pngs")
    train = write_pngs(d.X_train[:120], folder / "train", size=20)
    val_idx = np.concatenate([np.flatnonzero((d.y_test == y) & (d.s_test == s))[:10] for y in (0, 1) for s in (0, 1)])
    val = write_pngs(d.X_test[val_idx], folder / "val", size=20)
    return {"train": train, "y": d.y_train[:120], "s": d.s_train[:120], "val": val, "y_val": d.y_test[val_idx],
            "s_val": d.s_test[val_idx]}


# -- one decoder ---------------------------------------------------------------------------------------------


def test_read_images_decodes_scales_and_resizes(tmp_path):
    pixels = np.zeros((10, 12, 3), dtype=np.uint8)
    pixels[:, :6] = (255, 0, 51)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels[..., 0]).save(tmp_path / "grey.png")  # grey files become RGB
    full = read_image(tmp_path / "a.png")
    assert full.shape == (3, 10, 12) and full.dtype == np.float32
    np.testing.assert_allclose(full[:, 0, 0], [1.0, 0.0, 0.2], atol=1e-7)
    both = read_images([tmp_path / "a.png", tmp_path / "grey.png"], image_size=(5, 6))
    assert both.shape == (2, 3, 5, 6) and 0 <= both.min() and both.max() <= 1
    np.testing.assert_allclose(both[1, 0], both[1, 2])
    assert read_images([tmp_path / "a.png"], image_size=8).shape == (1, 3, 8, 8)
    Image.fromarray(pixels[:4]).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="pass image_size"):
        read_images([tmp_path / "a.png", tmp_path / "small.png"])
    with pytest.raises(ValueError, match="image_size"):
        read_images([tmp_path / "a.png"], image_size=0)


def test_predict_on_paths_equals_predict_on_the_decoded_arrays(png_data):
    clf = ImageClassifier(random_state=0, image_size=16, **FAST).fit(png_data["train"], png_data["y"])
    decoded = read_images(png_data["train"], image_size=clf.image_size)
    assert decoded.shape == (120, 3, 16, 16)
    np.testing.assert_array_equal(clf.predict_proba(png_data["train"]), clf.predict_proba(decoded))


def test_a_provider_file_gives_the_pixels_of_the_same_file_given_as_real_data(image_folder):
    paths, y, s = ImageFolderProvider(image_folder).sample({(0, 0): 3, (1, 1): 3}, random_state=0)
    size = (12, 12)
    synthetic = SyntheticSet(paths, y, s, True, size).dataset()
    real = ImageDataset(paths, y, is_paths=True, size=size)
    for i in range(len(paths)):
        np.testing.assert_array_equal(synthetic[i][0].numpy(), real[i][0].numpy())
        np.testing.assert_array_equal(real[i][0].numpy(), read_image(paths[i], image_size=size))


# -- lazy path inputs for every estimator ------------------------------------------------------------------


BASELINES = [
    (ImageClassifier, {}, {}),
    (JTTClassifier, {"identification_epochs": 1, "upweight": 5}, {}),
    (CVaRDROClassifier, {"alpha": 0.3}, {}),
    (LfFClassifier, {}, {}),
    (GroupDROClassifier, {}, {"sensitive_features": "s"}),
    (InfluenceReweightingClassifier, {"lissa_iterations": 5}, {"X_val": "val", "y_val": "y_val",
                                                             "sensitive_features_val": "s_val"}),
]


@pytest.mark.parametrize("cls, params, fit_args", BASELINES, ids=[c[0].__name__ for c in BASELINES])
def test_every_baseline_trains_on_paths_exactly_as_on_the_decoded_arrays(png_data, cls, params, fit_args):
    def fit(decode):
        def inputs(value):
            return read_images(value, image_size=16) if decode and value.dtype.kind == "U" else value

        extra = {k: inputs(png_data[v]) for k, v in fit_args.items()}
        X = inputs(png_data["train"])
        return cls(random_state=0, image_size=16, **FAST, **params).fit(X, png_data["y"], **extra)

    on_paths, on_arrays = fit(False), fit(True)
    np.testing.assert_array_equal(on_paths.predict_proba(png_data["train"][:30]),
                                  on_arrays.predict_proba(read_images(png_data["train"][:30], image_size=16)))


def test_loader_workers_decode_paths_and_give_the_same_model(png_data):
    assert resolve_num_workers("auto", False) == 0 and resolve_num_workers("auto", True) >= 1
    assert resolve_num_workers(3, False) == 3
    dataset = ImageDataset(png_data["train"], png_data["y"], is_paths=True, size=(16, 16))
    options = loader_options("auto", dataset, "cpu")
    assert options["num_workers"] >= 1 and options["persistent_workers"] and not options["pin_memory"]
    assert options["multiprocessing_context"] == "fork"  # also inside joblib workers (benchmark jobs)
    assert loader_options("auto", dataset, "cuda")["pin_memory"]
    assert loader_options("auto", ImageDataset(np.zeros((2, 3, 4, 4), np.float32)), "cpu") == {
        "num_workers": 0, "pin_memory": False}
    serial = ImageClassifier(random_state=0, image_size=16, **FAST).fit(png_data["train"], png_data["y"])
    workers = ImageClassifier(random_state=0, image_size=16, **{**FAST, "num_workers": 2}).fit(
        png_data["train"], png_data["y"])
    np.testing.assert_array_equal(serial.predict_proba(png_data["train"]), workers.predict_proba(png_data["train"]))


def test_fairif_reads_training_batches_on_demand():
    dataset = torch.utils.data.TensorDataset(torch.arange(10.0)[:, None], torch.arange(10))
    batches = Batches(dataset, 4)
    assert len(batches) == 3
    streamed = list(batches)
    for i in range(3):
        np.testing.assert_array_equal(batches[i][1].numpy(), streamed[i][1].numpy())
    assert batches[2][1].tolist() == [8, 9]
    with pytest.raises(IndexError):
        batches[3]


# -- the mitigator with a provider on disk ---------------------------------------------------------------


def test_mitigator_fine_tunes_on_synthetic_paths_like_on_their_decoded_arrays(png_data, image_folder):
    """ImageFolderProvider returns paths; decoded lazily, they train exactly what the same pixels as arrays do."""

    class Decoded(SyntheticDataProvider):
        def __init__(self, provider):
            self.provider = provider

        def sample(self, group_counts, *, image_shape=None, random_state=None):
            X, y, s = self.provider.sample(group_counts, image_shape=image_shape, random_state=random_state)
            return read_images(X, image_size=image_shape[1:]), y, s

    folder = ImageFolderProvider(image_folder, replace=True)
    params = dict(estimator=ImageClassifier(random_state=0, image_size=16, **FAST), synthetic_ratio=0.2,
                  finetune_epochs=1, finetune_batch_size=16, strategy=SelectiveMask(top_k=40), random_state=0,
                  memory=None)
    lazy = SelectiveFinetuneMitigator(folder, **params).fit(png_data["train"], png_data["y"])
    eager = SelectiveFinetuneMitigator(Decoded(folder), **params).fit(png_data["train"], png_data["y"])
    assert lazy.selection_mask_ == eager.selection_mask_
    np.testing.assert_array_equal(lazy.predict_proba(png_data["train"][:20]),
                                  eager.predict_proba(png_data["train"][:20]))


def test_broken_synthetic_files_are_refused_naming_the_file(png_data, tmp_path):
    broken = tmp_path / "cut.png"
    good = png_data["train"][0]
    broken.write_bytes(open(good, "rb").read()[:60])
    with pytest.raises(ValueError, match="cut.png"):
        check_image_files([good, broken])

    class Paths(SyntheticDataProvider):
        def sample(self, group_counts, *, image_shape=None, random_state=None):
            cells = [cell for cell, n in sorted(group_counts.items()) for _ in range(n)]
            paths = [str(broken)] + [good] * (len(cells) - 1)
            return np.array(paths), np.array([c[0] for c in cells]), np.array([c[1] for c in cells])

    mitigator = SelectiveFinetuneMitigator(Paths(), estimator=ImageClassifier(random_state=0, image_size=16, **FAST),
                                           synthetic_ratio=0.1, memory=None, random_state=0)
    with pytest.raises(ValueError, match=r"Cannot read image .*cut\.png"):
        mitigator.fit(png_data["train"], png_data["y"])
