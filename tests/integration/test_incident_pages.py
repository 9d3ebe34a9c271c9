"""The incident pages over HTTP, end to end: the real responder and the emulator, a Slack-like receiver (which also
answers Prometheus queries), and the page opened from the link in the captured Slack message, without a token.
Refusals (missing, damaged, forged, expired, rotated key) are HTML pages with the right status; the link grants one
incident's page and its downloads, nothing of the API."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import orjson
import pytest
from pages_support import (
    HOSTILE_IMG,
    HOSTILE_LABEL,
    HOSTILE_SCRIPT,
    ROTATED_KEY,
    SIGNING_KEY,
    hostile_alert,
    page_link,
    pages_config,
    slack_environ,
)
from slack_fake import WEBHOOK_PATH, FakeSlack, fake_slack
from support import ALL_SECRETS, READ_TOKEN, Running, free_port, notification, running_responder

from responder.notify.signing import PageSigner, incident_subject
from responder.testing.emulator import Emulator

SECRETS = (*ALL_SECRETS, SIGNING_KEY, ROTATED_KEY, WEBHOOK_PATH.rsplit("/", 1)[1])
REJECTED = "canary_responder_rejected_requests_total"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with fake_slack() as fake:
        yield fake


async def rolled_back(running: Running, slack: FakeSlack, *alerts: dict[str, Any]) -> tuple[str, str]:
    """Post the alerts, wait for the Slack message; (the incident id, the page link the message carries)."""
    assert (await running.post_alerts(notification(*(alerts or (hostile_alert(),))))).status == 200
    await running.services.engine.drain()
    [message] = await slack.wait_delivered(1)
    [record] = await running.services.store.rollbacks()
    return record.incident, page_link(message.body)


async def get(running: Running, url: str) -> tuple[int, dict[str, str], str]:
    async with running.session.get(url, allow_redirects=False) as response:
        return response.status, dict(response.headers), await response.text()


@contextlib.asynccontextmanager
async def pages_responder(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack, *, port: int | None = None, **extra: Any
) -> AsyncIterator[Running]:
    """The responder with incident pages on ``port`` (its public URL), its Slack messages to ``slack``."""
    port = port or free_port()
    config = pages_config(tmp_path, kube_url=cluster[1], slack=slack, public_url=f"http://127.0.0.1:{port}", **extra)
    async with running_responder(config, environ=slack_environ(slack), port=port) as running:
        yield running


def kinds_in_order(html: str) -> list[str]:
    found = re.findall(r'data-kind="([a-z]+)"', html)
    return [k for i, k in enumerate(found) if i == 0 or found[i - 1] != k]


async def test_the_page_opens_from_the_slack_link_without_a_token(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    async with pages_responder(tmp_path, cluster, slack) as running:
        incident, link = await rolled_back(running, slack)
        assert link.startswith(f"{running.url}/incidents/{quote(incident, safe=':')}?expires=")
        status, headers, html = await get(running, link)

        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none': no script at all
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert headers["Referrer-Policy"] == "no-referrer" and headers["Cache-Control"] == "no-store"
        assert "Canary rolled back: shop/checkout-canary" in html
        assert kinds_in_order(html) == ["alert", "decision", "step", "notification"]
        steps = re.findall(r'<span class="kind">step</span>\s*<span class="entry-title">([^<]+)<', html)
        assert steps[:2] == ["check", "traffic_off:nginx/checkout-canary"] and "scale_zero" in steps
        assert '<span class="before">2</span> → <span class="after">0</span>' in html  # scale_zero's replicas
        assert "12.50%" in html and "0.20%" in html and "2.40 s" in html  # canary vs stable, from Prometheus
        assert "checkout: 4/4 ready" in html  # stable's health, as the rollback's steps recorded it
        assert "canary-responder replay --notification-id 1" in html
        assert "canary-responder restore shop checkout-canary" in html
        for secret in SECRETS:
            assert secret not in html, secret

        downloads = dict(re.findall(r'href="([^"]+)" id="download-(markdown|json)"', html))
        downloads = {kind: href.replace("&amp;", "&") for href, kind in downloads.items()}
        status, headers, markdown = await get(running, downloads["markdown"])
        assert status == 200 and headers["Content-Type"].startswith("text/markdown")
        assert "attachment" in headers["Content-Disposition"] and markdown.startswith("#")
        status, headers, body = await get(running, downloads["json"])
        assert status == 200 and orjson.loads(body)["id"] == incident
        for secret in SECRETS:
            assert secret not in markdown and secret not in body, secret


async def test_hostile_labels_and_annotations_are_text_never_markup(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    async with pages_responder(tmp_path, cluster, slack) as running:
        _, link = await rolled_back(running, slack)
        status, _, html = await get(running, link)
        assert status == 200
        for hostile in (HOSTILE_SCRIPT, HOSTILE_IMG, HOSTILE_LABEL):
            assert hostile not in html
        assert "<script" not in html.lower() and "<img" not in html.lower()
        assert "&lt;script&gt;window.__pwned = &#39;script&#39;" in html  # shown, as text
        assert 'href="javascript:' not in html.lower()  # a javascript: runbook or source URL never becomes a link


async def test_refusals_are_html_pages_with_the_right_status(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    async with pages_responder(tmp_path, cluster, slack) as running:
        incident, link = await rolled_back(running, slack)
        parts = urlsplit(link)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        page = f"{running.url}{parts.path}"
        past = int(query["expires"]) - 8 * 24 * 3600
        genuine_but_expired = PageSigner(key=SIGNING_KEY.encode(), ttl_s=60).signature(incident_subject(incident), past)
        cases = {
            "missing": (page, 403, "needs a signed link"),
            "no signature": (f"{page}?expires={query['expires']}", 403, "needs a signed link"),
            "cut short": (f"{page}?expires={query['expires']}&sig={query['sig'][:20]}", 403, "incomplete"),
            "forged": (f"{page}?expires={query['expires']}&sig={'A' * 43}", 403, "not valid"),
            "extended": (f"{page}?expires={int(query['expires']) + 60}&sig={query['sig']}", 403, "not valid"),
            "another incident": (
                f"{running.url}/incidents/{quote('shop:payments-canary:1', safe=':')}?{parts.query}",
                403,
                "not valid",
            ),
            "expired": (f"{page}?expires={past}&sig={genuine_but_expired}", 410, "has expired"),
            "unknown page": (f"{page}/other?{parts.query}", 404, "No such page"),
        }
        for name, (target, expected, words) in cases.items():
            status, headers, html = await get(running, target)
            assert (status, headers["Content-Type"]) == (expected, "text/html; charset=utf-8"), name
            assert words in html and "<!doctype html>" in html, name
            assert "Content-Security-Policy" in headers, name
        sample = running.services.metrics.registry.get_sample_value
        assert sample(REJECTED, {"reason": "page_link_forged"}) == 3
        assert sample(REJECTED, {"reason": "page_link_expired"}) == 1
        assert sample(REJECTED, {"reason": "page_link_missing"}) == 2

        # A genuine link to an incident this responder has not recorded: 404, still HTML.
        signer = PageSigner(key=SIGNING_KEY.encode(), ttl_s=3600)
        stranger = f"{running.url}/incidents/shop:gone:1?{signer.query(incident_subject('shop:gone:1'))}"
        status, _, html = await get(running, stranger)
        assert status == 404 and "No such incident" in html
        for odd in ("shop:café-canary:1", "shop:🚨:" + "x" * 2000, "shop:<b>x</b>:1"):  # signed, percent-encoded
            odd_link = f"{running.url}/incidents/{quote(odd, safe=':')}?{signer.query(incident_subject(odd))}"
            status, _, html = await get(running, odd_link)
            assert status == 404 and "No such incident" in html and "<b>x</b>" not in html, odd

        # The page link grants nothing on the API: that still needs its token, and answers JSON.
        status, headers, body = await get(running, f"{running.url}/api/v1/incidents/{incident}?{parts.query}")
        assert status == 401 and headers["Content-Type"].startswith("application/json")


async def test_rotating_the_key_revokes_the_links_sent(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    port = free_port()
    async with pages_responder(tmp_path, cluster, slack, port=port) as running:
        incident, old_link = await rolled_back(running, slack)
        assert (await get(running, old_link))[0] == 200

    # The same database and port, a new key.
    async with pages_responder(tmp_path, cluster, slack, port=port, key=ROTATED_KEY) as running:
        status, _, html = await get(running, old_link)
        assert status == 403 and "rotated" in html
        listing = await running.session.get(
            f"{running.url}/api/v1/incidents", headers={"Authorization": f"Bearer {READ_TOKEN}"}
        )
        [summary] = (await listing.json())["incidents"]
        assert summary["id"] == incident and summary["url"].endswith(f"/api/v1/incidents/{incident}")
        assert (await get(running, summary["page_url"]))[0] == 200  # a token holder gets a fresh link


async def test_the_list_page_and_its_links(tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack) -> None:
    async with pages_responder(tmp_path, cluster, slack) as running:
        incident, link = await rolled_back(running, slack)
        listing = await running.session.get(
            f"{running.url}/api/v1/incidents", headers={"Authorization": f"Bearer {READ_TOKEN}"}
        )
        list_url = (await listing.json())["list_page_url"]
        status, _, html = await get(running, list_url)
        assert status == 200 and "Canary rolled back: shop/checkout-canary" in html
        [entry] = [h.replace("&amp;", "&") for h in re.findall(r'<td><a href="([^"]+)"', html)]
        assert (await get(running, entry))[0] == 200
        assert parse_qs(urlsplit(entry).query)["expires"] == parse_qs(urlsplit(list_url).query)["expires"]
        # An incident's link does not open the list, nor the list's link an incident.
        assert (await get(running, f"{running.url}/incidents?{urlsplit(link).query}"))[0] == 403
        assert (await get(running, f"{running.url}/incidents/{incident}?{urlsplit(list_url).query}"))[0] == 403


async def test_without_incident_pages_the_links_stay_on_the_api(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    _, url = cluster
    config = pages_config(tmp_path, kube_url=url, slack=slack, pages=False)
    async with running_responder(config, environ=slack_environ(slack)) as running:
        assert (await running.post_alerts(notification(hostile_alert()))).status == 200
        await running.services.engine.drain()
        [message] = await slack.wait_delivered(1)
        [record] = await running.services.store.rollbacks()
        text = orjson.dumps(message.body).decode()
        assert f"https://responder.example.com/api/v1/incidents/{record.incident}|Audit record" in text
        assert (await get(running, f"{running.url}/incidents/{record.incident}"))[0] == 404  # no page routes
