"""A program following the native file contract, for the subprocess back-end's tests.

    python tests/cmd_model.py MODE INPUT OUTPUT

MODE: ok (a box around every positive click), sleep, exit3, wrong_shape, nan, no_file,
write_input. Needs only numpy, like a participant's program.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np


def main(mode: str, input_dir: Path, output_dir: Path) -> int:
    case = json.loads((input_dir / "case.json").read_text())
    request = json.loads((input_dir / "request.json").read_text())
    shape = tuple(case["shape"])
    labels = np.zeros(shape, dtype=np.uint8)
    for interaction in request["interactions"]:
        if interaction["positive"] and interaction["kind"] == "click":
            z, y, x = interaction["coords"][0]
            labels[max(z - 1, 0) : z + 2, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = (
                interaction["class_id"]
            )
    if mode == "sleep":
        print("going to sleep", flush=True)
        time.sleep(60)
    if mode == "exit3":
        print("something went wrong", flush=True)
        return 3
    if mode == "wrong_shape":
        labels = labels[:-1]
    if mode == "nan":
        labels = np.full(shape, np.nan, dtype=np.float32)
    if mode == "no_file":
        return 0
    if mode == "write_input":
        (input_dir / "request.json").write_text("{}")
    np.save(output_dir / "prediction.npy", labels)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))
