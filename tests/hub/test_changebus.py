"""The change bus's notifications: every name arrives, each payload fits PostgreSQL's limit, strangers are ignored."""

from __future__ import annotations

from oaiod.hub.changebus import PAYLOAD_BYTES, parse_payload, payloads


def test_many_long_names_are_split_over_payloads_that_fit() -> None:
    names = {f"{'ü' * 140}{number:05}" for number in range(300)}  # multi-byte names: the limit is in bytes
    sent = list(payloads("20261203120000000000", "me", names))
    assert len(sent) > 1 and all(len(payload.encode()) <= PAYLOAD_BYTES for payload in sent)
    parsed = [parse_payload(payload) for payload in sent]
    assert all(item is not None and item[:2] == ("20261203120000000000", "me") for item in parsed)
    assert set().union(*(item[2] for item in parsed if item is not None)) == names


def test_a_notification_that_is_not_ours_is_ignored() -> None:
    for stranger in ("", "stop abc", "[]", '{"s": 1, "p": "x", "u": []}', '{"s": "1", "p": "x"}'):
        assert parse_payload(stranger) is None
    assert parse_payload('{"s": "1", "p": "x", "u": ["a", 2]}') == ("1", "x", frozenset({"a"}))
