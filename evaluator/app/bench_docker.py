"""How much the harness costs per step: per-step mode against session mode (Docker).

A trivial model (``segloop/trivial``: predicts background, no computation) on one synthetic
case, so what is measured is segloop's own overhead: writing the step's input folder (hard links
plus request.json), starting a sandboxed container or handing a request to a running one, the
model process loading the case (in per-step mode every step), writing and reading back the
prediction file and validating it. The same model called in-process gives the floor.

    python -m segloop.app.bench_docker [--shape 256,256,256] [--steps 5]

or ``bench_docker_overhead()`` from Python (the ``segloop bench`` command calls it). Timings
are wall-clock on this machine; the figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from segloop.baselines.trivial import empty
from segloop.containers.docker.backend import DockerBackend
from segloop.containers.local import InProcessBackend
from segloop.core.records import CaseInput, Geometry, Interaction, StepRequest
from segloop.core.task import Limits


def _case(shape: Sequence[int], seed: int) -> CaseInput:
    rng = np.random.default_rng(seed)
    image = rng.random(tuple(shape), dtype=np.float32)
    return CaseInput("bench_000", (image,), Geometry((1.0, 1.0, 1.0)), {1: "tumor"})


def _requests(case: CaseInput, steps: int) -> list[StepRequest]:
    centre = tuple(n // 2 for n in case.shape)
    interactions: list[Interaction] = []
    requests = []
    for step in range(steps):
        point = tuple(min(c + step, n - 1) for c, n in zip(centre, case.shape, strict=True))
        interactions.append(Interaction("click", 1, True, step, (point,)))
        requests.append(StepRequest(case.case_id, step, tuple(interactions), None))
    return requests


def _time_session(
    backend, case: CaseInput, requests: list[StepRequest]
) -> tuple[float, list[float]]:
    started = time.perf_counter()
    session = backend.open_case(case)
    opened_s = time.perf_counter() - started
    step_times = []
    try:
        for request in requests:
            started = time.perf_counter()
            session.predict(request)
            step_times.append(time.perf_counter() - started)
    finally:
        session.close()
    return opened_s, step_times


def bench_docker_overhead(
    image: str = "segloop/trivial:latest",
    shape: Sequence[int] = (256, 256, 256),
    steps: int = 5,
    limits: Limits | None = None,
    seed: int = 0,
    print_fn: Callable[[str], None] = print,
) -> dict[str, float]:
    """Time ``steps`` steps of a trivial model in per-step and in session mode; print figures.

    Returns seconds: open_case and the mean/median step of each mode, the in-process floor,
    the overhead per step of each mode (step minus floor) and their ratio.
    """

    limits = limits or Limits(step_time_limit_s=600.0, case_time_limit_s=7200.0)
    case = _case(shape, seed)
    requests = _requests(case, steps)
    voxels = int(np.prod(case.shape))
    print_fn(
        f"segloop harness overhead: trivial model {image}, case {tuple(case.shape)} "
        f"({voxels * 4 / 2**20:.0f} MiB float32 image), {steps} steps per mode"
    )
    _, floor_times = _time_session(InProcessBackend(empty), case, requests)
    figures: dict[str, float] = {"in_process_step_s": statistics.median(floor_times)}
    for mode in ("per-step", "case"):
        backend = DockerBackend(image, replace(limits, session_mode=mode), False)
        try:
            # warm-up run: page cache, image layers, first-container costs
            _time_session(backend, _case((8, 8, 8), seed), _requests(_case((8, 8, 8), seed), 1))
            opened_s, step_times = _time_session(backend, case, requests)
        finally:
            backend.close()
        key = "per_step" if mode == "per-step" else "session"
        figures[f"{key}_open_case_s"] = opened_s
        figures[f"{key}_step_mean_s"] = statistics.fmean(step_times)
        figures[f"{key}_step_median_s"] = statistics.median(step_times)
        figures[f"{key}_overhead_s"] = statistics.median(step_times) - figures["in_process_step_s"]
    figures["overhead_ratio"] = figures["per_step_overhead_s"] / max(
        figures["session_overhead_s"], 1e-9
    )
    print_fn(f"  in-process call (floor)        {figures['in_process_step_s'] * 1000:9.1f} ms/step")
    for key, label in (("per_step", "per-step mode"), ("session", "session mode (case)")):
        print_fn(
            f"  {label:<30} {figures[f'{key}_step_median_s'] * 1000:9.1f} ms/step median, "
            f"{figures[f'{key}_step_mean_s'] * 1000:.1f} mean; overhead "
            f"{figures[f'{key}_overhead_s'] * 1000:.1f} ms/step; open_case "
            f"{figures[f'{key}_open_case_s'] * 1000:.0f} ms"
        )
    print_fn(
        f"  per-step / session overhead ratio: {figures['overhead_ratio']:.1f}x "
        f"({steps} steps, {tuple(case.shape)})"
    )
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="segloop/trivial:latest")
    parser.add_argument("--shape", default="256,256,256", help="z,y,x voxels")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    bench_docker_overhead(args.image, shape, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
