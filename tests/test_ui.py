"""The Prefect UI, in a real browser, asks for the password ``chatops up`` made, then shows a
deploy started from the CLI: run, steps, history, and the ``environments`` page QA reads."""

import json
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterTags,
)
from prefect.settings import temporary_settings

from tests.shop import save_shop
from tests.up_server import ChatopsUp

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def sign_in(page: Page, password: str) -> None:
    """Fill the login form the UI shows, as a person would."""
    field = page.locator("input[type=password]")
    field.wait_for(timeout=30_000)
    field.fill(password)
    page.get_by_role("button", name="Login").click()


def test_ui_shows_the_run_its_steps_and_what_is_deployed(
    tmp_path: Path, deploy_hosts, app_repo, ssh_key
) -> None:
    with ChatopsUp(tmp_path / "home") as up, temporary_settings(up.prefect_settings()):
        save_shop(app_repo, deploy_hosts, ssh_key, batch_size=2)
        done = up.cli("deploy", "shop/v1", "to", "staging", user="grace")
        assert done.returncode == 0, done.stdout + done.stderr
        with get_client(sync_client=True) as client:
            [run] = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=["app:shop", "env:staging"])
                )
            )
            [deployed] = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["deployed-shop-staging"])
                )
            )
        title = f"shop@v1 ({app_repo.v1[:7]}) → staging"
        assert run.name == title

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(up.base)  # what chatops up prints
            sign_in(page, "admin:guess")
            page.get_by_text("Invalid credentials").wait_for(timeout=30_000)
            assert "/login" in page.url and page.get_by_text(title).count() == 0
            sign_in(page, up.auth)  # the password chatops up says where to find
            page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)
            page.goto(f"{up.base}/runs/flow-run/{run.id}")
            page.get_by_text(title).first.wait_for(timeout=30_000)
            page.get_by_text("Completed").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "flow-run.png"))
            page.get_by_text("Task Runs", exact=True).first.click()
            for host in deploy_hosts:
                page.get_by_text(f"health check {host.address}").first.wait_for(timeout=30_000)

            page.goto(f"{up.base}/artifacts/key/deployed-shop-staging")
            page.get_by_text("What is deployed on shop staging").wait_for(timeout=30_000)
            page.get_by_text(title).first.wait_for(timeout=30_000)
            page.goto(f"{up.base}/artifacts/artifact/{deployed.id}")
            page.get_by_text(app_repo.v1).first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "deployed.png"))

            # What QA reads: the environments page, after a lock and a verify.
            locked = up.cli("lock", "staging", "to", "shop:", "QA", "is", "testing", user="grace")
            assert locked.returncode == 0, locked.stdout + locked.stderr
            verified = up.cli("status", "shop", "--verify", user="grace")
            assert verified.returncode == 0, verified.stdout + verified.stderr
            page_id = environments_page_with(up, "QA is testing")
            page.set_viewport_size({"width": 1920, "height": 1000})  # a desktop's full width
            page.goto(f"{up.base}/artifacts/artifact/{page_id}")
            row = page.locator("tr", has_text="staging")
            row.get_by_text("v1", exact=True).wait_for(timeout=30_000)
            for cell in [app_repo.v1[:7], "grace", "grace (cli): QA is testing"]:
                row.get_by_text(cell, exact=True).first.wait_for(timeout=30_000)
            row.get_by_text("UTC (just now)").wait_for(timeout=30_000)
            row.get_by_text(f"all {len(deploy_hosts)} hosts as recorded").wait_for(timeout=30_000)
            assert row.get_by_role("link", name="run").get_attribute("href") == str(
                f"{up.base}/runs/flow-run/{run.id}"
            )
            page.screenshot(path=str(tmp_path / "environments.png"))
            browser.close()

        status = up.cli("status", user="grace").stdout
        assert f"shop on staging: v1 at {app_repo.v1[:12]}" in status, status
        assert "locked by grace (cli)" in status and "QA is testing" in status
        assert f"last verify: all {len(deploy_hosts)} hosts as recorded" in status


def environments_page_with(up: ChatopsUp, text: str, timeout: float = 30.0) -> str:
    """The id of the ``environments`` page once its latest version shows ``text`` (the gateway
    writes it in the background after a lock change)."""
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            [latest] = client.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(
                    key=ArtifactCollectionFilterKey(any_=["environments"])
                )
            )
        if text in json.dumps(json.loads(str(latest.data))):
            return str(latest.latest_id)
        assert time.monotonic() < deadline, f"the environments page never showed {text!r}"
        time.sleep(0.5)
