"""Dagster's UI in a real browser: materialize one day of the asset graph, as an operator would.

Debian's Chromium (`/usr/bin/chromium`, installed by `.ci/run` when missing) is driven through
Playwright's Python package against the deployed topology of test_topology.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat_assets_tests.test_topology import Deployment, landed, shared_deployment, tags

pytestmark = [pytest.mark.browser, pytest.mark.topology]

CHROMIUM = Path("/usr/bin/chromium")
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


@pytest.fixture(scope="session")
def ui_deployment() -> Iterator[Deployment]:
    with shared_deployment() as running:
        yield running


@pytest.fixture
def page():
    """A Chromium page; skipped, saying why, where Chromium or Playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (bin/test does, as root)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is missing: install the dev dependencies"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def test_materialize_a_day_from_the_asset_graph(ui_deployment, page, tmp_path_factory):
    from playwright.sync_api import expect

    day = ui_deployment.day(4)
    page.goto(f"{ui_deployment.url}/asset-groups/ujet@chat_assets")
    expect(page.get_by_text("raw_chats").first).to_be_visible()
    page.get_by_role("button", name="Materialize all").click()

    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Launch runs to materialize 5 assets")
    partitions = dialog.get_by_placeholder("No matching partitions")
    partitions.fill(day)
    partitions.press("Enter")
    expect(dialog).to_contain_text("1 partition")
    dialog.get_by_role("button", name="Launch 1 run").click()

    # The toast that confirms the launch links to the new run.
    view = page.get_by_role("link", name="View", exact=True)
    run_id = view.get_attribute("href").rsplit("/", 1)[-1]
    view.click()
    expect(page.get_by_text(f"partition: {day}")).to_be_visible()
    # The run's status tag, once the run has ended either way.
    status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
    expect(status).to_be_visible(timeout=150_000)
    screenshot = tmp_path_factory.mktemp("browser") / f"run_{day}.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot of the finished run: {screenshot}")
    assert status.inner_text() == "Success", f"see {screenshot}\n{ui_deployment.logs()}"

    run = ui_deployment.wait_for_run(run_id)
    assert tags(run)["dagster/partition"] == day
    raw, flattened = landed(ui_deployment, day)
    assert raw > 0
    assert flattened == raw
    assert screenshot.stat().st_size > 0
