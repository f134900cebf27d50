import pickle

import numpy as np
import pytest
import torch
from fairlearn.reductions import DemographicParity, ExponentiatedGradient
from PIL import Image
from sklearn.base import clone

from aimfair_plugin.estimators import ImageClassifier

FAST = dict(width=8, max_epochs=2, lr=0.05, batch_size=64, lr_milestones=(1,), lr_gamma=0.1, augment=False)


def test_fit_predict_api(small_mnist):
    d = small_mnist
    clf = ImageClassifier(random_state=0, **FAST).fit(d.X_train, np.where(d.y_train == 1, "big", "small"))
    assert clf.classes_.tolist() == ["big", "small"]
    proba = clf.predict_proba(d.X_test)
    assert proba.shape == (200, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    margin = clf.decision_function(d.X_test)
    np.testing.assert_array_equal(margin > 0, proba[:, 1] > 0.5)
    assert set(clf.predict(d.X_test)) <= {"big", "small"}
    assert 0.0 <= clf.score(d.X_test, np.where(d.y_test == 1, "big", "small")) <= 1.0
    assert len(clf.history_) == 2


def test_same_seed_same_predictions_and_pickle(small_mnist):
    d = small_mnist
    a = ImageClassifier(random_state=3, **{**FAST, "augment": True}).fit(d.X_train, d.y_train)
    b = clone(a).fit(d.X_train, d.y_train)
    np.testing.assert_array_equal(a.predict_proba(d.X_test), b.predict_proba(d.X_test))
    c = ImageClassifier(random_state=4, **FAST).fit(d.X_train, d.y_train)
    assert not np.array_equal(a.predict_proba(d.X_test), c.predict_proba(d.X_test))
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.predict_proba(d.X_test), a.predict_proba(d.X_test))


def test_predictions_run_in_larger_batches_and_equal_the_training_batch_size_ones(small_mnist):
    d = small_mnist
    clf = ImageClassifier(random_state=0, **{**FAST, "batch_size": 16}).fit(d.X_train, d.y_train)
    loader = clf.net_.get_iterator(clf.net_.get_dataset(d.X_test), training=False)
    assert loader.batch_size == 256 and clf.net_.get_iterator(clf.net_.get_dataset(d.X_test), training=True).batch_size == 16
    module = clf.net_.module_.eval()
    with torch.no_grad():  # the same network in batches of the training batch size
        small = torch.cat([module(torch.as_tensor(d.X_test[i:i + 16])) for i in range(0, len(d.X_test), 16)])
    np.testing.assert_allclose(clf.predict_proba(d.X_test), torch.softmax(small, 1).numpy(), rtol=1e-5, atol=1e-6)
    big = ImageClassifier(random_state=0, **{**FAST, "batch_size": 300, "max_epochs": 1}).fit(d.X_train, d.y_train)
    assert big.net_.get_iterator(big.net_.get_dataset(d.X_test), training=False).batch_size == 300  # never smaller


def test_sample_weight_reaches_each_minibatch(small_mnist):
    d = small_mnist
    # With zero weight on every class-1 image, the loss only ever sees class 0.
    w = (d.y_train == 0).astype(float)
    clf = ImageClassifier(random_state=0, **FAST).fit(d.X_train, d.y_train, sample_weight=w)
    assert (clf.predict(d.X_test) == 0).all()


def test_weighted_loss_is_the_weighted_mean():
    clf = ImageClassifier(random_state=0, **FAST).fit(np.random.rand(8, 3, 16, 16).astype("float32"), [0, 1] * 4)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 0, 1])
    w = torch.tensor([1.0, 0.0, 3.0])
    per_sample = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    got = clf.net_.get_loss(logits, y, X={"X": None, "sample_weight": w})
    torch.testing.assert_close(got, (per_sample * w).mean())
    torch.testing.assert_close(clf.net_.get_loss(logits, y, X=None), per_sample.mean())


def test_fairlearn_exponentiated_gradient_wraps_it(small_mnist):
    d = small_mnist
    base = ImageClassifier(random_state=0, **{**FAST, "max_epochs": 1})
    mitigator = ExponentiatedGradient(base, DemographicParity(), max_iter=3, nu=0.1)
    mitigator.fit(d.X_train, d.y_train, sensitive_features=d.s_train)
    assert len(mitigator.predictors_) >= 1
    assert all(hasattr(p, "net_") for p in mitigator.predictors_)
    assert mitigator.predict(d.X_test).shape == (200,)


def test_image_paths_are_loaded_lazily_and_resized(tmp_path, small_mnist):
    d = small_mnist
    paths = []
    for i in range(40):
        path = tmp_path / f"{i}.png"
        Image.fromarray((d.X_train[i].transpose(1, 2, 0) * 255).astype(np.uint8)).resize((24, 20)).save(path)
        paths.append(str(path))
    clf = ImageClassifier(random_state=0, image_size=16, **FAST).fit(np.array(paths), d.y_train[:40])
    assert clf.image_shape_ == (3, 16, 16)
    assert clf.predict(np.array(paths[:5])).shape == (5,)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="Cannot read image"):
        clf.predict(np.array([str(tmp_path / "broken.png")]))


def test_verbose_shows_a_progress_bar(small_mnist, capsys):
    d = small_mnist
    ImageClassifier(random_state=0, verbose=1, **{**FAST, "max_epochs": 1}).fit(d.X_train[:64], d.y_train[:64])
    captured = capsys.readouterr()
    assert "it/s" in captured.err or "it/s" in captured.out
    assert "train_loss" in captured.out


@pytest.mark.parametrize(
    "X, y, kwargs, message",
    [
        (np.full((4, 3, 8, 8), np.nan, dtype="float32"), [0, 1, 0, 1], {}, "NaN"),
        (np.zeros((4, 64), dtype="float32"), [0, 1, 0, 1], {}, "channels, height, width"),
        (np.zeros((4, 3, 8, 8), dtype="float32"), [0, 1, 0], {}, "one label per image"),
        (np.zeros((4, 3, 8, 8), dtype="float32"), [0, 0, 0, 0], {}, "at least two classes"),
        (np.zeros((4, 3, 8, 8), dtype="float32"), [0.5, 1.2, 0.1, 3.3], {}, "class labels"),
        (np.zeros((4, 3, 8, 8), dtype="float32"), [0, 1, 0, 1], {"sample_weight": [1, -1, 1, 1]}, "non-negative"),
        (np.zeros((4, 3, 8, 8), dtype="float32"), [0, 1, 0, 1], {"sample_weight": [1, 1]}, "entries"),
    ],
)
def test_bad_input(X, y, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageClassifier(**FAST).fit(X, y, **kwargs)


def test_bad_params_and_unfitted():
    X = np.zeros((4, 3, 8, 8), dtype="float32")
    with pytest.raises(ValueError, match="max_epochs"):
        ImageClassifier(max_epochs=0).fit(X, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="arch"):
        ImageClassifier(arch="vgg", max_epochs=1).fit(X, [0, 1, 0, 1])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ImageClassifier().predict(X)


def test_inputs_people_have_uint8_channel_last_grey_and_wrong_scale():
    from aimfair_plugin.estimators import SelectiveFinetuneMitigator
    from aimfair_plugin.estimators._data import check_images
    from aimfair_plugin.synth import ArrayProvider

    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(6, 3, 8, 8)).astype(np.uint8)
    scaled, is_paths = check_images(images)
    assert not is_paths and scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, images / 255.0, rtol=1e-6)  # uint8 = 8-bit images, scaled to [0, 1]
    with pytest.raises(ValueError, match=r"transpose\(0, 3, 1, 2\)"):
        check_images(images.transpose(0, 2, 3, 1))
    with pytest.raises(ValueError, match=r"X\[:, None\]"):
        check_images(images[:, 0])
    with pytest.raises(ValueError, match="integer dtype int64"):
        check_images(images.astype(np.int64))
    # real images on a 0-255 float scale next to [0, 1] synthetic images: refused before any training
    X = rng.rand(16, 3, 8, 8).astype(np.float32) * 255
    y = np.arange(16) % 2
    provider = ArrayProvider(rng.rand(16, 3, 8, 8).astype(np.float32), y, np.arange(16) // 2 % 2)
    mitigator = SelectiveFinetuneMitigator(provider, estimator=ImageClassifier(width=4, max_epochs=1))
    with pytest.raises(ValueError, match=r"lie in \[0.*255.*synthetic images are in \[0, 1\]"):
        mitigator.fit(X, y)
