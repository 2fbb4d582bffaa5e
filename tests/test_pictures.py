"""leaderboard/pictures.py: case pictures drawn with matplotlib (Agg, no pyplot).

The pixel tests find where a voxel lands in the PNG through the figure's own transforms (after
the PNG is written, so the layout is final) and look for the expected colours there.
"""

from __future__ import annotations

import base64
import io
import threading
from functools import cache

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from segloop.app import phantoms
from segloop.core.records import Interaction, SegloopError
from segloop.core.results import CaseResult
from segloop.leaderboard import pictures

METRICS = {"dice": {"mean": 0.8312, "per_class": {"1": 0.8312}}, "nsd@2": {"mean": 0.9071}}


def click(z: int, y: int, x: int, step: int, positive: bool = True) -> Interaction:
    return Interaction("click", 1, positive, step, ((z, y, x),))


def decode(png: bytes) -> np.ndarray:
    """RGB uint8 array (rows from the top) of PNG bytes."""
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def hex_rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])


def colour_mask(rgb: np.ndarray, colour: str, tolerance: int = 12) -> np.ndarray:
    return np.all(np.abs(rgb.astype(int) - hex_rgb(colour)) <= tolerance, axis=-1)


def pixel_of(figure, ax, col: float, row: float) -> tuple[int, int]:
    """(row, column) in the PNG of data point (col, row) of an axes (PNG rows run down)."""
    x, y = ax.transData.transform((col, row))
    height = int(round(figure.get_size_inches()[1] * figure.dpi))
    return int(round(height - y)), int(round(x))


def near(mask: np.ndarray, pixel: tuple[int, int], radius: int = 3) -> bool:
    row, col = pixel
    return bool(
        mask[max(row - radius, 0) : row + radius + 1, max(col - radius, 0) : col + radius + 1].any()
    )


def panel_box(figure, ax) -> tuple[slice, slice]:
    """PNG rows and columns covered by an axes."""
    height = int(round(figure.get_size_inches()[1] * figure.dpi))
    box = ax.get_window_extent()
    rows = slice(int(np.ceil(height - box.y1)), int(np.floor(height - box.y0)))
    return rows, slice(int(np.ceil(box.x0)), int(np.floor(box.x1)))


@cache
def pet_case():
    """A PET phantom with its largest lesion, a prediction missing that lesion's rim, clicks."""
    case = phantoms.pet_phantom(0)
    components, count = ndimage.label(case.label)
    assert count >= 1
    sizes = np.bincount(components.ravel())[1:]
    lesion = components == 1 + int(np.argmax(sizes))
    z, y, x = (int(round(v)) for v in np.argwhere(lesion).mean(axis=0))
    assert lesion[z, y, x]
    prediction = ndimage.binary_erosion(case.label > 0, iterations=2).astype(np.uint8)
    outside = np.argwhere((case.label == 0) & (np.arange(case.shape[2]) < 10)[None, None, :])
    outside = outside[outside[:, 0] == z][0]  # background voxel in the same axial slice
    interactions = [
        click(case.shape[0] - 5, y, x + 10, step=0),  # far above the lesion's slice: faded
        click(*(int(v) for v in outside), step=1, positive=False),
        click(z, y, x, step=1),  # newest: the picture cuts through it
    ]
    return case, prediction, interactions, (z, y, x), tuple(int(v) for v in outside)


def pet_figure(**options):
    case, prediction, interactions, _, _ = pet_case()
    return pictures.case_step_figure(
        case.channels[1],
        case.label,
        prediction,
        interactions,
        case.spacing_mm,
        step=1,
        metrics_text=pictures.format_metrics(METRICS),
        case_id=case.case_id,
        **options,
    )


def sphere_case(shape=(12, 80, 40), spacing=(5.0, 0.5, 1.0), radius_mm=12.0):
    """An anisotropic volume holding a ball (round in mm, not in voxels) at its centre."""
    centre = [(n - 1) / 2 for n in shape]
    grids = np.ogrid[: shape[0], : shape[1], : shape[2]]
    r2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing, strict=True))
    label = (r2 <= radius_mm**2).astype(np.uint8)
    rng = np.random.default_rng(3)
    image = (100.0 * label + rng.normal(0.0, 10.0, shape)).astype(np.float32)
    return image, label, tuple(int(round(c)) for c in centre)


# --------------------------------------------------------------------------- record helpers


def test_format_metrics_names_units_and_missing_values():
    text = pictures.format_metrics(
        {
            "dice": {"mean": 0.8312},
            "nsd@2": {"mean": 0.9071},
            "hd95": {"mean": 3.214},
            "fpv": {"mean": 12.5},
            "assd": {"mean": None},
        }
    )
    assert text == "Dice 0.83 · NSD@2 0.91 · HD95 3.21 mm · FPV 12.5 ml · ASSD n/a"
    assert pictures.format_metrics(METRICS, ["nsd@2"]) == "NSD@2 0.91"


def test_interactions_of_case_result_up_to_a_step():
    steps = [
        {"step": k, "new_interactions": [click(k, k, k, k).to_json()], "metrics": {}}
        for k in range(4)
    ]
    result = CaseResult.from_json({"case_id": "c", "steps": steps, "summary": {}}, "c")
    assert [i.step for i in pictures.interactions_of(result, 2)] == [0, 1, 2]
    assert pictures.interactions_of(result)[-1] == click(3, 3, 3, 3)


def test_focus_is_the_steps_newest_click_else_the_largest_error_else_the_label():
    label = np.zeros((10, 20, 20), np.uint8)
    label[4:7, 4:9, 4:9] = 1
    prediction = np.zeros_like(label)
    prediction[2:5, 12:18, 12:18] = 1  # 108 false-positive voxels, the largest error
    spacing = (2.0, 1.0, 1.0)
    clicks = [click(1, 1, 1, 0), click(2, 2, 2, 1), click(3, 3, 3, 1)]
    assert pictures.focus_voxel(label, prediction, clicks, 1, spacing) == (3, 3, 3)
    error_centre = pictures.focus_voxel(label, prediction, clicks, 2, spacing)
    assert prediction[error_centre] == 1 and label[error_centre] == 0
    assert (
        pictures.focus_voxel(label, prediction, clicks, 1, spacing, prefer="error") == error_centre
    )
    assert pictures.focus_voxel(label, label, [], 0, spacing) == (5, 6, 6)
    empty = np.zeros_like(label)
    assert pictures.focus_voxel(empty, empty, [], 0, spacing) == (5, 10, 10)


def test_intensity_window_is_robust_to_outliers_and_never_empty():
    values = np.concatenate([np.linspace(0.0, 100.0, 10_000), [1e6, -1e6]])
    low, high = pictures.intensity_window(values)
    assert 0.0 <= low < 2.0 and 98.0 < high <= 100.0
    assert pictures.intensity_window(np.full(50, 7.0)) == (7.0, 8.0)
    assert pictures.intensity_window(np.array([np.nan])) == (0.0, 1.0)


# --------------------------------------------------------------------------- the step figure


def test_step_figure_png_is_written_decodes_and_has_the_figure_size(tmp_path):
    figure = pet_figure()
    path = pictures.save_png(figure, tmp_path / "deep" / "pet_step1.png")
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    rgb = decode(path.read_bytes())
    width, height = figure.get_size_inches() * figure.dpi
    assert rgb.shape == (int(round(height)), 1200, 3)
    assert 300 < rgb.shape[0] < 900  # three panels side by side, not a tall stack


def test_step_figure_title_holds_case_step_and_metrics():
    figure = pet_figure()
    title = figure.get_suptitle()
    assert title == "pet_000 · step 1 · Dice 0.83 · NSD@2 0.91"
    assert [ax.get_title() for ax in figure.axes[:3]] == [
        f"axial  z = {pet_case()[3][0]}",
        f"coronal  y = {pet_case()[3][1]}",
        f"sagittal  x = {pet_case()[3][2]}",
    ]
    legend_texts = [t.get_text() for t in figure.legends[0].get_texts()]
    assert "ground truth" in legend_texts and "prediction" in legend_texts


def test_step_figure_draws_clicks_by_polarity_where_they_are():
    figure = pet_figure()
    rgb = decode(pictures.png_bytes(figure))
    _, _, _, (z, y, x), (nz, ny, nx) = pet_case()
    axial = figure.axes[0]
    positive = colour_mask(rgb, pictures.POSITIVE_COLOUR)
    negative = colour_mask(rgb, pictures.NEGATIVE_COLOUR)
    at_positive = pixel_of(figure, axial, x, y)
    at_negative = pixel_of(figure, axial, nx, ny)
    assert near(positive, at_positive) and not near(negative, at_positive)
    assert near(negative, at_negative) and not near(positive, at_negative)
    # The step-0 click lies far above this axial slice: drawn faded, so not in full colour.
    far = pet_case()[2][0].coords[0]
    assert abs(far[0] - z) > 1
    assert not near(positive, pixel_of(figure, axial, far[2], far[1]), radius=2)
    # In the coronal view it sits on the slice (same y), so there it is in full colour.
    coronal = figure.axes[1]
    assert near(positive, pixel_of(figure, coronal, far[2], far[0]))


def test_step_figure_draws_ground_truth_contour_and_prediction_fill():
    figure = pet_figure()
    rgb = decode(pictures.png_bytes(figure))
    case, prediction, _, (z, y, x), _ = pet_case()
    rows, cols = panel_box(figure, figure.axes[0])
    gt = colour_mask(rgb, pictures.GT_COLOUR, tolerance=40)
    assert gt[rows, cols].sum() > 30
    # The GT outline runs along the lesion's border: along its row, from the centre outwards.
    edge_x = x + int(np.argmax(case.label[z, y, x:] == 0))
    assert near(gt, pixel_of(figure, figure.axes[0], edge_x - 0.5, y), radius=3)
    # Inside the (eroded) prediction the pixel is tinted blue; outside the body it is not.
    inside = np.argwhere(prediction[z])[0]
    r, g, b = rgb[pixel_of(figure, figure.axes[0], inside[1], inside[0])].astype(int)
    assert b > r + 40
    (col_lo, _), (row_hi, _) = figure.axes[0].get_xlim(), figure.axes[0].get_ylim()
    assert not prediction[z, int(row_hi - 1.5), int(col_lo + 1.5)]  # the crop's corner
    r, g, b = rgb[pixel_of(figure, figure.axes[0], col_lo + 1.5, row_hi - 1.5)].astype(int)
    assert abs(b - r) < 10


def test_step_figure_without_ground_truth_in_view_has_no_contour_colour():
    case, prediction, interactions, _, _ = pet_case()
    figure = pictures.case_step_figure(
        case.channels[1],
        np.zeros_like(case.label),
        prediction,
        interactions,
        case.spacing_mm,
        step=1,
    )
    rgb = decode(pictures.png_bytes(figure))
    gt = colour_mask(rgb, pictures.GT_COLOUR, tolerance=40)
    for ax in figure.axes[:3]:
        rows, cols = panel_box(figure, ax)
        assert gt[rows, cols].sum() == 0


def test_anisotropic_case_keeps_physical_proportions():
    """A ball in mm on a (5, 0.5, 1) mm grid must look round in every view."""
    image, label, centre = sphere_case()
    spacing = (5.0, 0.5, 1.0)
    figure = pictures.case_step_figure(
        image, label, None, [click(*centre, step=0)], spacing, step=0, zoom=False
    )
    rgb = decode(pictures.png_bytes(figure))
    gt = colour_mask(rgb, pictures.GT_COLOUR, tolerance=40)
    for ax in figure.axes[:3]:
        rows, cols = panel_box(figure, ax)
        found = np.argwhere(gt[rows, cols])
        height, width = found.max(axis=0) - found.min(axis=0)
        assert 0.8 < width / height < 1.25, (ax.get_title(), width, height)
    # The voxel grid is anisotropic, so the panels' data aspects differ: rows/cols spacing.
    assert [ax.get_aspect() for ax in figure.axes[:3]] == [0.5, 5.0, 10.0]


def test_boxes_and_scribbles_are_drawn_in_their_polarity_colour():
    image, label, (cz, cy, cx) = sphere_case()
    spacing = (5.0, 0.5, 1.0)
    box = Interaction("box", 1, True, 0, ((cz - 2, cy - 30, cx - 15), (cz + 2, cy + 30, cx + 15)))
    scribble = Interaction(
        "scribble", 1, False, 1, tuple((cz, cy + 35, x) for x in range(cx - 10, cx + 11))
    )
    figure = pictures.case_step_figure(
        image, label, label, [box, scribble], spacing, step=1, zoom=False
    )
    rgb = decode(pictures.png_bytes(figure))
    axial = figure.axes[0]
    top_edge = pixel_of(figure, axial, cx, cy - 30 - 0.5)
    assert near(colour_mask(rgb, pictures.POSITIVE_COLOUR, 30), top_edge, radius=2)
    assert near(
        colour_mask(rgb, pictures.NEGATIVE_COLOUR, 30), pixel_of(figure, axial, cx, cy + 35)
    )
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert "box" in labels and "scribble" in labels


def test_same_inputs_same_png_bytes_without_software_metadata():
    first = pictures.png_bytes(pet_figure())
    second = pictures.png_bytes(pet_figure())
    assert first == second
    assert first.startswith(b"\x89PNG\r\n\x1a\n")
    assert b"matplotlib" not in first.lower()


def test_figures_drawn_in_threads_equal_those_drawn_alone():
    expected = pictures.png_bytes(pet_figure())
    results: dict[int, bytes] = {}

    def draw(k: int) -> None:
        results[k] = pictures.png_bytes(pet_figure())

    threads = [threading.Thread(target=draw, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(results) == {0, 1, 2} and all(v == expected for v in results.values())


@pytest.mark.parametrize(
    "kind", ["one-slice volume", "flat object", "empty everything", "flat image"]
)
def test_degenerate_cases_draw_without_clicks(kind):
    shape = (1, 32, 40) if kind == "one-slice volume" else (16, 32, 40)
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    if kind in ("one-slice volume", "flat object"):
        label[0, 10:20, 12:30] = 1  # one voxel thick
    if kind == "flat image":
        image[:] = 5.0
        label[5:9, 10:20, 10:20] = 1
    prediction = np.zeros(shape, np.uint8)  # the model found nothing
    figure = pictures.case_step_figure(image, label, prediction, [], (3.0, 1.0, 1.0), step=0)
    rgb = decode(pictures.png_bytes(figure))
    assert rgb.shape[1] == 1200
    gt = colour_mask(rgb, pictures.GT_COLOUR, tolerance=40)
    gt_pixels = sum(gt[panel_box(figure, ax)].sum() for ax in figure.axes)
    assert (gt_pixels > 0) == (kind != "empty everything")
    no_prediction = pictures.case_step_figure(image, label, None, [], (3.0, 1.0, 1.0), step=0)
    labels = [t.get_text() for t in no_prediction.legends[0].get_texts()]
    assert "prediction" not in labels


def test_shape_mismatch_is_refused():
    image, label, _ = sphere_case()
    with pytest.raises(SegloopError, match="prediction 0 has shape"):
        pictures.case_step_figure(image, label, label[:-1], [], (5.0, 0.5, 1.0), step=0)


# --------------------------------------------------------------------------- the strip


def test_strip_has_a_panel_per_step_through_its_click_with_its_caption(tmp_path):
    case, prediction, _, (z, y, x), _ = pet_case()
    clicks = [click(z, y, x, 1), click(z + 2, y, x, 2), click(z - 2, y, x, 3, positive=False)]
    predictions = [np.zeros_like(prediction), prediction, case.label, case.label]
    captions = [f"Dice {v:.2f}" for v in (0.0, 0.71, 1.0, 1.0)]
    figure = pictures.case_strip_figure(
        case.channels[1],
        case.label,
        predictions,
        clicks,
        case.spacing_mm,
        captions,
        case_id=case.case_id,
        max_columns=3,
    )
    rgb = decode(pictures.save_png(figure, tmp_path / "strip.png").read_bytes())
    assert rgb.shape[:2] == tuple(
        int(round(v)) for v in figure.get_size_inches()[::-1] * figure.dpi
    )
    assert rgb.shape[1] == 3 * 200 + 20  # three columns of 200 px, then a second row
    panels = [ax for ax in figure.axes if ax.axison]
    assert len(panels) == 4 and len(figure.axes) == 6
    assert [ax.get_xlabel() for ax in panels] == captions
    # Step 0 has no click: its panel cuts through the largest error (the missed lesions).
    assert [ax.get_title().split("z = ")[1].rstrip(")") for ax in panels[1:]] == [
        str(z),
        str(z + 2),
        str(z - 2),
    ]
    negative = colour_mask(rgb, pictures.NEGATIVE_COLOUR)
    assert near(negative, pixel_of(figure, panels[3], x, y))
    assert not near(negative, pixel_of(figure, panels[1], x, y))
    assert "pet_000" in figure.get_suptitle()


def test_strip_refuses_mismatched_captions():
    image, label, _ = sphere_case()
    with pytest.raises(SegloopError, match="do not match"):
        pictures.case_strip_figure(image, label, [label, label], [], (5.0, 0.5, 1.0), ["one"])


def test_one_step_strip_fits_its_legend_and_embeds_as_a_data_uri():
    image, label, centre = sphere_case()
    figure = pictures.case_strip_figure(
        image, label, [label], [click(*centre, 0)], (5.0, 0.5, 1.0), ["Dice 1.00"]
    )
    png = pictures.png_bytes(figure)
    rgb = decode(png)
    assert rgb.shape[1] == 220
    legend = figure.legends[0].get_window_extent()
    assert legend.x0 >= 0 and legend.x1 <= rgb.shape[1]  # wrapped, not cut off
    uri = pictures.png_data_uri(figure)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == png


def test_a_figure_saved_twice_gives_the_same_bytes():
    figure = pet_figure()
    assert pictures.png_bytes(figure) == pictures.png_bytes(figure)
