"""TabularEncoder: a DataFrame <-> a continuous matrix a diffusion model can work in, and back."""

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted


class TabularEncoder(TransformerMixin, BaseEstimator):
    """Numeric columns standardised, categorical columns one-hot; ``inverse_transform`` decodes.

    Decoding takes the arg-max of each categorical block, so it always returns
    one of the categories seen in ``fit``; numeric columns are unscaled and,
    where the column was an integer dtype, rounded and cast back.

    Parameters
    ----------
    categorical : list of str, optional
        Columns to one-hot encode. Default: every non-numeric column.
    handle_unknown : {"error", "ignore"}, default="error"
        What ``transform`` does with a category not seen in ``fit``: raise,
        or encode it as all zeros (e.g. a country that only a held-out
        domain has).

    Examples
    --------
    >>> import pandas as pd
    >>> from aimfair_plugin.synth import TabularEncoder
    >>> frame = pd.DataFrame({'age': [30.0, 40.0, 50.0], 'job': ['a', 'b', 'a']})
    >>> encoder = TabularEncoder(categorical=['job']).fit(frame)
    >>> encoder.inverse_transform(encoder.transform(frame))['job'].tolist()
    ['a', 'b', 'a']
    """

    def __init__(self, categorical=None, handle_unknown="error"):
        self.categorical = categorical
        self.handle_unknown = handle_unknown

    def fit(self, X, y=None):
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"TabularEncoder needs a pandas DataFrame, got {type(X).__name__}.")
        if self.handle_unknown not in ("error", "ignore"):
            raise ValueError(f"handle_unknown must be 'error' or 'ignore', got {self.handle_unknown!r}.")
        if X.empty:
            raise ValueError("TabularEncoder needs at least one row and one column.")
        categorical = (
            [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
            if self.categorical is None else list(self.categorical)
        )
        missing = [c for c in categorical if c not in X.columns]
        if missing:
            raise ValueError(f"Categorical columns {missing} are not in X.")
        self.columns_ = list(X.columns)
        self.categorical_ = categorical
        self.numeric_ = [c for c in X.columns if c not in categorical]
        for c in self.numeric_:
            if X[c].isna().any():
                raise ValueError(f"Numeric column {c!r} has missing values; impute or drop them first.")
        self.dtypes_ = X.dtypes.to_dict()
        numeric = X[self.numeric_].to_numpy(float)
        self.mean_ = numeric.mean(axis=0) if len(self.numeric_) else np.zeros(0)
        std = numeric.std(axis=0) if len(self.numeric_) else np.zeros(0)
        self.scale_ = np.where(std > 0, std, 1.0)
        self.categories_ = {c: np.array(sorted(X[c].astype(str).unique())) for c in categorical}
        self.n_features_out_ = len(self.numeric_) + sum(len(v) for v in self.categories_.values())
        return self

    def transform(self, X):
        check_is_fitted(self, "columns_")
        missing = [c for c in self.columns_ if c not in X.columns]
        if missing:
            raise ValueError(f"X lacks the columns {missing} seen in fit.")
        parts = [(X[self.numeric_].to_numpy(float) - self.mean_) / self.scale_]
        for c in self.categorical_:
            values = X[c].astype(str).to_numpy()
            codes = np.searchsorted(self.categories_[c], values)
            codes = np.clip(codes, 0, len(self.categories_[c]) - 1)
            unknown = self.categories_[c][codes] != values
            if unknown.any() and self.handle_unknown == "error":
                raise ValueError(f"Column {c!r} has categories not seen in fit, e.g. {values[unknown][0]!r}.")
            one_hot = np.eye(len(self.categories_[c]))[codes]
            one_hot[unknown] = 0.0
            parts.append(one_hot)
        return np.hstack(parts).astype(np.float32)

    def inverse_transform(self, Z):
        check_is_fitted(self, "columns_")
        Z = np.asarray(Z, dtype=float)
        if Z.ndim != 2 or Z.shape[1] != self.n_features_out_:
            raise ValueError(f"Expected an (n, {self.n_features_out_}) array, got shape {Z.shape}.")
        out = {}
        numeric = Z[:, : len(self.numeric_)] * self.scale_ + self.mean_
        for j, c in enumerate(self.numeric_):
            values = numeric[:, j]
            if pd.api.types.is_integer_dtype(self.dtypes_[c]):
                values = np.round(values).astype(self.dtypes_[c])
            out[c] = values
        start = len(self.numeric_)
        for c in self.categorical_:
            width = len(self.categories_[c])
            out[c] = self.categories_[c][Z[:, start: start + width].argmax(axis=1)]
            start += width
        return pd.DataFrame(out)[self.columns_]
