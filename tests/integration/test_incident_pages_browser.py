"""The incident page in a real headless Chromium (Debian's ``chromium`` driven by Playwright's Python API with
``executable_path``): opened from the link in a captured Slack message, the timeline in order, the evidence of an
OOMKilled canary, hostile alert labels, annotations and log lines shown as text with no script running (detected
by its side effect on ``window`` and by ``alert()`` dialogs), readable at phone width, and expired and forged links
refused. Writes its screenshots to $PAGE_SCREENSHOTS, else to a directory under the system's temporary directory
(a test run never dirties the checkout); `PAGE_SCREENSHOTS=docs/images` refreshes the ones the README shows.

Without chromium or Playwright the test is skipped, unless REQUIRE_BROWSER=1 (scripts/test.sh sets it): then it
fails, so CI cannot pass by skipping it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from pages_support import HOSTILE_SCRIPT, SIGNING_KEY, hostile_alert, page_link, pages_config, slack_environ
from slack_fake import FakeSlack, fake_slack
from support import alert, free_port, notification, running_responder

from responder.cli.browser import browser_missing, chromium_path, launch_args
from responder.notify.signing import PageSigner, incident_subject
from responder.testing.emulator import Emulator, run_emulator, sample_canary_objects, sample_canary_pods
from responder.testing.seeds import LogSeed

pytestmark = pytest.mark.slow

SHOTS = Path(os.environ.get("PAGE_SCREENSHOTS") or Path(tempfile.gettempdir()) / "canary-responder-screenshots")
HOSTILE_LOG = "2026-11-27T12:00:01Z ERROR payload <script>window.__pwned = 'log'</script> rejected\n"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture
def chromium() -> str:
    missing = browser_missing()
    if missing is not None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1: {missing}")
        pytest.skip(missing)
    path = chromium_path()
    assert path is not None
    return path


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with fake_slack() as fake:
        yield fake


@pytest.fixture
async def oom_cluster() -> AsyncIterator[tuple[Emulator, str]]:
    """Two apps whose canary pods were OOMKilled, one of them logging a hostile line."""
    seeds: list[Any] = [*sample_canary_objects("shop", "checkout"), *sample_canary_objects("shop", "payments")]
    seeds += sample_canary_pods("shop", "checkout") + sample_canary_pods("shop", "payments")
    seeds = [
        s._replace(text=s.text + HOSTILE_LOG)
        if isinstance(s, LogSeed) and s.pod.startswith("payments-canary") and not s.previous
        else s
        for s in seeds
    ]
    async with run_emulator(seeds) as (emulator, url):
        yield emulator, url


async def too_wide(page: Any) -> list[str]:
    """What sticks out of a phone-width page (one would have to scroll sideways to read it); [] when nothing."""
    return list(
        await page.evaluate(
            """() => document.documentElement.scrollWidth <= window.innerWidth ? [] :
            [...document.querySelectorAll('body *')]
              .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
              .slice(0, 5).map(e => `${e.tagName}.${e.className}: ${(e.textContent || '').slice(0, 60)}`)"""
        )
    )


async def test_the_incident_page_in_a_real_browser(
    tmp_path: Path, oom_cluster: tuple[Emulator, str], slack: FakeSlack, chromium: str
) -> None:
    from playwright.async_api import Dialog, async_playwright

    _, url = oom_cluster
    port = free_port()
    config = pages_config(tmp_path, kube_url=url, slack=slack, public_url=f"http://127.0.0.1:{port}")
    async with running_responder(config, environ=slack_environ(slack), port=port) as running:
        firing = alert("CanaryHighErrorRate", app="checkout")
        firing["annotations"].update(
            description="canary 5xx ratio 12.5% (threshold 5%)",
            runbook_url="https://runbooks.example.com/canary#high-error-rate",
        )
        assert (await running.post_alerts(notification(firing))).status == 200
        await running.services.engine.drain()
        [message] = await slack.wait_delivered(1)
        link = page_link(message.body)  # what on-call taps in Slack

        dialogs: list[str] = []

        async def dismiss(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            await dialog.dismiss()

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium, args=launch_args())
            try:
                page = await browser.new_page(viewport=DESKTOP)
                page.on("dialog", dismiss)

                # The detector works: a script that does run is seen (so "not seen" below means something).
                await page.set_content("<p>control</p><script>window.__pwned = 'control'</script>")
                assert await page.evaluate("() => window.__pwned") == "control"

                response = await page.goto(link)
                assert response is not None and response.status == 200
                assert await page.title() == "Canary rolled back: shop/checkout-canary · canary-responder"
                kinds = await page.locator("#timeline > li").evaluate_all("items => items.map(i => i.dataset.kind)")
                assert kinds[0] == "alert" and kinds[1] == "decision"
                assert kinds == sorted(kinds, key=["alert", "decision", "step", "notification", "followup"].index)
                steps = await page.locator("#timeline > li.kind-step .entry-title").all_inner_texts()
                assert steps[:4] == ["check", "traffic_off:nginx/checkout-canary", "evidence", "scale_zero"]
                evidence = await page.locator("#evidence").inner_text()
                assert "2 of 2 pods OOMKilled" in evidence and "cache at 498MiB of 512MiB" in evidence
                assert "BackOff" in evidence
                metrics = await page.locator("#metrics").inner_text()
                assert "12.50%" in metrics and "0.20%" in metrics
                assert "canary-responder restore shop checkout-canary" in await page.locator("#commands").inner_text()
                json_href = await page.locator("#download-json").get_attribute("href")
                assert json_href is not None
                download = await page.request.get(json_href)
                assert download.status == 200 and (await download.json())["status"] == "done"

                SHOTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(SHOTS / "incident-page.png"), full_page=True)
                await page.set_viewport_size(PHONE)
                assert await too_wide(page) == []
                await page.screenshot(path=str(SHOTS / "incident-page-phone.png"), full_page=True)

                # Hostile labels, annotations, URLs and log lines: shown as text, nothing runs.
                assert (await running.post_alerts(notification(hostile_alert(app="payments")))).status == 200
                await running.services.engine.drain()
                hostile = page_link((await slack.wait_delivered(2))[1].body)
                response = await page.goto(hostile)
                assert response is not None and response.status == 200
                timeline = await page.locator("#timeline").inner_text()
                assert HOSTILE_SCRIPT in timeline  # the annotation, verbatim, as text
                assert "<script>window.__pwned = 'log'</script>" in await page.locator("#evidence").inner_text()
                assert await page.locator("script").count() == 0
                assert await page.locator("main img").count() == 0
                assert await page.locator("a[href^='javascript:' i]").count() == 0
                assert await page.evaluate("() => window.__pwned") is None
                assert dialogs == []
                assert await too_wide(page) == []

                # Forged and expired links: refused with an HTML page a person can read.
                parts = urlsplit(link)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                base = f"{parts.scheme}://{parts.netloc}{parts.path}"
                response = await page.goto(f"{base}?expires={query['expires']}&sig={'A' * 43}")
                assert response is not None and response.status == 403
                assert await page.locator("h1").inner_text() == "This link is not valid"
                past = int(query["expires"]) - 8 * 24 * 3600
                incident = unquote(parts.path.rsplit("/", 1)[1])
                sig = PageSigner(key=SIGNING_KEY.encode(), ttl_s=60).signature(incident_subject(incident), past)
                response = await page.goto(f"{base}?expires={past}&sig={sig}")
                assert response is not None and response.status == 410
                assert await page.locator("h1").inner_text() == "This link has expired"
                response = await page.goto(base)
                assert response is not None and response.status == 403
                assert await page.locator("h1").inner_text() == "This page needs a signed link"
            finally:
                await browser.close()
