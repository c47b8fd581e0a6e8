"""The Dagster UI shows what dp ran: a real webserver on the instance `dp demo` wrote to, driven by
headless Chromium (Debian's package, through Playwright). Screenshots go to DP_UI_SCREENSHOTS or the
test's temp folder."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium package (.ci/run installs it)"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("ui_home")
    env = {**os.environ, "DP_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
    env.pop("CONFIG_S3_URI", None)
    (home / "dagster_home").mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    demo = subprocess.run(
        [str(Path(sys.executable).with_name("dp")), "demo", "--start", "2013-01-01", "--end", "2013-01-02"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster-webserver")),
            "-w",
            str(ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("dagster-webserver did not come up within 90 s") from None
                time.sleep(0.5)
        yield url, Path(os.environ.get("DP_UI_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    finally:
        os.killpg(server.pid, 9)  # dagster's webserver ignores SIGTERM when started in the background
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def page(webserver):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1600, "height": 1000})
        tab.set_default_timeout(60_000)
        yield tab
        browser.close()


def test_asset_graph_shows_dump_and_load_groups(webserver, page) -> None:
    url, shots = webserver
    page.goto(f"{url}/asset-groups")
    page.get_by_text("dump", exact=True).first.wait_for()
    page.get_by_text("load", exact=True).first.wait_for()
    page.goto(f"{url}/locations/dp/asset-groups/load")
    page.get_by_text("flights", exact=True).first.wait_for()
    page.get_by_text("Loading...").first.wait_for(state="hidden")  # the node's live status has arrived
    page.get_by_text("5 / 5 Passed").first.wait_for()
    page.get_by_text("365 partitions").first.wait_for()
    page.screenshot(path=str(shots / "asset_graph_load_group.png"), full_page=True)


def test_asset_page_shows_partitions_and_check_results(webserver, page) -> None:
    url, shots = webserver
    page.goto(f"{url}/assets/flights?view=partitions")
    page.get_by_text("Materialized (2)").first.wait_for()  # the demo's two days
    page.get_by_text("Missing (363)").first.wait_for()
    page.screenshot(path=str(shots / "flights_partitions.png"), full_page=True)
    page.goto(f"{url}/assets/flights?view=checks")
    for check in (
        "schema_matches_design",
        "required_columns_not_null",
        "key_unique",
        "row_accounting",
        "quarantine_within_threshold",
    ):
        page.get_by_text(check).first.wait_for()
    assert page.get_by_text("Succeeded", exact=True).count() == 5
    page.get_by_text("Passed").first.wait_for()  # the selected check's latest evaluation
    page.screenshot(path=str(shots / "flights_checks.png"), full_page=True)


def test_asset_page_shows_catalog_metadata_and_plotted_partition_statistics(webserver, page) -> None:
    url, shots = webserver
    page.goto(f"{url}/assets/flights")
    for text in (
        "flight-data@nycflights13.example",  # owners
        "flight-ops",
        "domain: aviation",  # tags
        "tier: bronze",
        "glossary/Aviation.Flight",  # the table's glossary terms
        "glossary/Domain.Operations",
        "glossary/Classification.Sensitive",  # tailnum is declared sensitive
    ):
        page.get_by_text(text, exact=True).first.wait_for()
    # The Metadata section's plots: one chart per numeric entry, a point per partition's event.
    # (Its "Partitions" axis lists the newest 120 partitions counted back from today, ignoring the
    # definition's end_date in Dagster 1.13, so it stays empty for the demo's 2013; "Events" plots them.)
    page.get_by_text("Plots", exact=True).first.click()
    page.get_by_text("Events", exact=True).last.click()
    for label in ("rows_in", "stats/dep_delay/max", "stats/dep_time/nulls", "stats/distance/min"):
        page.get_by_text(label, exact=True).first.wait_for()
    assert page.locator("canvas").count() >= 4
    page.get_by_text("stats/dep_delay/max", exact=True).first.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "flights_overview_plots.png"), full_page=True)
