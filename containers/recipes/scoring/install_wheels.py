"""Install wheels without pip (segloop/base has none): unpack each into site-packages.

    python3 install_wheels.py WHEEL_DIR SITE_PACKAGES BIN_DIR

A wheel is a zip of the files to put in site-packages plus its ``.dist-info`` (so
``importlib.metadata`` sees the package). ``<name>.data/purelib`` and ``platlib`` are merged
into site-packages, ``scripts`` go to BIN_DIR, other ``.data`` parts (share/, headers) are
dropped. Every ``console_scripts`` entry point becomes a small script in BIN_DIR.
"""

import configparser
import shutil
import sys
import zipfile
from pathlib import Path

SHEBANG = "#!/usr/bin/python3\n"


def install(wheel: Path, site: Path, bin_dir: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    for data in sorted(site.glob("*.data")):
        for part in sorted(data.iterdir()):
            if part.name in ("purelib", "platlib"):
                shutil.copytree(part, site, dirs_exist_ok=True)
            elif part.name == "scripts":
                for script in sorted(part.iterdir()):
                    text = script.read_bytes()
                    if text.startswith(b"#!python"):
                        text = SHEBANG.encode() + text.split(b"\n", 1)[1]
                    target = bin_dir / script.name
                    target.write_bytes(text)
                    target.chmod(0o755)
        shutil.rmtree(data)


def write_entry_points(site: Path, bin_dir: Path) -> None:
    for path in sorted(site.glob("*.dist-info/entry_points.txt")):
        parser = configparser.ConfigParser(delimiters=("=",))
        parser.optionxform = str
        parser.read(path)
        if not parser.has_section("console_scripts"):
            continue
        for name, target in parser.items("console_scripts"):
            module, _, attribute = target.strip().partition(":")
            head = attribute.split(".")[0]
            script = bin_dir / name
            script.write_text(
                f"{SHEBANG}import sys\nfrom {module} import {head}\n\nsys.exit({attribute}())\n"
            )
            script.chmod(0o755)


def main() -> None:
    wheels, site, bin_dir = (Path(arg) for arg in sys.argv[1:4])
    site.mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("*.whl"))
    if not found:
        sys.exit(f"no wheels in {wheels}")
    for wheel in found:
        install(wheel, site, bin_dir)
        print(f"installed {wheel.name}")
    write_entry_points(site, bin_dir)


if __name__ == "__main__":
    main()
