#!/usr/bin/python3
"""Crash test: kill -9 voca at random moments while incidents are delivered.

    crash_delivery.py [--incidents 200] [--kills 50] [--seed 1] [--delay-ms 30]

200 events open 200 incidents (a count-1 threshold rule), each routed to
fake Jira, ServiceNow, Slack (bot) and Teams that answer after a small delay
(so deliveries are always in flight). voca is then killed with SIGKILL at a
random moment, restarted, and killed again, --kills times; a last run lets
everything finish. It prints what it measured and exits 1 unless:

  - no delivery is lost: every one is done (none pending, none dead);
  - no ticket is duplicated: one Jira issue per idempotency label, one
    ServiceNow incident per correlation_id;
  - chat duplicates (Slack parents, Teams cards) and extra evidence
    attachments (Jira, ServiceNow) are no more than the sends voca logged as
    interrupted ("the receiver may show it twice").

Deterministic for a seed apart from where the kills fall in time.
"""
import argparse
import collections
import json
import os
import pathlib
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from fakes import FakeJira, FakeServiceNow, FakeSlack, FakeTeams  # noqa: E402

VOCA = os.environ.get("VOCA_BIN") or str(ROOT / "build" / "voca")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(d, port, f):
    return f"""ingest:
  mode: pull
  endpoints: [tcp://127.0.0.1:{port}]
store:
  path: {d}/voca.db
log:
  level: info
engine:
  lateness: 0s
  budget_per_hour: 0
rules:
  - name: defects
    kind: threshold
    tier: 1
    group_by: [sku]
    where: ["category == product_defect"]
    count: 1
    max_p: 0
receivers:
  - name: jira
    kind: jira
    url: {f['jira'].url}
    user: ${{env:CRASH_JIRA_USER}}
    token: ${{env:CRASH_JIRA_TOKEN}}
    project: OPS
    search_lag: 3s
  - name: snow
    kind: servicenow
    url: {f['snow'].url}
    user: ${{env:CRASH_SNOW_USER}}
    password: ${{env:CRASH_SNOW_PASSWORD}}
    search_lag: 1s
  - name: slack
    kind: slack
    mode: bot
    url: {f['slack'].url}/api
    token: ${{env:CRASH_SLACK_TOKEN}}
    channel: C0ALERTS
    min_interval: 0s
  - name: teams
    kind: teams
    url: ${{env:CRASH_TEAMS_URL}}
    min_interval: 0s
routes:
  - receivers: [jira, snow, slack, teams]
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--incidents", type=int, default=200)
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--delay-ms", type=int, default=30)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    os.environ.update(CRASH_JIRA_USER="bot@example.com", CRASH_JIRA_TOKEN="jira-token",
                      CRASH_SNOW_USER="svc", CRASH_SNOW_PASSWORD="pw",
                      CRASH_SLACK_TOKEN="xoxb-fake-token")
    f = {"jira": FakeJira(), "snow": FakeServiceNow(), "slack": FakeSlack(), "teams": FakeTeams()}
    for x in f.values():
        x.hang(".", args.delay_ms / 1000)   # every answer takes a while: kills land mid-flight
        x.start()
    f["jira"].search_lag = 2.0
    os.environ["CRASH_TEAMS_URL"] = f["teams"].url + f["teams"].path()
    d = tempfile.mkdtemp(prefix="voca-crash-")
    port = free_port()
    cfg = pathlib.Path(d) / "voca.yaml"
    cfg.write_text(config(d, port, f))
    log = open(pathlib.Path(d) / "voca.log", "ab")
    db = pathlib.Path(d) / "voca.db"

    def start():
        p = subprocess.Popen([VOCA, "run", "-c", str(cfg)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while b"running (store schema" not in (pathlib.Path(d) / "voca.log").read_bytes()[-4096:]:
            if time.monotonic() > deadline or p.poll() is not None:
                sys.exit("voca did not start; see " + d)
            time.sleep(0.01)
        return p

    def q(sql):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    # Round 0: the events arrive and the incidents open (with their deliveries).
    p = start()
    feed = pathlib.Path(d) / "feed.jsonl"
    with open(feed, "w") as out:
        for i in range(args.incidents):
            out.write(json.dumps({"event_id": f"c{i}", "ts": "2026-03-01T10:00:00Z",
                                  "category": "product_defect", "severity": "high",
                                  "sentiment": {"label": "negative", "score": -0.8},
                                  "sku": f"SKU-{i:04d}", "confidence": 0.9,
                                  "text": f"unit {i} broke"}) + "\n")
    subprocess.run([VOCA, "publish", "-s", "push", "-e", f"tcp://127.0.0.1:{port}",
                    "--frames", "1", "-q", str(feed)], check=True)
    deadline = time.monotonic() + 60
    while (q("SELECT count(*) FROM deliveries")[0][0] if db.exists() else 0) < 4 * args.incidents:
        if time.monotonic() > deadline:
            sys.exit("the incidents did not open; see " + d)
        time.sleep(0.05)
    t0 = time.monotonic()
    kills_in_flight = 0
    for k in range(args.kills):
        time.sleep(rnd.uniform(0.05, 0.6))
        pending = q("SELECT count(*) FROM deliveries WHERE status = 'pending'")[0][0]
        kills_in_flight += pending > 0
        p.kill()
        p.wait()
        p = start()
    # The last run: let everything finish.
    deadline = time.monotonic() + 300
    while q("SELECT count(*) FROM deliveries WHERE status = 'pending'")[0][0]:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - t0
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    log.close()
    text = (pathlib.Path(d) / "voca.log").read_text(errors="replace")

    status = collections.Counter(s for (s,) in q("SELECT status FROM deliveries"))
    labels = collections.Counter(lab for i in f["jira"].issues.values() for lab in i["labels"]
                                 if lab.startswith("voca-"))
    corr = collections.Counter(r["correlation_id"] for r in f["snow"].records)
    parents = collections.Counter(
        re.search(r"voca-[0-9a-f]{16}", json.dumps(m["blocks"])).group(0)
        for m in f["slack"].messages if m["thread_ts"] is None)
    cards = collections.Counter(
        re.search(r"voca-[0-9a-f]{16}", json.dumps(r["card"])).group(0) for r in f["teams"].runs)
    interrupted = collections.Counter(
        m.group(1) for m in re.finditer(r"delivery (\w+): id=\d+ incident=\d+: a send was "
                                        r"interrupted", text))
    creates_resumed = text.count("a create was interrupted")
    dup = lambda c: sum(v - 1 for v in c.values() if v > 1)
    att = sum(len(i["attachments"]) for i in f["jira"].issues.values())

    print(f"crash test: {args.incidents} incidents x 4 receivers = {sum(status.values())} "
          f"deliveries; {args.kills} kill -9 ({kills_in_flight} with deliveries in flight); "
          f"{elapsed:.1f} s")
    print(f"  deliveries: {dict(status)}")
    print(f"  jira: {len(f['jira'].issues)} issues, {len(labels)} labels, {dup(labels)} duplicate "
          f"tickets; {att} evidence attachments; {creates_resumed} interrupted creates resumed "
          f"with a find")
    print(f"  servicenow: {len(f['snow'].records)} incidents, {dup(corr)} duplicates; "
          f"{len(f['snow'].attachments)} attachments")
    print(f"  slack: {len(parents)} threads, {dup(parents)} duplicate parents; teams: "
          f"{len(cards)} incidents carded, {dup(cards)} duplicate cards; interrupted sends "
          f"logged: {dict(interrupted)}")
    ok = (status.get("done", 0) == 4 * args.incidents
          and len(labels) == args.incidents and dup(labels) == 0
          and len(corr) == args.incidents and dup(corr) == 0
          and len(parents) == args.incidents and dup(parents) <= interrupted["slack"]
          and len(cards) == args.incidents and dup(cards) <= interrupted["teams"]
          and att - args.incidents <= interrupted["jira"]
          and len(f["snow"].attachments) - args.incidents <= interrupted["snow"])
    print("  verdict: " + ("PASS: nothing lost, no duplicate ticket, every duplicate message "
                           "or attachment logged" if ok else f"FAIL (files in {d})"))
    for x in f.values():
        x.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
