"""The chart's incident pages option (auth.pageSigning): the signing key's Secret (generated, given, or an existing
one), mounted as a file the rendered config names, the config valid for the responder, nothing secret in the
ConfigMap, the RBAC untouched, and a clear failure without notifications.public_url."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import HelmFailed, Rendered

from responder.config import parse_settings

pytestmark = pytest.mark.slow

KEY_FILE = "/etc/canary-responder/secrets/pages/signing-key"
PUBLIC = "config:\n  notifications: {public_url: 'https://responder.example.com'}\n"


def values(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    return path


def config_of(rendered: Rendered) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(configmap(rendered))
    return document


def configmap(rendered: Rendered) -> str:
    text: str = rendered.one("ConfigMap", "canary-responder")["data"]["config.yaml"]
    return text


def mounted(rendered: Rendered) -> dict[str, tuple[str, str]]:
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    return {
        item["path"]: (source["secret"]["name"], item["key"])
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }


def rules(rendered: Rendered) -> list[Any]:
    return sorted((r["metadata"]["name"], r["rules"]) for r in rendered.of_kind("Role"))


def test_a_generated_key_mounted_as_the_configs_signing_key(
    render: Callable[..., Rendered], tmp_path: Path, kube_validate: Callable[[str], Any]
) -> None:
    extra = "  incident_pages: {link_ttl: 2d}\n"
    rendered = render(values(tmp_path, "auth:\n  pageSigning: {enabled: true}\n" + PUBLIC + extra))
    cfg = config_of(rendered)
    assert cfg["incident_pages"] == {"signing_key": {"file": KEY_FILE}, "link_ttl": "2d"}
    assert mounted(rendered)["pages/signing-key"] == ("canary-responder-page-signing", "signing-key")
    secret = rendered.one("Secret", "canary-responder-page-signing")
    key = base64.b64decode(secret["data"]["signing-key"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{48}", key)
    assert key not in configmap(rendered)
    assert rules(rendered) == rules(render(None))  # the pages need no Kubernetes rights
    checked = kube_validate(rendered.manifest)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    settings = parse_settings(yaml.safe_load(configmap(rendered)))  # what the responder will read
    assert settings.incident_pages is not None and settings.incident_pages.link_ttl == timedelta(days=2)


def test_an_existing_secret_is_mounted_not_created(render: Callable[..., Rendered], tmp_path: Path) -> None:
    text = "auth:\n  pageSigning: {enabled: true, existingSecret: pages-key, key: k}\n" + PUBLIC
    rendered = render(values(tmp_path, text))
    assert mounted(rendered)["pages/signing-key"] == ("pages-key", "k")
    assert "pages-key" not in {s["metadata"]["name"] for s in rendered.of_kind("Secret")}


def test_off_by_default(render: Callable[..., Rendered]) -> None:
    rendered = render(None)
    assert "incident_pages" not in config_of(rendered)
    assert "pages/signing-key" not in mounted(rendered)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("auth:\n  pageSigning: {enabled: true}\n", "needs config.notifications.public_url"),
        ("auth:\n  pageSigning: {enabled: true, value: too-short}\n" + PUBLIC, "pageSigning"),
    ],
)
def test_refused_values(render: Callable[..., Rendered], tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(HelmFailed) as failed:
        render(values(tmp_path, text))
    assert words in str(failed.value)
