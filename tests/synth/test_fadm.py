"""FairTabularDiffusion (FADM): encoding, guidance that really moves samples, meta-learning, errors."""

import copy

import numpy as np
import pandas as pd
import pytest

from aimfair_plugin.synth import FairTabularDiffusion, TabularEncoder

FAST = dict(n_steps=20, max_epochs=25, batch_size=128, hidden=64, n_layers=2, lr=3e-3, random_state=0)


def toy_table(n=900, seed=0):
    """y depends on a + the colour; z (sensitive) depends on b; three domains shift a."""
    rng = np.random.RandomState(seed)
    domain = rng.randint(0, 3, n)
    a = rng.normal(size=n) + 0.5 * domain
    b = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    y = ((a + (colour == "red") * 1.5 + 0.3 * rng.normal(size=n)) > 0.8).astype(int)
    z = (b + 0.3 * rng.normal(size=n) > 0).astype(int)
    count = rng.poisson(3, n)
    X = pd.DataFrame({"a": a, "b": b, "colour": colour, "count": count})
    return X, pd.Series(y, name="income"), z, domain


@pytest.fixture(scope="module")
def fitted():
    X, y, z, domain = toy_table()
    return FairTabularDiffusion(**FAST).fit(X, y, sensitive_features=z, domains=domain), X


def test_encoder_round_trip_and_valid_categories():
    X, _, _, _ = toy_table(50)
    enc = TabularEncoder().fit(X)
    Z = enc.transform(X)
    assert Z.shape == (50, 2 + 1 + 3) and enc.categorical_ == ["colour"]
    back = enc.inverse_transform(Z)
    assert list(back.columns) == list(X.columns)
    np.testing.assert_allclose(back["a"], X["a"], rtol=1e-5, atol=1e-5)
    assert back["colour"].tolist() == X["colour"].tolist() and back["count"].tolist() == X["count"].tolist()
    assert back["count"].dtype == X["count"].dtype
    noisy = enc.inverse_transform(np.random.RandomState(0).normal(size=(200, Z.shape[1])))
    assert set(noisy["colour"]) <= {"red", "green", "blue"}
    with pytest.raises(ValueError, match="not seen"):
        enc.transform(X.assign(colour="purple"))
    lenient = TabularEncoder(handle_unknown="ignore").fit(X).transform(X.assign(colour="purple"))
    assert (lenient[:, 3:] == 0).all() and np.allclose(lenient[:, :3], Z[:, :3])  # a, b, count; then colour


def test_sample_schema_labels_and_reproducibility(fitted):
    model, X = fitted
    frame = model.sample(40, y=1, random_state=3)
    assert list(frame.columns) == [*X.columns, "income"] and len(frame) == 40
    assert (frame["income"] == 1).all()
    assert set(frame["colour"]) <= {"red", "green", "blue"}
    assert pd.api.types.is_integer_dtype(frame["count"])
    pd.testing.assert_frame_equal(frame, model.sample(40, y=1, random_state=3))
    labels = np.array([0, 1] * 10)
    assert model.sample(20, y=labels, random_state=0)["income"].tolist() == labels.tolist()
    history = pd.DataFrame(model.history_)  # a skorch History, like every estimator's
    assert len(history) == FAST["max_epochs"] and np.isfinite(history[["score", "label"]]).all().all()
    assert history["score"].iloc[-1] < history["score"].iloc[0]


def test_label_guidance_makes_samples_of_the_requested_label(fitted):
    """The clean-data label classifier agrees with the requested labels more often with λ_y > 0."""
    model, _ = fitted
    labels = np.array([0, 1] * 150)

    def agreement(m):
        Z, idx = m.sample_encoded(300, y=labels, random_state=1)
        return (m.predict_proba_noisy(Z).argmax(1) == idx).mean()

    guided = agreement(copy.deepcopy(model).set_params(guidance_label=3.0, guidance_fair=0.0))
    unguided = agreement(copy.deepcopy(model).set_params(guidance_label=0.0, guidance_fair=0.0))
    assert guided > unguided + 0.1, (guided, unguided)


def test_entropy_guidance_hides_the_sensitive_attribute(fitted):
    model, _ = fitted

    def entropy(m):
        Z, _ = m.sample_encoded(300, y=1, random_state=2)
        p = m.predict_proba_noisy(Z, which="sensitive")
        return float(-(p * np.log(p + 1e-12)).sum(1).mean())

    fair = entropy(copy.deepcopy(model).set_params(guidance_label=1.0, guidance_fair=5.0))
    plain = entropy(copy.deepcopy(model).set_params(guidance_label=1.0, guidance_fair=0.0))
    assert fair > plain + 0.05, (fair, plain)


def test_meta_learning_and_plain_training_both_learn():
    X, y, z, domain = toy_table(400)
    plain = FairTabularDiffusion(**{**FAST, "max_epochs": 5}, meta_learning=False).fit(X, y, sensitive_features=z)
    assert plain.domains_ is None and len(plain.history_) == 5
    meta = FairTabularDiffusion(**{**FAST, "max_epochs": 5}).fit(X, y, sensitive_features=z, domains=domain)
    assert meta.domains_.tolist() == [0, 1, 2]
    # same seed -> same model
    again = FairTabularDiffusion(**{**FAST, "max_epochs": 5}).fit(X, y, sensitive_features=z, domains=domain)
    pd.testing.assert_frame_equal(pd.DataFrame(meta.history_), pd.DataFrame(again.history_))


@pytest.mark.parametrize("kwargs, fit_kwargs, error, message", [
    ({}, {"sensitive_features": None, "domains": "d"}, ValueError, "sensitive_features"),
    ({}, {"domains": None}, ValueError, "at least two distinct"),
    ({}, {"domains": "one"}, ValueError, "at least two distinct"),
    ({"n_steps": 0}, {}, ValueError, "n_steps"),
    ({"guidance_fair": -1.0}, {}, ValueError, "guidance_fair"),
])
def test_bad_input(kwargs, fit_kwargs, error, message):
    X, y, z, domain = toy_table(60)
    fit = {"sensitive_features": z, "domains": domain}
    for key, value in fit_kwargs.items():
        fit[key] = {"d": domain, "one": np.zeros(60)}.get(value, value) if isinstance(value, str) else value
    with pytest.raises(error, match=message):
        FairTabularDiffusion(**{**FAST, "max_epochs": 1, **kwargs}).fit(X, y, **fit)


def test_bad_input_types_and_labels(fitted):
    model, X = fitted
    with pytest.raises(TypeError, match="DataFrame"):
        FairTabularDiffusion(meta_learning=False).fit(X.to_numpy(), np.zeros(len(X)), sensitive_features=np.zeros(len(X)))
    with pytest.raises(ValueError, match="not seen in fit"):
        model.sample(3, y=7)
    with pytest.raises(ValueError, match="n must be"):
        model.sample(0)


def test_timestep_embedding_is_the_sinusoidal_one_by_hand():
    import math

    import torch

    from aimfair_plugin.synth._fadm import timestep_embedding

    t = torch.tensor([0, 1, 7, 49])
    emb = timestep_embedding(t, 8, 50)
    scaled = t.double() * 1000.0 / 50
    freqs = torch.tensor([10000.0 ** (-i / 4) for i in range(4)], dtype=torch.float64)
    by_hand = torch.cat([torch.sin(scaled[:, None] * freqs), torch.cos(scaled[:, None] * freqs)], dim=1)
    torch.testing.assert_close(emb.double(), by_hand, atol=1e-4, rtol=0)
    assert emb.shape == (4, 8) and math.isclose(float(emb[0, 4]), 1.0)
