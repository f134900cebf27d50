"""Saving fitted estimators without pickle: safetensors weights plus a JSON config, read back symmetrically.

The layout follows diffusers and skorch: a folder per model with ``config.json`` (the class, its constructor
parameters and the fitted attributes that are not weights) and ``model.safetensors`` (the network's state
dict). Loading never unpickles, so a folder from someone else runs no code when read.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
FORMAT = 1


def _plain(value):
    """A JSON-safe copy of a parameter value (tuples become lists; non-int random states are refused)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, torch.device):
        return str(value)
    if hasattr(value, "__fspath__"):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"Cannot save a parameter of type {type(value).__name__} ({value!r}) in {CONFIG}; "
                     "use an int random_state and plain parameter values.")


def _tuples(params):
    """Lists back to tuples where the constructor used tuples (JSON has no tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


def _fitted_attributes(estimator):
    """The public fitted attributes (``name_``) held on the instance, the network aside."""
    return {k: v for k, v in vars(estimator).items() if k.endswith("_") and not k.startswith("_") and k != "net_"}


def _encode_fitted(name, value, directory):
    """A JSON entry for one fitted attribute; a fitted estimator is written to its own folder ``directory/name``."""
    from ._classifier import ImageClassifier

    if isinstance(value, ImageClassifier):
        save_classifier(value, directory / name)
        return {"estimator": name}
    if isinstance(value, np.ndarray):
        return {"array": [_plain(v) for v in value.tolist()], "dtype": value.dtype.str if value.dtype != object
                else "object"}
    try:
        return {"value": json.loads(json.dumps(value, default=_plain))}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Cannot save the fitted attribute {name} ({type(value).__name__}) in {CONFIG}.") from exc


def _decode_fitted(entry, directory, device, module=None):
    if "estimator" in entry:
        return load_classifier(directory / entry["estimator"], device=device, module=module)
    if "array" in entry:
        return np.array(entry["array"], dtype=object if entry["dtype"] == "object" else np.dtype(entry["dtype"]))
    return entry["value"]


def _saved_params(estimator, skip=()):
    """The constructor parameters written to ``config.json``: all but ``skip`` and ``callbacks`` (training-loop
    observers, not part of a fitted model; a loaded model has none). A user's ``module`` is code, never saved:
    only its name, and loading asks for it again (:func:`load_classifier`'s ``module``)."""
    params = {k: _plain(v) for k, v in estimator.get_params(deep=False).items()
              if k not in (*skip, "callbacks", "module")}
    module = getattr(estimator, "module", None)
    if module is not None:
        params["module"] = {"user_module": getattr(module, "__qualname__", type(module).__qualname__)}
    return params


def _user_module(params, module, directory):
    """The ``module`` parameter of a loaded estimator: the one passed to the loader when the saved model was
    trained with a user's network (its name is in the config), None otherwise."""
    saved = params.get("module")
    if saved is None:
        return None
    if module is None:
        raise ValueError(f"{directory} holds a model of your own network ({saved['user_module']}): pass it again, "
                         "from_pretrained(directory, module=...) with the class, instance or callable it was "
                         "trained with (networks are code and are not saved).")
    return module


def save_classifier(estimator, directory):
    """Write a fitted :class:`ImageClassifier` (or baseline) to ``directory``; returns the path.

    Every public fitted attribute is written: arrays and plain values in ``config.json``, fitted estimators
    (a stage-one model) in a folder of their own, the network's weights in ``model.safetensors``.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params = _saved_params(estimator)
    fitted = {name: _encode_fitted(name, value, directory) for name, value in _fitted_attributes(estimator).items()}
    config = {"format": FORMAT, "class": type(estimator).__name__, "params": params, "fitted": fitted}
    (directory / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().cpu().contiguous() for k, v in estimator.net_.module_.state_dict().items()}
    save_file(state, str(directory / WEIGHTS))
    return directory


def _classifier_class(name):
    """The exported classifier class called ``name`` (from the estimator registry), or None."""
    from . import all_estimators
    from ._classifier import ImageClassifier

    classes = {n: cls for n, cls in all_estimators() if issubclass(cls, ImageClassifier)}
    return classes.get(name)


def load_classifier(directory, *, device=None, module=None):
    """The estimator saved in ``directory`` by :func:`save_classifier`, ready to predict; ``module``: the user's
    network it was trained with, when it was (required then)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = json.loads((directory / CONFIG).read_text())
    cls = _classifier_class(config.get("class"))
    if config.get("format") != FORMAT or cls is None:
        raise ValueError(f"{directory / CONFIG} is not a saved aimfair_plugin estimator.")
    params = _tuples(config["params"])
    if device is not None:
        params["device"] = device
    params["module"] = _user_module(params, module, directory)
    estimator = cls(**{**params, "pretrained": None})  # the weights come from the folder, not a checkpoint
    for name, entry in config["fitted"].items():
        setattr(estimator, name, _decode_fitted(entry, directory, device, module))
    estimator.image_shape_ = tuple(estimator.image_shape_)
    module = estimator._build_module(estimator.image_shape_[0])
    module.load_state_dict(load_file(str(directory / WEIGHTS)))
    estimator.set_params(pretrained=params.get("pretrained"))
    estimator.net_ = estimator._make_net(module)
    estimator.net_.initialize()
    return estimator


def _settings_object(value):
    """A strategy or candidate selection object as ``{"class", "params"}`` (a name stays a name)."""
    if value is None or isinstance(value, str):
        return value
    if not hasattr(value, "get_params"):
        raise ValueError(f"Cannot save {value!r} in {CONFIG}: it has no get_params.")
    return {"class": type(value).__name__, "params": {k: _plain(v) for k, v in value.get_params().items()}}


def _settings_from(entry):
    """The object :func:`_settings_object` wrote (a built-in strategy class or CandidateSelection)."""
    if entry is None or isinstance(entry, str):
        return entry
    from . import _selection, _strategies

    cls = getattr(_strategies, entry["class"], None) or getattr(_selection, entry["class"], None)
    if cls is None:
        raise ValueError(f"{entry['class']} is not a strategy or selection of this package; pass it again "
                         "with set_params after loading.")
    return cls(**_tuples(entry["params"]))


def save_mitigator(mitigator, directory):
    """Write a fitted :class:`SelectiveFinetuneMitigator`: its parameters (not the provider), the mask and
    gaps, and both networks (``estimator/`` fine-tuned, ``stage_one/`` pre-trained)."""
    from sklearn.frozen import FrozenEstimator

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params = _saved_params(mitigator, skip=("provider", "estimator", "strategy", "candidate_selection"))
    params["strategy"] = _settings_object(mitigator.strategy)
    params["candidate_selection"] = _settings_object(mitigator.candidate_selection)
    base = mitigator.estimator
    if isinstance(base, FrozenEstimator):  # the prefit model is the saved stage_one/
        params["estimator"] = {"frozen": True}
    elif base is not None:
        params["estimator"] = {"class": type(base).__name__,
                               "params": _saved_params(base)}
    fitted = {"classes_": mitigator.classes_.tolist(), "selection_mask_": mitigator.selection_mask_,
              "n_selected_": mitigator.n_selected_, "mask_report_": mitigator.mask_report_,
              "n_features_in_": mitigator.n_features_in_, "provider": type(mitigator.provider).__name__}
    for name in ("selected_candidate_", "validation_indices_", "group_probe_"):
        if getattr(mitigator, name, None) is not None:
            fitted[name] = getattr(mitigator, name)
    config = {"format": FORMAT, "class": type(mitigator).__name__, "params": params,
              "fitted": json.loads(json.dumps(fitted, default=_plain))}
    (directory / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    mitigator.gradient_gaps_.to_csv(directory / "gradient_gaps.csv", index=False)
    if getattr(mitigator, "finetune_scores_", None) is not None:
        mitigator.finetune_scores_.to_csv(directory / "finetune_scores.csv", index=False)
    save_classifier(mitigator.estimator_, directory / "estimator")
    save_classifier(mitigator.stage_one_estimator_, directory / "stage_one")
    return directory


def load_mitigator(cls, directory, *, provider=None, device=None, module=None):
    """The mitigator saved in ``directory``; ``provider`` is needed only to fit again; ``module``: the user's
    network its estimator was built with, when it was."""
    from sklearn.frozen import FrozenEstimator

    directory = Path(directory)
    config = json.loads((directory / CONFIG).read_text())
    if config.get("format") != FORMAT or config.get("class") != cls.__name__:
        raise ValueError(f"{directory / CONFIG} is not a saved {cls.__name__}.")
    params = _tuples(config["params"])
    params["strategy"] = _settings_from(config["params"].get("strategy"))
    params["candidate_selection"] = _settings_from(config["params"].get("candidate_selection"))
    stage_one = load_classifier(directory / "stage_one", device=device, module=module)
    base = params.pop("estimator", None)
    if base is not None and base.get("frozen"):
        base = FrozenEstimator(load_classifier(directory / "stage_one", device=device, module=module))
    elif base is not None:  # the unfitted estimator parameter, as it was given
        base_params = _tuples(base["params"])
        if device is not None:
            base_params["device"] = device
        base_params["module"] = _user_module(base_params, module, directory)
        base = _classifier_class(base["class"])(**base_params)
    mitigator = cls(provider, estimator=base, **params)
    fitted = config["fitted"]
    mitigator.classes_ = np.asarray(fitted["classes_"])
    mitigator.selection_mask_ = fitted["selection_mask_"]
    mitigator.n_selected_ = fitted["n_selected_"]
    mitigator.mask_report_ = fitted["mask_report_"]
    mitigator.n_features_in_ = fitted["n_features_in_"]
    mitigator.selected_candidate_ = fitted.get("selected_candidate_")
    probe = fitted.get("group_probe_")
    if probe is not None and probe.get("groups") is not None:  # JSON keeps a list; the fitted attribute is an array
        probe = {**probe, "groups": np.asarray(probe["groups"])}
    mitigator.group_probe_ = probe
    mitigator.validation_indices_ = (np.asarray(fitted["validation_indices_"]) if "validation_indices_" in fitted
                                     else None)
    mitigator.gradient_gaps_ = pd.read_csv(directory / "gradient_gaps.csv")
    mitigator.finetune_scores_ = (pd.read_csv(directory / "finetune_scores.csv")
                                  if (directory / "finetune_scores.csv").exists() else None)
    mitigator.stage_one_estimator_ = stage_one
    mitigator.estimator_ = load_classifier(directory / "estimator", device=device, module=module)
    return mitigator
