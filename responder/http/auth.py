"""Who is calling: the webhook credentials (bearer tokens, two at once during rotation, or basic auth) and the
operator roles (admin, read) from the bearer token, all compared in constant time."""

from __future__ import annotations

import base64
import enum
import hmac

from aiohttp import web

from responder.config import Secrets
from responder.http.runtime import SECRETS


def _matches_any(given: bytes, secrets: list[bytes]) -> bool:
    """Compare against every configured secret in constant time, without stopping at the first match."""
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(given, secret)
    return found


def webhook_authorized(request: web.Request, secrets: Secrets) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and secrets.webhook_tokens:
        tokens = [t.get_secret_value().encode() for t in secrets.webhook_tokens]
        # undecodable header bytes arrive as surrogate escapes: compare them as the bytes they were
        return _matches_any(value.strip().encode(errors="surrogateescape"), tokens)
    if scheme.lower() == "basic" and secrets.basic_user and secrets.basic_password:
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except ValueError:  # binascii.Error, UnicodeDecodeError, or non-ASCII text
            return False
        user_ok = hmac.compare_digest(user.encode(), secrets.basic_user.encode())
        password_ok = hmac.compare_digest(password.encode(), secrets.basic_password.get_secret_value().encode())
        return user_ok & password_ok
    return False


class Role(enum.IntEnum):
    WEBHOOK = 1
    READ = 2
    ADMIN = 3


def caller_role(request: web.Request) -> Role | None:
    """The role the request's credentials carry; None for no or unknown credentials (401, not 403)."""
    secrets = request.app[SECRETS]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    given = value.strip().encode(errors="surrogateescape")  # undecodable header bytes: compare as bytes
    if scheme.lower() == "bearer":
        is_admin = hmac.compare_digest(given, secrets.admin_token.get_secret_value().encode())
        read = secrets.read_token.get_secret_value().encode() if secrets.read_token else None
        is_reader = read is not None and hmac.compare_digest(given, read)
        if is_admin:
            return Role.ADMIN
        if is_reader:
            return Role.READ
    return Role.WEBHOOK if webhook_authorized(request, secrets) else None
