"""The package's own warnings and errors, so that users can filter or catch exactly them."""

__all__ = ["ConstantPredictionWarning", "EmptyMaskWarning", "FineTuningWarning", "TrainingDivergedError"]


class FineTuningWarning(UserWarning):
    """Fine-tuning did something a user would want to know about (see its subclasses)."""


class EmptyMaskWarning(FineTuningWarning):
    """The mask strategy selected no tensor: nothing was fine-tuned and the pre-trained model is returned."""


class ConstantPredictionWarning(UserWarning):
    """A fit ended predicting one class for all of its own training data (a collapse, often a too large
    learning rate)."""


class TrainingDivergedError(FloatingPointError, ValueError):
    """The training loss became NaN or infinite; the message names the learning rate."""
