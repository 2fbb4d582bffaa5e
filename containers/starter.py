"""``segloop sdk init``: a participant's starting folder, so no one copies the examples by hand.

Writes the worked example model (``containers/recipes/template/model.py``: a ball around every
click), its Dockerfile and the SDK files it imports. ``gc_preset`` makes it a Grand
Challenge-style algorithm container of that preset's interface (``segloop_gc.serve_gc``) instead
of one that speaks segloop's native contract (``segloop_sdk.serve``): the same ``predict``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from segloop.core.challenges import CHALLENGES
from segloop.core.records import SegloopError

NATIVE_MAIN = "    serve(predict)\n"
NATIVE_IMPORT = "from segloop_sdk import serve\n"
NATIVE_COPY = "COPY segloop_sdk.py model.py /opt/app/\n"


def gc_presets() -> list[str]:
    return sorted(name for name, challenge in CHALLENGES.items() if challenge.gc is not None)


def starter_files(gc_preset: str | None = None) -> dict[str, str]:
    """File name -> text of the starting folder."""
    if gc_preset is not None and gc_preset not in gc_presets():
        raise SegloopError(
            f"--gc {gc_preset}: expected one of {', '.join(gc_presets())} (the presets with a "
            "Grand Challenge container interface)"
        )
    template = resources.files("segloop.containers.recipes.template")
    sdk = resources.files("segloop.containers.sdk")
    model = template.joinpath("model.py").read_text()
    dockerfile = template.joinpath("Dockerfile").read_text()
    files = {"segloop_sdk.py": sdk.joinpath("segloop_sdk.py").read_text()}
    if gc_preset is not None:
        model = model.replace(
            NATIVE_IMPORT, "from segloop_gc import serve_gc  # Grand Challenge-style job\n"
        ).replace(NATIVE_MAIN, f'    serve_gc(predict, "{gc_preset}")\n')
        dockerfile = dockerfile.replace(
            NATIVE_COPY, "COPY segloop_sdk.py segloop_gc.py model.py /opt/app/\n"
        ).replace(
            "--model docker:my-team/model:1",
            f"--model docker:gc-{gc_preset}+my-team/model:1",
        )
        files["segloop_gc.py"] = sdk.joinpath("segloop_gc.py").read_text()
    files["model.py"] = model
    files["Dockerfile"] = dockerfile
    return files


def write_starter(folder: Path, gc_preset: str | None = None) -> list[Path]:
    """Write the starting folder; refuses to overwrite any file already there."""
    folder = Path(folder)
    files = starter_files(gc_preset)
    existing = sorted(name for name in files if (folder / name).exists())
    if existing:
        raise SegloopError(f"{folder}: already holds {', '.join(existing)}; choose an empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        (folder / name).write_text(text)
        written.append(folder / name)
    return written
