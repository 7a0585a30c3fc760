"""The rules in the daemon: incidents from a live stream, kept across a restart.

A restart in the middle of the stream must give exactly the incidents an
uninterrupted run gives (the rules' state is checkpointed at stop and every
engine.checkpoint, and the events stored since are replayed after a crash),
and both must agree with `voca backtest` over the same feed.
"""
import datetime
import json
import os
import re
import sqlite3
import subprocess
import time

import signal

from conftest import VOCA, event, run_voca, wait_for

EXAMPLE = os.path.join(os.path.dirname(__file__), "../../packaging/voca.example.yaml")


def rules_sections():
    text = open(EXAMPLE).read()
    return text[text.index("\nengine:") + 1:]


def incidents(agent):
    return agent.query("SELECT rule, key, opened_ms, status, resolved_ms, firings "
                       "FROM incidents ORDER BY id")


def accounted(a):
    return sum(a.counter(c) or 0 for c in ("events_new", "events_duplicate",
                                           "events_superseded", "events_stale"))


def iso_ms(text):
    """A backtest time ("2026-01-15T15:00:00.000Z") in ms since the epoch."""
    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(t.timestamp() * 1000)


def publish(agent, path):
    r = run_voca("publish", "-s", "push", "-e", agent.endpoint, "--frames", "1", "-q", path)
    assert r.returncode == 0, r.stderr


def halves(tmp_path, seed, days):
    """A simulated feed, its line count and its two halves' files and size."""
    feed = tmp_path / "feed.jsonl"
    r = run_voca("simulate", "--seed", str(seed), "--days", str(days), "-o", str(feed))
    assert r.returncode == 0, r.stderr
    lines = feed.read_text().splitlines(keepends=True)
    half = len(lines) // 2
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text("".join(lines[:half]))
    second.write_text("".join(lines[half:]))
    return feed, len(lines), first, second, half


def uninterrupted(agent_factory, feed, n, extra):
    """An agent that took the whole feed in one run, stopped."""
    whole = agent_factory(extra=extra).start()
    publish(whole, str(feed))
    wait_for(lambda: accounted(whole) == n, timeout=60, what="the whole feed")
    whole.stop()
    return whole


def test_restart_mid_stream_gives_the_same_incidents(agent_factory, tmp_path):
    feed, n, first, second, half = halves(tmp_path, 4, 28)
    whole = uninterrupted(agent_factory, feed, n, rules_sections())

    split = agent_factory(extra=rules_sections()).start()
    publish(split, str(first))
    wait_for(lambda: accounted(split) == half, timeout=60, what="the first half")
    split.stop()  # SIGTERM: commits the events and the rules' state together
    assert split.scalar("SELECT count(*) FROM rule_state", db=split.rules_db) > 0
    assert split.scalar("SELECT value FROM meta WHERE name = 'rowid'", db=split.rules_db) == \
        split.scalar("SELECT max(rowid) FROM events")
    split.start()
    assert "restored" in split.log_text()
    publish(split, str(second))
    wait_for(lambda: accounted(split) == n, timeout=60, what="the second half")
    split.stop()

    a, b = incidents(whole), incidents(split)
    assert len(a) >= 10, a
    assert a == b
    # The same as the backtest over the file.
    r = run_voca("backtest", "-c", str(whole.config), "--json", str(feed))
    assert r.returncode == 0, r.stderr
    bt = sorted((i["rule"], i["key"]) for i in json.loads(r.stdout)["incidents"])
    assert bt == sorted((rule, key) for rule, key, *_ in a)
    # What a person would hear of is logged, and the review queue is kept.
    assert whole.scalar("SELECT count(*) FROM incident_changes WHERE change = 'opened'") == len(a)
    assert whole.scalar("SELECT count(*) FROM review_queue") > 0
    # One row per report, re-scored ones too (the simulator re-scores 1%).
    assert whole.scalar("SELECT count(*) FROM review_queue") == \
        json.loads(r.stdout)["review"] == whole.counter("review_queued")
    assert "incident 1 opened: tier" in whole.log_text()


def test_state_kept_in_the_store_by_an_earlier_version_moves_to_its_own_file(agent_factory,
                                                                             tmp_path):
    """Earlier versions kept the rules' state in the store's file. Started on
    such a file, voca restores it from there, writes it all to the state file
    and drops the store's copy: the incidents are an uninterrupted run's."""
    feed, n, first, second, half = halves(tmp_path, 4, 28)
    whole = uninterrupted(agent_factory, feed, n, rules_sections())

    old = agent_factory(extra=rules_sections()).start()
    publish(old, str(first))
    wait_for(lambda: accounted(old) == half, timeout=60, what="the first half")
    old.stop()
    # Back to the earlier layout: the records and the position in the store only.
    saved = old.query("SELECT rule, key, blob FROM rule_state", db=old.rules_db)
    assert len(saved) > 100
    con = sqlite3.connect(old.db)
    con.executemany("INSERT INTO rule_state(rule, key, blob) VALUES(?, ?, ?)", saved)
    con.commit()
    con.close()
    for suffix in ("", "-wal", "-shm"):
        path = old.rules_db.with_name(old.rules_db.name + suffix)
        if path.exists():
            path.unlink()

    old.start()
    assert f"restored {len(saved)} saved records from" in old.log_text()
    assert "moved the saved state" in old.log_text()
    assert "replayed" not in old.log_text()
    assert old.scalar("SELECT count(*) FROM rule_state") == 0
    assert old.scalar("SELECT count(*) FROM rule_state", db=old.rules_db) == len(saved)
    publish(old, str(second))
    wait_for(lambda: accounted(old) == n, timeout=60, what="the second half")
    old.stop()
    assert incidents(old) == incidents(whole)


def test_a_state_file_ahead_of_the_store_starts_the_rules_over(agent_factory, tmp_path):
    """The state file must never cover events the store does not have (the
    store's WAL is flushed before each checkpoint). If it does anyway (here:
    the store's copy of the position set back, as a lost commit would), the
    rules drop the state and replay every stored event: same incidents, none
    twice."""
    feed, n, *_ = halves(tmp_path, 4, 28)
    a = uninterrupted(agent_factory, feed, n, rules_sections())
    before = incidents(a)
    changes = a.scalar("SELECT count(*) FROM incident_changes")
    con = sqlite3.connect(a.db)
    con.execute("UPDATE meta SET value = 1 WHERE name = 'rules_checkpoint'")
    con.commit()
    con.close()

    a.start()
    log = a.log_text()
    assert "starting the rules over from every stored event" in log
    assert f"replayed {a.scalar('SELECT count(*) FROM events')} events" in log
    a.stop()
    assert incidents(a) == before
    assert a.scalar("SELECT count(*) FROM incident_changes") == changes


def test_sigterm_while_streaming_checkpoints_every_stored_event(agent_factory, tmp_path):
    """The rules run on their own thread: a stop mid-stream must still leave
    a checkpoint that covers every event the ingest committed, so the next
    start has nothing to replay, and the incidents end as the backtest's."""
    feed = tmp_path / "feed.jsonl"
    r = run_voca("simulate", "--seed", "4", "--days", "28", "-o", str(feed))
    assert r.returncode == 0, r.stderr
    lines = feed.read_text().count("\n")

    a = agent_factory(extra=rules_sections()).start()
    # 20,000 events a second: the stop lands mid-stream, 2-4 s in.
    sender = subprocess.Popen([VOCA, "publish", "-s", "push", "-e", a.endpoint, "--frames", "1",
                               "-r", "20000", "-q", str(feed)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: accounted(a) > lines // 3, timeout=60, what="a third of the feed")
        a.stop()  # SIGTERM with the publisher still sending
    finally:
        sender.kill()
        sender.wait()
    before, stored = accounted(a), a.scalar("SELECT count(*) FROM events")
    assert lines // 3 < before < lines
    assert a.scalar("SELECT value FROM meta WHERE name = 'rules_checkpoint'") == \
        a.scalar("SELECT max(rowid) FROM events")

    a.start()
    assert "replayed" not in a.log_text()
    publish(a, str(feed))  # again: what was stored comes back as duplicates
    wait_for(lambda: accounted(a) == before + lines, timeout=60, what="the feed again")
    assert a.scalar("SELECT count(*) FROM events") > stored
    a.stop()
    r = run_voca("backtest", "-c", str(a.config), "--json", str(feed))
    assert r.returncode == 0, r.stderr
    bt = sorted((i["rule"], i["key"], i["opened"]) for i in json.loads(r.stdout)["incidents"])
    got = a.query("SELECT rule, key, opened_ms FROM incidents ORDER BY id")
    assert len(got) >= 10
    assert [(rule, key) for rule, key, _ in bt] == sorted((rule, key) for rule, key, _ in got)


def test_rules_behind_the_ingest_read_events_back_and_miss_none(agent_factory, tmp_path):
    """The ingest never waits for the rules: when they fall behind (here a
    checkpoint after every batch), the queue lets events go and the rules
    read them back from the store, in order, with nothing run twice: the
    incidents are the backtest's."""
    feed = tmp_path / "feed.jsonl"
    r = run_voca("simulate", "--seed", "4", "--days", "28", "-o", str(feed))
    assert r.returncode == 0, r.stderr
    lines = feed.read_text().count("\n")

    a = agent_factory(extra=rules_sections().replace("checkpoint: 60s", "checkpoint: 0s")).start()
    publish(a, str(feed))  # as fast as it is taken
    wait_for(lambda: accounted(a) == lines, timeout=60, what="the feed")
    a.stop()
    assert "back from the store" in a.log_text()
    assert a.scalar("SELECT value FROM meta WHERE name = 'rules_checkpoint'") == \
        a.scalar("SELECT max(rowid) FROM events")
    r = run_voca("backtest", "-c", str(a.config), "--json", str(feed))
    assert r.returncode == 0, r.stderr
    bt = json.loads(r.stdout)["incidents"]
    got = a.query("SELECT rule, key, opened_ms, firings FROM incidents ORDER BY id")
    assert len(got) >= 10
    assert sorted((i["rule"], i["key"], iso_ms(i["opened"])) for i in bt) == \
        sorted((rule, key, opened) for rule, key, opened, _ in got)


def test_stats_shows_incidents_and_review(agent_factory, tmp_path):
    feed = tmp_path / "feed.jsonl"
    assert run_voca("simulate", "--seed", "2", "--days", "21", "-o", str(feed)).returncode == 0
    a = agent_factory(extra=rules_sections()).start()
    publish(a, str(feed))
    n = sum(1 for _ in open(feed))
    wait_for(lambda: accounted(a) == n, timeout=60, what="the feed")
    a.stop()
    r = run_voca("stats", "-c", str(a.config))
    assert r.returncode == 0, r.stderr
    assert "incidents:" in r.stdout and "review queue:" in r.stdout
    stats = json.loads(run_voca("stats", "-c", str(a.config), "--json").stdout)
    by_rule = stats["incidents_by_rule"]
    opened = sum(row["open"] + row["resolved"] for row in by_rule)
    assert opened == a.scalar("SELECT count(*) FROM incidents") >= 1
    assert f"incidents: {opened} opened" in r.stdout
    assert stats["review"][0]["pending"] == a.scalar(
        "SELECT count(*) FROM review_queue WHERE status = 'pending'")
    # Where the rules' state is, and what a crash now would replay (nothing: a clean stop).
    rules = stats["rules"][0]
    assert rules["state_records"] == a.scalar("SELECT count(*) FROM rule_state", db=a.rules_db) > 0
    assert rules["since_checkpoint"] == 0
    assert f"rules: state in {a.rules_db}" in r.stdout


def test_kill_9_between_checkpoints_replays_and_gives_the_same_incidents(agent_factory, tmp_path):
    feed, n, first, second, half = halves(tmp_path, 3, 21)
    # No checkpoint will be due: after the kill, everything comes from replay.
    extra = rules_sections().replace("checkpoint: 60s", "checkpoint: 1h")
    whole = uninterrupted(agent_factory, feed, n, extra)

    crash = agent_factory(extra=extra).start()
    publish(crash, str(first))
    wait_for(lambda: accounted(crash) == half, timeout=60, what="the first half")
    crash.proc.kill()  # SIGKILL: no clean stop, no checkpoint
    crash.proc.wait()
    crash.proc = None
    crash.logfile.close()
    assert crash.scalar("SELECT count(*) FROM rule_state", db=crash.rules_db) == 0
    crash.start()
    wait_for(lambda: "replayed" in crash.log_text(), what="the replay")
    assert (f"replayed {crash.counter('events_new')} events and "
            f"{crash.counter('events_superseded')} higher revisions") in crash.log_text()
    publish(crash, str(second))
    wait_for(lambda: accounted(crash) == n, timeout=60, what="the second half")
    crash.stop()
    assert incidents(whole) == incidents(crash)
    # Replay re-emitted the first half's changes; the log holds each once.
    assert whole.scalar("SELECT count(*) FROM incident_changes") == \
        crash.scalar("SELECT count(*) FROM incident_changes")


SAFETY = """
engine:
  checkpoint: 1h
rules:
  - name: safety
    kind: threshold
    tier: 1
    group_by: [sku]
    where: ["severity == critical"]
    count: 1
"""


def test_a_report_rescored_critical_fires_once_and_replays_after_a_crash(agent_factory,
                                                                         tmp_path):
    """The upstream re-scores a report as critical (a higher revision): the
    safety rule fires on the revision, once however often it is re-scored, and
    a crash before any checkpoint replays the report and its revisions in the
    order they came, to the same incident; the backtest agrees."""
    evs = [event("x", severity="medium"), event("y", severity="low"),
           event("x", revision=1, severity="critical"),
           event("z", severity="low", ts="2026-03-01T10:05:00Z"),
           event("x", revision=2, severity="critical", confidence=0.95)]
    a = agent_factory(extra=SAFETY).start()
    for e in evs[:2]:
        a.send_event(e)
    wait_for(lambda: a.counter("events_new") == 2, what="two reports")
    assert a.scalar("SELECT count(*) FROM incidents") == 0
    for e in evs[2:]:
        a.send_event(e)
    wait_for(lambda: a.counter("events_superseded") == 2, what="both revisions")
    wait_for(lambda: a.scalar("SELECT count(*) FROM incidents") == 1, what="the incident")
    before = a.query("SELECT rule, key, opened_ms, firings FROM incidents")
    assert before[0][:2] == ("safety", "sku=SKU-1") and before[0][3] == 1, before

    a.proc.kill()  # SIGKILL before any checkpoint: everything comes from replay
    a.proc.wait()
    a.proc = None
    a.logfile.close()
    a.start()
    wait_for(lambda: "replayed" in a.log_text(), what="the replay")
    assert "replayed 3 events and 2 higher revisions" in a.log_text()
    assert a.query("SELECT rule, key, opened_ms, firings FROM incidents") == before
    assert a.scalar("SELECT count(*) FROM incident_changes") == 1
    # The replayed engine knows its incident: a new critical report updates it.
    evs.append(event("w", severity="critical", ts="2026-03-01T10:10:00Z"))
    a.send_event(evs[-1])
    wait_for(lambda: a.scalar("SELECT firings FROM incidents") == 2, what="the update")
    a.stop()
    assert a.scalar("SELECT count(*) FROM incidents") == 1

    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(e) + "\n" for e in evs))
    r = run_voca("backtest", "-c", str(a.config), "--json", str(feed))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [(i["rule"], i["key"]) for i in out["incidents"]] == [("safety", "sku=SKU-1")]
    assert out["revisions"] == 2


DISTINCT = """
rules:
  - name: three-customers
    kind: threshold
    tier: 2
    group_by: [sku]
    where: ["category == product_defect"]
    count: 3
    window: 24h
    distinct_by: customer_id
"""


def test_distinct_by_a_field_outside_the_schema_reads_the_raw_event(agent_factory, tmp_path):
    """distinct_by names a top-level field the schema does not have: the rules'
    thread reads it from the event's JSON, which it is handed only when a
    rule needs it. Three reports from two customers are not three customers."""
    evs = [event(f"d-{i}", category="product_defect", customer_id=c,
                 ts=f"2026-03-01T10:0{i}:00Z") for i, c in enumerate(["ann", "bob", "ann", "cy"])]
    a = agent_factory(extra=DISTINCT).start()
    for e in evs[:3]:
        a.send_event(e)
    wait_for(lambda: a.counter("events_new") == 3, what="three reports")
    time.sleep(0.3)
    assert a.scalar("SELECT count(*) FROM incidents") == 0
    a.send_event(evs[3])
    wait_for(lambda: a.scalar("SELECT count(*) FROM incidents") == 1, what="the third customer")
    a.stop()
    assert "from 3 distinct customer_id" in a.scalar("SELECT summary FROM incidents")
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(e) + "\n" for e in evs))
    r = run_voca("backtest", "-c", str(a.config), "--json", str(feed))
    assert r.returncode == 0, r.stderr
    assert [i["summary"] for i in json.loads(r.stdout)["incidents"]] == \
        [a.scalar("SELECT summary FROM incidents")]


ANY_DEFECT = """
rules:
  - name: any-defect
    kind: threshold
    tier: 2
    group_by: [sku]
    where: ["category == product_defect"]
    count: 1
    window: 1h
"""

SILENCE_B = """
silences:
  - matchers: ["rule == any-defect", "sku == SKU-B"]
    start: 2026-03-01T00:00:00Z
    end: 2026-03-02T00:00:00Z
    author: oncall@example.com
    comment: SKU-B is being recalled, tracked elsewhere
"""


def test_sighup_applies_new_silences_to_the_next_firing(agent_factory):
    """An on-call silences a key without a restart: the rules' thread picks up
    the reloaded silences; the rules themselves stay as they started."""
    a = agent_factory(extra=ANY_DEFECT).start()
    a.send_event(event("a-1", sku="SKU-A", category="product_defect"))
    wait_for(lambda: a.scalar("SELECT count(*) FROM incidents") == 1, what="the first incident")
    assert a.query("SELECT suppressed FROM incident_changes") == [(None,)]

    a.write_config(extra=ANY_DEFECT + SILENCE_B)
    a.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in a.log_text(), what="reload")
    assert "now muting by 1 silences, 0 time windows and 0 known issues" in a.log_text()
    a.send_event(event("b-1", sku="SKU-B", category="product_defect"))
    a.send_event(event("c-1", sku="SKU-C", category="product_defect"))
    wait_for(lambda: a.scalar("SELECT count(*) FROM incidents") == 3, what="two more incidents")
    changes = a.query("SELECT i.key, c.change, c.suppressed FROM incident_changes c "
                      "JOIN incidents i ON i.id = c.incident_id ORDER BY c.id")
    assert changes[0] == ("sku=SKU-A", "opened", None)
    assert changes[2] == ("sku=SKU-C", "opened", None)
    key, change, why = changes[1]
    assert (key, change) == ("sku=SKU-B", "opened")
    assert why.startswith("silence 0 by oncall@example.com until 2026-03-02"), why
    a.stop()


def test_an_incident_its_rules_no_longer_hold_is_closed_at_a_restart(agent_factory):
    """Renaming or removing a rule leaves the incidents it had open with
    nothing to resolve them: they would show as open for ever. A restart
    closes them, says why, and tells no receiver."""
    a = agent_factory(extra=ANY_DEFECT).start()
    a.send_event(event("a-1", sku="SKU-A", category="product_defect"))
    wait_for(lambda: a.scalar("SELECT count(*) FROM incidents") == 1, what="the incident")
    a.stop()
    assert a.query("SELECT status FROM incidents") == [("open",)]
    a.write_config(extra=ANY_DEFECT.replace("name: any-defect", "name: defects"))
    a.start()
    a.stop()
    why = "closed at a restart: its rule is no longer configured"
    assert ("incident 1 (any-defect sku=SKU-A) was open; " + why) in a.log_text()
    assert a.query("SELECT status, suppressed FROM incidents") == [("resolved", why)]
    assert a.query("SELECT change, notify, suppressed FROM incident_changes ORDER BY id")[-1] == \
        ("resolved", 0, why)
    r = run_voca("stats", "-c", str(a.config))
    assert re.search(r"any-defect\s+threshold\s+tier 2\s+0 open,\s+1 resolved", r.stdout), r.stdout


def test_the_end_of_a_silence_is_announced(agent_factory):
    """The on-call who silenced a key hears when the silence ends (by the
    wall clock), so that what it muted notifying again is no surprise."""
    end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
    silence = SILENCE_B.replace("2026-03-02T00:00:00Z", end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    a = agent_factory(extra=ANY_DEFECT + silence).start()
    wait_for(lambda: "silence 0 by oncall@example.com ended (SKU-B is being recalled, "
             "tracked elsewhere): what it muted notifies again" in a.log_text(),
             timeout=6, what="the announcement")
    a.stop()
    assert a.log_text().count("silence 0 by oncall@example.com ended") == 1


def test_sighup_keeps_the_rules_state_file_it_started_with(agent_factory, tmp_path):
    """The state file is opened once: a reload that names another says it
    takes effect after a restart, and the checkpoint at stop still goes to
    the file the rules started with."""
    first, second = tmp_path / "first.rules.db", tmp_path / "second.rules.db"
    a = agent_factory(store_extra=f"  rules_path: {first}\n", extra=ANY_DEFECT).start()
    a.send_event(event("a-1", sku="SKU-A", category="product_defect"))
    wait_for(lambda: a.scalar("SELECT count(*) FROM incidents") == 1, what="the incident")
    a.store_extra = f"  rules_path: {second}\n"
    a.write_config(extra=ANY_DEFECT)
    a.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in a.log_text(), what="reload")
    assert "store.rules_path changed: takes effect after a restart" in a.log_text()
    a.stop()
    assert a.scalar("SELECT count(*) FROM rule_state", db=first) > 0
    assert not second.exists()


TWO_DEFECTS = """
engine:
  checkpoint: 1h
rules:
  - name: two-defects
    kind: threshold
    tier: 2
    group_by: [sku]
    where: ["category == product_defect"]
    count: 2
    window: 1h
"""


def test_a_stored_event_replays_under_tighter_ingest_limits(agent_factory):
    """An event the ingest stored under a larger ingest.max_message_bytes
    still reaches the rules when a restart after a crash has a smaller one:
    the limits guard what comes in, and the store's events came in already.
    (They were decoded with the current limits, and an event over them was
    left out of the replay without a word.)"""
    a = agent_factory(ingest_extra="  max_message_bytes: 8KiB\n", extra=TWO_DEFECTS).start()
    a.send_event(event("big", sku="SKU-A", category="product_defect", text="broken " * 500))
    a.wait_event("big")
    a.proc.kill()  # no checkpoint: the restart replays "big"
    a.proc.wait()
    a.proc = None
    a.logfile.close()
    a.ingest_extra = "  max_message_bytes: 2KiB\n"
    a.write_config(extra=TWO_DEFECTS)
    a.start()
    wait_for(lambda: "replayed 1 events" in a.log_text(), what="the replay")
    assert "does not decode" not in a.log_text()
    a.send_event(event("small", sku="SKU-A", category="product_defect", text="broken"))
    wait_for(lambda: a.scalar("SELECT count(*) FROM incidents") == 1, what="the incident")
    assert a.query("SELECT rule, key FROM incidents") == [("two-defects", "sku=SKU-A")]
    a.stop()


BY_SKU = """
engine:
  checkpoint: 1h
rules:
  - name: by-sku
    kind: spike
    group_by: [sku]
"""


def test_events_the_rules_leave_out_are_logged_and_counted(agent_factory):
    """An event hours behind the newest (a lagging publisher) is too late for
    the bucketed rules, and one without the group_by field has no key: the
    rules leave both out, and say so - in the log, and in voca stats from
    the store's counters, which a replay after a crash sets again rather
    than adds to."""
    a = agent_factory(extra=BY_SKU).start()
    a.send_event(event("on-time", sku="SKU-A", ts="2026-03-01T10:00:00Z"))
    a.send_event(event("newest", sku="SKU-A", ts="2026-03-01T13:00:00Z"))
    a.send_event(event("lagging", sku="SKU-A", ts="2026-03-01T10:30:00Z"))
    no_sku = event("no-sku", ts="2026-03-01T13:00:00Z")
    del no_sku["sku"]
    a.send_event(no_sku)
    wait_for(lambda: a.counter("rules_ungrouped") == 1 and a.counter("rules_late") == 1,
             what="the counters")
    log = a.log_text()
    assert ("rules: 1 events came more than engine.lateness (300 s) behind the newest event "
            "time; the spike, rate_shift and flatline rules did not count them") in log
    assert "rules: 1 events matched a rule but lack a field of its group_by" in log
    a.proc.kill()  # no checkpoint: the restart replays all four
    a.proc.wait()
    a.proc = None
    a.logfile.close()
    a.start()
    wait_for(lambda: "replayed 4 events" in a.log_text(), what="the replay")
    a.stop()
    assert (a.counter("rules_late"), a.counter("rules_ungrouped")) == (1, 1)
    r = run_voca("stats", "-c", str(a.config))
    assert r.returncode == 0, r.stderr
    assert ("left out: 1 events too late for the bucketed rules (over engine.lateness behind "
            "the newest), 1 without a rule's group_by field, 0 of keys over engine.max_keys") \
        in r.stdout


def test_a_rule_past_max_keys_leaves_new_keys_out_and_says_so(agent_factory):
    """A group_by finer than meant must not grow until the process dies: past
    engine.max_keys an event of a new key is not counted for the rule, and
    the log and voca stats say how many."""
    a = agent_factory(extra=BY_SKU.replace("checkpoint: 1h", "checkpoint: 1h\n  max_keys: 1000"))
    a.start()
    for i in range(1002):
        a.send_event(event(f"k-{i}", sku=f"SKU-{i}"))
    wait_for(lambda: a.counter("rules_capped") == 2, what="the capped count")
    a.stop()
    # (one line a minute: both, or the first alone if the rules took them apart)
    assert re.search(r"rules: [12] events had a new key for a rule already keeping "
                     r"engine.max_keys \(1000\) keys", a.log_text())
    r = run_voca("stats", "-c", str(a.config))
    assert "2 of keys over engine.max_keys" in r.stdout


def test_a_failed_write_by_the_rules_stops_the_daemon_at_once(agent_factory):
    """The rules' thread cannot record an incident (here a trigger refuses it):
    the daemon must not carry on without its rules, nor sleep until something
    else wakes it; it stops with an error, and the event stays stored for the
    next start to replay."""
    a = agent_factory(extra=ANY_DEFECT).start()
    a.stop()
    con = sqlite3.connect(a.db)
    con.execute("CREATE TRIGGER refuse BEFORE INSERT ON incidents "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
    con.commit()
    con.close()
    a.start()
    a.send_event(event("a-1", sku="SKU-A", category="product_defect"))
    t0 = time.monotonic()
    code = a.proc.wait(timeout=10)
    took = time.monotonic() - t0
    a.logfile.close()
    a.proc = None
    assert code != 0
    assert "refused by the test" in a.log_text()
    assert a.has_event("a-1")
    assert took < 2, took


def test_incidents_and_review_show_what_was_decided_and_why(agent_factory):
    """The operator's view without SQL: the incidents, the changes that were
    muted and by what, one incident in full, and the review queue."""
    a = agent_factory(extra=ANY_DEFECT + SILENCE_B + """known_issues:
  - matchers: ["sku == SKU-K"]
    ticket: OPS-42
    comment: lids, tracked
""").start()
    a.send_event(event("a-1", sku="SKU-A", category="product_defect", summary="lid cracked"))
    a.send_event(event("b-1", sku="SKU-B", category="product_defect"))
    a.send_event(event("k-1", sku="SKU-K", category="product_defect"))
    a.send_event(event("u-1", sku="SKU-U", category="product_defect", confidence=0.3,
                       summary="maybe broken?"))
    # The unsure report goes to review, and (tier 2: not tier 1) still counts.
    wait_for(lambda: a.scalar("SELECT count(*) FROM incidents") == 4, what="four incidents")
    wait_for(lambda: a.scalar("SELECT count(*) FROM review_queue") == 1, what="the review")
    a.stop()
    cfg = str(a.config)

    r = run_voca("incidents", "-c", cfg)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n#") + r.stdout.startswith("#") == 4, r.stdout
    assert "muted: silence 0 by oncall@example.com" in r.stdout
    assert "muted: known issue OPS-42: lids, tracked" in r.stdout
    listed = json.loads(run_voca("incidents", "-c", cfg, "--json", "--open").stdout)
    assert sorted(i["key"] for i in listed["incidents"]) == ["sku=SKU-A", "sku=SKU-B",
                                                             "sku=SKU-K", "sku=SKU-U"]
    assert len(json.loads(run_voca("incidents", "-c", cfg, "--json", "-n", "1").stdout)
               ["incidents"]) == 1

    muted = json.loads(run_voca("incidents", "-c", cfg, "--muted", "--json").stdout)["muted"]
    assert sorted((m["key"], m["change"], m["suppressed"].split(":")[0]) for m in muted) == [
        ("sku=SKU-B", "opened", "silence 0 by oncall@example.com until 2026-03-02T00"),
        ("sku=SKU-K", "opened", "known issue OPS-42")]
    text = run_voca("incidents", "-c", cfg, "--muted").stdout
    assert "not notified: known issue OPS-42: lids, tracked" in text, text

    a_id = next(i["id"] for i in listed["incidents"] if i["key"] == "sku=SKU-A")
    one = run_voca("incidents", "-c", cfg, str(int(a_id)))
    assert one.returncode == 0, one.stderr
    assert f"incident #{int(a_id)}: open, tier 2, rule any-defect (threshold)" in one.stdout
    assert "opened               notified" in one.stdout
    assert '"test":' in one.stdout and "why (the latest firing's explanation)" in one.stdout
    full = json.loads(run_voca("incidents", "-c", cfg, "--json", str(int(a_id))).stdout)
    assert full["incident"][0]["why"]["examples"] == ["a-1"]
    assert [c["change"] for c in full["changes"]] == ["opened"]
    missing = run_voca("incidents", "-c", cfg, "999")
    assert missing.returncode == 1 and "no incident 999" in missing.stderr
    bad = run_voca("incidents", "-c", cfg, "--open", "--muted")
    assert bad.returncode == 2

    rv = run_voca("review", "-c", cfg)
    assert rv.returncode == 0, rv.stderr
    assert "u-1" in rv.stdout and "confidence 0.30: maybe broken?" in rv.stdout, rv.stdout
    rows = json.loads(run_voca("review", "-c", cfg, "--json").stdout)["review"]
    assert [(x["event_id"], x["sku"]) for x in rows] == [("u-1", "SKU-U")]
    assert "0.3" in rows[0]["reason"] or "confidence" in rows[0]["reason"], rows[0]


def test_the_review_queue_is_worked_by_people_and_by_rescoring(agent_factory):
    """A queue nobody can drain stops being read. A person takes reports off it
    (`voca review --done`, beside the running daemon), with who and why; a
    report re-scored confident leaves it by itself; one re-scored still unsure
    shows the latest reason; the listing shows what is left."""
    a = agent_factory(extra=ANY_DEFECT).start()
    a.send_event(event("u-1", sku="SKU-U", category="product_defect", confidence=0.3))
    a.send_event(event("u-2", sku="SKU-V", confidence=0.3))
    a.send_event(event("u-3", sku="SKU-W", confidence=0.9, needs_review=True))
    wait_for(lambda: a.scalar("SELECT count(*) FROM review_queue") == 3, what="three reviews")
    a.send_event(event("u-2", sku="SKU-V", confidence=0.95, revision=1))
    a.send_event(event("u-3", sku="SKU-W", confidence=0.4, revision=1))
    wait_for(lambda: a.scalar("SELECT status FROM review_queue WHERE event_id = 'u-2'")
             == "rescored", what="the confident revision to take u-2 off")
    cfg = str(a.config)

    done = run_voca("review", "-c", cfg, "--done", "--by", "maria", "--note", "real: lid", "u-1")
    assert done.returncode == 0, done.stderr
    assert "marked 1 report reviewed by maria" in done.stdout
    again = run_voca("review", "-c", cfg, "--done", "u-1", "nope")
    assert again.returncode == 1 and "u-1: not on the queue" in again.stderr
    assert "nope: not on the queue" in again.stderr
    assert run_voca("review", "-c", cfg, "--done").returncode == 2  # no ids

    left = json.loads(run_voca("review", "-c", cfg, "--json").stdout)["review"]
    assert [(x["event_id"], x["reason"]) for x in left] == [("u-3", "confidence 0.40 is under 0.60")]
    every = {x["event_id"]: x for x in
             json.loads(run_voca("review", "-c", cfg, "--all", "--json").stdout)["review"]}
    assert every["u-1"]["status"] == "reviewed" and every["u-1"]["done_by"] == "maria"
    assert every["u-1"]["note"] == "real: lid"
    assert every["u-2"]["status"] == "rescored"
    assert every["u-2"]["note"] == "re-scored: confidence 0.95, not flagged needs_review"
    text = run_voca("review", "-c", cfg, "--all").stdout
    assert "reviewed " in text and " by maria: real: lid" in text, text
    # A reviewed report re-scored unsure again stays reviewed: a person saw it.
    a.send_event(event("u-1", sku="SKU-U", category="product_defect", confidence=0.2,
                       revision=1))
    a.send_event(event("z-1", sku="SKU-Z", category="product_defect"))  # the rules' marker
    wait_for(lambda: a.scalar("SELECT count(*) FROM incidents WHERE key = 'sku=SKU-Z'") == 1,
             what="the rules to pass u-1's revision")
    a.stop()
    assert a.scalar("SELECT status FROM review_queue WHERE event_id = 'u-1'") == "reviewed"
    stats = json.loads(run_voca("stats", "-c", cfg, "--json").stdout)
    assert stats["review"][0]["pending"] == 1


def test_keys_quiet_for_forget_after_are_forgotten_and_their_records_deleted(agent_factory):
    """A catalogue changes: a SKU quiet for engine.forget_after is forgotten
    (its saved record deleted, its memory reused), counted and logged; back, it
    starts over as a new key."""
    a = agent_factory(extra="""engine:
  lateness: 0s
  forget_after: 1d
rules:
  - name: many
    kind: threshold
    group_by: [sku]
    count: 16
    window: 1h
""").start()
    # The pass runs once a day, at the first event past midnight, before that
    # event is taken: on day 2 (09:00) both keys are under a day quiet; on day
    # 3 (08:00) K has been quiet 46 h and A 12 h.
    for eid, sku, ts in (("k-1", "SKU-K", "2026-03-01T10:00:00Z"),
                         ("a-1", "SKU-A", "2026-03-01T11:00:00Z"),
                         ("a-2", "SKU-A", "2026-03-02T09:00:00Z"),
                         ("a-3", "SKU-A", "2026-03-02T20:00:00Z"),
                         ("a-4", "SKU-A", "2026-03-03T08:00:00Z")):
        a.send_event(event(eid, sku=sku, ts=ts))
    wait_for(lambda: a.counter("rules_forgotten") == 1, what="SKU-K forgotten")
    a.stop()
    keys = [k for (k,) in a.query("SELECT key FROM rule_state WHERE rule = 'many' AND key != ''",
                                  db=a.rules_db)]
    assert keys == ["sku=SKU-A"], keys
    assert "rules: forgot 1 keys quiet for engine.forget_after (1 d) or more" in a.log_text()
    r = run_voca("stats", "-c", str(a.config))
    assert "forgotten: 1 keys quiet for engine.forget_after" in r.stdout, r.stdout
    a.start()
    a.send_event(event("k-2", sku="SKU-K", ts="2026-03-03T09:00:00Z"))
    a.wait_event("k-2")
    a.stop()
    keys = [k for (k,) in a.query("SELECT key FROM rule_state WHERE rule = 'many' AND key != ''",
                                  db=a.rules_db)]
    assert sorted(keys) == ["sku=SKU-A", "sku=SKU-K"], keys
    assert a.counter("rules_forgotten") == 1


def test_the_business_time_zone_reshapes_the_rules_that_take_it(agent_factory):
    """The top-level time_zone is the seasons' zone of every spike and
    flatline rule that names none: set after a run in UTC, those rules'
    baselines start over (their hours would mean other hours), and voca
    check says so first; a rule that names its own zone keeps its state."""
    cfg = """engine:
  lateness: 0s
rules:
  - name: takes
    kind: spike
    group_by: [sku]
  - name: own
    kind: spike
    group_by: [sku]
    time_zone: UTC
"""
    a = agent_factory(extra=cfg).start()
    a.send_event(event("z-0", sku="SKU-A", ts="2026-03-01T10:00:00Z"))
    a.wait_event("z-0")
    a.stop()
    a.write_config(extra="time_zone: America/Chicago\n" + cfg)
    r = run_voca("check", "-c", str(a.config))
    assert r.returncode == 0, r.stderr
    assert ("warning: rule 'takes': its 2 saved records were learned under other settings "
            "(time_zone changed): at the next start its baselines start over") in r.stderr, r.stderr
    assert "rule 'own'" not in r.stderr, r.stderr
    a.start()
    a.stop()
    log = a.log_text()
    assert "rules: rule 'takes': its state was learned under other settings (time_zone" in log, log
    assert "rule 'own'" not in log, log
    assert a.query("SELECT key FROM rule_state WHERE rule = 'own' AND key != ''",
                   db=a.rules_db) == [("sku=SKU-A",)]


def test_a_rule_whose_settings_changed_or_that_went_starts_over_or_is_kept(agent_factory):
    """Baselines learned per hour, read after a restart as per two hours,
    would be wrong until relearned (a ring sum kept for another window for
    good): state saved under other settings is not restored, and the log
    says so. A rule taken out keeps its records (engine.forget_after). A
    setting that does not shape the state (spike's mid_window) keeps it."""
    cfg = """engine:
  lateness: 0s
rules:
  - name: vol
    kind: spike
    group_by: [sku]
    bucket: 1h
  - name: mid
    kind: spike
    group_by: [sku]
    mid_window: 6h
  - name: gone
    kind: spike
    group_by: [sku]
"""
    a = agent_factory(extra=cfg).start()
    for i, sku in enumerate(("SKU-A", "SKU-B")):
        a.send_event(event(f"v-{i}", sku=sku, ts="2026-03-01T10:00:00Z"))
    a.wait_event("v-1")
    a.stop()
    shapes = [k for (k,) in a.query("SELECT key FROM rule_state WHERE rule = '' ORDER BY key",
                                    db=a.rules_db)]
    assert shapes == ["", "gone", "mid", "vol"], shapes
    a.write_config(extra=cfg.replace("bucket: 1h", "bucket: 2h")
                   .replace("mid_window: 6h", "mid_window: [6h, 12h]")
                   .replace("  - name: gone\n    kind: spike\n    group_by: [sku]\n", ""))
    # voca check says so before the restart.
    r = run_voca("check", "-c", str(a.config))
    assert r.returncode == 0, r.stderr
    assert "rule 'mid'" not in r.stderr, r.stderr
    assert ("warning: rule 'vol': its 3 saved records were learned under other settings "
            "(bucket changed): at the next start its baselines start over") in r.stderr, r.stderr
    assert ("warning: rule 'gone' is not configured: its 3 saved records are kept for "
            "engine.forget_after after it was last configured, then deleted") in r.stderr, r.stderr
    a.start()
    a.stop()
    log = a.log_text()
    assert ("rules: rule 'vol': its state was learned under other settings (bucket changed): "
            "its baselines start over; 2 keys dropped, 0 kept") in log, log
    assert ("rules: rule 'gone': no longer configured: its 3 saved records are kept, and "
            "deleted 90 d (engine.forget_after) after it was last configured") in log, log
    keys = a.query("SELECT key FROM rule_state WHERE rule = 'vol' AND key != ''", db=a.rules_db)
    assert keys == [], keys
    assert "rule 'mid'" not in log, log
    keys = a.query("SELECT key FROM rule_state WHERE rule = 'mid' AND key != '' ORDER BY key",
                   db=a.rules_db)
    assert keys == [("sku=SKU-A",), ("sku=SKU-B",)], keys
    assert a.scalar("SELECT count(*) FROM rule_state WHERE rule = 'gone'", db=a.rules_db) == 3
    a.start()
    a.stop()
    assert a.log_text().count("learned under other settings") == 1
    r = run_voca("check", "-c", str(a.config))
    assert "rule 'vol'" not in r.stderr, r.stderr
