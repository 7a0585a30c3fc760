"""Every kind of bad input, sent over a real socket to the real binary.

Each must be quarantined (or counted as duplicate/stale) with a reason a
person understands, every valid event beside it stored, and the process
must keep running.
"""
import json

from conftest import event, wait_for

GOOD = json.dumps(event("x"))

# (name, frames, reject code, phrase of the reason)
BAD = [
    ("invalid json", [b'{"event_id": nope}'], "invalid_json", "invalid JSON at byte"),
    ("truncated frame", [GOOD[:40].encode()], "invalid_json", "truncated"),
    ("empty frame", [b""], "empty_frame", "empty frame"),
    ("json scalar", [b"42"], "not_object", "holds a number"),
    ("wrong type", [json.dumps(event("w", rating="five")).encode()], "wrong_type",
     "'rating' must be an integer, got a string"),
    ("missing field", [json.dumps({"event_id": "m", "ts": "2026-03-01T10:00:00Z",
                                   "sentiment": {"label": "neutral"}}).encode()],
     "missing_field", "missing required field 'category'"),
    ("out of range", [json.dumps(event("o", confidence=3)).encode()], "out_of_range",
     "'confidence' must be a number from 0 to 1, got 3"),
    ("NaN", [GOOD[:-1].encode() + b', "urgency": NaN}'], "not_finite", "NaN and Infinity"),
    ("Infinity", [GOOD[:-1].encode() + b', "urgency": 1e999}'], "not_finite",
     "not a finite number"),
    ("not rfc3339", [json.dumps(event("t", ts="yesterday")).encode()], "bad_time",
     "not an RFC 3339 date-time: 'yesterday'"),
    ("invalid utf-8", [GOOD[:-1].encode() + b', "text": "caf\xc3\x28"}'], "invalid_utf8",
     "invalid UTF-8 at byte"),
    ("deeply nested", [GOOD[:-1].encode() + b', "x": ' + b"[" * 100 + b"]" * 100 + b"}"],
     "too_deep", "nested deeper than 32 levels"),
    ("very deeply nested", [b"[" * 3000 + b"]" * 3000], "too_deep", "nested deeper"),
    ("over the size cap", [GOOD[:-1].encode() + b', "text": "' + b"a" * 9000 + b'"}'],
     "too_large", "exceeds the 8192-byte limit"),
    ("duplicate keys", [GOOD[:-1].encode() + b', "category": "billing"}'], "duplicate_key",
     "'category' appears twice"),
    ("three frames", [b"feedback", GOOD.encode(), b"extra"], "bad_frames",
     "message has 3 frames"),
    ("empty array", [b"[]"], "empty_array", "empty array"),
    ("bad enum", [json.dumps(event("b", channel="fax")).encode()], "bad_enum",
     "must be one of review, support"),
    # One event from the future would move the rules' clock past all the others.
    ("from the future", [json.dumps(event("f", ts="2099-03-01T10:00:00Z")).encode()],
     "future_time", "days ahead of this machine's clock; ingest.max_future allows 5 minutes"),
]


def test_each_bad_input_is_quarantined_with_its_reason(agent_factory):
    # A small cap so that "over the size cap" is cheap to send.
    a = agent_factory(ingest_extra="  max_message_bytes: 8KiB\n").start()
    for i, (name, frames, _, _) in enumerate(BAD):
        a.send_event(event(f"before-{i}"))
        a.send(*frames)
    a.send_event(event("last"))
    a.wait_event("last")
    wait_for(lambda: a.scalar("SELECT count(*) FROM quarantine") >= len(BAD),
             what="all rejections stored")
    rows = a.query("SELECT code, reason FROM quarantine ORDER BY id")
    assert len(rows) == len(BAD), rows
    for (name, _, code, phrase), (got_code, reason) in zip(BAD, rows):
        assert got_code == code, f"{name}: {got_code} {reason}"
        assert phrase in reason, f"{name}: {reason!r} lacks {phrase!r}"
    # Every valid event beside the bad ones was stored.
    for i in range(len(BAD)):
        assert a.has_event(f"before-{i}"), f"before-{i} lost"
    assert a.alive()
    # The log says what was quarantined, and stats agrees with the table.
    assert "quarantined invalid_json" in a.log_text()
    a.stop()
    assert a.counter("quarantined") == len(BAD)


def test_quarantine_keeps_capped_raw_bytes_and_size(agent_factory):
    a = agent_factory(store_extra="  quarantine_raw_max: 100\n").start()
    payload = b"{" + b"x" * 5000
    a.send(payload)
    wait_for(lambda: a.scalar("SELECT count(*) FROM quarantine") == 1)
    size, raw = a.query("SELECT size, raw FROM quarantine")[0]
    assert size == len(payload)
    assert raw == payload[:100]


def test_array_mixing_good_and_bad(agent):
    frame = json.dumps([event("arr-1"), {"event_id": "arr-2"}, event("arr-3", rating=9),
                        7, event("arr-5")])
    agent.send(frame)
    agent.wait_event("arr-5")
    assert agent.has_event("arr-1") and agent.has_event("arr-5")
    reasons = [r for (r,) in agent.query("SELECT reason FROM quarantine ORDER BY id")]
    assert reasons == [
        "element 1: missing required field 'ts'",
        "element 2: field 'rating' must be an integer from 1 to 5, got 9",
        "element 3 is a number, not an event object",
    ]
    # A quarantined element keeps its own JSON, not the whole frame.
    raw = agent.scalar("SELECT raw FROM quarantine ORDER BY id LIMIT 1")
    assert json.loads(raw) == {"event_id": "arr-2"}


def test_duplicates_and_stale_revisions_are_counted_not_stored(agent):
    agent.send_event(event("d", revision=1, category="shipping"))
    agent.send_event(event("d", revision=1, category="shipping"))      # duplicate
    agent.send_event(event("d", revision=0, category="sizing"))        # stale
    agent.send_event(event("d", revision=3, category="billing"))       # supersedes
    agent.send_event(event("d", revision=2, category="packaging"))     # stale
    agent.send_event(event("end"))
    agent.wait_event("end")
    agent.stop()
    assert agent.query("SELECT revision, category FROM events WHERE event_id='d'") == [
        (3, "billing")]
    assert agent.counter("events_duplicate") == 1
    assert agent.counter("events_stale") == 2
    assert agent.counter("events_superseded") == 1
    assert agent.counter("events_new") == 2


def test_unknown_fields_are_kept(agent):
    agent.send_event(event("u", extra={"nested": [1, 2]}, vendor_score=0.3))
    agent.wait_event("u")
    body = json.loads(agent.scalar("SELECT body FROM events WHERE event_id='u'"))
    assert body["extra"] == {"nested": [1, 2]}
    assert body["vendor_score"] == 0.3
