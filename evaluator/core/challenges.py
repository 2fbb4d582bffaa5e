"""A challenge (or any task) is one object: everything segloop needs to know about it.

:class:`Challenge` says how a task is run (its robot user, steps, classes), how it is scored
(metrics, the AUC's steps and x-axis, empty masks, the MedSegFM NSD rule), how it is ranked
(score terms), and how it meets the platforms (its click files, its Grand Challenge algorithm
container's sockets), plus the demo's phantom. :data:`CHALLENGES` holds the presets: the four
2025 challenges as they ran (autoPET IV, ToothFairy3, TriALS, CVPR25 MedSegFM), the generic
reactive task and the thesis's robot users R1, R3, R4, R5 on the autoPET lesion task. A user's
TOML task (:func:`challenge_from_toml`, format in docs/tasks.md) produces the same object.

Every other module reads these definitions; adding a challenge is adding one entry here (and,
if its robot user is new, the protocol it names: ``segloop.protocols``). The robot user is data
here (``protocol``: its name and parameters); ``segloop.protocols.tasks.build_task`` turns a
challenge into a runnable :class:`segloop.core.task.Task` with the robot user built.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from segloop.core.formats import ClickFileFormat
from segloop.core.metrics.curves import STEP_ORDERS
from segloop.core.metrics.registry import higher_is_better, parse_metric_name
from segloop.core.metrics.scoring import UNDEFINED_RULES, score_classes, worst_value
from segloop.core.records import EmptyMaskPolicy, SegloopError
from segloop.core.results import Scoring, column_name

#: Resource limits a task may set (seconds, MiB, CPUs, processes); see ``core.task.Limits``.
LIMIT_KEYS = (
    "step_time_limit_s",
    "case_time_limit_s",
    "memory_mb",
    "cpus",
    "pids",
    "shm_mb",
    "tmp_mb",
    "output_mb",
    "nofile",
)
INTEGER_LIMITS = ("memory_mb", "pids", "shm_mb", "tmp_mb", "output_mb", "nofile")


@dataclass(frozen=True)
class ScoreTerm:
    """One ranked column of a leaderboard score: ``metric``'s ``kind`` summary (``auc_raw``,
    ``auc_normalised`` or ``final``) with ``weight``; the score is the weighted mean of ranks."""

    metric: str
    kind: str
    weight: float = 1.0

    @property
    def column(self) -> str:
        return column_name(self.metric, self.kind)

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.metric)

    def to_json(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "kind": self.kind,
            "weight": self.weight,
            "column": self.column,
            "higher_is_better": self.higher_is_better,
        }


def auc_and_final(*metrics: str) -> tuple[ScoreTerm, ...]:
    """Each metric ranked on its normalised AUC and its Final value, equal weights (thesis
    §7.3.3: how every 2025 challenge ranked)."""
    return tuple(ScoreTerm(m, k) for m in metrics for k in ("auc_normalised", "final"))


@dataclass(frozen=True)
class GcInterface:
    """How a challenge's Grand Challenge algorithm container takes its inputs and writes its
    output (read from the challenges' public code; ``segloop.containers.docker.gc``).

    point_names: class id -> the "name" of that class's positive clicks.
    background_name: name of negative clicks (None: the challenge had none).
    point_order: "xyz" (reverse of segloop's arrays) or "zyx" (array order).
    """

    image_slugs: tuple[str, ...]
    clicks_slug: str
    output_slug: str
    point_names: Mapping[int, str]
    background_name: str | None
    point_order: str
    description: str = ""


@dataclass(frozen=True)
class ScoringMode:
    """One way a preset can be scored (``segloop run --scoring MODE``); docs/challenges.md.

    ``"challenge"``: the numbers the challenge's own evaluation script gives (``reproduces``
    names it): its metric definitions, empty values, undefined values and their skipping,
    its curve order. ``"segloop"``: segloop's own definitions (surfel metrics in mm, the
    explicit empty-mask policy, every value defined). The fields replace the challenge's own.
    """

    metrics: tuple[str, ...]
    score_terms: tuple[ScoreTerm, ...]
    empty_mask_policy: EmptyMaskPolicy = field(default_factory=EmptyMaskPolicy)
    undefined_values: str = "skip"
    curve_step_order: str = "numeric"
    reproduces: str = ""


SCORING_MODES = ("challenge", "segloop")


@dataclass(frozen=True, kw_only=True)
class Challenge:
    """Everything that defines a task (see the module docstring).

    protocol: the robot user, ``{"name": <protocol>, **parameters}`` (``segloop.protocols``).
    auc_steps: the steps whose values make the curve (MedSegFM: the 5 click steps); auc_x: the
      x of each, as the challenge reported its AUC (raw); normalised = raw / (x[-1] - x[0]).
    metrics: names the metric registry knows (``dice``, ``nsd@2``, ``hd95``...).
    nsd_zero_below_dice / nsd_zero_scope: the MedSegFM rule, NSD set to 0 where Dice <= the
      value, the case's mean Dice ("case", CVPR25_iter_eval.py) or each class's ("class").
    present_classes_only: score only classes present in the ground truth (CVPR25).
    send_previous_prediction: whether the model gets its last output; None: when the robot user
      reacts to predictions.
    requires_foreground: refuse a case with an empty label (the robot user prompts from it).
    limits: defaults of a run's resource limits (``LIMIT_KEYS``); run options override them.
    score_terms: the default ranking (empty: AUC and Final of every metric).
    click_format: how the challenge published click files (None: the generic format).
    gc: its Grand Challenge algorithm container's interface, if it had one.
    phantom: the phantom kind (``segloop phantoms``) the demo runs it on, if any.
    channels: what each image channel is (autoPET: CT then PET); a dataset must have as many.
    source: where a user's task was read from (error messages name it).
    scoring_mode: which of ``scoring_modes`` the metrics, policy and ranking above are
      ("segloop" for a task that has no other); ``scoring_modes``: the ways a preset can be
      scored (:class:`ScoringMode`, :meth:`in_scoring_mode`); ``scoring_reproduces``: the
      script the mode's numbers are those of ("": segloop's own definitions).
    undefined_values: how undefined values enter means and AUCs (``UNDEFINED_RULES``).
    curve_step_order: "numeric", or "text": the steps taken in the text order of their
      numbers (0, 1, 10, 2, ...) as TriALS' evaluate.py sorted its per-step files.
    """

    name: str
    title: str
    description: str
    protocol: Mapping[str, Any]
    num_steps: int
    classes: Mapping[int, str]
    metrics: tuple[str, ...]
    auc_steps: tuple[int, ...]
    auc_x: tuple[float, ...]
    empty_mask_policy: EmptyMaskPolicy = field(default_factory=EmptyMaskPolicy)
    nsd_zero_below_dice: float | None = None
    nsd_zero_scope: str = "case"
    present_classes_only: bool = False
    send_previous_prediction: bool | None = None
    requires_foreground: bool = False
    seed: int = 0
    limits: Mapping[str, float] = field(default_factory=dict)
    score_terms: tuple[ScoreTerm, ...] = ()
    click_format: ClickFileFormat | None = None
    gc: GcInterface | None = None
    phantom: str | None = None
    channels: tuple[str, ...] | None = None  # the image channels, in order (None: any)
    source: str = ""  # the TOML file it was read from ("" for a preset)
    scoring_mode: str = "segloop"
    scoring_modes: Mapping[str, ScoringMode] = field(default_factory=dict)
    scoring_reproduces: str = ""
    undefined_values: str = "skip"
    curve_step_order: str = "numeric"

    def __post_init__(self) -> None:
        where = self.source or f"task {self.name!r}"
        if self.num_steps < 1:
            raise SegloopError(f"{where}: num_steps must be >= 1")
        if not self.classes or any(int(k) < 1 for k in self.classes):
            raise SegloopError(f"{where}: classes must be label values >= 1 (0 is background)")
        if not self.metrics:
            raise SegloopError(f"{where}: no metric")
        for metric in self.metrics:
            parse_metric_name(metric)
        if len(self.auc_steps) != len(self.auc_x) or not self.auc_steps:
            raise SegloopError(f"{where}: auc_steps and auc_x must be as long, and not empty")
        if any(s < 0 or s >= self.num_steps for s in self.auc_steps):
            raise SegloopError(f"{where}: auc_steps must lie in 0..num_steps-1")
        if list(self.auc_steps) != sorted(set(self.auc_steps)):
            raise SegloopError(f"{where}: auc_steps must increase")
        if not all(math.isfinite(x) for x in self.auc_x) or any(
            b <= a for a, b in zip(self.auc_x, self.auc_x[1:], strict=False)
        ):
            raise SegloopError(f"{where}: auc_x must be finite and increasing")
        unknown = sorted(set(self.limits) - set(LIMIT_KEYS))
        if unknown:
            raise SegloopError(
                f"{where}: limits: unknown {', '.join(unknown)}; expected {', '.join(LIMIT_KEYS)}"
            )
        if any(not (math.isfinite(value) and value > 0) for value in self.limits.values()):
            raise SegloopError(f"{where}: limits must be > 0 (and finite): {dict(self.limits)}")
        if self.nsd_zero_scope not in ("case", "class"):
            raise SegloopError(f"{where}: nsd_zero_scope must be 'case' or 'class'")
        if self.nsd_zero_below_dice is not None and not math.isfinite(self.nsd_zero_below_dice):
            raise SegloopError(f"{where}: nsd_zero_below_dice must be a finite number")
        missing = [t.metric for t in self.score_terms if t.metric not in self.metrics]
        if missing:
            raise SegloopError(f"{where}: score terms name metrics it lacks: {missing}")
        if self.undefined_values not in UNDEFINED_RULES:
            raise SegloopError(
                f"{where}: undefined_values must be one of {', '.join(UNDEFINED_RULES)}"
            )
        if self.undefined_values == "worst":
            for metric in self.metrics:
                try:
                    worst_value(parse_metric_name(metric))
                except SegloopError as error:
                    raise SegloopError(f"{where}: {error}") from None
        if self.curve_step_order not in STEP_ORDERS:
            raise SegloopError(f"{where}: curve_step_order must be one of {', '.join(STEP_ORDERS)}")
        if self.scoring_modes and self.scoring_mode not in self.scoring_modes:
            raise SegloopError(f"{where}: scoring mode {self.scoring_mode!r} is not defined")

    @property
    def scoring(self) -> Scoring:
        """How this task scores, as every case result records it."""
        return Scoring(
            self.scoring_mode,
            self.undefined_values,
            self.curve_step_order,
            self.scoring_reproduces,
        )

    def in_scoring_mode(self, mode: str | None) -> Challenge:
        """The same task scored the ``mode`` way ("challenge" or "segloop"; None: as it is)."""
        if mode is None or mode == self.scoring_mode:
            return self
        if mode not in self.scoring_modes:
            known = ", ".join(self.scoring_modes) or self.scoring_mode
            raise SegloopError(f"task {self.name!r} has no {mode!r} scoring mode (it has: {known})")
        chosen = self.scoring_modes[mode]
        return replace(
            self,
            scoring_mode=mode,
            metrics=chosen.metrics,
            score_terms=chosen.score_terms,
            empty_mask_policy=chosen.empty_mask_policy,
            undefined_values=chosen.undefined_values,
            curve_step_order=chosen.curve_step_order,
            scoring_reproduces=chosen.reproduces,
        )

    def score(
        self, prediction: np.ndarray, label: np.ndarray, spacing_mm: tuple[float, ...]
    ) -> dict[str, dict[str, object]]:
        """One step's metrics of a label map against the ground truth, by this task's rules
        (:func:`segloop.core.metrics.scoring.score_classes`)."""
        return score_classes(
            prediction,
            label,
            sorted(self.classes),
            spacing_mm,
            self.metrics,
            policy=self.empty_mask_policy,
            nsd_zero_below_dice=self.nsd_zero_below_dice,
            nsd_zero_scope=self.nsd_zero_scope,
            present_classes_only=self.present_classes_only,
            undefined_values=self.undefined_values,
        )

    @property
    def ranking(self) -> tuple[ScoreTerm, ...]:
        """The score terms, or AUC and Final of every metric."""
        return self.score_terms or auc_and_final(*self.metrics)

    def curve_axis(self, num_steps: int | None = None) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """(AUC steps, their x) for a curve of ``num_steps`` (default: the task's)."""
        if num_steps is None or num_steps == self.num_steps:
            return self.auc_steps, self.auc_x
        return tuple(range(num_steps)), tuple(float(s) for s in range(num_steps))


def _steps(first: int, last: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1))


def _x(count: int) -> tuple[float, ...]:
    return tuple(float(v) for v in range(count))


AUTOPET_CLICKS = ClickFileFormat(
    "autopet",
    "gc",
    ("x", "y", "z"),
    source="lab-midas/autoPETCTIV clicks/simulate_clicks.py (nibabel arrays; clicks_to_gc_format)",
)
TOOTHFAIRY3_CLICKS = ClickFileFormat(
    "toothfairy3",
    "gc",
    ("z", "y", "x"),
    source="AImageLab-zip/ToothFairy ToothFairy3/Interactive-Segmentation/simulate_clicks.py "
    "(sitk.GetArrayFromImage arrays)",
)
TRIALS_CLICKS = ClickFileFormat(
    "trials",
    "lists",
    ("x", "y", "z"),
    source="xmed-lab/TriALS TriALS_2025_Interactive_Task_2/baseline_interactive_task/"
    "sw_fastedit_src/sw_fastedit/utils/simulate_clicks_TriALS.py (nibabel arrays)",
)

_THESIS = {
    "r1": ("Thesis R1: centre clicks", "Thesis R1 (eq. 17): centre of the largest label, then error, component; 11 steps"),
    "r3": ("Thesis R3: EDT-weighted clicks", "Thesis R3 (eq. 19): uniform in the label, then EDT-weighted in the error; 11 steps"),
    "r4": ("Thesis R4: uniform clicks", "Thesis R4 (eq. 20): uniform in the label, then uniform in the error; 11 steps"),
    "r5": ("Thesis R5: realistic user", "Thesis R5 (eq. 28): R1 with 13.4 % perturbed (a = 35) and 13.4 % off-label clicks"),
}  # fmt: skip


def _modes(challenge: ScoringMode, segloop: ScoringMode) -> dict[str, Any]:
    """A preset's fields for its two scoring modes, the challenge's own in effect (what an
    organizer of that challenge publishes); ``--scoring segloop`` selects the other."""
    return {
        "scoring_mode": "challenge",
        "scoring_modes": {"challenge": challenge, "segloop": segloop},
        "metrics": challenge.metrics,
        "score_terms": challenge.score_terms,
        "empty_mask_policy": challenge.empty_mask_policy,
        "undefined_values": challenge.undefined_values,
        "curve_step_order": challenge.curve_step_order,
        "scoring_reproduces": challenge.reproduces,
    }


def _segloop_mode(*metrics: str) -> ScoringMode:
    return ScoringMode(metrics, auc_and_final(*metrics))


AUTOPET_SCRIPT = "lab-midas/autoPETCTIV evaluation_metrics/evaluation_metrics.py (80af68d)"
TRIALS_SCRIPT = (
    "xmed-lab/TriALS TriALS_2025_Interactive_Task_2/eval_scripts_interactive_task/evaluate.py "
    "(de701ea)"
)
TOOTHFAIRY3_SCRIPT = (
    "AImageLab-zip/ToothFairy ToothFairy3/Interactive-Segmentation/evaluation/evaluation.py "
    "(daac164)"
)
MEDSEGFM_SCRIPT = "JunMa11/CVPR-MedSegFMCompetition CVPR25_iter_eval.py (748e862)"

#: autoPET IV: Dice and FNV undefined for a negative case (NaN, skipped by the pandas mean),
#: the voxel volume in float32 (docs/challenges.md).
AUTOPET_SCORING = ScoringMode(
    ("dice", "fpv_f32", "fnv_f32"),
    auc_and_final("dice", "fpv_f32", "fnv_f32"),
    EmptyMaskPolicy(empty_gt_undefined=True),
    reproduces=AUTOPET_SCRIPT,
)
#: TriALS: medpy's old Surface class (18-neighbourhood boundary voxels, mm), 9001 for a
#: missed lesion, no score without a reference lesion, steps integrated in text order.
TRIALS_SCORING = ScoringMode(
    ("dice", "assd_voxel_boundary_n18", "hd_voxel_boundary_n18"),
    auc_and_final("dice", "assd_voxel_boundary_n18", "hd_voxel_boundary_n18"),
    EmptyMaskPolicy(one_empty_distance_mm=9001.0, empty_gt_undefined=True),
    curve_step_order="text",
    reproduces=TRIALS_SCRIPT,
)
#: ToothFairy3: medpy hd95 (6-neighbourhood boundary voxels, both directions pooled) in
#: voxels; one mask empty: the array diagonal in voxels.
TOOTHFAIRY3_SCORING = ScoringMode(
    ("dice", "hd95_voxel_boundary_n6_voxels"),
    auc_and_final("dice", "hd95_voxel_boundary_n6_voxels"),
    reproduces=TOOTHFAIRY3_SCRIPT,
)
#: MedSegFM: the challenge's definitions are segloop's own (surfel NSD, Dice, present classes).
MEDSEGFM_SCORING = ScoringMode(
    ("dice", "nsd@2"), auc_and_final("dice", "nsd@2"), reproduces=MEDSEGFM_SCRIPT
)


def _thesis(name: str) -> Challenge:
    """R1, R3, R4 or R5 of the thesis (§5.2) on the autoPET lesion task: steps 0..10, one
    lesion and one background click per step from step 1, Dice/FPV/FNV, AUC over 0..10. The
    model gets the clicks only (as SW-FastEdit in the thesis's study)."""
    title, description = _THESIS[name]
    return Challenge(
        name=name,
        title=title,
        description=description,
        protocol={"name": "realistic"} if name == "r5" else {"name": name},
        num_steps=11,
        classes={1: "tumor"},
        metrics=("dice", "fpv", "fnv"),
        auc_steps=_steps(0, 10),
        auc_x=_x(11),
        send_previous_prediction=False,
        score_terms=auc_and_final("dice", "fpv", "fnv"),
        click_format=AUTOPET_CLICKS,
    )


#: The task presets (SPEC protocol table): the four 2025 challenges as they ran, the generic
#: reactive task and the thesis's robot users.
CHALLENGES: dict[str, Challenge] = {
    "autopet": Challenge(
        name="autopet",
        title="autoPET IV: 10 lesion + 10 PET background clicks, 11 steps",
        description="autoPET IV: 10 lesion + 10 high-uptake background clicks (Alg. 1), 0..10",
        protocol={"name": "autopet"},
        num_steps=11,
        classes={1: "tumor"},
        **_modes(AUTOPET_SCORING, _segloop_mode("dice", "fpv", "fnv")),
        auc_steps=_steps(0, 10),
        auc_x=_x(11),
        send_previous_prediction=False,
        click_format=AUTOPET_CLICKS,
        channels=("CT", "PET"),
        gc=GcInterface(
            image_slugs=("ct", "pet"),
            clicks_slug="lesion-clicks",
            output_slug="tumor-lesion-segmentation",
            point_names={1: "tumor"},
            background_name="background",
            point_order="xyz",
            description="autoPET IV interactive (Task 1)",
        ),
        phantom="pet",
    ),
    "toothfairy3": Challenge(
        name="toothfairy3",
        title="ToothFairy3: 5 clicks per inferior alveolar canal, 6 steps",
        description="ToothFairy3 IAC: 5 slice-wise centre clicks per canal (Alg. 2), 0..5",
        protocol={"name": "toothfairy3"},
        num_steps=6,
        classes={1: "Left_IAC", 2: "Right_IAC"},
        **_modes(TOOTHFAIRY3_SCORING, _segloop_mode("dice", "hd95")),
        auc_steps=_steps(0, 5),
        auc_x=_x(6),
        send_previous_prediction=False,
        requires_foreground=True,
        click_format=TOOTHFAIRY3_CLICKS,
        channels=("CBCT",),
        gc=GcInterface(
            image_slugs=("cbct",),
            clicks_slug="iac-clicks",
            output_slug="iac-segmentation",
            point_names={1: "Left_IAC", 2: "Right_IAC"},
            background_name=None,
            point_order="zyx",
            description="ToothFairy3 interactive IAC segmentation",
        ),
        phantom="jaw",
    ),
    "trials": Challenge(
        name="trials",
        title="TriALS: 10 lesion + 10 liver background clicks, 11 steps",
        description="TriALS: 10 lesion + 10 uniform liver background clicks (Alg. 3), 0..10",
        protocol={"name": "trials"},
        num_steps=11,
        classes={1: "lesion"},
        **_modes(TRIALS_SCORING, _segloop_mode("dice", "assd", "hd")),
        auc_steps=_steps(0, 10),
        auc_x=_x(11),
        send_previous_prediction=False,
        click_format=TRIALS_CLICKS,
        channels=("CT",),
        phantom="abdomen",
    ),
    "medsegfm": Challenge(
        name="medsegfm",
        title="CVPR25 MedSegFM: box + 5 reactive Sakinis clicks per class",
        description="CVPR25 MedSegFM: a box per class, then 5 reactive Sakinis clicks; AUC on clicks",
        protocol={"name": "sakinis", "initial": "box"},
        num_steps=6,
        classes={1: "foreground"},
        **_modes(MEDSEGFM_SCORING, _segloop_mode("dice", "nsd@2")),
        auc_steps=_steps(1, 5),
        auc_x=_x(5),
        nsd_zero_below_dice=0.2,
        present_classes_only=True,
        send_previous_prediction=True,
        requires_foreground=True,
        phantom="pet",
    ),
    "generic": Challenge(
        name="generic",
        title="Reactive Sakinis clicks from an empty start, 6 steps",
        description="Generic reactive: one Sakinis click per class and step from an empty start, 0..5",
        protocol={"name": "sakinis", "initial": "click"},
        num_steps=6,
        classes={1: "foreground"},
        metrics=("dice", "nsd@2", "hd95"),
        auc_steps=_steps(0, 5),
        auc_x=_x(6),
        send_previous_prediction=True,
    ),
    **{name: _thesis(name) for name in _THESIS},
}


#: Robot users an organizer can put in any task's place (``--task autopet+r4``, ``segloop run
#: --robot-users r1,r4``) to see which models hold up when the user is less ideal. Each is a
#: protocol spec, as a TOML ``[protocol]`` table would give it. R2 is left out: it needs an
#: uncertainty map the model contract does not carry; ``replay`` needs a recording (TOML).
ROBOT_USERS: dict[str, tuple[str, dict[str, Any]]] = {
    "r1": ("thesis R1 (eq. 17): centre of the largest label, then error, component", {"name": "r1"}),
    "r3": ("thesis R3 (eq. 19): EDT-weighted clicks in the error", {"name": "r3"}),
    "r4": ("thesis R4 (eq. 20): uniform clicks over the error voxels", {"name": "r4"}),
    "r5": ("thesis R5 (eq. 28): R1 with 13.4 % perturbed and 13.4 % off-label clicks", {"name": "realistic"}),
    "sakinis": ("Sakinis: a click at the centre of the largest error component, per class", {"name": "sakinis"}),
    "generic-clicks": ("a click at the centre of the largest error component, ground truth first", {"name": "clicks"}),
    "generic-random-clicks": ("a click anywhere in a random error component", {"name": "clicks", "component": "random", "placement": "random"}),
    "generic-boundary-clicks": ("a click on the boundary of the largest error component", {"name": "clicks", "placement": "boundary"}),
    "generic-box": ("a sloppy box at step 0, then centre clicks on the error", {"name": "sequence", "initial": {"name": "box", "style": "sloppy"}, "then": {"name": "clicks"}}),
    "generic-scribble": ("line scribbles in the ground truth, then on the larger error", {"name": "scribble", "style": "line"}),
    "generic-centerline-scribble": ("centerline scribbles, then on the larger error", {"name": "scribble", "style": "centerline"}),
    "generic-polygon": ("a 12-vertex polygon at step 0, then centre clicks on the error", {"name": "sequence", "initial": {"name": "polygon"}, "then": {"name": "clicks"}}),
    # ScribblePrompt's evaluation procedures (§5.2; App. 0.F.1 for the box)
    "sp-center-clicks": ("ScribblePrompt center clicks: the largest component's centre, then the largest error's", {"name": "clicks"}),
    "sp-random-clicks": ("ScribblePrompt random clicks: one uniform in the label, then one uniform in the error", {"name": "clicks", "placement": "uniform"}),
    "sp-random-warm-start": ("ScribblePrompt random warm start: 3 random positive and 3 random negative clicks, then centre clicks on the error", {"name": "sequence", "initial": {"name": "together", "users": [{"name": "clicks", "placement": "uniform", "clicks_per_step": 3, "min_spacing_voxels": 3.0, "reactive": False}, {"name": "clicks", "placement": "uniform", "clicks_per_step": 3, "min_spacing_voxels": 3.0, "reactive": False, "eligibility": "background"}]}, "then": {"name": "clicks"}}),
    "sp-border-clicks": ("ScribblePrompt interior border clicks: 1-3 clicks in a band inside the label, then in the error", {"name": "clicks", "placement": "border", "count_range": [1, 3], "min_spacing_voxels": 3.0}),
    "sp-box": ("ScribblePrompt box: the label's box, each dimension enlarged by U{0..20} voxels, then centre clicks", {"name": "sequence", "initial": {"name": "box", "style": "jitter"}, "then": {"name": "clicks"}}),
}  # fmt: skip


def with_robot_user(challenge: Challenge, user: str) -> Challenge:
    """The same task with the robot user ``user`` of :data:`ROBOT_USERS` in its place, named
    ``<task>+<user>``: same data, classes, steps, metrics and scoring, only the user differs."""
    if user not in ROBOT_USERS:
        raise SegloopError(f"unknown robot user {user!r}: use one of {', '.join(ROBOT_USERS)}")
    description, protocol = ROBOT_USERS[user]
    return replace(
        challenge,
        name=f"{challenge.name}+{user}",
        title=f"{challenge.title}, robot user {user}",
        description=f"{challenge.description}; robot user {user}: {description}",
        protocol=protocol,
    )


def get_challenge(reference: str | Path) -> Challenge:
    """A preset by name, or a user's task from a ``.toml`` path; ``<task>+<user>`` is that task
    with a robot user of :data:`ROBOT_USERS` in its place (:func:`with_robot_user`)."""
    text = str(reference)
    if text in CHALLENGES:
        return CHALLENGES[text]
    base, plus, user = text.rpartition("+")
    if plus and base and user in ROBOT_USERS:
        return with_robot_user(get_challenge(base), user)
    if text.endswith(".toml") or Path(text).is_file():
        return challenge_from_toml(text)
    raise SegloopError(
        f"unknown task {text!r}: use one of {', '.join(CHALLENGES)} or a path to a .toml task "
        f"file, optionally followed by +<robot user> ({', '.join(ROBOT_USERS)})"
    )


def with_classes(challenge: Challenge, classes: Mapping[int, str] | None) -> Challenge:
    """The same challenge with other classes (e.g. a MedSegFM dataset's labels)."""
    return challenge if classes is None else replace(challenge, classes=dict(classes))


# --------------------------------------------------------------------------------------------
# TOML tasks


_TOML_KEYS = (
    "name",
    "description",
    "base",
    "num_steps",
    "metrics",
    "auc_steps",
    "auc_x",
    "nsd_zero_below_dice",
    "nsd_zero_scope",
    "present_classes_only",
    "send_previous_prediction",
    "seed",
    "classes",
    "protocol",
    "empty_mask_policy",
    "limits",
    "scoring",
    "undefined_values",
    "curve_step_order",
    "requires_foreground",
    "channels",
)
#: Keys that change how a task scores: a TOML task setting one is scored its own way
#: (scoring mode "custom"), not the base preset's.
_SCORING_KEYS = ("metrics", "empty_mask_policy", "undefined_values", "curve_step_order")


def _integer(value: Any, key: str) -> int:
    """A TOML integer, exactly: ``seed = 1.5`` or ``true`` is refused, never truncated."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SegloopError(f"{key} must be an integer, not {value!r}")
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SegloopError(f"{key} must be a finite number, not {value!r}")
    return float(value)


def _boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):  # bool("false") would be True
        raise SegloopError(f"{key} must be true or false, not {value!r}")
    return value


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise SegloopError(f"{key} must be a string, not {value!r}")
    return value


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise SegloopError(f"{key} must be a list, not {value!r}")
    return value


def _label_value(key: str) -> int | str:
    """A [classes] key (TOML keys are text) as the label value it names."""
    return int(key) if key.isdigit() else key


def _table(data: Mapping[str, Any], key: str, path: Path) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise SegloopError(f"{path}: [{key}] must be a table")
    return value


def challenge_from_toml(path: str | Path) -> Challenge:
    """A user's task from a TOML file (docs/tasks.md): every key checked, the rest from its
    ``base`` preset if it names one."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SegloopError(f"{path}: task file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SegloopError(f"{path}: not a readable TOML task file ({error})") from None
    unknown = sorted(set(data) - set(_TOML_KEYS))
    if unknown:
        raise SegloopError(f"{path}: unknown key(s) {', '.join(unknown)}")
    try:
        if "base" in data:
            if data["base"] not in CHALLENGES:
                raise SegloopError(
                    f"{path}: base {data['base']!r} is not a preset ({', '.join(CHALLENGES)})"
                )
            base = CHALLENGES[data["base"]].in_scoring_mode(data.get("scoring"))
            values: dict[str, Any] = {f.name: getattr(base, f.name) for f in fields(Challenge)}
        else:
            for required in ("num_steps", "metrics", "protocol"):
                if required not in data:
                    raise SegloopError(f"{path}: missing {required!r} (or give a base preset)")
            values = {"classes": {1: "foreground"}}
        values["name"] = str(data.get("name", values.get("name", path.stem)))
        values["description"] = str(
            data.get("description", values.get("description", f"user task {path.name}"))
        )
        values["title"] = values["description"]
        if "protocol" in data:
            values["protocol"] = dict(_table(data, "protocol", path))
            if (
                "send_previous_prediction" not in data
                and values.get("send_previous_prediction") is not True
            ):
                # a base that sends it keeps sending (MedSegFM); otherwise the new robot user's
                # reactivity decides (a reactive [protocol] on autoPET must get predictions)
                values["send_previous_prediction"] = None
        if "num_steps" in data:
            values["num_steps"] = _integer(data["num_steps"], "num_steps")
            if "auc_steps" not in data and "base" in data:
                values.pop("auc_steps", None)
                values.pop("auc_x", None)
        if "metrics" in data:
            values["metrics"] = tuple(
                _text(m, "metrics") for m in _list(data["metrics"], "metrics")
            )
            values["score_terms"] = tuple(
                t for t in values.get("score_terms", ()) if t.metric in values["metrics"]
            )
        if "classes" in data:
            values["classes"] = {
                _integer(_label_value(k), "[classes] key"): _text(v, f"[classes] {k}")
                for k, v in _table(data, "classes", path).items()
            }
        if "empty_mask_policy" in data:
            values["empty_mask_policy"] = EmptyMaskPolicy.from_json(
                _table(data, "empty_mask_policy", path)
            )
        if "limits" in data:
            values["limits"] = {
                key: (
                    _integer(value, f"limits.{key}")
                    if key in INTEGER_LIMITS
                    else _number(value, f"limits.{key}")
                )
                for key, value in _table(data, "limits", path).items()
            }
        for key, cast in (
            ("nsd_zero_below_dice", _number),
            ("nsd_zero_scope", _text),
            ("present_classes_only", _boolean),
            ("send_previous_prediction", _boolean),
            ("requires_foreground", _boolean),
            ("undefined_values", _text),
            ("curve_step_order", _text),
        ):
            if key in data:
                values[key] = cast(data[key], key)
        if "channels" in data:
            if not isinstance(data["channels"], list) or not data["channels"]:
                raise SegloopError(f'{path}: channels must be a list of names, e.g. ["CT", "PET"]')
            values["channels"] = tuple(str(c) for c in data["channels"])
        if "scoring" in data and "base" not in data:
            raise SegloopError(f"{path}: 'scoring' picks a mode of a base preset; give 'base'")
        if any(key in data for key in _SCORING_KEYS):
            values["scoring_mode"] = "custom"  # the file's own rules, not the base's
            values["scoring_modes"] = {}
            values["scoring_reproduces"] = ""
        if "auc_steps" in data:
            values["auc_steps"] = tuple(
                _integer(s, "auc_steps") for s in _list(data["auc_steps"], "auc_steps")
            )
        values.setdefault("auc_steps", tuple(range(values["num_steps"])))
        if "auc_x" in data:
            values["auc_x"] = tuple(_number(x, "auc_x") for x in _list(data["auc_x"], "auc_x"))
        values.setdefault("auc_x", _x(len(values["auc_steps"])))
        values["seed"] = _integer(data.get("seed", values.get("seed", 0)), "seed")
        if not values["classes"]:
            raise SegloopError(f"{path}: [classes] is empty")
        values["gc"] = values.get("gc") if "protocol" not in data else None
        values["phantom"] = None
        values["source"] = str(path)
        return Challenge(**values)
    except SegloopError as error:
        message = str(error)
        raise SegloopError(
            message if message.startswith(str(path)) else f"{path}: {message}"
        ) from None
    except (TypeError, ValueError, KeyError) as error:
        raise SegloopError(f"{path}: invalid task ({error})") from None


# --------------------------------------------------------------------------------------------
# Writing a task as TOML


def challenge_to_toml(challenge: Challenge) -> str:
    """``challenge`` as a self-contained TOML task file (docs/tasks.md) that
    :func:`challenge_from_toml` reads back as a task that runs and scores the same way: same
    robot user, steps, classes, metrics, AUC axis, empty-mask policy, rules and limits. What TOML
    has no key for (the preset's ranking, click-file format, Grand Challenge interface, demo
    phantom) is left out, and a file that sets its own metrics is in scoring mode "custom"."""
    head = {
        "name": challenge.name,
        "description": challenge.description,
        "num_steps": challenge.num_steps,
        "metrics": list(challenge.metrics),
        "auc_steps": list(challenge.auc_steps),
        "auc_x": list(challenge.auc_x),
        "seed": challenge.seed,
        "nsd_zero_scope": challenge.nsd_zero_scope,
        "present_classes_only": challenge.present_classes_only,
        "requires_foreground": challenge.requires_foreground,
        "undefined_values": challenge.undefined_values,
        "curve_step_order": challenge.curve_step_order,
    }
    if challenge.nsd_zero_below_dice is not None:
        head["nsd_zero_below_dice"] = challenge.nsd_zero_below_dice
    if challenge.send_previous_prediction is not None:
        head["send_previous_prediction"] = challenge.send_previous_prediction
    if challenge.channels is not None:
        head["channels"] = list(challenge.channels)
    lines = [
        f"# segloop task {challenge.name!r}, written by `segloop tasks {challenge.name} --toml`",
        "# (every key: docs/tasks.md)",
    ]
    lines += [f"{key} = {_toml_value(value)}" for key, value in head.items()]
    tables = {
        "classes": {str(k): v for k, v in challenge.classes.items()},
        "empty_mask_policy": challenge.empty_mask_policy.to_json(),
        "limits": dict(challenge.limits),
        "protocol": dict(challenge.protocol),
    }
    for name, table in tables.items():
        if table or name != "limits":
            lines += _toml_table(name, table)
    return "\n".join(lines) + "\n"


def _toml_table(name: str, table: Mapping[str, Any]) -> list[str]:
    lines = ["", f"[{name}]"]
    nested = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            nested.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in nested:
        lines += _toml_table(f"{name}.{_toml_key(key)}", value)
    return lines


def _toml_key(key: Any) -> str:
    text = str(key)
    return text if text.replace("_", "").replace("-", "").isalnum() else json.dumps(text)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SegloopError(f"TOML: {value} cannot be written")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise SegloopError(f"TOML: cannot write {type(value).__name__} {value!r}")
