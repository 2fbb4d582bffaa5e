"""The leaderboard site in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright):
sorting by a column header, a hostile team name shown as text with no dialog, a screenshot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from segloop.cli.main import main
from segloop.leaderboard.html_cells import task_page
from tests.test_leaderboard_helpers import HOSTILE_NAME, phantom_runs

CHROMIUM = Path("/usr/bin/chromium")
NOTES_SCREENSHOT = Path("/work/notes/leaderboard.png")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (Debian chromium)"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    runs = phantom_runs(tmp_path_factory)[1]
    out = tmp_path_factory.mktemp("site")
    assert main(["leaderboard", str(runs), "--out", str(out), "--bootstrap", "100"]) == 0
    return out


@pytest.fixture()
def browser_page(tmp_path):
    """A page of a fresh Chromium profile; records dialogs, page errors and console errors."""
    from playwright.sync_api import sync_playwright  # the test extra: pip install playwright

    events: dict[str, list[str]] = {"dialogs": [], "errors": [], "console": []}
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 900},
            offline=True,
        )
        page = context.new_page()

        def on_dialog(dialog) -> None:
            events["dialogs"].append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: events["errors"].append(str(error)))
        page.on(
            "console",
            lambda message: (
                events["console"].append(message.text) if message.type == "error" else None
            ),
        )
        try:
            yield page, events
        finally:
            context.close()


def column_texts(page, table: str, column: int) -> list[str]:
    return page.locator(f"table#{table} tbody tr").evaluate_all(
        f"rows => rows.map(r => r.cells[{column}].textContent.trim())"
    )


def header_index(page, table: str, label: str) -> int:
    labels = page.locator(f"table#{table} thead th").all_inner_texts()
    return [t.strip() for t in labels].index(label)


def test_index_sorts_and_shows_hostile_name_as_text(site, browser_page, tmp_path):
    page, events = browser_page
    page.goto((site / "index.html").as_uri())
    assert page.title() == "segloop leaderboard"

    # the consensus table starts best first; clicking "Mean rank" twice sorts it worst first
    name_column = header_index(page, "consensus", "Submission")
    before = column_texts(page, "consensus", name_column)
    assert len(before) == 3
    header = page.locator("table#consensus thead th", has_text="Mean rank")
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert column_texts(page, "consensus", name_column) == before
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    after = column_texts(page, "consensus", name_column)
    assert after == list(reversed(before)) and after != before

    # the hostile team name is text: visible verbatim, no element, no dialog
    assert HOSTILE_NAME in before
    assert page.locator("script").count() == 1
    assert page.get_by_text(HOSTILE_NAME, exact=True).count() >= 1

    page.screenshot(path=str(tmp_path / "index.png"), full_page=True)
    assert events["dialogs"] == [] and events["errors"] == [] and events["console"] == []


def test_task_page_sorts_by_header_click(site, browser_page, tmp_path):
    page, events = browser_page
    page.goto((site / "index.html").as_uri())
    page.locator("table#tasks a", has_text="autopet").click()
    assert Path(page.url).name == task_page("autopet")

    name_column = header_index(page, "leaderboard", "Submission")
    ranked = column_texts(page, "leaderboard", name_column)
    assert ranked[0] == "region-growing" and ranked[-1] == "empty"

    page.locator("table#leaderboard thead th", has_text="Submission").click()
    by_name = column_texts(page, "leaderboard", name_column)
    assert sorted(by_name) == sorted(ranked) and by_name != ranked
    page.locator("table#leaderboard thead th", has_text="Submission").click()
    assert column_texts(page, "leaderboard", name_column) == list(reversed(by_name))

    # sort by "Dice Final" (numeric): descending puts the best Dice first
    dice = header_index(page, "leaderboard", "Dice Final")
    page.locator("table#leaderboard thead th").nth(dice).click()
    page.locator("table#leaderboard thead th").nth(dice).click()
    values = [float(v) for v in column_texts(page, "leaderboard", dice)]
    assert values == sorted(values, reverse=True)
    assert column_texts(page, "leaderboard", name_column)[-1] == "empty"

    # back to rank order for the screenshot
    page.locator("table#leaderboard thead th").first.click()
    assert column_texts(page, "leaderboard", name_column) == ranked
    page.evaluate("document.querySelectorAll('.scroll').forEach(e => { e.scrollLeft = 0; })")

    assert page.locator("svg polyline").count() >= 9
    assert page.locator("script").count() == 1
    assert page.get_by_text(HOSTILE_NAME, exact=True).count() >= 1
    screenshot = tmp_path / "leaderboard.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    if NOTES_SCREENSHOT.parent.is_dir():
        shutil.copyfile(screenshot, NOTES_SCREENSHOT)
    assert events["dialogs"] == [] and events["errors"] == [] and events["console"] == []


def test_submission_page_shows_failures_as_text(site, browser_page):
    page, events = browser_page
    from segloop.leaderboard.html_cells import submission_page

    page.goto((site / submission_page("autopet", HOSTILE_NAME)).as_uri())
    assert page.locator("h1").inner_text() == HOSTILE_NAME
    reasons = page.locator("table#failures tbody tr td:nth-child(3)").all_inner_texts()
    assert reasons == ["exception"] * 3
    detail = page.locator("table#failures tbody tr td:nth-child(4)").first.inner_text()
    assert '<img src=x onerror="alert(2)">' in detail
    assert page.locator("table#failures img").count() == 0
    assert events["dialogs"] == [] and events["errors"] == []


def box_fits(page, selector: str, width: int, height: int) -> bool:
    """The element is inside the first screen: visible without scrolling either way."""
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return box["x"] >= 0 and box["x"] + box["width"] <= width and box["y"] + box["height"] <= height


@pytest.mark.parametrize("width", [1280, 390])
def test_score_and_winner_visible_without_scrolling(site, browser_page, tmp_path, width):
    page, events = browser_page
    page.set_viewport_size({"width": width, "height": 800})
    page.goto((site / task_page("autopet")).as_uri())
    assert box_fits(page, "table#leaderboard thead th:has-text('Score')", width, 800)
    assert box_fits(page, "table#leaderboard tbody tr:first-child td.score", width, 800)
    if width == 1280:  # and the main values beside it, units in the headers
        assert box_fits(page, "table#leaderboard thead th:has-text('FNV Final (ml)')", width, 800)
    page.screenshot(path=str(tmp_path / f"task-{width}.png"))
    assert (tmp_path / f"task-{width}.png").stat().st_size > 10_000
    page.goto((site / "index.html").as_uri())
    assert box_fits(page, "table#tasks thead th:has-text('Winner')", width, 800)
    assert box_fits(page, "table#tasks tbody tr:first-child td:nth-child(2)", width, 800)
    page.screenshot(path=str(tmp_path / f"index-{width}.png"))
    if width == 1280 and NOTES_SCREENSHOT.parent.is_dir():
        shutil.copyfile(tmp_path / f"task-{width}.png", NOTES_SCREENSHOT.with_name("task-1280.png"))
    assert events["dialogs"] == [] and events["errors"] == [] and events["console"] == []


def test_legend_hides_and_shows_a_line(site, browser_page):
    page, events = browser_page
    page.goto((site / task_page("autopet")).as_uri())
    chart = page.locator("figure.chart").first
    series = chart.locator('g.series[data-series="1"]')
    assert series.is_visible()
    chart.locator('button.legend-item[data-series="1"]').click()
    assert not series.is_visible()
    assert chart.locator('g.series[data-series="0"]').is_visible()
    chart.locator('button.legend-item[data-series="1"]').click()
    assert series.is_visible()
    assert events["errors"] == [] and events["console"] == []


@pytest.mark.parametrize("width", [1280, 390])
def test_case_page_pictures_load_and_fit(site, browser_page, tmp_path, width):
    page, events = browser_page
    page.set_viewport_size({"width": width, "height": 800})
    from segloop.leaderboard.html_cells import submission_page

    page.goto((site / submission_page("autopet", "region-growing")).as_uri())
    page.locator("table#cases tbody tr:first-child td.name a").click()
    assert Path(page.url).name.startswith("case-")
    pictures = page.locator("figure.picture img")
    assert pictures.count() >= 2
    for index in range(pictures.count()):
        natural, shown = pictures.nth(index).evaluate("i => [i.naturalWidth, i.clientWidth]")
        assert natural >= 1000 and 0 < shown <= width  # decoded, scaled to the screen
    page.screenshot(path=str(tmp_path / f"case-{width}.png"), full_page=True)
    assert events["dialogs"] == [] and events["errors"] == [] and events["console"] == []


@pytest.fixture(scope="module")
def robustness_site(tmp_path_factory) -> Path:
    """Two submissions under the task's own user and two others, and a user-shift table."""
    from segloop.app import phantoms
    from segloop.core.dataset import write_case

    root = tmp_path_factory.mktemp("robust")
    data = root / "data"
    for i in range(2):
        write_case(data, phantoms.pet_phantom(i, shape=(24, 40, 40)))
    models = {
        "region-growing": "python:segloop.baselines.region_growing:predict",
        "empty": "python:segloop.baselines.trivial:empty",
    }
    for name, model in models.items():
        assert main(["run", "--data", str(data), "--task", "autopet", "--model", model,
                     "--out", str(root / name), "--name", name, "--no-progress",
                     "--robot-users", "own,r4,sp-random-clicks"]) == 0  # fmt: skip
    for name, task, seed in (("anna", "r5", 1), ("bert", "r5", 2), ("r1", "r1", 0)):
        assert main(["run", "--data", str(data), "--task", task, "--seed", str(seed), "--model",
                     models["region-growing"], "--out", str(root / "shift" / name),
                     "--no-progress"]) == 0  # fmt: skip
    assert main(["user-shift", "--data", str(data), "--annotators", str(root / "shift" / "anna"),
                 str(root / "shift" / "bert"), "--robots", str(root / "shift" / "r1"),
                 "--out", str(root / "table")]) == 0  # fmt: skip
    site = root / "site"
    assert main(["leaderboard", str(root / "region-growing"), str(root / "empty"),
                 "--out", str(site), "--bootstrap", "0",
                 "--user-shift", str(root / "table" / "user-shift.json")]) == 0  # fmt: skip
    return site


def test_robustness_and_user_shift_sections(robustness_site, browser_page, tmp_path):
    page, events = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto((robustness_site / "index.html").as_uri())
    assert page.locator("h2", has_text="Robustness to the user").is_visible()
    names = column_texts(page, "robustness", header_index(page, "robustness", "Submission"))
    assert names == ["region-growing", "empty"]  # best worst value first
    labels = [t.strip() for t in page.locator("table#robustness thead th").all_inner_texts()]
    assert labels[3:6] == ["user own", "user r4", "user sp-random-clicks"]
    header = page.locator("table#robustness thead th", has_text="Worst")
    header.click()
    header.click()
    assert column_texts(page, "robustness", 2) in (names, list(reversed(names)))
    # the user-shift table: R1 never clicks off the label (M1 = 100), hover text explains M1
    shift = page.locator("table#user-shift")
    assert shift.is_visible()
    sources = column_texts(page, "user-shift", 0)
    assert sources == ["anna", "bert", "r1"]
    m1 = header_index(page, "user-shift", "M1 (x 100)")
    assert column_texts(page, "user-shift", m1)[2] == "100.0"
    title = page.locator("table#user-shift thead th").nth(m1).get_attribute("title")
    assert title and "label agreement" in title
    # the consensus ranks the task itself only, not its robot-user variants
    consensus = [t.strip() for t in page.locator("table#consensus thead th").all_inner_texts()]
    assert not any("+" in label for label in consensus)
    page.screenshot(path=str(tmp_path / "robustness.png"), full_page=True)
    assert events["dialogs"] == [] and events["errors"] == [] and events["console"] == []
