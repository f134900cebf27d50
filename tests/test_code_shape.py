"""Rules of the code's shape that a reviewer would otherwise check by hand."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*sorted((ROOT / "aimfair_plugin").rglob("*.py")), *sorted((ROOT / "benchmarks").rglob("*.py"))]


def test_no_private_function_takes_more_than_six_parameters():
    too_many = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and re.match(r"_(?!_)", node.name):
                args = node.args
                names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
                if len(names) > 6:
                    too_many.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({len(names)})")
    assert not too_many, too_many


def test_benchmarks_use_only_the_public_api_of_the_package():
    private = []
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aimfair_plugin"):
                if any(part.startswith("_") for part in node.module.split(".")):
                    private.append(f"{path.name}:{node.lineno} from {node.module}")
                private += [f"{path.name}:{node.lineno} {a.name}" for a in node.names if a.name.startswith("_")]
    assert not private, private


def test_the_benchmarks_install_under_their_own_name_only(tmp_path):
    """``import benchmarks`` must not work outside the repository; ``aimfair_bench`` is the installed name."""
    code = "import importlib.util as u; print(u.find_spec('benchmarks') is None, u.find_spec('aimfair_bench') is not None)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "True"]
