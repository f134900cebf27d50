"""Parameter checks shared by the estimators and providers."""

import numbers


def check_int(name, value, *, low=1):
    """Raise ``ValueError`` unless ``value`` is an int (not a bool) >= ``low``; returns it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        what = "a positive int" if low == 1 else f"an int >= {low}"
        raise ValueError(f"{name} must be {what}, got {value!r}.")
    return value
