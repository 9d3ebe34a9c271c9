"""Hypothesis strategies for hostile webhook input: valid Alertmanager v4 notifications at the edges of what the
schema allows (huge label sets, unicode everywhere, nine-digit fractions, extreme timestamps, duplicate alerts,
empty strings, deeply nested unknown fields) and mutations of them that must be refused, each with the status
code the responder must answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

Document = dict[str, Any]
NOT_ALLOWED_NAMESPACES = [
    "kube-system",
    "default",
    "prod",
    "shop-2",
    "Shop",
    "ｓｈｏｐ",
    "",
    "shop\u200b",
    "pay/../shop",
]

# Any unicode except surrogates (not encodable as UTF-8); NUL and controls included on purpose.
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
label_names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
label_values = st.one_of(st.just(""), text)
refused_namespaces = st.sampled_from(NOT_ALLOWED_NAMESPACES)  # valid input here must never act either


def label_sets(max_size: int = 256) -> st.SearchStrategy[dict[str, str]]:
    return st.one_of(
        st.dictionaries(label_names, label_values, max_size=8),
        st.dictionaries(label_names, label_values, min_size=max_size - 16, max_size=max_size),  # huge label sets
    )


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """RFC 3339 with an offset, inside the accepted range (1970 to 2262-04-11, what an int64 of nanoseconds
    holds), zero to nine fractional digits."""
    year = draw(st.one_of(st.sampled_from([1970, 1971, 2026, 2261, 2262]), st.integers(1970, 2262)))
    # the first month of 1970 and the months from April 2262 on could leave the range with an offset or a day:
    # that is the invalid case (BAD_TIMESTAMPS), not this one
    month = draw(st.integers(2 if year == 1970 else 1, 3 if year == 2262 else 12))
    stamp = (
        f"{year:04d}-{month:02d}-{draw(st.integers(1, 28)):02d}"
        f"T{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}:{draw(st.integers(0, 59)):02d}"
    )
    digits = draw(st.integers(0, 9))
    if digits:
        stamp += "." + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=digits, max_size=digits)))
    offset = draw(st.sampled_from(["Z", "z", "+00:00", "+01:00", "-12:00", "+14:00", "+05:45"]))
    return stamp + offset


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False), text
)


@st.composite
def deep_values(draw: st.DrawFn) -> Any:
    """Unknown fields as real Alertmanagers might add them, nested up to 200 levels (orjson reads 1024)."""
    value: Any = draw(json_scalars)
    for _ in range(draw(st.sampled_from([0, 1, 3, 50, 200]))):
        value = [value] if draw(st.booleans()) else {draw(text): value}
    return value


fingerprints = st.from_regex(r"\A[A-Za-z0-9_-]{1,128}\Z")


@st.composite
def alerts(draw: st.DrawFn) -> Document:
    labels = draw(label_sets(max_size=252))  # four more below: at most 256 in all
    labels.update(alertname=draw(text), namespace=draw(refused_namespaces), app=draw(text), action="rollback")
    alert: Document = {
        "status": draw(st.sampled_from(["firing", "resolved"])),
        "labels": labels,
        "annotations": draw(label_sets(max_size=220)),
        "startsAt": draw(timestamps()),
        "fingerprint": draw(fingerprints),
    }
    optional = {
        "endsAt": st.one_of(st.none(), st.just("0001-01-01T00:00:00Z"), timestamps()),
        "generatorURL": text,
        draw(text.filter(lambda k: k not in alert)): deep_values(),  # a future field
    }
    for key, values in optional.items():
        if draw(st.booleans()):
            alert[key] = draw(values)
    return alert


@st.composite
def notifications(draw: st.DrawFn) -> Document:
    """A valid notification (the responder must answer 200 if it fits the body limit)."""
    batch = draw(st.lists(alerts(), min_size=1, max_size=3))
    if draw(st.booleans()):
        batch = batch * draw(st.integers(2, 4))  # duplicate alerts in one notification
    document: Document = {
        "version": "4",
        "groupKey": draw(text),
        "truncatedAlerts": draw(st.one_of(st.just(0), st.integers(0, 2**31), st.just(2**63 - 1))),
        "status": draw(st.sampled_from(["firing", "resolved"])),
        "receiver": draw(st.one_of(st.just(""), text, st.just("canary\\.responder"))),
        "groupLabels": draw(label_sets(max_size=16)),
        "commonLabels": draw(label_sets(max_size=16)),
        "commonAnnotations": draw(label_sets(max_size=16)),
        "externalURL": draw(text),
        "alerts": batch,
    }
    for _ in range(draw(st.integers(0, 2))):
        document[draw(text.filter(lambda k: k not in document))] = draw(deep_values())
    return document


# -- probes: bytes on the wire and the answer they must get --


@dataclass(frozen=True)
class Probe:
    body: bytes
    expected: int  # 200 accepted, or the 4xx the input deserves
    kind: str
    content_type: str = "application/json"

    @property
    def valid(self) -> bool:
        return self.expected == 200


Mutation = Callable[[Document], object]


def _pop(*path: str | int) -> Mutation:
    def mutate(document: Document) -> None:
        target: Any = document
        for key in path[:-1]:
            target = target[key]
        target.pop(path[-1])

    return mutate


def _set(value: Any, *path: str | int) -> Mutation:
    def mutate(document: Document) -> None:
        target: Any = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


BAD_TIMESTAMPS = [
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    "0001-01-01T00:00:00Z",  # the zero time: "still firing" for endsAt, never a start
    "1969-12-31T23:59:59Z",  # before the accepted range
    "1970-01-01T00:00:00+00:01",
    "2262-04-11T23:47:17Z",  # after it (an int64 of nanoseconds)
    "9999-12-31T23:59:59Z",
    "10000-01-01T00:00:00Z",
    "2026-11-27T12:00:00",  # no offset
    "2026-13-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "",
    "yesterday",
]
SCHEMA_MUTATIONS: dict[str, Mutation] = {
    "missing version": _pop("version"),
    "missing groupKey": _pop("groupKey"),
    "missing status": _pop("status"),
    "missing receiver": _pop("receiver"),
    "missing alerts": _pop("alerts"),
    "missing alert status": _pop("alerts", 0, "status"),
    "missing labels": _pop("alerts", 0, "labels"),
    "missing startsAt": _pop("alerts", 0, "startsAt"),
    "missing fingerprint": _pop("alerts", 0, "fingerprint"),
    "version 4 as a number": _set(4, "version"),
    "version 3": _set("3", "version"),
    "status pending": _set("pending", "status"),
    "alert status pending": _set("pending", "alerts", 0, "status"),
    "groupKey a number": _set(7, "groupKey"),
    "receiver null": _set(None, "receiver"),
    "alerts empty": _set([], "alerts"),
    "alerts an object": _set({"0": {}}, "alerts"),
    "alert a string": _set("alert", "alerts", 0),
    "labels a list": _set([["a", "b"]], "alerts", 0, "labels"),
    "label value a number": _set(7, "alerts", 0, "labels", "app"),
    "label value null": _set(None, "alerts", 0, "labels", "app"),
    "label value too long": _set("x" * 8193, "alerts", 0, "labels", "app"),
    "empty label name": _set("v", "alerts", 0, "labels", ""),
    "overlong label name": _set("v", "alerts", 0, "labels", "n" * 257),
    "too many labels": lambda d: d["alerts"][0]["labels"].update({f"l{i}": "v" for i in range(257)}),
    "empty fingerprint": _set("", "alerts", 0, "fingerprint"),
    "unicode fingerprint": _set("ﬁngerprint", "alerts", 0, "fingerprint"),
    "overlong fingerprint": _set("f" * 129, "alerts", 0, "fingerprint"),
    "negative truncatedAlerts": _set(-1, "truncatedAlerts"),
    "fractional truncatedAlerts": _set(1.5, "truncatedAlerts"),
    "truncatedAlerts a word": _set("many", "truncatedAlerts"),
    "truncatedAlerts past SQLite INTEGER": _set(2**63, "truncatedAlerts"),
    "endsAt past the range": _set("2262-04-11T23:47:17Z", "alerts", 0, "endsAt"),
    "endsAt before the range": _set("1969-12-31T23:59:59Z", "alerts", 0, "endsAt"),
    **{f"startsAt {value!r}": _set(value, "alerts", 0, "startsAt") for value in BAD_TIMESTAMPS},
    "endsAt a list": _set([], "alerts", 0, "endsAt"),  # (a number is a Unix time to pydantic: valid)
    "annotations a string": _set("summary", "alerts", 0, "annotations"),
}
NOT_NOTIFICATIONS = [b"[]", b"null", b"42", b'"4"', b"true", b"[{}]", b"{}", b'{"n": 123456789012345678901234567890}']
NOT_JSON = [
    b"",
    b"{",
    b'{"version": "4",',
    b"\xff\xfe{}",
    b'{"version": NaN}',
    b"{'version': '4'}",
    b'{"n": 1e999999}',
    b"[" * 1100 + b"]" * 1100,
]


def dump(document: Any) -> bytes:
    return orjson.dumps(document)


@st.composite
def hostile_probes(draw: st.DrawFn, *, body_limit: int) -> Probe:
    """A valid notification, or one broken in a way that must be refused, with the answer it deserves."""
    document = draw(notifications())
    kind = draw(st.sampled_from(["valid", "valid", "schema", "schema", "not-an-object", "not-json", "media", "size"]))
    if kind == "valid":
        body, expected = dump(document), 200
    elif kind == "schema":
        name = draw(st.sampled_from(sorted(SCHEMA_MUTATIONS)))
        SCHEMA_MUTATIONS[name](document)
        body, expected, kind = dump(document), 422, name
    elif kind == "not-an-object":
        body, expected = draw(st.sampled_from(NOT_NOTIFICATIONS)), 422
    elif kind == "not-json":
        body, expected = draw(st.sampled_from(NOT_JSON)), 400
    elif kind == "media":
        media = draw(st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "application/jsonx", ""]))
        return Probe(dump(document), 415, kind, content_type=media)
    else:
        body, expected = dump(document) + b" " * body_limit, 413
    if len(body) > body_limit:
        expected = 413
    return Probe(body, expected, kind)
