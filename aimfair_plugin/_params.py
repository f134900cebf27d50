"""Settings objects that scikit-learn can read, set and clone like an estimator's parameters.

A mitigator's strategy or candidate selection is an object carrying its own settings (``SelectiveMask(top_k=40)``),
as fairlearn's reductions take a ``Moment``. :class:`Params` gives such an object what ``clone``, ``get_params``,
``set_params`` and nested search names (``strategy__top_k``) need, without making it an estimator.
"""

import inspect


class Params:
    """Constructor parameters as settings: ``get_params``, ``set_params``, a repr of the non-default ones, and
    equality by class and settings.

    Examples
    --------
    >>> from aimfair_plugin.estimators import SelectiveMask
    >>> mask = SelectiveMask(top_k=40)
    >>> mask.get_params()['top_k'], mask == SelectiveMask(top_k=40)
    (40, True)
    """

    @classmethod
    def _param_names(cls):
        init = cls.__init__
        if init is object.__init__:
            return []
        return [p.name for p in inspect.signature(init).parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self, deep=True):
        """The settings, ``{name: value}`` (``deep`` is accepted for scikit-learn and changes nothing)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Change settings by name; returns self. An unknown name raises ``ValueError``."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for {type(self).__name__}; valid ones: {valid}.")
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
                    if p.name != "self"} if self._param_names() else {}
        shown = [f"{name}={value!r}" for name, value in self.get_params().items()
                 if not (name in defaults and _same(defaults[name], value))]
        return f"{type(self).__name__}({', '.join(shown)})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_params() == other.get_params()

    def __hash__(self):
        return hash((type(self), tuple((k, repr(v)) for k, v in self.get_params().items())))


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # arrays and other values without a plain truth value
        return a is b
