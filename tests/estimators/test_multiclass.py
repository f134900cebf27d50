"""Three classes and a three-valued protected attribute, end to end: provider cells, the mitigator, the report."""

import numpy as np
import pytest

from aimfair_plugin.estimators import ImageClassifier, SelectiveFinetuneMitigator
from aimfair_plugin.metrics import fairness_report, group_accuracy_table
from aimfair_plugin.synth import ArrayProvider, balanced_group_counts, biased_group_counts, majority_group

COLOURS = np.array([[0.8, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.2, 0.8]], dtype=np.float32)


def shapes(y, s, rng, size=16):
    """Images whose class is a stripe direction (horizontal, vertical, diagonal) and whose group is the
    background colour, with pixel noise."""
    i, j = np.indices((size, size))
    patterns = np.stack([(i // 2) % 2, (j // 2) % 2, ((i + j) // 2) % 2]).astype(np.float32)
    stripe = patterns[y][:, None]  # (n, 1, H, W)
    X = stripe * 0.9 + (1 - stripe) * COLOURS[s][:, :, None, None]
    return np.clip(X + rng.normal(0, 0.05, X.shape), 0, 1).astype(np.float32)


def biased_draw(n, rng, bias=0.9):
    y = rng.randint(0, 3, n)
    majority = np.array([majority_group(c, 3) for c in y])
    s = np.where(rng.uniform(size=n) < bias, majority, (majority + rng.randint(1, 3, n)) % 3)
    return shapes(y, s, rng), y, s


def test_generalised_counts_keep_the_binary_case_and_lean_each_class_to_another_group():
    assert balanced_group_counts(1000) == balanced_group_counts(1000, 2, 2)
    assert biased_group_counts(1000, 0.9) == {(0, 0): 50, (0, 1): 450, (1, 0): 450, (1, 1): 50}
    counts = biased_group_counts(900, 0.8, n_classes=3, n_groups=3)
    assert sum(counts.values()) == 900 and len(counts) == 9
    assert [max(range(3), key=lambda g: counts[(c, g)]) for c in range(3)] == [1, 2, 0]
    assert counts[(0, 1)] == 240 and counts[(0, 0)] == counts[(0, 2)] == 30
    with pytest.raises(ValueError, match=r"bias_ratio must lie in \[1/n_groups, 1\)"):
        biased_group_counts(90, 0.3, n_classes=3, n_groups=3)


def test_three_classes_three_groups_end_to_end():
    rng = np.random.RandomState(0)
    X, y, s = biased_draw(600, rng)
    y_test, s_test = np.repeat(np.arange(3), 90), np.tile(np.arange(3), 90)
    X_test = shapes(y_test, s_test, rng)
    y_syn, s_syn = np.repeat(np.arange(3), 60), np.tile(np.arange(3), 60)
    provider = ArrayProvider(shapes(y_syn, s_syn, rng), y_syn, s_syn)
    assert provider.n_groups == 3
    estimator = ImageClassifier(width=4, max_epochs=3, lr=0.05, batch_size=64, augment=False, random_state=0)
    m = SelectiveFinetuneMitigator(provider, estimator=estimator, finetune_epochs=2, finetune_lr=0.01,
                                   finetune_batch_size=64, random_state=0).fit(X, y)
    assert m.classes_.tolist() == [0, 1, 2] and m.predict_proba(X_test).shape == (270, 3)
    report = fairness_report(y_test, m.predict(X_test), sensitive_features=s_test)
    assert not report.isna().any()
    table = group_accuracy_table(y_test, m.predict(X_test), sensitive_features=s_test)
    assert table.shape == (3, 3) and not table.isna().any().any()  # all nine cells


def test_a_cell_the_provider_cannot_produce_fails_before_training(monkeypatch):
    rng = np.random.RandomState(0)
    X, y, s = biased_draw(120, rng)
    keep = ~((np.repeat(np.arange(3), 10) == 2) & (np.tile(np.arange(3), 10) == 1))
    y_syn, s_syn = np.repeat(np.arange(3), 10)[keep], np.tile(np.arange(3), 10)[keep]
    provider = ArrayProvider(shapes(y_syn, s_syn, rng), y_syn, s_syn)
    monkeypatch.setattr(ImageClassifier, "_fit_net", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match=r"no image of the cells \(class index, group index\) \[\(2, 1\)\]"):
        SelectiveFinetuneMitigator(provider, estimator=ImageClassifier(width=4), random_state=0).fit(X, y)
