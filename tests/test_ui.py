"""The Prefect UI, in a real browser, asks for the password ``chatops up`` made, then shows a
deploy started from the CLI: run, steps, history."""

from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
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
            browser.close()
