"""The README's constructor signatures are the real ones: `Name(param=default, ...)` must match inspect.signature."""

import ast
import inspect
import re
from pathlib import Path

import pytest

import aimfair_plugin.datasets
import aimfair_plugin.estimators
import aimfair_plugin.synth

README = Path(__file__).resolve().parents[1] / "README.md"
MODULES = (aimfair_plugin.estimators, aimfair_plugin.synth, aimfair_plugin.datasets)


def public_callables():
    found = {}
    for module in MODULES:
        for name in getattr(module, "__all__", dir(module)):
            obj = getattr(module, name, None)
            if callable(obj) and not name.startswith("_"):
                found[name] = obj
    return found


def documented_signatures():
    """``(name, arguments text)`` for every backticked ``Name(...)`` in the README naming a public callable."""
    text = README.read_text().replace("\n  ", " ")  # list items continue on lines indented by two spaces
    names = public_callables()
    found = []
    for match in re.finditer(r"`(?:[\w.]+\.)?(\w+)\(", text):
        if match.group(1) not in names:
            continue
        depth, end = 1, match.end()
        while depth and end < len(text) and text[end] != "`":  # to the matching parenthesis
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        if depth == 0:
            found.append((match.group(1), text[match.end(): end - 1]))
    return found


def parse_arguments(text):
    """``{name: default or inspect.Parameter.empty}`` from an argument list; a trailing ``...`` is dropped."""
    text = re.sub(r"(?:,\s*|^\s*)\.\.\.\s*$", "", text.strip())  # a trailing ", ..." (not "name=...")
    tree = ast.parse(f"def f({text}): pass").body[0].args
    named = {}
    positional = tree.posonlyargs + tree.args
    defaults = [inspect.Parameter.empty] * (len(positional) - len(tree.defaults)) + tree.defaults
    for arg, default in zip(positional, defaults):
        named[arg.arg] = default
    for arg, default in zip(tree.kwonlyargs, tree.kw_defaults):
        named[arg.arg] = inspect.Parameter.empty if default is None else default
    return {k: v if v is inspect.Parameter.empty else ast.literal_eval(v) for k, v in named.items()}


def test_readme_shows_signatures():
    assert len(documented_signatures()) >= 10


@pytest.mark.parametrize("name, arguments", documented_signatures(), ids=lambda v: v if isinstance(v, str) and
                         len(v) < 40 else "")
def test_readme_signature_matches_the_code(name, arguments):
    real = inspect.signature(public_callables()[name])
    documented = parse_arguments(arguments)
    for param, default in documented.items():
        assert param in real.parameters, f"README: {name} has no parameter {param!r}"
        if default is not inspect.Parameter.empty and default is not Ellipsis:  # `n=...`: any value
            assert real.parameters[param].default == default, (
                f"README: {name}({param}={default!r}) but the code's default is {real.parameters[param].default!r}")
