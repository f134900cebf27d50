"""Parameter checks shared by the estimators and providers.

The estimators declare their parameters in ``_parameter_constraints`` (scikit-learn's ``Interval`` /
``StrOptions`` ...) and scikit-learn checks them; :func:`validate_declared` adds the one rule scikit-learn's
declarations leave out: a bool is not a count, although ``isinstance(True, numbers.Integral)``.
"""

import numbers

from sklearn.utils._param_validation import Interval, InvalidParameterError


def validate_declared(estimator):
    """scikit-learn's check of ``estimator._parameter_constraints``, plus: no bool where a count is declared."""
    for name, constraints in estimator._parameter_constraints.items():
        counts = any(isinstance(c, Interval) and c.type is numbers.Integral for c in constraints)
        if counts and "boolean" not in constraints and isinstance(getattr(estimator, name), bool):
            raise InvalidParameterError(
                f"The {name!r} parameter of {type(estimator).__name__} must be an int, got {getattr(estimator, name)!r}.")


def check_int(name, value, *, low=1):
    """Raise ``ValueError`` unless ``value`` is an int (not a bool) >= ``low``; returns it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        what = "a positive int" if low == 1 else f"an int >= {low}"
        raise ValueError(f"{name} must be {what}, got {value!r}.")
    return value
