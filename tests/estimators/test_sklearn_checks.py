"""scikit-learn's own estimator checks, over the estimator registry, at each estimator's own defaults.

Every estimator that can fit a feature matrix alone runs with ``arch="logistic"`` (the linear model) and
nothing else changed but a fixed seed and the CPU; the others are listed in ``NOT_CHECKABLE`` with the reason.
Failures declared expected carry the reason measured for them.
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from aimfair_plugin.estimators import all_estimators

NOT_CHECKABLE = {
    "GroupDROClassifier": "the oracle: fit needs the training data's sensitive_features, which the checks cannot give",
    "InfluenceReweightingClassifier": "fit needs a group-labelled validation set (X_val, y_val, "
                                      "sensitive_features_val), which the checks cannot give",
    "SelectiveFinetuneMitigator": "fine-tunes a ResNet on images from a synthetic-data provider; it has no "
                                  "feature-matrix variant (its contract is tested in test_contract.py)",
}
STOCHASTIC = {
    "check_sample_weight_equivalence_on_dense_data": (
        "minibatch SGD: a sample of weight 2 and two copies of it land in different batches and steps, so the "
        "fitted weights differ (the expectation of the gradient is the same)"),
}
MEASURED = {
    # Measured on the checks' data (make_blobs(300, random_state=0), standardised): training accuracy 0.81 on the
    # two-class blobs (0.945 for ERM at the same defaults). The 20x upweighted stage-one errors are the points
    # where the blobs overlap, and the linear model moves its boundary toward them; that is JTT by design
    # (upweight=5 gives 0.935), and 20 is within the range its paper tunes for images (20 to 100).
    "JTTClassifier": {"check_classifiers_train": "upweight=20 trades two-blob training accuracy (0.81 < 0.83) "
                                                 "for the upweighted errors, by design"},
    # Measured: 0.677 on the three-class blobs (0.90 on two classes). LfF weights each example by how much harder
    # it is for the GCE-trained biased model than for the debiased one; with three overlapping classes most of
    # the weight lands on the overlap, and 30 epochs instead of 15 give 0.69.
    "LfFClassifier": {"check_classifiers_train": "its relative-difficulty weights concentrate on the overlap of "
                                                 "three blobs (0.68 < 0.83 training accuracy), by design"},
    # AFR holds out a random stratified part of the data; weighted and repeated data give different holdouts.
    "AFRClassifier": {"check_sample_weight_equivalence_on_dense_data": "the random holdout differs between "
                                                                       "weighted and repeated data"},
}
CHECKED = [cls(arch="logistic", random_state=0, device="cpu") for name, cls in all_estimators()
           if name not in NOT_CHECKABLE]


def expected_failures(estimator):
    return {**STOCHASTIC, **MEASURED.get(type(estimator).__name__, {})}


def test_every_registered_estimator_is_checked_or_says_why_not():
    names = {name for name, _ in all_estimators()}
    assert names == {type(e).__name__ for e in CHECKED} | set(NOT_CHECKABLE)
    assert set(MEASURED) <= names


@pytest.mark.filterwarnings("ignore::UserWarning")
@parametrize_with_checks(CHECKED, expected_failed_checks=expected_failures)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
