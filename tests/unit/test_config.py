"""The YAML configuration: a valid file loads into typed settings, a bad one fails naming the field path."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from responder.cli.main import main
from responder.config import ConfigError, Secrets, format_duration, load_settings, parse_settings
from responder.core.decide import DecisionCore
from responder.core.model import AlertEvent, AlertStatus, Outcome, PolicyMode

WEBHOOK_TOKEN = "wh-token-0f3a9c"
OLD_WEBHOOK_TOKEN = "wh-token-previous-77"
ADMIN_TOKEN = "admin-token-9b1d"
BASIC_PASSWORD = "basic-pass-42x"
HMAC_KEY = "hmac-key-e5e5"
ALL_SECRETS = (WEBHOOK_TOKEN, OLD_WEBHOOK_TOKEN, ADMIN_TOKEN, BASIC_PASSWORD, HMAC_KEY)


@pytest.fixture
def secret_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "webhook-token").write_text(WEBHOOK_TOKEN + "\n")
    (directory / "admin-token").write_text(ADMIN_TOKEN)
    (directory / "hmac-key").write_text(f"  {HMAC_KEY}  \n")
    # check-config loads the kubeconfig it names (issue 14): a real one, with the context the config asks for
    (directory / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: staging\n"
        "clusters: [{name: staging, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: staging, user: {token: t}}]\n"
        "contexts: [{name: staging, context: {cluster: staging, user: staging}}]\n"
    )
    return directory


ENVIRON = {"OLD_WEBHOOK_TOKEN": OLD_WEBHOOK_TOKEN, "BASIC_PASSWORD": BASIC_PASSWORD}


def full_config(secret_dir: Path) -> str:
    return textwrap.dedent(
        f"""\
        listen:
          host: 127.0.0.1
          port: 9000
          body_limit_bytes: 65536
        auth:
          webhook:
            bearer_tokens:
              - file: {secret_dir}/webhook-token
              - env: OLD_WEBHOOK_TOKEN
            basic:
              username: alertmanager
              password: {{env: BASIC_PASSWORD}}
          admin_token: {{file: {secret_dir}/admin-token}}
        kubernetes:
          mode: kubeconfig
          kubeconfig: {secret_dir}/kubeconfig
          context: staging
          request_timeout: 2500ms
        safety:
          allowed_namespaces: [shop, payments]
          canary_marker: track=canary
        targets:
          - name: shop
            match: {{team: shop}}
            namespace: "{{namespace}}"
            deployment: "{{app}}-canary"
            ingress: "{{app}}-canary"
          - name: payments-api
            match: {{team: payments}}
            namespace: payments
            deployment: api-canary
            ingress: null
        policies:
          - name: absolute
            match: {{severity: critical}}
            mode: immediate
          - name: relative
            match: {{kind: relative}}
            mode: persist
            persist_for: 3m
          - name: everything-else
            mode: notify
        coalesce_window: 45s
        cooldown: 20m
        rollback_cap: {{max: 5, window: 1h}}
        dedupe_ttl: 1d
        dry_run: true
        retry: {{attempts: 4, base_delay: 0.1, max_delay: 3s}}
        storage:
          path: /tmp/responder.db
          audit_hmac_key: {{file: {secret_dir}/hmac-key}}
        engine: {{max_backlog: 100}}
        log_level: DEBUG
        """
    )


def minimal() -> dict[str, Any]:
    return {
        "auth": {"webhook": {"bearer_tokens": [{"env": "TOKEN"}]}, "admin_token": {"env": "ADMIN"}},
        "safety": {"allowed_namespaces": ["shop"]},
        "targets": [{"name": "shop"}],
    }


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def config_error(document: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_settings(document)
    return str(info.value)


# -- a valid file --


def test_full_config_loads(tmp_path: Path, secret_dir: Path) -> None:
    settings, secrets = load_settings(write(tmp_path, full_config(secret_dir)), environ=ENVIRON)

    assert (settings.listen.host, settings.listen.port, settings.listen.body_limit_bytes) == ("127.0.0.1", 9000, 65536)
    assert settings.kubernetes.mode == "kubeconfig"
    assert settings.kubernetes.kubeconfig == secret_dir / "kubeconfig"
    assert settings.kubernetes.request_timeout == timedelta(milliseconds=2500)
    assert settings.safety.allowed_namespaces == ["shop", "payments"]
    assert settings.safety.marker == ("track", "canary")
    assert [t.name for t in settings.targets] == ["shop", "payments-api"]
    assert settings.targets[1].ingress is None
    assert [(p.name, p.mode) for p in settings.policies] == [
        ("absolute", PolicyMode.IMMEDIATE),
        ("relative", PolicyMode.PERSIST),
        ("everything-else", PolicyMode.NOTIFY),
    ]
    assert settings.policies[1].persist_for == timedelta(minutes=3)
    assert settings.coalesce_window == timedelta(seconds=45)
    assert settings.cooldown == timedelta(minutes=20)
    assert (settings.rollback_cap.max, settings.rollback_cap.window) == (5, timedelta(hours=1))
    assert settings.dedupe_ttl == timedelta(days=1)
    assert settings.retry.base_delay == timedelta(milliseconds=100)
    assert settings.dry_run is True
    assert settings.log_level == "DEBUG"

    assert [t.get_secret_value() for t in secrets.webhook_tokens] == [WEBHOOK_TOKEN, OLD_WEBHOOK_TOKEN]
    assert secrets.basic_user == "alertmanager"
    assert secrets.basic_password is not None and secrets.basic_password.get_secret_value() == BASIC_PASSWORD
    assert secrets.admin_token.get_secret_value() == ADMIN_TOKEN
    assert secrets.audit_key is not None and secrets.audit_key.get_secret_value() == HMAC_KEY  # whitespace stripped
    assert secrets.read_token is None
    assert secrets.kube_token is None


def test_core_settings_follow_the_file(tmp_path: Path, secret_dir: Path) -> None:
    settings, _ = load_settings(write(tmp_path, full_config(secret_dir)), environ=ENVIRON)
    core = settings.core()
    assert core.allowed_namespaces == frozenset({"shop", "payments"})
    assert [t.name for t in core.targets] == ["shop", "payments-api"]
    assert core.targets[0].match == {"team": "shop"}
    assert [p.persist_for for p in core.policies] == [timedelta(0), timedelta(minutes=3), timedelta(0)]
    assert (core.coalesce_window, core.cooldown) == (timedelta(seconds=45), timedelta(minutes=20))
    assert (core.cap_max, core.cap_window, core.dedupe_ttl) == (5, timedelta(hours=1), timedelta(days=1))

    # and a core built from it decides accordingly
    now = datetime(2025, 3, 1, tzinfo=UTC)
    labels = {"team": "payments", "severity": "critical"}
    decisions = DecisionCore(core).on_event(AlertEvent("fp", AlertStatus.FIRING, now, None, labels), now)
    assert [d.outcome for d in decisions] == [Outcome.ROLLBACK]
    assert decisions[0].target is not None and decisions[0].target.key == "payments/api-canary"


def test_defaults_when_omitted() -> None:
    settings = parse_settings(minimal())
    assert [(p.name, p.match, p.mode, p.persist_for) for p in settings.policies] == [
        ("rollback", {"action": "rollback"}, PolicyMode.IMMEDIATE, timedelta(0)),
        ("rollback-if-persists", {"action": "rollback-if-persists"}, PolicyMode.PERSIST, timedelta(minutes=2)),
        ("notify", {"action": "notify"}, PolicyMode.NOTIFY, timedelta(0)),
    ]
    target = settings.targets[0]
    assert (target.namespace, target.deployment, target.ingress) == ("{namespace}", "{app}-canary", "{app}-canary")
    assert settings.cooldown == timedelta(minutes=15)
    assert settings.coalesce_window == timedelta(seconds=30)
    assert settings.dry_run is False
    assert settings.core().policies[1].mode is PolicyMode.PERSIST


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (90, timedelta(seconds=90)),
        (1.5, timedelta(seconds=1.5)),
        ("30s", timedelta(seconds=30)),
        ("2m", timedelta(minutes=2)),
        ("1.5m", timedelta(seconds=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        (" 10s ", timedelta(seconds=10)),
    ],
)
def test_durations(text: object, expected: timedelta) -> None:
    assert parse_settings(minimal() | {"cooldown": text}).cooldown == expected


def test_env_secrets_come_from_the_given_environ_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", "from-process-env")
    monkeypatch.setenv("ADMIN", "from-process-env")
    _, secrets = load_settings(write(tmp_path, minimal()), environ={"TOKEN": " tok ", "ADMIN": "adm"})
    assert secrets.webhook_tokens[0].get_secret_value() == "tok"
    assert secrets.admin_token.get_secret_value() == "adm"


def test_process_environment_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", "process-token")
    monkeypatch.setenv("ADMIN", "process-admin")
    _, secrets = load_settings(write(tmp_path, minimal()))
    assert secrets.admin_token.get_secret_value() == "process-admin"


def test_secrets_repr_never_shows_values(tmp_path: Path, secret_dir: Path) -> None:
    settings, secrets = load_settings(write(tmp_path, full_config(secret_dir)), environ=ENVIRON)
    shown = " ".join([repr(secrets), str(secrets), f"{secrets!r}", repr(secrets.webhook_tokens), repr(settings)])
    shown += repr(secrets.admin_token) + str(secrets.basic_password)
    for value in ALL_SECRETS:
        assert value not in shown
    assert "redacted" in repr(secrets)
    assert repr(Secrets(settings, ENVIRON)) == repr(secrets)


# -- errors name the field path --


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (
            {"policies": [{"name": "p", "mode": "rollback-now"}]},
            "policies.0.mode",
            "'immediate', 'persist', 'notify' or 'ignore'",
        ),
        ({"policies": [{"name": "p", "mode": "persist"}]}, "policies.0", "persist_for"),
        ({"policies": [{"name": "p", "mode": "persist", "persist_for": "0s"}]}, "policies.0", "persist_for"),
        ({"cooldown": "5 minutes"}, "cooldown", "invalid duration"),
        ({"coalesce_window": "10x"}, "coalesce_window", "invalid duration"),
        ({"rollback_cap": {"window": "-5s"}}, "rollback_cap.window", "invalid duration"),
        ({"safety": {"allowed_namespaces": ["shop", "Bad_NS"]}}, "safety", "Bad_NS"),
        ({"safety": {"allowed_namespaces": []}}, "safety.allowed_namespaces", ""),
        ({"safety": {"allowed_namespaces": ["shop"], "canary_marker": "canary"}}, "safety", "label=value"),
        ({"targets": [{"name": "t", "deployment": "{app!r}"}]}, "targets.0", "{app!r}"),
        ({"targets": [{"name": "t", "namespace": "{ns:>10}"}]}, "targets.0", "placeholders"),
        ({"targets": [{"name": "t", "ingress": "{}"}]}, "targets.0", "placeholders"),
        ({"targets": [{"name": "ok"}, {"name": ""}]}, "targets.1.name", ""),
        ({"targets": []}, "targets", ""),
        ({"colldown": "1m"}, "colldown", "Extra inputs"),
        ({"listen": {"port": 70000}}, "listen.port", ""),
        ({"log_level": "TRACE"}, "log_level", ""),
        ({"kubernetes": {"mode": "magic"}}, "kubernetes.mode", ""),
        ({"auth": {"webhook": {}, "admin_token": {"env": "A"}}}, "auth.webhook", "at least one"),
    ],
)
def test_errors_name_the_field_path(change: dict[str, Any], path: str, words: str) -> None:
    message = config_error(minimal() | change)
    lines = message.splitlines()
    assert any(line.startswith(f"{path}: ") for line in lines), message
    assert words in message


def test_missing_required_sections_are_named() -> None:
    message = config_error({"auth": minimal()["auth"]})
    assert "safety: Field required" in message
    assert "targets: Field required" in message


def test_every_error_is_reported_at_once() -> None:
    message = config_error(minimal() | {"cooldown": "soon", "targets": [{"name": "t", "deployment": "{x!s}"}]})
    assert [line.split(":")[0] for line in message.splitlines()] == ["targets.0", "cooldown"]


def test_inline_secret_is_rejected_without_echoing_it() -> None:
    document = minimal()
    document["auth"]["webhook"]["bearer_tokens"] = ["inline-secret-value"]
    document["auth"]["admin_token"] = "inline-admin-value"
    message = config_error(document)
    assert "auth.webhook.bearer_tokens.0: " in message
    assert "auth.admin_token: " in message
    assert "inline-secret-value" not in message
    assert "inline-admin-value" not in message


def test_secret_ref_with_a_value_key_is_rejected_without_echoing_it() -> None:
    document = minimal()
    document["auth"]["admin_token"] = {"value": "inline-admin-value"}
    message = config_error(document)
    assert "auth.admin_token" in message
    assert "inline-admin-value" not in message


@pytest.mark.parametrize("ref", [{"file": "/run/secrets/a", "env": "A"}, {}])
def test_secret_ref_needs_exactly_one_of_file_and_env(ref: dict[str, str]) -> None:
    document = minimal()
    document["auth"]["admin_token"] = ref
    message = config_error(document)
    assert any(line.startswith("auth.admin_token: ") for line in message.splitlines()), message
    assert "exactly one of 'file' or 'env'" in message


def test_missing_secret_file_names_the_path_not_a_secret(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "admin-token"
    document = minimal()
    document["auth"]["admin_token"] = {"file": str(missing)}
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, document), environ={"TOKEN": WEBHOOK_TOKEN})
    message = str(info.value)
    assert str(missing) in message
    assert WEBHOOK_TOKEN not in message


@pytest.mark.parametrize("environ", [{}, {"ADMIN": "   "}])
def test_missing_or_empty_env_secret_names_the_variable(tmp_path: Path, environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, minimal()), environ={"TOKEN": WEBHOOK_TOKEN, **environ})
    message = str(info.value)
    assert "$ADMIN" in message
    assert WEBHOOK_TOKEN not in message


def test_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    document = minimal()
    document["auth"]["admin_token"] = {"file": str(empty)}
    with pytest.raises(ConfigError, match="empty or missing"):
        load_settings(write(tmp_path, document), environ={"TOKEN": "t"})


@pytest.mark.parametrize(
    ("content", "words"),
    [("- just\n- a list\n", "YAML mapping"), ("auth: [unclosed\n", "not valid YAML"), ("", "YAML mapping")],
)
def test_unusable_documents(tmp_path: Path, content: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_settings(write(tmp_path, content), environ={})


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml", environ={})


@pytest.mark.parametrize("value", [float("inf"), "99999999999d", -5, True, 10**12])
def test_out_of_range_durations_are_config_errors(value: object) -> None:
    message = config_error(minimal() | {"cooldown": value})
    assert message.startswith("cooldown: ")


# -- the check-config command --


def test_check_config_prints_targets_and_policies(
    tmp_path: Path, secret_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config", str(write(tmp_path, full_config(secret_dir)))]) == 0
    out = capsys.readouterr().out
    assert (
        "  - shop: when team=shop -> namespace {namespace}, deployment {app}-canary, traffic nginx/{app}-canary" in out
    )
    assert (
        "  - payments-api: when team=payments -> namespace payments, deployment api-canary,"
        " traffic (none: scale-down only)" in out
    )
    assert "  - absolute: when severity=critical -> immediate" in out


def test_check_config_prints_every_traffic_object_with_its_options(
    tmp_path: Path, secret_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    config = yaml.safe_load(full_config(secret_dir))
    config["targets"] = [
        {
            "name": "mesh",
            "match": {"team": "shop"},
            "deployment": "{app}-canary",
            "traffic": [
                {"kind": "nginx", "name": "{app}-canary"},
                {"kind": "httproute", "name": "{app}", "canary_backend": "{app}-canary"},
            ],
        }
    ]
    assert main(["check-config", str(write(tmp_path, yaml.safe_dump(config)))]) == 0
    out = capsys.readouterr().out
    assert "traffic nginx/{app}-canary, httproute/{app} (canary_backend={app}-canary)" in out
    assert "  - relative: when kind=relative -> persist for 3m" in out
    assert "  - everything-else: when (any alert) -> notify" in out
    assert "allowed namespaces: shop, payments" in out
    assert "dry_run: True" in out
    assert "coalesce window: 45s" in out
    assert "cooldown: 20m" in out
    assert "rollback cap: 5 per 1h" in out
    assert "dedupe ttl: 1d" in out
    assert "exact repeats: audited as repeats within 1m of their alerts' decision" in out
    assert f"bearer from file {secret_dir}/webhook-token, env $OLD_WEBHOOK_TOKEN" in out
    for value in ALL_SECRETS:
        assert value not in out


def test_check_config_shows_default_policies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOKEN", "t")
    monkeypatch.setenv("ADMIN", "a")
    assert main(["check-config", str(write(tmp_path, minimal()))]) == 0
    out = capsys.readouterr().out
    assert "  - rollback: when action=rollback -> immediate" in out
    assert "  - rollback-if-persists: when action=rollback-if-persists -> persist for 2m" in out
    assert "  - notify: when action=notify -> notify" in out


def test_check_config_says_when_exact_repeats_take_the_whole_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOKEN", "t")
    monkeypatch.setenv("ADMIN", "a")
    assert main(["check-config", str(write(tmp_path, minimal() | {"engine": {"repeat_window": "0s"}}))]) == 0
    assert "exact repeats: off (every repeat is stored and decided again)" in capsys.readouterr().out


def test_check_config_bad_file_exits_2_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = minimal() | {"policies": [{"name": "p", "mode": "sometimes"}], "cooldown": "forever"}
    assert main(["check-config", str(write(tmp_path, document))]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "configuration error" in captured.err
    assert "  policies.0.mode: " in captured.err
    assert "  cooldown: " in captured.err


def test_check_config_missing_secret_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOKEN", WEBHOOK_TOKEN)
    monkeypatch.delenv("ADMIN", raising=False)
    assert main(["check-config", str(write(tmp_path, minimal()))]) == 2
    err = capsys.readouterr().err
    assert "$ADMIN" in err
    assert WEBHOOK_TOKEN not in err


def test_check_config_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_check_config_skip_secrets_validates_structure_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TOKEN", raising=False)
    monkeypatch.delenv("ADMIN", raising=False)
    path = write(tmp_path, minimal())
    assert main(["check-config", str(path)]) == 2
    capsys.readouterr()
    assert main(["check-config", "--skip-secrets", str(path)]) == 0
    assert "  - shop: when (any alert) -> namespace {namespace}" in capsys.readouterr().out


def test_check_config_skip_secrets_still_rejects_a_bad_structure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, minimal() | {"targets": [{"name": "t", "deployment": "{app!r}"}]})
    assert main(["check-config", "--skip-secrets", str(path)]) == 2
    assert "  targets.0: " in capsys.readouterr().err


# -- displaying durations --


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=30), "30s"),
        (timedelta(minutes=2), "2m"),
        (timedelta(hours=1), "1h"),
        (timedelta(days=1), "1d"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(milliseconds=1500), "1500ms"),
    ],
)
def test_format_duration_single_unit(value: timedelta, shown: str) -> None:
    assert format_duration(value) == shown
    assert parse_settings(minimal() | {"cooldown": shown}).cooldown == value


@pytest.mark.parametrize("value", [timedelta(seconds=90), timedelta(minutes=90), timedelta(hours=25)])
def test_format_duration_round_trips_through_the_parser(value: timedelta) -> None:
    assert parse_settings(minimal() | {"cooldown": format_duration(value)}).cooldown == value


@pytest.mark.parametrize(
    ("election", "message"),
    [
        ({"lease_duration": "10s", "renew_deadline": "10s"}, "lease_duration > renew_deadline"),
        ({"retry_period": "500ms", "renew_deadline": "2s", "lease_duration": "3s"}, "retry_period >= 1s"),
        ({"lease_duration": "15.5s"}, "whole seconds"),
    ],
)
def test_leader_election_timings_are_checked(election: dict[str, Any], message: str) -> None:
    error = config_error(minimal() | {"leader_election": {"enabled": True, **election}})
    assert error.startswith("leader_election: ") and message in error


# -- one secret, one role --


def _auth_document(tmp_path: Path, values: dict[str, str]) -> dict[str, Any]:
    """A configuration whose every credential lives in its own secret file, with the given values."""
    directory = tmp_path / "role-secrets"
    directory.mkdir(exist_ok=True)
    for name, value in values.items():
        (directory / name).write_text(value + "\n")
    ref = {name: {"file": str(directory / name)} for name in values}
    return minimal() | {
        "auth": {
            "webhook": {
                "bearer_tokens": [ref["webhook"], ref["webhook-next"]],
                "basic": {"username": "alertmanager", "password": ref["basic"]},
            },
            "admin_token": ref["admin"],
            "read_token": ref["read"],
        }
    }


DISTINCT = {"webhook": "wh-1", "webhook-next": "wh-2", "basic": "basic-3", "admin": "admin-4", "read": "read-5"}


@pytest.mark.parametrize(
    ("same", "fields"),
    [
        (("admin", "webhook"), ("auth.admin_token", "auth.webhook.bearer_tokens.0")),
        (("admin", "webhook-next"), ("auth.admin_token", "auth.webhook.bearer_tokens.1")),
        (("admin", "basic"), ("auth.admin_token", "auth.webhook.basic.password")),
        (("read", "admin"), ("auth.read_token", "auth.admin_token")),
        (("read", "webhook"), ("auth.read_token", "auth.webhook.bearer_tokens.0")),
        (("read", "webhook-next"), ("auth.read_token", "auth.webhook.bearer_tokens.1")),
        (("read", "basic"), ("auth.read_token", "auth.webhook.basic.password")),
    ],
    ids=[
        "admin=webhook",
        "admin=webhook-next",
        "admin=basic",
        "read=admin",
        "read=webhook",
        "read=webhook-next",
        "read=basic",
    ],
)
def test_one_secret_for_two_roles_is_refused_naming_both_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], same: tuple[str, str], fields: tuple[str, str]
) -> None:
    """A webhook credential sits in Alertmanager's configuration: if it were also the admin (or read) token,
    whoever reads that configuration could pause, replay and restore."""
    values = DISTINCT | {same[0]: "shared-secret-value", same[1]: "shared-secret-value"}
    path = write(tmp_path, _auth_document(tmp_path, values))
    assert main(["check-config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "configuration error" in captured.err
    assert all(field in captured.err for field in fields), captured.err
    assert "shared-secret-value" not in captured.err
    with pytest.raises(ConfigError):
        load_settings(path, {})
    assert main(["check-config", "--skip-secrets", str(path)]) == 0  # it cannot see the values


def test_distinct_secrets_for_every_role_load(tmp_path: Path) -> None:
    settings, secrets = load_settings(write(tmp_path, _auth_document(tmp_path, DISTINCT)), {})
    assert secrets.admin_token.get_secret_value() == "admin-4"
    assert secrets.read_token is not None and secrets.read_token.get_secret_value() == "read-5"


def test_body_timeout_defaults_to_ten_seconds_and_must_be_positive() -> None:
    assert parse_settings(minimal()).listen.body_timeout == timedelta(seconds=10)
    listen = {"listen": {"body_timeout": "500ms"}}
    assert parse_settings(minimal() | listen).listen.body_timeout == timedelta(milliseconds=500)
    assert config_error(minimal() | {"listen": {"body_timeout": 0}}).startswith("listen.body_timeout: ")


def test_a_delegate_target_owns_no_routing_and_no_stable_guard() -> None:
    """Flagger and Argo Rollouts own the canary's routing: a traffic object or an Ingress given with a delegate
    would never be used, so the file is refused rather than half obeyed."""
    for delegate in ("flagger", "argo-rollouts"):
        document = minimal()
        document["targets"] = [{"name": "d", "deployment": "{app}", "delegate": delegate, "ingress": "{app}-canary"}]
        assert f"delegate: {delegate} owns the canary's routing: drop ['ingress']" in config_error(document)
        document["targets"] = [{"name": "d", "deployment": "{app}", "delegate": delegate}]
        [rule] = parse_settings(document).core().targets
        assert (rule.traffic, rule.stable, rule.delegate) == ((), "", delegate)
    document = minimal()
    document["targets"] = [{"name": "d", "delegate": "spinnaker"}]
    assert "delegate" in config_error(document)
