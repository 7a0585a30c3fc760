"""voca backtest: the rules over a simulated feed, text and JSON."""
import datetime
import json
import os
import re

from conftest import run_voca

EXAMPLE = os.path.join(os.path.dirname(__file__), "../../packaging/voca.example.yaml")


def test_backtest_finds_injected_incidents_and_explains_them(tmp_path):
    feed, truth = tmp_path / "f.jsonl.gz", tmp_path / "t.json"
    r = run_voca("simulate", "--seed", "4", "--days", "28", "-o", str(feed), "--truth",
                 str(truth))
    assert r.returncode == 0, r.stderr
    t = json.loads(truth.read_text())
    r = run_voca("backtest", "-c", EXAMPLE, "--json", str(feed))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["events"] == t["events"]
    assert out["repeats"] == t["duplicates"]
    incidents = out["incidents"]

    # Both injected volume spikes of this seed (74 and 21 extra events) are found
    # on the right key, within the injection or a day after it ended (the
    # sparse one, 0.4/h, three hours in, at p = 2e-5), and explained: the
    # p-value is under the rule's alpha, which is the configured one.
    for inj in (i for i in t["incidents"] if i["kind"] == "volume_spike"):
        key = f"sku={inj['sku']} category={inj['category']}"
        end = datetime.datetime.fromisoformat(inj["end"].replace("Z", "+00:00"))
        latest = (end + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
        hits = [i for i in incidents if i["rule"] == "complaint-spike" and i["key"] == key
                and inj["start"] <= i["opened"] <= latest]
        assert hits, f"missed {inj}"
        why = hits[0]["why"]
        assert why["observed"] > why["expected"] * 2
        assert why["p_value"] < why["alpha"] == 3e-5
        assert why["examples"] and all(e.startswith("sim") for e in why["examples"])
        assert set(why["guards"]) == {"min_count", "lift", "excess", "warmup"}
    # Every explanation has the parts the issue names, in one shape for every
    # kind: the window, observed vs expected, the test, the guards that held,
    # the baseline's age and the examples (a p-value wherever there is a
    # model: new_topic's first occurrence has none).
    kinds = set()
    for i in incidents:
        why = i["why"]
        kinds.add(i["kind"])
        assert {"window", "observed", "expected", "test", "guards", "baseline_age_h",
                "examples"} <= set(why), i
        assert {"start", "end"} <= set(why["window"]), i
        assert why["window"]["start"] <= why["window"]["end"], i
        assert why["guards"] and all(g.endswith("ok") for g in why["guards"].values()), i
        assert i["kind"] == "new_topic" or "p_value" in why, i
    assert kinds == {"threshold", "spike", "rate_shift", "flatline", "new_topic"}
    # Incidents on SKUs without an injection are within the issue's budget of
    # 1 per 10,000 key-hours (detect measures ~0.4 over forty seeds; this seed's
    # 200 SKUs x 28 days allow 13). Zero would be luck: one clean spike a
    # month is what 0.07 per 10,000 gives here (a bestseller's Sunday night).
    injected = {i.get("sku") for i in t["incidents"]}
    clean = [i for i in incidents if i["kind"] != "flatline"
             and i["key"].split()[0][4:] not in injected]
    assert len(clean) <= t["skus"] * 24 * 28 / 10000, [i["summary"] for i in clean]
    assert sum(i["kind"] == "spike" for i in clean) <= 2, [i["summary"] for i in clean]
    # The defect bursts (three reports of one defect) are found by the threshold
    # rule, on that defect's key.
    for inj in (i for i in t["incidents"] if i["kind"] == "defect_burst"):
        key = f"sku={inj['sku']} subcategory={inj['subcategory']}"
        assert any(i["rule"] == "severe-defects" and i["key"] == key
                   for i in incidents), f"missed {inj}"


def test_backtest_rolls_a_category_surge_up(tmp_path):
    # Two surges of one category's complaints on several SKUs at once
    # (voca simulate --campaigns); the second lifts SKU-1007 25x, five times
    # the others. Each becomes one roll-up incident that the members' alerts
    # go into; only the two members that fired before it opened alert on
    # their own, and the SKU lifted beyond the others is told on its own.
    at = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    feed, truth = tmp_path / "f.jsonl", tmp_path / "t.json"
    r = run_voca("simulate", "--seed", "2", "--days", "28", "--incidents", "0",
                 "--campaigns", "2", "-o", str(feed), "--truth", str(truth))
    assert r.returncode == 0, r.stderr
    t = json.loads(truth.read_text())
    surges = t["incidents"]
    assert [s["kind"] for s in surges] == ["category_surge"] * 2
    assert "standout" not in surges[0] and surges[1]["standout"] == "SKU-1007"
    # The truth counts what the feed holds, member by member (detect's
    # ideal test reads it).
    events = {}
    for line in feed.read_text().splitlines():
        e = json.loads(line)
        events[e["event_id"]] = e
    for s in surges:
        for m in s["members"]:
            held = [e for e in events.values() if e["sku"] == m["sku"]
                    and e["category"] == s["category"] and s["start"] <= e["ts"] < s["end"]]
            assert m["window_events"] == len(held), (s["category"], m)
            assert m["size"] == (25 if m["sku"] == s.get("standout") else 5)
        assert sum(m["window_events"] for m in s["members"]) > 5 * sum(
            m["baseline_events"] for m in s["members"]) * 0.7

    out = json.loads(run_voca("backtest", "-c", EXAMPLE, "--json", str(feed)).stdout)
    incidents = out["incidents"]
    for s in surges:
        start, end = at(s["start"]), at(s["end"]) + datetime.timedelta(days=1)
        rollups = [i for i in incidents if i["key"] == f"category={s['category']}"
                   and start <= at(i["opened"]) <= end]
        assert len(rollups) == 1, s
        rolled = [i for i in incidents if i["suppressed"] == "rolled up into incident "
                  f"{rollups[0]['id']} (category={s['category']})"]
        assert len(rolled) >= 2, s
        members = [i for i in incidents if i["key"].startswith("sku=")
                   and i["key"].endswith(f" category={s['category']}")]
        alerts = {i["key"]: sum(start <= at(n) <= end for n in i["notified"]) for i in members}
        standout = f"sku={s.get('standout')} category={s['category']}"
        assert sum(n for k, n in alerts.items() if k != standout) <= 2, alerts
        assert s.get("standout") is None or alerts[standout] >= 1, alerts

    # The JSON says what the text says, incident by incident: a roll-up
    # opens inside the firing of the member that completes it, before that
    # member (whose id is lower) is told; updates once went to the wrong
    # element. And "notified" lists the changes that alerted.
    text = run_voca("backtest", "-c", EXAMPLE, str(feed)).stdout.splitlines()
    told, resolved, summary = {}, {}, {}
    for n, line in enumerate(text):
        m = re.match(r"(\S{16})  (opened|reopened|re-alert|resolved) +#(\d+) +(.*)", line)
        if not m:
            continue
        when, change, id = m.group(1), m.group(2), int(m.group(3))
        if change == "resolved":
            resolved[id] = when
            continue
        resolved.pop(id, None)
        if change == "opened":
            summary[id] = re.sub(r"^tier \d +\S+ +", "", m.group(4))
        muted = n + 1 < len(text) and text[n + 1].lstrip().startswith("(not notified")
        if not muted:
            told.setdefault(id, []).append(when)
    assert len(summary) == len(incidents) and any(i["suppressed"] for i in incidents)
    # What muted a change reads on its own ("suppressed by rolled up into ..." did not).
    assert any(line.strip().startswith("(not notified: rolled up into incident ")
               for line in text), text
    for i in incidents:
        assert i["summary"].startswith(summary[i["id"]][:100]), i["id"]
        assert [n[:16] for n in i["notified"]] == told.get(i["id"], []), i["id"]
        assert (i["resolved"] or "")[:16] == resolved.get(i["id"], ""), i["id"]


def test_backtest_text_and_errors(tmp_path):
    feed = tmp_path / "f.jsonl"
    r = run_voca("simulate", "--seed", "9", "--days", "3", "-o", str(feed))
    assert r.returncode == 0
    r = run_voca("backtest", "-c", EXAMPLE, str(feed))
    assert r.returncode == 0, r.stderr
    assert "backtest: " in r.stdout and "events counted" in r.stdout
    assert "severe-defects           threshold  tier 1" in r.stdout
    assert "tier 2: " in r.stdout
    # A configuration without rules, and a bad rule, are clear errors.
    empty = tmp_path / "empty.yaml"
    empty.write_text("log:\n  level: info\n")
    r = run_voca("backtest", "-c", str(empty), str(feed))
    assert r.returncode == 1 and "has no rules" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    kind: spike\n    where: [\"rating >= five\"]\n")
    r = run_voca("backtest", "-c", str(bad), str(feed))
    assert r.returncode == 1
    assert f"{bad}:2: rules[0] (x): 'rating >= five': rating compares with a number" in r.stderr


def test_backtest_output_does_not_depend_on_its_decoders(tmp_path):
    # Lines are dealt out to the decoders in chunks of 256 and read back in
    # turn: any count must give the same incidents and the same counts, with
    # malformed lines, repeats and revisions anywhere in the feed.
    feed = tmp_path / "f.jsonl.gz"
    r = run_voca("simulate", "--seed", "3", "--days", "10", "--invalid", "0.01",
                 "-o", str(feed))
    assert r.returncode == 0, r.stderr
    outs = []
    for n in ("1", "2", "4"):
        r = run_voca("backtest", "--decoders", n, "-c", EXAMPLE, "--json", str(feed))
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert outs[0] == outs[1] == outs[2]
    out = json.loads(outs[0])
    assert out["invalid"] > 0 and out["repeats"] > 0 and out["incidents"]
    r = run_voca("backtest", "--decoders", "0", "-c", EXAMPLE, str(feed))
    assert r.returncode == 2 and "--decoders takes 1 to 4, not '0'" in r.stderr


def test_backtest_decodes_with_the_configured_limits(tmp_path):
    # The backtest takes what the daemon's ingest would: an event over the
    # default 1 MiB is counted under a larger ingest.max_message_bytes, and
    # events over a smaller limit are invalid, as the daemon quarantines them.
    big = json.dumps({"event_id": "big", "ts": "2026-03-01T10:00:00Z", "category": "shipping",
                      "sentiment": {"label": "negative", "score": -0.6}, "sku": "SKU-1",
                      "confidence": 0.9, "attachment": "x" * (1 << 20)})
    small = big.replace('"big"', '"small"').replace("x" * (1 << 20), "x" * 2000)
    feed = tmp_path / "f.jsonl"
    feed.write_text(big + "\n" + small + "\n")
    rules = "rules:\n  - name: any\n    kind: threshold\n    where: [\"sku == SKU-1\"]\n"
    for limit, counted, invalid in (("2MiB", 2, 0), ("1MiB", 1, 1), ("1KiB", 0, 2)):
        conf = tmp_path / f"{limit}.yaml"
        conf.write_text(f"ingest:\n  max_message_bytes: {limit}\n" + rules)
        r = run_voca("backtest", "-c", str(conf), "--json", str(feed))
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert (out["events"], out["invalid"]) == (counted, invalid), (limit, out)


def test_backtest_says_where_a_known_issue_comments(tmp_path, monkeypatch):
    # The backtest delivers nothing, but says what the daemon would do with a
    # known issue's incident: not notified, and a comment on its ticket.
    monkeypatch.setenv("VOCA_BT_JIRA_TOKEN", "t")
    feed = tmp_path / "f.jsonl"
    feed.write_text("".join(json.dumps({
        "event_id": f"e{i}", "ts": f"2026-03-01T10:0{i}:00Z", "category": "product_defect",
        "sentiment": {"label": "negative", "score": -0.8}, "sku": sku, "confidence": 0.9})
        + "\n" for i, sku in enumerate(("SKU-1", "SKU-2"))))
    conf = tmp_path / "c.yaml"
    conf.write_text("""rules:
  - name: defects
    kind: threshold
    tier: 1
    group_by: [sku]
    where: ["category == product_defect"]
receivers:
  - name: jira
    kind: jira
    mode: datacenter
    url: https://jira.example.com
    token: ${env:VOCA_BT_JIRA_TOKEN}
    project: OPS
known_issues:
  - matchers: ["sku == SKU-1"]
    ticket: OPS-7
    receiver: jira
""")
    r = run_voca("backtest", "-c", str(conf), str(feed))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    i = next(n for n, line in enumerate(lines) if "opened" in line and "sku=SKU-1" in line)
    assert "(not notified: known issue OPS-7" in lines[i + 1], lines[i:i + 3]
    assert "a comment on OPS-7 through jira instead" in lines[i + 2], lines[i:i + 3]
    assert r.stdout.count("a comment on") == 1, r.stdout


def test_backtest_judges_the_future_by_now_or_not_at_all(tmp_path):
    # The backtest refuses events dated past ingest.max_future as the daemon
    # would, by this machine's clock; --now sets that clock (a replay as of
    # a given day), and --now none turns the check off (a feed simulated to
    # start in the future).
    feed = tmp_path / "f.jsonl"
    feed.write_text("".join(json.dumps({
        "event_id": f"e{i}", "ts": f"2099-03-01T10:0{i}:00Z", "category": "shipping",
        "sentiment": {"label": "negative", "score": -0.6}, "sku": "SKU-1",
        "confidence": 0.9}) + "\n" for i in range(3)))
    conf = tmp_path / "c.yaml"
    conf.write_text("rules:\n  - name: any\n    kind: threshold\n    where: [\"sku == SKU-1\"]\n")
    for now, counted, invalid in ((None, 0, 3), ("2099-03-01T10:00:00Z", 3, 0),
                                  ("2099-02-01T00:00:00Z", 0, 3), ("none", 3, 0)):
        args = ["backtest", "-c", str(conf), "--json", str(feed)]
        if now:
            args[1:1] = ["--now", now]
        r = run_voca(*args)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert (out["events"], out["invalid"]) == (counted, invalid), (now, out)
    r = run_voca("backtest", "--now", "yesterday", "-c", str(conf), str(feed))
    assert r.returncode == 2 and "--now takes an RFC 3339 time or 'none'" in r.stderr


def test_backtest_reports_reopenings_and_verifications(tmp_path):
    # A defect back two days after its incident resolved reopens it (same
    # id, its time in "reopened"); quiet for the week after, it is verified.
    # The backtest's JSON says both, so that tests/bench/detect counts a
    # reopening as an alert and can match it to an injection.
    def ev(eid, ts, category="product_defect"):
        return json.dumps({"event_id": eid, "ts": ts, "category": category, "sku": "SKU-1",
                           "sentiment": {"label": "negative", "score": -0.8},
                           "confidence": 0.9}) + "\n"
    feed = tmp_path / "f.jsonl"
    feed.write_text(ev("d1", "2026-03-01T10:00:00Z") + ev("d2", "2026-03-03T10:00:00Z")
                    + ev("p1", "2026-03-20T00:00:00Z", "praise"))
    conf = tmp_path / "c.yaml"
    conf.write_text("""rules:
  - name: defects
    kind: threshold
    group_by: [sku]
    where: ["category == product_defect"]
    window: 1h
    resolve_after: 1h
""")
    r = run_voca("backtest", "-c", str(conf), "--json", str(feed))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["incidents"]) == 1, out["incidents"]
    inc = out["incidents"][0]
    assert inc["opened"].startswith("2026-03-01T10:00")
    assert [t[:16] for t in inc["reopened"]] == ["2026-03-03T10:00"]
    assert inc["reopens"] == 1 and inc["resolved"].startswith("2026-03-03T11:00")
    assert inc["verified"].startswith("2026-03-10T11:00")
    assert inc["firings"] == 1  # of the reopened incident; the verification has none
    counts = out["by_rule"]["defects"]
    assert (counts["opened"], counts["reopened"], counts["verified"]) == (1, 1, 1)
    text = run_voca("backtest", "-c", str(conf), str(feed)).stdout
    assert "reopened #1" in text and "1 verified" in text, text


def test_a_new_spike_inside_an_open_incident_is_told_again(tmp_path):
    """Seed 1 with campaigns: a billing surge opens SKU-1000's incident, which
    its 24 h window keeps open into the next day, when SKU-1000 spikes on its
    own (+43 over 3 hours). That only updated the open incident, rolled up
    into the surge's: told to nobody. It is told at its first hour's close,
    as the key's own news, listed under `again` (a subset of `notified`)."""
    feed, truth = tmp_path / "f.jsonl.gz", tmp_path / "t.json"
    r = run_voca("simulate", "--seed", "1", "--campaigns", "4", "-o", str(feed), "--truth",
                 str(truth))
    assert r.returncode == 0, r.stderr
    spikes = [(i["category"], i["start"]) for i in json.loads(truth.read_text())["incidents"]
              if i["kind"] == "volume_spike" and i["sku"] == "SKU-1000"]
    assert ("billing", "2026-01-14T14:00:00.000Z") in spikes, spikes
    r = run_voca("backtest", "-c", EXAMPLE, "--json", str(feed))
    assert r.returncode == 0, r.stderr
    told = [(i["key"], i["again"]) for i in json.loads(r.stdout)["incidents"] if i["again"]]
    assert told == [("sku=SKU-1000 category=billing", ["2026-01-14T15:00:00.000Z"])], told
    inc = next(i for i in json.loads(r.stdout)["incidents"]
               if i["key"] == "sku=SKU-1000 category=billing")
    assert "2026-01-14T15:00:00.000Z" in inc["notified"]
    assert inc["opened"] < "2026-01-14"  # the surge's, the day before
    text = run_voca("backtest", "-c", EXAMPLE, str(feed)).stdout.splitlines()
    n = next(k for k, line in enumerate(text) if "again, after 6 h clear" in line)
    assert text[n].startswith("2026-01-14T15:00  re-alert"), text[n]
    assert "sku=SKU-1000 category=billing: 21 events in the last 1h" in text[n], text[n]
    assert not text[n + 1].lstrip().startswith("(not notified"), text[n + 1]
