"""The package's own warnings and errors, so that users can filter or catch exactly them."""

__all__ = ["ConstantPredictionWarning", "EmptyMaskWarning", "FineTuningWarning", "TrainingDivergedError"]


class FineTuningWarning(UserWarning):
    """Fine-tuning did something a user would want to know about (see its subclasses).

    Examples
    --------
    >>> import warnings
    >>> from aimfair_plugin.exceptions import FineTuningWarning
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter('always')
    ...     warnings.warn('the pre-trained model won', FineTuningWarning)
    ...
    >>> caught[0].category.__name__
    'FineTuningWarning'
    """


class EmptyMaskWarning(FineTuningWarning):
    """The mask strategy selected no tensor: nothing was fine-tuned and the pre-trained model is returned.

    Examples
    --------
    >>> from aimfair_plugin.exceptions import EmptyMaskWarning, FineTuningWarning
    >>> issubclass(EmptyMaskWarning, FineTuningWarning)
    True
    """


class ConstantPredictionWarning(UserWarning):
    """A fit ended predicting one class for all of its own training data (a collapse, often a too large
    learning rate).

    Examples
    --------
    >>> import warnings
    >>> from aimfair_plugin.exceptions import ConstantPredictionWarning
    >>> warnings.simplefilter('error', ConstantPredictionWarning)
    >>> issubclass(ConstantPredictionWarning, UserWarning)
    True
    """


class TrainingDivergedError(FloatingPointError, ValueError):
    """The training loss became NaN or infinite; the message names the learning rate.

    Examples
    --------
    >>> from aimfair_plugin.datasets import make_colored_mnist
    >>> data = make_colored_mnist(n_train=300, n_test=100, minority_share=0.05, image_size=16, random_state=0)
    >>> from aimfair_plugin.estimators import ImageClassifier
    >>> from aimfair_plugin.exceptions import TrainingDivergedError
    >>> try:
    ...     ImageClassifier(width=4, max_epochs=1, lr=1e30, random_state=0).fit(data.X_train, data.y_train)
    ... except TrainingDivergedError as error:
    ...     print(type(error).__name__)
    ...
    TrainingDivergedError
    """
