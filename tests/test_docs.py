"""The API reference is generated from numpydoc docstrings: every public object has one that numpydoc parses,
with an Examples section (run as a doctest by the test command) and every parameter of its signature
documented; estimators document their fitted attributes."""

import importlib
import inspect

import pytest
from numpydoc.docscrape import ClassDoc, FunctionDoc

from aimfair_plugin.estimators import all_estimators

PUBLIC_MODULES = ("aimfair_plugin.estimators", "aimfair_plugin.synth", "aimfair_plugin.datasets",
                  "aimfair_plugin.metrics", "aimfair_plugin.inspection", "aimfair_plugin.nets",
                  "aimfair_plugin.exceptions", "aimfair_plugin.utils")


def public_objects():
    """``(qualified name, object)`` of every public class and function (``__all__``, or defined in the module)."""
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        names = getattr(module, "__all__", None) or [
            n for n, o in vars(module).items()
            if not n.startswith("_") and (inspect.isclass(o) or inspect.isfunction(o)) and o.__module__ == name]
        for n in names:
            if callable(getattr(module, n)):
                yield f"{name}.{n}", getattr(module, n)


def documented_parameters(doc):
    names = set()
    for entry in doc["Parameters"]:
        names.update(part.strip().lstrip("*") for part in entry.name.split(","))
    return names


def signature_parameters(obj):
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return []
    return [p for p, v in parameters.items() if p != "self" and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]


OBJECTS = dict(public_objects())


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_public_object_has_an_example(name):
    obj = OBJECTS[name]
    doc = ClassDoc(obj) if inspect.isclass(obj) else FunctionDoc(obj)
    assert doc["Summary"], f"{name} has no summary line"
    assert doc["Examples"], f"{name} has no Examples section"


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_public_object_documents_every_parameter_and_what_it_returns(name):
    obj = OBJECTS[name]
    doc = ClassDoc(obj) if inspect.isclass(obj) else FunctionDoc(obj)
    missing = [p for p in signature_parameters(obj) if p not in documented_parameters(doc)]
    assert not missing, f"{name}: parameters not in its docstring: {missing}"
    if inspect.isfunction(obj):
        assert doc["Returns"] or doc["Yields"], f"{name} has no Returns section"


def test_every_registered_estimator_is_public():
    assert {name for name, _ in all_estimators()} <= {n.rsplit(".", 1)[1] for n in OBJECTS}


def test_mitigator_documents_every_fitted_attribute(small_mnist):
    from aimfair_plugin.estimators import ImageClassifier, SelectiveFinetuneMitigator
    from aimfair_plugin.synth import ArrayProvider

    d = small_mnist
    mitigator = SelectiveFinetuneMitigator(
        ArrayProvider(1.0 - d.X_test, d.y_test, d.s_test), estimator=ImageClassifier(width=4, max_epochs=1),
        finetune_epochs=1, random_state=0)
    mitigator.fit(d.X_train[:200], d.y_train[:200], X_val=d.X_train[200:300], y_val=d.y_train[200:300])
    fitted = {k for k in vars(mitigator) if k.endswith("_") and not k.startswith("_")}
    documented = {entry.name.split(":")[0].strip() for entry in ClassDoc(SelectiveFinetuneMitigator)["Attributes"]}
    assert fitted - documented == set(), f"fitted attributes not in the docstring: {sorted(fitted - documented)}"
