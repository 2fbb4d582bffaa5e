"""Every package folder of the source tree is installed (a wheel, unlike the editable install
the tests run on, holds only the packages pyproject.toml lists: segloop.core.metrics was
missing, so an installed segloop could not import its metrics)."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            if "__pycache__" in relative.parts:
                continue
            found.add(".".join([package, *relative.parts]))
    assert "segloop.core.metrics" in found
    assert found - listed == set()
