"""Signed, expiring links to the incident pages (``incident_pages``): what lets a browser opened from a Slack or
Teams message read one incident without a bearer token.

A link carries ``expires`` (Unix seconds) and ``sig``, the HMAC-SHA256 under ``incident_pages.signing_key`` of
what it grants (the *subject*: one incident, or the incident list) and that expiry, base64url without padding.
Whoever holds the key can mint links; everyone else can only present the ones they were given. Rotating the key
revokes every link sent, and a link is never valid for longer than the current ``link_ttl`` from now, so
shortening the TTL shortens the links already out too.

Pure apart from the clock, which is injected: no I/O, no framework.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

LIST_SUBJECT = "incidents"
CLOCK_SKEW_S = 300  # replicas' clocks may disagree a little: a link minted by one is checked by another
_PURPOSE = "canary-responder incident page v1"
_SIG = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes, base64url, no padding
_EXPIRES = re.compile(r"[0-9]{1,12}")


def incident_subject(incident_id: str) -> str:
    return f"incident:{incident_id}"


class LinkCheck(enum.Enum):
    """What a presented link is worth; the values double as the rejection reasons counted in metrics."""

    VALID = "valid"
    MISSING = "page_link_missing"  # no expires or no sig: someone opened the path by hand
    MALFORMED = "page_link_malformed"  # not even the shape of a signed link (truncated when copied?)
    FORGED = "page_link_forged"  # the signature does not match: another key (rotated) or a made-up link
    EXPIRED = "page_link_expired"  # genuine, but past its expiry (or beyond the current link_ttl)


@dataclass(frozen=True, slots=True, kw_only=True)
class PageSigner:
    """Mints and checks the signed query of a page link. ``pinned_expiry`` makes every link it mints expire at that
    instant: a page reached through a link only hands out links (downloads, the list's entries) that expire with it,
    so following links never extends access."""

    key: bytes = field(repr=False)
    ttl_s: int
    clock: Callable[[], float] = time.time
    pinned_expiry: int | None = None

    def expiry(self) -> int:
        if self.pinned_expiry is not None:
            return self.pinned_expiry
        return int(self.clock()) + self.ttl_s

    def pinned(self, expires: int) -> PageSigner:
        return replace(self, pinned_expiry=expires)

    def signature(self, subject: str, expires: int) -> str:
        message = json.dumps([_PURPOSE, subject, expires], separators=(",", ":")).encode()
        digest = hmac.new(self.key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def query(self, subject: str) -> str:
        """``expires=...&sig=...`` for ``subject``."""
        expires = self.expiry()
        return urlencode({"expires": str(expires), "sig": self.signature(subject, expires)})

    def check(self, subject: str, expires: str | None, sig: str | None) -> LinkCheck:
        """Judge a presented link. The signature is checked before the expiry, so a made-up link is called forged
        whatever expiry it claims, and only a genuine one is told it expired."""
        if not expires or not sig:
            return LinkCheck.MISSING
        if not (_EXPIRES.fullmatch(expires) and _SIG.fullmatch(sig)):
            return LinkCheck.MALFORMED
        expected = self.signature(subject, int(expires))
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            return LinkCheck.FORGED
        now = self.clock()
        if not now < int(expires) <= now + self.ttl_s + CLOCK_SKEW_S:
            return LinkCheck.EXPIRED
        return LinkCheck.VALID


__all__ = ["LIST_SUBJECT", "LinkCheck", "PageSigner", "incident_subject"]
