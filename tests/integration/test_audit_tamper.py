"""Tampering with the audit log is caught: a real responder records a history (receipts, alerts, decisions, a
rollback), stops, and the database is then edited with its own driver the way an intruder with access would (the
SQLite file with sqlite3, the shared PostgreSQL with psycopg). ``canary-responder audit verify`` must exit 1 naming
the entry, where the untouched database verifies (exit 0). Every test runs on both backends.

Only the tampering uses a database driver; every answer is read through the CLI or the HTTP API."""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from backends import Backend
from support import READ_TOKEN, alert, bearer, notification, running_responder, write_config

from responder.cli.main import main
from responder.store import entry_hash
from responder.testing.emulator import Emulator

HMAC_KEY = "audit-hmac-key-9b1f0c7e54d2a8e3"
HISTORY = [
    notification(alert()),  # rollback: receipt, alert, decision, rollback.intent, actions, rollback.result
    notification(alert("CanaryMemoryHigh", app="payments", action="notify")),
    notification(alert(status="resolved")),
]


@dataclass(frozen=True)
class History:
    config: Path
    backend: Backend
    keyed: bool
    length: int  # the head as monitoring saw it (GET /api/v1/status)
    head: str

    @property
    def db(self) -> Path:
        return self.backend.db

    def source(self) -> list[str]:
        """Where the CLI reads the chain: an HMAC chain needs its key, so the configuration; the shared database
        is named by the configuration (its DSN is a secret)."""
        if self.keyed or self.backend.shared:
            return ["--config", str(self.config)]
        return ["--db", str(self.db)]

    def without_key(self) -> History:
        """The same database read without the HMAC key (SQLite: the file itself; PostgreSQL: a configuration
        without the key)."""
        if not self.backend.shared:
            return History(self.config, self.backend, False, self.length, self.head)
        directory = self.config.parent / "keyless"
        directory.mkdir(exist_ok=True)
        keyless = Backend(self.backend.name, directory, dsn=self.backend.dsn)
        return History(write_config(directory, storage=keyless.storage()), keyless, False, self.length, self.head)


@pytest.fixture
def verify(capsys: pytest.CaptureFixture[str]) -> Any:
    def run(history: History, *args: str) -> tuple[int, str, str]:
        code = main(["audit", "verify", *history.source(), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


async def record_history(
    backend: Backend, kube_url: str, *, keyed: bool = False, payloads: list[dict[str, Any]] = HISTORY
) -> History:
    tmp_path = backend.tmp_path
    storage = backend.storage()
    if keyed:
        (tmp_path / "hmac-key").write_text(HMAC_KEY + "\n")
        storage["audit_hmac_key"] = {"file": str(tmp_path / "hmac-key")}
    config = write_config(tmp_path, kube_url=kube_url, storage=storage)
    async with running_responder(config) as running:
        await post_and_drain(running.session, running.url, running.services, payloads)
        audit = (await status(running.session, running.url))["audit"]
    return History(config, backend, keyed, audit["length"], audit["head"])


async def post_and_drain(session: Any, url: str, services: Any, payloads: list[dict[str, Any]]) -> None:
    for payload in payloads:
        async with session.post(f"{url}/api/v1/alerts", json=payload, headers=bearer()) as response:
            assert response.status == 200
    await services.engine.drain()


async def status(session: Any, url: str) -> dict[str, Any]:
    async with session.get(f"{url}/api/v1/status", headers=bearer(READ_TOKEN)) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


def seq_of(history: History, conn: Any, kind: str, **data: str) -> int:
    """The first entry of ``kind`` whose data has these values (entry order depends on timing)."""
    where = "".join(f" AND {history.backend.json('data', field)} = ?" for field in data)
    row = conn.execute(f"SELECT min(seq) FROM audit WHERE kind = ?{where}", (kind, *data.values())).fetchone()
    assert row[0] is not None, (kind, data)
    return int(row[0])


def rehash_from(conn: Any, first: int) -> None:
    """What an intruder without the key does after an edit: recompute plain SHA-256 from there to the end."""
    rows = conn.execute(
        "SELECT seq, ts, kind, target, actor, data FROM audit WHERE seq >= ? ORDER BY seq", (first,)
    ).fetchall()
    prev = conn.execute("SELECT hash FROM audit WHERE seq = ?", (first - 1,)).fetchone()[0]
    for seq, ts, kind, target, actor, data in rows:
        body = {"seq": seq, "ts": ts, "kind": kind, "target": target, "actor": actor, "data": orjson.loads(data)}
        digest = entry_hash(prev, body, None)
        conn.execute("UPDATE audit SET prev = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
        prev = digest


def edit_decision(history: History, conn: Any) -> int:
    """The rollback decision now says it only notified."""
    seq = seq_of(history, conn, "decision", outcome="rollback")
    if history.backend.shared:
        edit = "jsonb_set(data::jsonb, '{outcome}', '\"notify\"')::text"
    else:
        edit = "json_set(data, '$.outcome', 'notify')"
    conn.execute(f"UPDATE audit SET data = {edit} WHERE seq = ?", (seq,))
    return seq


def assert_broken(result: tuple[int, str, str], *lines: str) -> None:
    code, out, err = result
    assert code == 1 and out == "", (out, err)
    assert err.startswith("audit chain BROKEN"), err
    for line in lines:
        assert re.search(line, err, re.MULTILINE), (line, err)


# -- the untouched history --


@pytest.mark.parametrize("keyed", [False, True], ids=["sha256", "hmac"])
async def test_the_untouched_history_verifies(
    backend: Backend, cluster: tuple[Emulator, str], verify: Any, keyed: bool
) -> None:
    history = await record_history(backend, cluster[1], keyed=keyed)
    assert history.length >= 12  # receipts, alerts, decisions, the rollback's intent, actions and result
    code, out, err = verify(history)
    assert (code, err) == (0, "")
    assert out == f"audit chain OK: {history.length} entries, head {history.head}\n"
    code, out, _ = verify(history, "--expect-head", history.head.upper(), "--expect-length", str(history.length))
    assert code == 0 and out.startswith("audit chain OK")
    assert verify(history, "--expect-head", history.head)[0] == 0
    assert verify(history, "--expect-length", "0", "--expect-head", "0" * 64)[0] == 0  # the genesis


async def test_an_hmac_chain_needs_its_key(backend: Backend, cluster: tuple[Emulator, str], verify: Any) -> None:
    more = [notification(alert(f"CanaryAlert{n}", action="notify")) for n in range(4)]
    history = await record_history(backend, cluster[1], keyed=True, payloads=HISTORY + more)
    assert history.length > 20
    _, _, err = result = verify(history.without_key())
    assert_broken(result, r"^  entry 1: content does not match its hash \(modified\)$")
    lines = err.splitlines()[1:]  # every entry fails; the report keeps the first 20
    assert lines[19] == "  entry 20: content does not match its hash (modified)"
    assert lines[20:] == [f"  ... and {history.length - 20} more problems"]


# -- edited, deleted, reordered and forged entries --


@pytest.mark.parametrize("keyed", [False, True], ids=["sha256", "hmac"])
async def test_an_edited_entry_is_caught(
    backend: Backend, cluster: tuple[Emulator, str], verify: Any, keyed: bool
) -> None:
    history = await record_history(backend, cluster[1], keyed=keyed)
    with history.backend.connect() as conn:
        seq = edit_decision(history, conn)
    assert_broken(verify(history), rf"^  entry {seq}: content does not match its hash \(modified\)$")


async def test_recomputed_hashes_do_not_fool_the_hmac_key(
    backend: Backend, cluster: tuple[Emulator, str], verify: Any
) -> None:
    history = await record_history(backend, cluster[1], keyed=True)
    with history.backend.connect() as conn:
        seq = edit_decision(history, conn)
        rehash_from(conn, seq)  # the edited entry and every later one, linked again
    assert_broken(verify(history), rf"^  entry {seq}: content does not match its hash \(modified\)$")


async def test_without_a_key_recomputed_hashes_are_caught_only_by_the_expected_head(
    backend: Backend, cluster: tuple[Emulator, str], verify: Any
) -> None:
    history = await record_history(backend, cluster[1])
    with history.backend.connect() as conn:
        rehash_from(conn, edit_decision(history, conn))
    # Plain SHA-256 is no secret: a consistent rewrite verifies. This is what storage.audit_hmac_key is for.
    assert verify(history)[0] == 0
    assert_broken(
        verify(history, "--expect-head", history.head, "--expect-length", str(history.length)),
        rf"^  entry {history.length}: hash [0-9a-f]{{64}} is not the expected head {history.head} ",
    )
    assert_broken(verify(history, "--expect-head", history.head), rf"^  expected head {history.head}: not in the chain")


async def test_a_deleted_entry_is_caught(backend: Backend, cluster: tuple[Emulator, str], verify: Any) -> None:
    history = await record_history(backend, cluster[1])
    with history.backend.connect() as conn:
        seq = seq_of(history, conn, "rollback.intent")
        conn.execute("DELETE FROM audit WHERE seq = ?", (seq,))
    assert_broken(
        verify(history),
        rf"^  entry {seq + 1}: expected seq {seq} \(entries deleted or reordered\)$",
        rf"^  entry {seq + 1}: previous-hash link broken$",
    )


async def test_swapped_entries_are_caught(backend: Backend, cluster: tuple[Emulator, str], verify: Any) -> None:
    history = await record_history(backend, cluster[1])
    with history.backend.connect() as conn:
        first, second = seq_of(history, conn, "decision", outcome="rollback"), seq_of(history, conn, "rollback.intent")
        conn.execute("UPDATE audit SET seq = -1 WHERE seq = ?", (first,))
        conn.execute("UPDATE audit SET seq = ? WHERE seq = ?", (first, second))
        conn.execute("UPDATE audit SET seq = ? WHERE seq = -1", (second,))
    assert_broken(
        verify(history),
        rf"^  entry {first}: previous-hash link broken$",
        rf"^  entry {first}: content does not match its hash \(modified\)$",
        rf"^  entry {second}: content does not match its hash \(modified\)$",
    )


async def test_a_forged_entry_is_caught(backend: Backend, cluster: tuple[Emulator, str], verify: Any) -> None:
    history = await record_history(backend, cluster[1])
    with history.backend.connect() as conn:
        after = seq_of(history, conn, "decision", outcome="rollback")
        conn.execute("UPDATE audit SET seq = -(seq + 1) WHERE seq > ?", (after,))  # make room at after + 1
        conn.execute("UPDATE audit SET seq = -seq WHERE seq < 0")
        ts, prev = conn.execute("SELECT ts, hash FROM audit WHERE seq = ?", (after,)).fetchone()
        data = {"alertname": "CanaryHighErrorRate", "outcome": "ignored", "reason": "approved by ops"}
        body = {"seq": after + 1, "ts": ts, "kind": "decision", "target": None, "actor": "admin:mallory", "data": data}
        conn.execute(
            "INSERT INTO audit (seq, ts, kind, target, actor, data, prev, hash) VALUES (?,?,?,?,?,?,?,?)",
            (
                after + 1,
                ts,
                "decision",
                None,
                "admin:mallory",
                orjson.dumps(data).decode(),
                prev,
                entry_hash(prev, body, None),
            ),
        )
    # The forgery itself links and hashes correctly; the entry it pushed aside is the one that no longer fits.
    assert_broken(
        verify(history),
        rf"^  entry {after + 2}: previous-hash link broken$",
        rf"^  entry {after + 2}: content does not match its hash \(modified\)$",
    )


MALFORMED = {
    "data-not-json": ("UPDATE audit SET data = 'not json' WHERE seq = ?", "decision"),
    "data-not-an-object": ("UPDATE audit SET data = '[1]' WHERE seq = ?", "receipt"),
    "prev-a-blob": ("UPDATE audit SET prev = X'00' WHERE seq = ?", "action"),
    "hash-a-blob": ("UPDATE audit SET hash = X'07' WHERE seq = ?", "rollback.intent"),
}


@pytest.mark.parametrize("change", MALFORMED)
async def test_a_malformed_entry_is_reported_not_a_crash(
    backend: Backend, cluster: tuple[Emulator, str], verify: Any, change: str
) -> None:
    if backend.shared and change.endswith("-a-blob"):
        pytest.skip("PostgreSQL's column types refuse a blob in a TEXT column")
    history = await record_history(backend, cluster[1])
    sql, kind = MALFORMED[change]
    with history.backend.connect() as conn:
        seq = seq_of(history, conn, kind)
        conn.execute(sql, (seq,))
    assert_broken(verify(history), rf"^  entry {seq}: not a well-formed entry \(modified\)$")


# -- the raw notifications behind the receipts --


@pytest.mark.parametrize("edit", ["raw", "raw-and-sha256", "raw-as-text"])
async def test_an_edited_raw_notification_is_caught(
    backend: Backend, cluster: tuple[Emulator, str], verify: Any, edit: str
) -> None:
    if backend.shared and edit == "raw-as-text":
        pytest.skip("PostgreSQL's column types refuse text in a BYTEA column")
    history = await record_history(backend, cluster[1])
    with history.backend.connect() as conn:
        raw = bytes(conn.execute("SELECT raw FROM notifications WHERE id = 1").fetchone()[0])
        forged = raw.replace(b'"rollback"', b'"notify"', 1)  # the alert's action label
        assert forged != raw
        conn.execute("UPDATE notifications SET raw = ? WHERE id = 1", (forged,))
        if edit == "raw-and-sha256":  # the receipt in the chain still holds the original digest
            conn.execute("UPDATE notifications SET sha256 = ? WHERE id = 1", (hashlib.sha256(forged).hexdigest(),))
        if edit == "raw-as-text":  # a TEXT value where a BLOB was
            conn.execute("UPDATE notifications SET raw = ? WHERE id = 1", (forged.decode(),))
        receipt = seq_of(history, conn, "receipt")
    assert_broken(verify(history), rf"^  entry {receipt}: raw notification 1 was modified$")


# -- a truncated tail --


async def test_a_truncated_tail_is_caught_only_with_the_expected_head(
    backend: Backend, cluster: tuple[Emulator, str], verify: Any
) -> None:
    history = await record_history(backend, cluster[1])
    with history.backend.connect() as conn:
        conn.execute("DELETE FROM audit WHERE seq > ?", (history.length - 3,))
    # What remains is a valid, shorter chain: recomputing it alone cannot tell that the last entries are gone.
    code, out, _ = verify(history)
    assert code == 0 and out.startswith(f"audit chain OK: {history.length - 3} entries")
    last = history.length - 3
    assert_broken(
        verify(history, "--expect-head", history.head),
        rf"^  expected head {history.head}: not in the chain \(ends at entry {last}; ",
    )
    assert_broken(
        verify(history, "--expect-length", str(history.length)),
        rf"^  entry {history.length}: missing, the chain ends at entry {last} \(the tail was truncated\)$",
    )
    assert_broken(
        verify(history, "--expect-head", history.head, "--expect-length", str(history.length)),
        rf"^  entry {history.length}: missing, the chain ends at entry {last} ",
    )


def test_bad_expectations_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--expect-head", "abc"], ["--expect-head", "g" * 64], ["--expect-length", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["audit", "verify", "--db", str(tmp_path / "responder.db"), *args])
        assert exit_info.value.code == 2
        assert "argument --expect-" in capsys.readouterr().err


# -- the HTTP endpoint, after a restart on the tampered file --


async def test_the_endpoint_answers_409_after_a_restart_on_a_tampered_chain(
    backend: Backend, cluster: tuple[Emulator, str]
) -> None:
    history = await record_history(backend, cluster[1])
    with history.backend.connect() as conn:
        conn.execute("UPDATE audit SET actor = 'admin:mallory' WHERE seq = ?", (history.length,))  # the head
    async with running_responder(history.config) as running:
        # The store took its head from the edited last entry and keeps appending to it.
        await post_and_drain(running.session, running.url, running.services, [notification(alert(app="payments"))])
        assert (await status(running.session, running.url))["audit"]["length"] > history.length
        code, body = await get_verify(running, "")
    assert code == 409 and body["ok"] is False
    assert body["problems"] == [f"entry {history.length}: content does not match its hash (modified)"]


async def test_the_endpoint_catches_a_truncated_tail_with_the_expected_head(
    backend: Backend, cluster: tuple[Emulator, str], capsys: pytest.CaptureFixture[str]
) -> None:
    history = await record_history(backend, cluster[1])
    with history.backend.connect() as conn:
        conn.execute("DELETE FROM audit WHERE seq > ?", (history.length - 3,))
    length = f"expect_length={history.length}"
    async with running_responder(history.config) as running:
        # The restarted store continues from the truncated head, so entry `length` exists again, with another hash.
        await post_and_drain(running.session, running.url, running.services, [notification(alert(app="payments"))])
        assert (await status(running.session, running.url))["audit"]["length"] >= history.length
        assert (await get_verify(running, ""))[0] == 200
        assert (await get_verify(running, f"?{length}"))[0] == 200  # the length alone no longer tells
        code, body = await get_verify(running, f"?expect_head={history.head}&{length}")
        assert code == 409 and body["ok"] is False and len(body["problems"]) == 1
        assert re.fullmatch(
            rf"entry {history.length}: hash [0-9a-f]{{64}} is not the expected head {history.head} \(truncated and"
            r" rewritten\)",
            body["problems"][0],
        )
        code, body = await get_verify(running, f"?expect_head={history.head}")
        assert code == 409 and body["problems"][0].startswith(f"expected head {history.head}: not in the chain")
        for query, field in (("?expect_head=abc", "expect_head"), ("?expect_length=-1", "expect_length")):
            code, body = await get_verify(running, query)
            assert (code, body["error"], body["errors"][0]["path"]) == (400, "invalid_query", field)
        code, body = await get_verify(running, "?expect_heads=1")
        assert (code, body["error"]) == (400, "invalid_query")

        token = backend.tmp_path / "read-token"
        token.write_text(READ_TOKEN)
        server = ["--server", running.url, "--token-file", str(token)]
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["audit", "verify", *server, "--expect-head", history.head])
        out, _ = capsys.readouterr()
        assert code == 1 and f"  expected head {history.head}: not in the chain" in out
        assert await asyncio.to_thread(main, ["audit", "verify", *server]) == 0


async def get_verify(running: Any, query: str) -> tuple[int, dict[str, Any]]:
    async with running.session.get(f"{running.url}/api/v1/audit/verify{query}", headers=bearer(READ_TOKEN)) as response:
        body: dict[str, Any] = await response.json()
        return response.status, body
