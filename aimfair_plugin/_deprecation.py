"""Old names kept for one release: they still work and say, with a ``FutureWarning``, what replaces them."""

import warnings


def renamed_attribute(new, old):
    """A read-only property ``old`` that returns ``self.<new>`` with a ``FutureWarning``."""

    def getter(self):
        warnings.warn(f"{type(self).__name__}.{old} is deprecated and will be removed in the next release; "
                      f"use {new}.", FutureWarning, stacklevel=2)
        return getattr(self, new)

    return property(getter, doc=f"Deprecated alias of ``{new}``.")


def renamed_parameter(estimator, new, old):
    """The value of parameter ``new``, or of the deprecated ``old`` (not None) with a ``FutureWarning``."""
    value = getattr(estimator, old)
    if value is None:
        return getattr(estimator, new)
    warnings.warn(f"{type(estimator).__name__}({old}=...) is deprecated and will be removed in the next release; "
                  f"use {new}=... (same meaning).", FutureWarning, stacklevel=3)
    return value
