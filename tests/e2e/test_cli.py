"""The command line: check, publish, simulate, stats, run on defaults, help."""
import gzip
import json
import os

import pytest

from conftest import VOCA, Agent, free_port, run_voca, wait_for

COMMANDS = ["run", "check", "publish", "simulate", "stats", "incidents", "review", "backtest",
            "deadletters"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help(cmd):
    r = run_voca(cmd, "--help")
    assert r.returncode == 0
    assert r.stdout.startswith(f"usage: voca {cmd}")


def test_unknown_command_and_option_are_one_clear_line():
    r = run_voca("frobnicate")
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == "voca: unknown command 'frobnicate'"
    r = run_voca("check")
    assert r.returncode == 2 and "needs -c FILE" in r.stderr
    r = run_voca("publish", "--endpoint", "tcp://127.0.0.1:1", "--rate", "fast", "x")
    assert r.returncode == 2 and "--rate takes events per second" in r.stderr


def test_check_prints_summary_and_names_errors(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("ingest:\n  mode: pull\n  endpoints: [tcp://127.0.0.1:9999]\n")
    r = run_voca("check", "-c", str(good))
    assert r.returncode == 0, r.stderr
    assert f"{good}: OK" in r.stdout
    assert 'ingest.endpoints             ["tcp://127.0.0.1:9999"]' in r.stdout
    assert "store.batch_ms               5ms" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest:\n  mode: pull\n\nstore:\n  batch_mx: 10\n")
    r = run_voca("check", "-c", str(bad))
    assert r.returncode == 1
    assert r.stderr.strip() == (f"voca check: {bad}:5: store.batch_mx: unknown key "
                                "(did you mean 'store.batch_max'?)")
    regex = tmp_path / "regex.yaml"
    regex.write_text('redaction:\n  patterns: ["ORD-[0-9"]\n')
    r = run_voca("check", "-c", str(regex))
    assert r.returncode == 1
    assert f"{regex}: redaction.patterns: pattern 'ORD-[0-9':" in r.stderr


def test_example_config_checks():
    example = os.path.join(os.path.dirname(__file__), "../../packaging/voca.example.yaml")
    r = run_voca("check", "-c", example)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr


def test_check_warns_of_what_is_valid_but_not_meant(tmp_path, monkeypatch):
    """A receiver nothing routes to, and a max_future past the rules'
    lateness (one event that far ahead makes on-time events late), pass the
    check with a warning each; the daemon logs the same at start."""
    monkeypatch.setenv("VOCA_CLI_HOOK", "https://hooks.slack.com/services/T/B/x")
    cfg = tmp_path / "w.yaml"
    cfg.write_text("""ingest:
  max_future: 10m
engine:
  lateness: 1m
rules:
  - name: any
    kind: threshold
    where: ["severity == high"]
receivers:
  - name: console
    kind: console
  - name: team-chat
    kind: slack
    mode: webhook
    webhook_url: ${env:VOCA_CLI_HOOK}
routes:
  - receivers: [console]
""")
    r = run_voca("check", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines == [
        f"{cfg}: warning: ingest.max_future (600s) is more than engine.lateness (60s): an "
        "event dated that far ahead moves the rules' watermark past the present, and the "
        "bucketed rules leave on-time events out as late; keep it at most engine.lateness",
        f"{cfg}: warning: receivers[1] (team-chat): no route, known issue or "
        "delivery.deadletter_receivers names it: nothing is sent to it"], lines


def test_check_says_when_the_rules_state_cannot_be_read(tmp_path):
    """voca check reads the saved rules' state to say which rules would
    start over; a file that is not one is a warning naming it, not a
    failure of the check, and no file says nothing."""
    state = tmp_path / "rules.db"
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"store:\n  path: {tmp_path / 'voca.db'}\n  rules_path: {state}\n")
    r = run_voca("check", "-c", str(cfg))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    state.write_text("not a database\n" * 100)
    r = run_voca("check", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == (f"{cfg}: warning: cannot read the rules' state in {state}: "
                                "file is not a database"), r.stderr


def test_simulate_is_deterministic_and_writes_truth(tmp_path):
    args = ["simulate", "--seed", "5", "--days", "10", "--per-day", "800", "--incidents", "5"]
    r1 = run_voca(*args, "-o", str(tmp_path / "a.jsonl"), "--truth", str(tmp_path / "t.json"))
    r2 = run_voca(*args, "-o", str(tmp_path / "b.jsonl"))
    r3 = run_voca(*args[:2], "6", *args[3:], "-o", str(tmp_path / "c.jsonl"))
    assert r1.returncode == r2.returncode == r3.returncode == 0
    a = (tmp_path / "a.jsonl").read_bytes()
    assert a == (tmp_path / "b.jsonl").read_bytes()
    assert a != (tmp_path / "c.jsonl").read_bytes()
    truth = json.loads((tmp_path / "t.json").read_text())
    kinds = {i["kind"] for i in truth["incidents"]}
    assert kinds == {"volume_spike", "negative_shift", "defect_burst", "flatline", "new_topic"}
    lines = a.decode().splitlines()
    assert len(lines) == truth["lines"]
    events = [json.loads(line) for line in lines]
    # Valid, time-ordered, skewed across SKUs, with daily seasonality.
    assert all(e["ts"] >= p["ts"] for p, e in zip(events, events[1:]))
    skus = {}
    hours = [0] * 24
    for e in events:
        skus[e["sku"]] = skus.get(e["sku"], 0) + 1
        hours[int(e["ts"][11:13])] += 1
    top = sorted(skus.values(), reverse=True)
    assert top[0] > 10 * top[len(top) // 2]
    assert max(hours) > 3 * min(hours)
    # Injected incidents are in the stream: the defect burst's 3 events are there.
    burst = next(i for i in truth["incidents"] if i["kind"] == "defect_burst")
    hits = [e for e in events if e["sku"] == burst["sku"] and e["severity"] == "high"
            and e["category"] == "product_defect" and burst["start"] <= e["ts"] < burst["end"]
            and e["confidence"] >= 0.9]
    assert len(hits) >= 3


def test_simulate_follows_a_time_zone_and_its_weekend(tmp_path):
    # A desk in Los Angeles closed at weekends: its busiest hours and its
    # quiet days are Los Angeles', its volume a day stays --per-day, and the
    # truth names the zone; a zone that is none is refused.
    import datetime
    from zoneinfo import ZoneInfo
    la = ZoneInfo("America/Los_Angeles")
    args = ["simulate", "--seed", "3", "--days", "14", "--per-day", "2000", "--incidents", "0"]
    feed, truth = tmp_path / "la.jsonl", tmp_path / "la.json"
    r = run_voca(*args, "--time-zone", "America/Los_Angeles", "--weekend", "0.1",
                 "-o", str(feed), "--truth", str(truth))
    assert r.returncode == 0, r.stderr
    days, hours = [0] * 7, [0] * 24
    events = [json.loads(line) for line in feed.read_text().splitlines()]
    for e in events:
        t = datetime.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).astimezone(la)
        days[t.weekday()] += 1
        hours[t.hour] += 1
    weekday, weekend = sum(days[:5]) / 5, sum(days[5:]) / 2
    assert 0.06 < weekend / weekday < 0.16, days
    assert hours.index(max(hours)) in range(18, 22), hours  # the simulator's evening peak
    assert 0.9 < len(events) / 14 / 2000 < 1.1
    t = json.loads(truth.read_text())
    assert (t["time_zone"], t["weekend"]) == ("America/Los_Angeles", 0.1)
    r = run_voca(*args, "--time-zone", "Mars/Olympus", "-o", str(feed))
    assert r.returncode == 2
    assert "--time-zone: unknown IANA time zone 'Mars/Olympus'" in r.stderr


def test_simulated_silences_of_a_source_are_a_day_apart(tmp_path):
    # Back to back, two injected silences are one silence and one incident:
    # the truth must not list two (seed 27 of detect's forty did).
    import datetime
    at = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    for seed in range(1, 21):
        truth = tmp_path / f"{seed}.json"
        r = run_voca("simulate", "--seed", str(seed), "--days", "10", "--per-day", "200",
                     "--incidents", "10", "-o", str(tmp_path / "f.jsonl"), "--truth", str(truth))
        assert r.returncode == 0, r.stderr
        silences = sorted((at(i["start"]), at(i["end"]))
                          for i in json.loads(truth.read_text())["incidents"]
                          if i["kind"] == "flatline")
        assert len(silences) == 2
        gap = (silences[1][0] - silences[0][1]).total_seconds()
        assert gap >= 86400, (seed, silences)


def simulate(tmp_path, name, seed, invalid):
    feed, truth = tmp_path / f"{name}.jsonl.gz", tmp_path / f"{name}.json"
    r = run_voca("simulate", "--seed", str(seed), "--days", "7", "--per-day", "1500",
                 "--invalid", str(invalid), "-o", str(feed), "--truth", str(truth))
    assert r.returncode == 0, r.stderr
    with gzip.open(feed, "rt") as f:
        nlines = sum(1 for _ in f)
    return feed, json.loads(truth.read_text()), nlines


def accounted(a):
    return sum(a.counter(c) or 0 for c in ("events_new", "events_duplicate",
                                           "events_superseded", "events_stale", "quarantined"))


def test_publish_gzip_over_push_matches_ground_truth(tmp_path):
    a = Agent(tmp_path).start()
    try:
        # One event per message, with malformed lines among them.
        feed, t, nlines = simulate(tmp_path, "dirty", 3, 0.01)
        r = run_voca("publish", "--socket", "push", "--endpoint", a.endpoint, "--frames", "1",
                     str(feed))
        assert r.returncode == 0, r.stderr
        assert f"sent {nlines} events in {nlines} messages" in r.stdout
        invalid = sum(t["invalid"].values())
        wait_for(lambda: accounted(a) == nlines, timeout=30, what="every line accounted for")
        assert a.scalar("SELECT count(*) FROM events") == t["events"]
        assert a.counter("events_duplicate") == t["duplicates"]
        assert a.counter("events_superseded") == t["revisions"]
        assert a.counter("quarantined") == invalid > 0
        # A clean feed packed 50 events per frame, as topic + JSON array.
        feed, t2, n2 = simulate(tmp_path, "clean", 4, 0)
        r = run_voca("publish", "-s", "push", "-e", a.endpoint, "--array", "50", str(feed))
        assert r.returncode == 0, r.stderr
        assert f"sent {n2} events in {(n2 + 49) // 50} messages" in r.stdout
        wait_for(lambda: accounted(a) == nlines + n2, timeout=30, what="the arrays stored")
        a.stop()
        assert a.scalar("SELECT count(*) FROM events") == t["events"] + t2["events"]
        assert a.counter("gaps") == 0
        r = run_voca("stats", "-c", str(a.config))
        assert f"events: {t['events'] + t2['events']} stored" in r.stdout
        assert f"quarantine: {invalid} inputs rejected" in r.stdout
    finally:
        a.stop()


def test_publish_rate_limits(tmp_path):
    a = Agent(tmp_path).start()
    try:
        feed = tmp_path / "f.jsonl"
        feed.write_text("".join(json.dumps({"event_id": f"r{i}", "ts": "2026-01-01T00:00:00Z",
                                            "category": "x", "sentiment": {"label": "neutral"}})
                                + "\n" for i in range(50)))
        r = run_voca("publish", "-s", "push", "-e", a.endpoint, "--rate", "100/s", str(feed))
        assert r.returncode == 0
        secs = float(r.stdout.split(" in ")[-1].split(" s ")[0])
        assert 0.45 <= secs < 2.0, r.stdout
    finally:
        a.stop()


def test_publish_reports_when_nobody_listens(tmp_path):
    feed = tmp_path / "f.jsonl"
    feed.write_text('{"a":1}\n')
    r = run_voca("publish", "-e", f"tcp://127.0.0.1:{free_port()}", "--timeout", "0.5",
                 str(feed))
    assert r.returncode == 1
    assert "0 of 1 subscribers connected" in r.stderr


def test_run_without_config_uses_documented_defaults(tmp_path):
    import subprocess
    proc = subprocess.Popen([VOCA, "run"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        feed = tmp_path / "f.jsonl"
        feed.write_text(json.dumps({"event_id": "d1", "ts": "2026-01-01T00:00:00Z",
                                    "category": "x", "sentiment": {"label": "neutral"}}) + "\n")
        r = run_voca("publish", "-e", "tcp://127.0.0.1:7600", str(feed), "--timeout", "10")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: "1 stored" in run_voca("stats", cwd=tmp_path).stdout, timeout=10)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert b"(built-in: voca.example.yaml)" in err
    assert b"rules: 5 rules" in err
    assert (tmp_path / "voca.db").exists()


def test_stats_without_a_store(tmp_path):
    r = run_voca("stats", cwd=tmp_path)
    assert r.returncode == 1
    assert "no store at voca.db" in r.stderr


def test_simulated_truth_counts_what_the_feed_holds(tmp_path):
    # tests/bench/detect's ideal test reads the truth's window counts: they
    # must be the feed's. Seed 30 puts a spike over a silence of the source
    # the spike's events partly came from: its injected count is what the
    # feed kept (15 of 24 drawn), not what was drawn.
    import datetime
    at = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    feed, truth = tmp_path / "f.jsonl", tmp_path / "t.json"
    r = run_voca("simulate", "--seed", "30", "--days", "28", "-o", str(feed), "--truth",
                 str(truth))
    assert r.returncode == 0, r.stderr
    t = json.loads(truth.read_text())
    events = {}
    for line in feed.read_text().splitlines():
        e = json.loads(line)
        events[e["event_id"]] = e  # re-sends and re-scorings: one event
    silences = [i for i in t["incidents"] if i["kind"] == "flatline"]
    overlapped = 0
    for inj in t["incidents"]:
        if inj["kind"] not in ("volume_spike", "negative_shift"):
            continue
        held = [e for e in events.values() if e["sku"] == inj["sku"]
                and e["category"] == inj.get("category", e["category"])
                and inj["start"] <= e["ts"] < inj["end"]]
        assert inj["window_events"] == len(held), inj
        assert inj["baseline_events"] > 0
        if inj["kind"] == "negative_shift":
            negative = sum(e["sentiment"]["label"] == "negative" for e in held)
            assert inj["window_negative"] == negative, inj
        else:
            assert inj["injected_events"] <= len(held)
            # hour by hour too (detect's ideal delay): the feed's events in
            # each hour from the start, and the key's rate summed to the whole
            hours = (at(inj["end"]) - at(inj["start"])).total_seconds() // 3600
            assert len(inj["hour_events"]) == len(inj["hour_expected"]) == hours, inj
            for h, n in enumerate(inj["hour_events"]):
                assert n == sum(1 for e in held
                                if (at(e["ts"]) - at(inj["start"])).total_seconds() // 3600 == h)
            assert abs(sum(inj["hour_expected"]) - inj["baseline_events"]) < 0.01 * hours
            for s in silences:
                if at(s["start"]) < at(inj["end"]) and at(inj["start"]) < at(s["end"]):
                    overlapped += 1
                    # nothing of the silent source in the silence, injected or not
                    assert not [e for e in held if e["source"] == s["source"]
                                and s["start"] <= e["ts"] < s["end"]]
    assert overlapped >= 1
