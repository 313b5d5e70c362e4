"""Dagster's UI in a real browser: the asset graph's "Materialize all..." as an operator uses it.

Debian's Chromium (`/usr/bin/chromium`, installed by `.ci/run` when missing) is driven through
Playwright's Python package against the deployed topology of chat_assets_tests.topology (the
one test_topology.py runs on).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat_assets.tables import AGGREGATE_TABLES
from chat_assets_tests.topology import (
    LOCATION,
    REPOSITORY,
    RUNS_BY_TAG,
    Deployment,
    check_partitions,
    landed,
    shared_deployment,
    tags,
)

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


GROUP_CHECKS = """
query Group($group: AssetGroupSelector!) {
  assetNodes(group: $group) {
    assetKey { path }
    assetChecksOrError {
      ... on AssetChecks { checks { name partitionDefinition { description } } }
    }
  }
}
"""

# The counts a check's Partitions tab shows for the days selected.
CHECK_STATUSES = ("Execution Failed", "Failed", "In Progress", "Missing", "Skipped", "Passed")
STATUS_COUNT = re.compile(rf"^({'|'.join(CHECK_STATUSES)}) \((\d+)\)$")
# Right after a backfill, the marts' catch-up sensor runs some of their days again (late updates
# move queue segments between days): a day being checked again is no failure.
RECHECKED = {table.name: "In Progress" for table in AGGREGATE_TABLES}


def partitioned_checks(deployment: Deployment) -> dict[str, list[str]]:
    """The ujet group's assets, each with its checks that are evaluated per day."""
    group = {"groupName": "ujet", "repositoryName": REPOSITORY, "repositoryLocationName": LOCATION}
    return {
        "/".join(node["assetKey"]["path"]): [
            check["name"]
            for check in node["assetChecksOrError"]["checks"]
            if check["partitionDefinition"]
        ]
        for node in deployment.graphql(GROUP_CHECKS, group=group)["assetNodes"]
    }


def expect_passed_on_every_day(page, url: str, asset: str, check: str, days: list[str]) -> None:
    """On the check's Partitions tab (the asset's Checks tab, the check chosen), every day shows
    as passed (or as being checked again, see RECHECKED), none as skipped, missing or failed.
    A fresh page for each check, so that no count shown can be the previous check's."""
    from playwright.sync_api import expect

    page.goto(f"{url}/assets/{asset}?view=checks&checkDetail={check}")
    check_tabs = page.get_by_role("tablist").filter(
        has=page.get_by_role("tab", name="Execution history")
    )
    check_tabs.get_by_role("tab", name="Partitions").click()
    selection = page.locator("input[value^='[']")
    selection.fill(f"[{days[0]}...{days[-1]}]")
    selection.press("Enter")
    expect(page.get_by_text(f"{len(days)} Partitions Selected")).to_be_visible()
    fine = {"Passed", RECHECKED.get(asset, "Passed")}
    deadline = time.monotonic() + 30
    while True:
        shown = [
            STATUS_COUNT.match(text) for text in page.get_by_text(STATUS_COUNT).all_inner_texts()
        ]
        counts = {match[1]: int(match[2]) for match in shown if match}
        if set(counts) == set(CHECK_STATUSES) and sum(counts[s] for s in fine) == len(days):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{counts} where every day should be {' or '.join(fine)}")
        page.wait_for_timeout(500)


def test_the_first_screen_has_no_pop_up(ui_deployment, page, tmp_path_factory):
    """The UI's first page as a newcomer opens it: Dagster's own navigation, and no dialog over
    it (Dagster's first-visit newsletter sign-up is turned off in dagster.yaml)."""
    from playwright.sync_api import expect

    page.goto(ui_deployment.url)
    expect(page.get_by_role("link", name="Catalog").first).to_be_visible()
    page.wait_for_timeout(5_000)  # the sign-up opens a moment after the page
    shot = tmp_path_factory.mktemp("browser") / "first_screen.png"
    page.screenshot(path=str(shot))
    assert page.get_by_role("dialog").count() == 0, f"a dialog covers the first page: see {shot}"


def test_materialize_a_day_from_the_asset_graph(ui_deployment, page, tmp_path_factory):
    from playwright.sync_api import expect

    day = ui_deployment.day(4)
    page.goto(f"{ui_deployment.url}/locations/__repository__@chat_assets/asset-groups/ujet")
    expect(page.get_by_text("raw_chats").first).to_be_visible()
    page.get_by_role("button", name="Materialize all").click()

    dialog = page.get_by_role("dialog")
    assets = len(partitioned_checks(ui_deployment))
    expect(dialog).to_contain_text(f"Launch runs to materialize {assets} assets")
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


def test_backfill_days_from_the_asset_graph_and_see_each_days_checks_pass(
    ui_deployment, page, tmp_path_factory
):
    """Three days backfilled with "Materialize all..." (an asset backfill, carried out by the
    daemon): every check of every asset shows each of the days as passed, not skipped, and
    Dagster stored each check result with its day."""
    from playwright.sync_api import expect

    days = [ui_deployment.day(50 + offset) for offset in range(3)]
    shots = tmp_path_factory.mktemp("browser")
    print(f"screenshots: {shots}")
    page.goto(f"{ui_deployment.url}/locations/__repository__@chat_assets/asset-groups/ujet")
    expect(page.get_by_text("raw_chats").first).to_be_visible()
    page.get_by_role("button", name="Materialize all").click()
    dialog = page.get_by_role("dialog")
    checks = partitioned_checks(ui_deployment)
    expect(dialog).to_contain_text(f"Launch runs to materialize {len(checks)} assets")
    partitions = dialog.get_by_placeholder("No matching partitions")
    partitions.fill(f"[{days[0]}...{days[-1]}]")
    partitions.press("Enter")
    expect(dialog).to_contain_text("3 partitions")
    page.screenshot(path=str(shots / "launch.png"))
    dialog.get_by_role("button", name="Launch backfill").click()

    # The toast that confirms the launch links to the backfill's page, which follows it.
    view = page.get_by_role("link", name="View", exact=True)
    backfill_id = view.get_attribute("href").rsplit("/", 1)[-1]
    view.click()
    expect(page.get_by_text(f"{days[0]}...{days[-1]}")).to_be_visible()
    # The backfill's status tag, once the daemon has finished it either way.
    status = page.get_by_text("Status", exact=True).locator("xpath=following-sibling::*[1]")
    ended = re.compile(r"^(Succeeded|Completed|Failed|Canceled)\b")
    expect(status).to_have_text(ended, timeout=240_000)
    page.screenshot(path=str(shots / "backfill.png"), full_page=True)
    assert status.inner_text() == "Succeeded", f"see {shots}\n{ui_deployment.logs()}"

    assert sum(map(len, checks.values())) >= 18, checks
    for asset, names in checks.items():
        for name in names:
            try:
                expect_passed_on_every_day(page, ui_deployment.url, asset, name, days)
            except AssertionError as error:
                page.screenshot(path=str(shots / f"{asset}.{name}.png"), full_page=True)
                raise AssertionError(f"check {asset}:{name} (see {shots}): {error}") from None
    page.screenshot(path=str(shots / f"{asset}.{name}.png"), full_page=True)

    runs = ui_deployment.graphql(RUNS_BY_TAG, key="dagster/backfill", value=backfill_id)
    run_ids = [run["runId"] for run in runs["runsOrError"]["results"]]
    every_check = {f"{asset}:{name}" for asset, names in checks.items() for name in names}
    assert check_partitions(ui_deployment, run_ids) == dict.fromkeys(days, every_check)
