"""The layout rules that import-linter does not check (docs/architecture.md).

import-linter (``make lint-imports``) checks the layers, the acyclic siblings and private names;
these tests check what it cannot see: imports hidden inside functions, the one import package,
and modules that grew past what one reader takes in at a sitting.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_FOLDERS = ("evaluator", "protocols", "containers", "baselines", "leaderboard")

# Imports inside a function are allowed only for optional dependencies, so that segloop imports
# and runs without them (the dask extra, DeepMind's surface-distance for the bench, cupy).
OPTIONAL_MODULES = {"distributed", "dask", "dask_jobqueue", "surface_distance", "cupy", "cupyx"}

MAX_LINES = 500
# Modules above MAX_LINES, each with why it stays one file. A module that shrinks below the
# limit must leave this list (the test says so), so the list never hides a new large module.
LARGE_MODULES = {
    "evaluator/core/metrics/surface_engine.py": "one algorithm (blocks, surfels, banded search)",
    "evaluator/core/challenges.py": "the Challenge record, the presets and their TOML form",
    "evaluator/core/untrusted.py": "every check of participants' bytes in one reviewed place",
    "evaluator/app/bench.py": "the bench's sections share their case builders and report",
    "protocols/base.py": "the robot users' shared geometry (components, EDT centres, crops)",
    "protocols/generic.py": "the generic user styles and their eligibility masks",
    "protocols/recordings.py": "one reader per recording format (run, segloop, gc, csv)",
    "leaderboard/pictures.py": "the case pictures: slices, contours, clicks, strips",
}


def package_modules() -> list[Path]:
    return sorted(p for folder in PACKAGE_FOLDERS for p in (ROOT / folder).rglob("*.py"))


def function_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every import statement inside a function of ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    found += [(inner.lineno, a.name.split(".")[0]) for a in inner.names]
                elif isinstance(inner, ast.ImportFrom) and inner.level == 0 and inner.module:
                    found.append((inner.lineno, inner.module.split(".")[0]))
    return found


def says_lazy(lines: list[str], line: int) -> bool:
    """Whether the import at ``line`` (1-based), or an import block it belongs to, carries a
    comment saying why it is lazy."""
    for number in range(line, max(0, line - 4), -1):
        text = lines[number - 1]
        if "lazy" in text.lower():
            return True
        if number < line and "import" not in text:
            return False
    return False


def test_function_level_imports_are_only_optional_dependencies() -> None:
    hidden, unexplained = [], []
    for path in package_modules():
        lines = path.read_text().splitlines()
        for line, module in function_level_imports(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            if module not in OPTIONAL_MODULES:
                hidden.append(where)
            elif not says_lazy(lines, line):
                unexplained.append(where)
    assert hidden == [], "imports inside functions hide the layering:\n" + "\n".join(hidden)
    assert unexplained == [], "say why an import is lazy (a comment):\n" + "\n".join(unexplained)


def test_function_level_import_check_sees_a_hidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os\n\ndef f():\n    from segloop.core import store\n    import cupy\n"
    )
    assert function_level_imports(module) == [(4, "segloop"), (5, "cupy")]


def test_one_import_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    packages = setuptools["packages"]
    assert all(p == "segloop" or p.startswith("segloop.") for p in packages), packages
    assert set(setuptools["package-dir"]) == {"segloop"} | {
        f"segloop.{f}" for f in PACKAGE_FOLDERS if f != "evaluator"
    }
    # every folder with Python modules is installed, so nothing is importable only from a checkout
    for path in package_modules():
        folder = path.parent.relative_to(ROOT).parts
        if "recipes" in folder:
            continue  # recipe files are package data, copied into images, never imported
        inner = folder[1:] if folder[0] == "evaluator" else folder
        dotted = ".".join(("segloop", *inner))
        assert dotted in packages, f"{path.relative_to(ROOT)}: {dotted} is not in the wheel"


@pytest.mark.parametrize(
    "legacy", ["evaluator", "protocols", "containers", "baselines", "leaderboard"]
)
def test_no_module_imports_a_folder_name(legacy: str) -> None:
    """The folders are not packages: ``import protocols`` works only from a checkout."""
    offenders = []
    for path in [*package_modules(), *sorted((ROOT / "tests").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}"
                for n in names
                if n.split(".")[0] == legacy
            ]
    assert offenders == []


def test_modules_stay_readable_in_one_sitting() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in package_modules()}
    too_long = [
        f"{p}: {n} lines" for p, n in sizes.items() if n > MAX_LINES and p not in LARGE_MODULES
    ]
    assert too_long == [], f"modules over {MAX_LINES} lines (split them or say why):\n" + "\n".join(
        too_long
    )
    stale = [p for p in LARGE_MODULES if sizes.get(p, 0) <= MAX_LINES]
    assert stale == [], (
        f"no longer over {MAX_LINES} lines (or gone), drop from LARGE_MODULES: {stale}"
    )
