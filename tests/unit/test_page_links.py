"""Signed, expiring page links (responder.notify.signing) and where they appear: the incident's link in Slack
messages, Teams cards and reports is the signed page when incident_pages is configured, the API otherwise. Pure:
the clock is a number the test sets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from incidents import rolled_back

from responder.notify.destinations.slack.blocks import fallback_message, incident_message
from responder.notify.destinations.teams.cards import fallback_card, incident_card
from responder.notify.incident import Incident, Links, audit_link, list_page_link, page_link
from responder.notify.report import report_markdown
from responder.notify.signing import CLOCK_SKEW_S, LIST_SUBJECT, LinkCheck, PageSigner, incident_subject

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
TTL = 7 * 24 * 3600
NOW = 1_800_000_000.0
ID = "shop:checkout-canary:20261127T204426.695970Z"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def signer(key: bytes = KEY, *, clock: Clock | None = None, ttl: int = TTL) -> PageSigner:
    return PageSigner(key=key, ttl_s=ttl, clock=clock or Clock())


def presented(signed: PageSigner, subject: str) -> tuple[str, str]:
    query = parse_qs(signed.query(subject))
    return query["expires"][0], query["sig"][0]


# -- the signature --


def test_a_fresh_link_is_valid_for_its_subject_only() -> None:
    s = signer()
    expires, sig = presented(s, incident_subject(ID))
    assert int(expires) == NOW + TTL
    assert s.check(incident_subject(ID), expires, sig) is LinkCheck.VALID
    assert s.check(incident_subject(ID + "x"), expires, sig) is LinkCheck.FORGED  # tampered id
    assert s.check(LIST_SUBJECT, expires, sig) is LinkCheck.FORGED  # an incident link never opens the list


def test_expiry_edges() -> None:
    clock = Clock()
    s = signer(clock=clock)
    expires, sig = presented(s, incident_subject(ID))
    clock.now = int(expires) - 1
    assert s.check(incident_subject(ID), expires, sig) is LinkCheck.VALID  # the last second
    clock.now = int(expires)
    assert s.check(incident_subject(ID), expires, sig) is LinkCheck.EXPIRED  # the expiry itself is past
    clock.now = int(expires) + 10 * TTL
    assert s.check(incident_subject(ID), expires, sig) is LinkCheck.EXPIRED


def test_a_link_never_outlives_the_current_ttl() -> None:
    """Genuine, but minted for longer than links last now (the TTL was shortened, or another replica's clock is
    far ahead): refused; a little clock skew between replicas is tolerated."""
    long_lived = signer(ttl=30 * 24 * 3600)
    expires, sig = presented(long_lived, incident_subject(ID))
    assert signer().check(incident_subject(ID), expires, sig) is LinkCheck.EXPIRED
    ahead = signer(clock=Clock(NOW + CLOCK_SKEW_S))
    expires, sig = presented(ahead, incident_subject(ID))
    assert signer().check(incident_subject(ID), expires, sig) is LinkCheck.VALID
    ahead = signer(clock=Clock(NOW + CLOCK_SKEW_S + 1))
    expires, sig = presented(ahead, incident_subject(ID))
    assert signer().check(incident_subject(ID), expires, sig) is LinkCheck.EXPIRED


def test_a_rotated_key_revokes_every_link() -> None:
    expires, sig = presented(signer(KEY), incident_subject(ID))
    assert signer(OTHER_KEY).check(incident_subject(ID), expires, sig) is LinkCheck.FORGED


def test_a_longer_expiry_or_another_signature_is_forged_not_expired() -> None:
    s = signer()
    expires, sig = presented(s, incident_subject(ID))
    assert s.check(incident_subject(ID), str(int(expires) + 3600), sig) is LinkCheck.FORGED
    past = str(int(NOW) - 60)  # a made-up link claiming an expiry in the past is still forged, not "expired"
    assert s.check(incident_subject(ID), past, sig) is LinkCheck.FORGED
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    assert s.check(incident_subject(ID), expires, flipped) is LinkCheck.FORGED
    zero = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    assert s.check(incident_subject(ID), expires, zero) is LinkCheck.FORGED


@pytest.mark.parametrize(
    ("expires", "sig", "judged"),
    [
        (None, None, LinkCheck.MISSING),
        ("1800000000", None, LinkCheck.MISSING),
        (None, "x" * 43, LinkCheck.MISSING),
        ("", "", LinkCheck.MISSING),
        ("18e8", "x" * 43, LinkCheck.MALFORMED),
        ("-1", "x" * 43, LinkCheck.MALFORMED),
        ("1" * 13, "x" * 43, LinkCheck.MALFORMED),  # beyond any date a datetime can show
        ("1800000000", "x" * 42, LinkCheck.MALFORMED),  # cut short when copied
        ("1800000000", "x" * 43 + "=", LinkCheck.MALFORMED),
        ("1800000000", "x" * 42 + "/", LinkCheck.MALFORMED),  # base64 with the wrong alphabet
        ("1800000000", "é" * 43, LinkCheck.MALFORMED),
        ("1800000000", "x" * 43, LinkCheck.FORGED),
    ],
)
def test_damaged_links(expires: str | None, sig: str | None, judged: LinkCheck) -> None:
    assert signer().check(incident_subject(ID), expires, sig) is judged


@pytest.mark.parametrize(
    "incident_id",
    [
        "x" * 20_000,
        "shop:café-canary:2026",  # precomposed é
        "shop:cafe\u0301-canary:2026",  # e + combining accent: looks the same, is another id
        "🚨:\u202e:漢字",
        'a"],"b',  # JSON-looking: the signed message is a JSON array, never a concatenation
        "",
    ],
)
def test_huge_and_unicode_ids_sign_and_check(incident_id: str) -> None:
    s = signer()
    expires, sig = presented(s, incident_subject(incident_id))
    assert s.check(incident_subject(incident_id), expires, sig) is LinkCheck.VALID
    assert s.check(incident_subject(incident_id + " "), expires, sig) is LinkCheck.FORGED


def test_lookalike_ids_do_not_share_a_signature() -> None:
    s = signer()
    expires, sig = presented(s, incident_subject("shop:café-canary:2026"))
    assert s.check(incident_subject("shop:cafe\u0301-canary:2026"), expires, sig) is LinkCheck.FORGED


def test_the_signature_is_hmac_sha256_over_purpose_subject_and_expiry() -> None:
    """Pinned so that a change of format (which revokes every link out there) is a decision, not an accident."""
    message = json.dumps(["canary-responder incident page v1", "incident:x", 1800000000], separators=(",", ":"))
    digest = hmac.new(KEY, message.encode(), hashlib.sha256).digest()
    assert signer().signature("incident:x", 1800000000) == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_the_key_stays_out_of_repr() -> None:
    assert "kkkk" not in repr(signer())


@given(st.text(max_size=200), st.text(max_size=200))
def test_a_signature_opens_its_own_subject_and_no_other(subject: str, other: str) -> None:
    s = signer()
    expires, sig = presented(s, subject)
    assert s.check(subject, expires, sig) is LinkCheck.VALID
    if other != subject:
        assert s.check(other, expires, sig) is LinkCheck.FORGED


def test_pinned_links_expire_with_the_link_that_opened_the_page() -> None:
    clock = Clock()
    pinned = signer(clock=clock).pinned(int(NOW) + 60)
    clock.now += 30
    expires, sig = presented(pinned, incident_subject(ID))
    assert expires == str(int(NOW) + 60)
    assert signer(clock=clock).check(incident_subject(ID), expires, sig) is LinkCheck.VALID


# -- where the link appears --

LINKS = Links(public_url="https://responder.example.com/", alertmanager_url="https://am.example.com")
PAGES = Links(public_url="https://responder.example.com/", pages=signer())


def incident(**changes: Any) -> Incident:
    values: dict[str, Any] = {
        "reason": "CanaryHighErrorRate",
        "steps": {"scale_zero": {"result": "done", "before": {"replicas": 2}, "after": {"replicas": 0}}},
        "alerts": [{"status": "firing", "labels": {"alertname": "CanaryHighErrorRate"}, "annotations": {}}],
    }
    return rolled_back(**{**values, **changes})


def signed_url_checks(url: str, incident_id: str = ID) -> LinkCheck:
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.netloc == "responder.example.com"
    assert unquote(parts.path) == f"/incidents/{incident_id}"
    query = parse_qs(parts.query)
    return signer().check(incident_subject(incident_id), query["expires"][0], query["sig"][0])


def test_the_audit_link_is_the_signed_page_when_pages_are_configured() -> None:
    assert audit_link(ID, LINKS) == f"https://responder.example.com/api/v1/incidents/{ID}"
    assert signed_url_checks(audit_link(ID, PAGES)) is LinkCheck.VALID
    assert page_link(ID, LINKS) is None and list_page_link(LINKS) is None
    listed = parse_qs(urlsplit(list_page_link(PAGES) or "").query)
    assert signer().check(LIST_SUBJECT, listed["expires"][0], listed["sig"][0]) is LinkCheck.VALID


def test_an_odd_id_stays_one_path_segment() -> None:
    odd = "shop:a/b?c#d&e=é"
    url = audit_link(odd, PAGES)
    assert urlsplit(url).path.count("/") == 2
    assert signed_url_checks(url, odd) is LinkCheck.VALID


def _slack_links(blocks: list[dict[str, Any]]) -> list[str]:
    text = orjson.dumps(blocks).decode()
    return [part.split("|", 1)[0].replace("&amp;", "&") for part in text.split("<")[1:] if "|Audit record>" in part]


def test_slack_messages_carry_the_signed_page_link() -> None:
    [link] = _slack_links(incident_message(incident(), PAGES).blocks)
    assert signed_url_checks(link) is LinkCheck.VALID
    [fallback] = _slack_links(fallback_message(ID, "rollback", "shop/checkout-canary", "boom", PAGES).blocks)
    assert signed_url_checks(fallback) is LinkCheck.VALID
    [api] = _slack_links(incident_message(incident(), LINKS).blocks)
    assert api == f"https://responder.example.com/api/v1/incidents/{ID}"


def _teams_urls(card: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "Action.OpenUrl" and "Audit" in str(node.get("title")):
                found.append(str(node["url"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card)
    return found


def test_teams_cards_carry_the_signed_page_link() -> None:
    urls = _teams_urls(incident_card(incident(), PAGES).card)
    assert urls and all(signed_url_checks(u) is LinkCheck.VALID for u in urls)
    urls = _teams_urls(fallback_card(ID, "rollback", "shop/checkout-canary", "boom", PAGES).card)
    assert urls and all(signed_url_checks(u) is LinkCheck.VALID for u in urls)
    assert _teams_urls(incident_card(incident(), LINKS).card) == [
        f"https://responder.example.com/api/v1/incidents/{ID}"
    ]


def test_the_markdown_report_links_the_page() -> None:
    text = report_markdown(incident(), PAGES, [])
    assert f"https://responder.example.com/incidents/{ID}?expires=" in text


# -- the settings --

PAGE_KEY = "a-page-signing-key-of-at-least-32-bytes-0001"


def pages_document(**pages: Any) -> dict[str, Any]:
    return {
        "auth": {"webhook": {"bearer_tokens": [{"env": "WEBHOOK"}]}, "admin_token": {"env": "ADMIN"}},
        "safety": {"allowed_namespaces": ["shop"]},
        "targets": [{"name": "t", "deployment": "{app}-canary"}],
        "notifications": {"public_url": "https://responder.example.com"},
        "incident_pages": {"signing_key": {"env": "PAGE_KEY"}, **pages},
    }


ENVIRON = {"WEBHOOK": "webhook-token-0123456789", "ADMIN": "admin-token-0123456789", "PAGE_KEY": PAGE_KEY}


def test_settings_default_to_a_week_and_build_a_signer() -> None:
    from responder.config import Secrets, parse_settings
    from responder.notify import page_signer

    settings = parse_settings(pages_document())
    assert settings.incident_pages is not None and settings.incident_pages.link_ttl.total_seconds() == TTL
    found = page_signer(settings, Secrets(settings, ENVIRON))
    assert found is not None and found.ttl_s == TTL and found.key == PAGE_KEY.encode()
    without = parse_settings({k: v for k, v in pages_document().items() if k != "incident_pages"})
    assert page_signer(without, Secrets(without, ENVIRON)) is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"link_ttl": "30s"}, "link_ttl must be at least 1m"),
        ({"signing_key": "inline-value-never-allowed"}, "incident_pages.signing_key"),
    ],
)
def test_bad_page_settings_are_named(change: dict[str, Any], words: str) -> None:
    from responder.config import ConfigError, parse_settings

    with pytest.raises(ConfigError) as failed:
        parse_settings(pages_document(**change))
    assert words in str(failed.value) and "inline-value-never-allowed" not in str(failed.value)


def test_pages_need_a_public_url() -> None:
    from responder.config import ConfigError, parse_settings

    document = pages_document()
    del document["notifications"]
    with pytest.raises(ConfigError, match="incident_pages needs notifications.public_url"):
        parse_settings(document)


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("short-key", "shorter than 32 bytes"),
        (ENVIRON["ADMIN"] + "-padding-to-32-bytes-long", None),
    ],
)
def test_the_signing_key_is_long_and_its_own(key: str, words: str | None) -> None:
    from responder.config import ConfigError, Secrets, parse_settings

    settings = parse_settings(pages_document())
    if words is None:  # a long key of its own is fine
        assert Secrets(settings, {**ENVIRON, "PAGE_KEY": key}).page_signing_key is not None
        return
    with pytest.raises(ConfigError, match=words) as failed:
        Secrets(settings, {**ENVIRON, "PAGE_KEY": key})
    assert key not in str(failed.value)


def test_the_signing_key_may_not_be_a_token() -> None:
    from responder.config import ConfigError, Secrets, parse_settings

    settings = parse_settings(pages_document())
    shared = "the-same-secret-used-twice-0123456789"
    with pytest.raises(ConfigError, match="incident_pages.signing_key") as failed:
        Secrets(settings, {**ENVIRON, "ADMIN": shared, "PAGE_KEY": shared})
    assert shared not in str(failed.value)
