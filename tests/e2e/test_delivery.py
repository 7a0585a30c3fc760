"""Delivery end to end: the real voca binary against fakes that enforce CONTRACTS.md.

One incident gives exactly one ticket per tracker and one message per
channel; a re-occurrence comments instead of opening another; throttling and
server errors are retried until they land; a 400 is dead-lettered with its
reason and can be re-queued; a kill in the middle of a create does not make a
second ticket, even while Jira's search hides the first.
"""
import json
import sqlite3
import re
import signal
import time

import pytest

from conftest import event, run_voca, wait_for
from fakes import FakeJira, FakeServiceNow, FakeSlack, FakeTeams

RULES = """
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
    window: 1h
    max_p: 0
    bucket: 5m
    resolve_after: 1h
    cooldown: 1m
    realert_max: 1m
"""


@pytest.fixture
def fakes(monkeypatch):
    f = {"jira": FakeJira().start(), "snow": FakeServiceNow().start(),
         "slack": FakeSlack().start(), "teams": FakeTeams().start(),
         "hook": FakeSlack(hook="T1/B1/hook").start()}
    # URLs that are credentials are secrets: from the environment, never in the file.
    monkeypatch.setenv("VOCA_TEST_TEAMS_URL", f["teams"].url + f["teams"].path())
    monkeypatch.setenv("VOCA_TEST_HOOK_URL", f["hook"].url + "/services/T1/B1/hook")
    yield f
    for x in f.values():
        x.stop()


def delivery_config(f, only=None, jira_extra="", slack_extra=""):
    receivers = {
        "jira": f"""  - name: jira
    kind: jira
    mode: cloud
    url: {f['jira'].url}
    user: ${{env:VOCA_TEST_JIRA_USER}}
    token: ${{env:VOCA_TEST_JIRA_TOKEN}}
    project: OPS
    labels: [customer-voice]
    search_lag: 6s
    max_age: 2m
{jira_extra}""",
        "snow": f"""  - name: snow
    kind: servicenow
    url: {f['snow'].url}
    user: ${{env:VOCA_TEST_SNOW_USER}}
    password: ${{env:VOCA_TEST_SNOW_PASSWORD}}
    assignment_group: Quality
    search_lag: 2s
""",
        "slack": f"""  - name: slack
    kind: slack
    mode: bot
    url: {f['slack'].url}/api
    token: ${{env:VOCA_TEST_SLACK_TOKEN}}
    channel: C0ALERTS
    min_interval: 100ms
{slack_extra}""",
        "teams": """  - name: teams
    kind: teams
    url: ${env:VOCA_TEST_TEAMS_URL}
""",
        "hook": f"""  - name: hook
    kind: slack
    mode: webhook
    webhook_url: ${{env:VOCA_TEST_HOOK_URL}}
    min_interval: 100ms
""",
    }
    names = only or list(receivers)
    return (RULES + "receivers:\n" + "".join(receivers[n] for n in names)
            + "owners:\n  - name: quality\n    slack_mentions: [S0QUALITY]\n"
            + "    teams_mentions: [\"q@example.com|Quality Team\"]\n"
            + "routes:\n  - owner: quality\n    receivers: [" + ", ".join(names) + "]\n")


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch):
    monkeypatch.setenv("VOCA_TEST_JIRA_USER", "bot@example.com")
    monkeypatch.setenv("VOCA_TEST_JIRA_TOKEN", "jira-token")
    monkeypatch.setenv("VOCA_TEST_SNOW_USER", "svc")
    monkeypatch.setenv("VOCA_TEST_SNOW_PASSWORD", "pw")
    monkeypatch.setenv("VOCA_TEST_SLACK_TOKEN", "xoxb-fake-token")


def defect(eid, ts, sku="SKU-7", **kw):
    return event(eid, ts=ts, sku=sku, category="product_defect", severity="high",
                 text=kw.pop("text", f"The {sku} kettle cracked after a week."), **kw)


def deliveries(agent, status=None):
    sql = "SELECT receiver, action, status, last_error FROM deliveries"
    return agent.query(sql + (" WHERE status = ?" if status else ""), *([status] if status else []))


def settled(agent, n):
    """n deliveries, none pending."""
    rows = deliveries(agent)
    return len(rows) >= n and all(r[2] != "pending" for r in rows)


def test_one_incident_lands_once_everywhere_then_comments_then_resolves(agent_factory, fakes):
    a = agent_factory(extra=delivery_config(fakes)).start()
    a.send_event(defect("e1", "2026-03-01T10:00:00Z",
                        text="Cracked. Mail me at jane.doe@example.com or +1 415 555 0100, "
                             "card 4111 1111 1111 1111. <!channel> @here *bold*"))
    wait_for(lambda: settled(a, 5), timeout=30, what="the first deliveries")
    assert {r[2] for r in deliveries(a)} == {"done"}, deliveries(a)

    jira, snow, slack, teams, hook = (fakes[k] for k in ("jira", "snow", "slack", "teams", "hook"))
    # Jira: one ticket, labelled for dedupe, ADF description, evidence attached.
    assert len(jira.issues) == 1
    issue = next(iter(jira.issues.values()))
    label = next(lab for lab in issue["labels"] if lab.startswith("voca-"))
    assert re.fullmatch(r"voca-[0-9a-f]{16}", label) and "customer-voice" in issue["labels"]
    assert issue["fields"]["summary"].startswith("[voca] tier 1 defects: sku=SKU-7")
    assert len(issue["attachments"]) == 1 and issue["attachments"][0][1] == "application/json"
    pack = json.loads(issue["attachments"][0][2])
    assert pack["incident"]["dedupe"] == label and pack["who"]["owners"] == ["quality"]
    # ServiceNow: one incident keyed by correlation_id, with the evidence file.
    assert len(snow.records) == 1 and snow.records[0]["correlation_id"] == label
    assert snow.records[0]["assignment_group"] == "Quality"
    assert len(snow.attachments) == 1
    # Slack bot: one parent message mentioning the owner, the evidence in its thread.
    parents = [m for m in slack.messages if m["thread_ts"] is None]
    assert len(parents) == 1 and len(slack.files) == 1
    assert slack.files[0][2] == parents[0]["ts"]
    body = json.dumps(parents[0]["blocks"])
    assert "<!subteam^S0QUALITY>" in body
    # Personal data never left; Slack control sequences were defused.
    everything = b"".join(r[3] for x in fakes.values() for r in x.requests)
    for leak in (b"jane.doe@example.com", b"415 555 0100", b"4111 1111 1111 1111"):
        assert leak not in everything
    assert b"[email]" in everything and b"[phone]" in everything and b"[card]" in everything
    assert "<!channel>" not in body and "&lt;!channel&gt;" in body
    # Teams: one card, accepted by the flow run.
    assert len(teams.runs) == 1 and teams.runs[0]["ok"], teams.runs
    assert "<at>Quality Team</at>" in json.dumps(teams.runs[0]["card"])
    assert len(hook.messages) == 1

    # Re-occurrence after the cooldown: comments and replies, no new ticket.
    a.send_event(defect("e2", "2026-03-01T10:10:00Z"))
    wait_for(lambda: settled(a, 10), timeout=30, what="the re-alert deliveries")
    assert len(jira.issues) == 1 and len(issue["comments"]) == 1
    assert len(snow.records) == 1
    assert any(e == "work_notes" for _, e, _ in snow.journal[1:])
    replies = [m for m in slack.messages if m["thread_ts"] == parents[0]["ts"]]
    assert len(replies) == 1
    assert len(teams.runs) == 2

    # Clear for resolve_after: the ticket is transitioned, the incident resolved.
    a.send_event(event("later", ts="2026-03-01T13:00:00Z", category="praise"))
    wait_for(lambda: settled(a, 15), timeout=30, what="the resolve deliveries")
    assert issue["status"] == "Done" and issue["history"] == ["Done"]
    assert snow.records[0]["state"] == "6"
    assert snow.records[0]["close_code"] == "Solution provided"
    assert {r[2] for r in deliveries(a)} == {"done"}, deliveries(a)
    a.stop()
    assert "jira-token" not in a.log_text() and "xoxb-fake-token" not in a.log_text()
    assert "sig=fakesig" not in a.log_text()
    r = run_voca("check", "-c", str(a.config))
    assert "fakesig" not in r.stdout and "${env:VOCA_TEST_TEAMS_URL}" in r.stdout
    r = run_voca("stats", "-c", str(a.config))
    assert re.search(r"jira\s+3 done,\s+0 pending,\s+0 dead letters", r.stdout), r.stdout


def test_429_and_5xx_are_retried_and_land(agent_factory, fakes):
    jira, slack = fakes["jira"], fakes["slack"]
    jira.fail(r"/rest/api/3/issue$", 429, {"errorMessages": [], "errors": {}},
              {"Retry-After": "1", "RateLimit-Reason": "jira-burst-based",
               "X-RateLimit-Reset": "2026-03-01T10:01Z"})
    jira.fail(r"/search/jql", 503, "", {"Retry-After": "1"})
    slack.fail(r"chat.postMessage", 500, "oops", times=2)
    a = agent_factory(extra=delivery_config(fakes, only=["jira", "slack"])).start()
    a.send_event(defect("e1", "2026-03-01T10:00:00Z"))
    wait_for(lambda: settled(a, 2), timeout=40, what="retried deliveries")
    assert {r[2] for r in deliveries(a)} == {"done"}, deliveries(a)
    assert len(jira.issues) == 1
    assert len([m for m in slack.messages if m["thread_ts"] is None]) == 1
    retries = a.query("SELECT status FROM delivery_log WHERE verdict = 'retry'")
    assert sorted(s for (s,) in retries) == [429, 500, 500, 503]
    assert len(jira.calls("POST", r"/issue$")) == 2
    # Retry-After was honoured: the retry of the create waited at least its second.
    (wait,) = a.query("SELECT min(b.at_ms) - a.at_ms FROM delivery_log a, delivery_log b"
                      " WHERE a.status = 429 AND b.delivery_id = a.delivery_id"
                      " AND b.id > a.id")[0]
    assert wait >= 1000
    assert "verdict=retry" in a.log_text()


def test_400_is_dead_lettered_with_its_reason_and_can_be_requeued(agent_factory, fakes):
    jira = fakes["jira"]
    cfg = delivery_config(fakes, only=["jira"], jira_extra="    fields: [\"customfield_999=x\"]\n")
    a = agent_factory(extra=cfg).start()
    a.send_event(defect("e1", "2026-03-01T10:00:00Z"))
    wait_for(lambda: deliveries(a, "dead"), timeout=20, what="a dead letter")
    (_, _, _, reason), = deliveries(a, "dead")
    assert "HTTP 400" in reason and "customfield_999" in reason
    assert jira.issues == {}
    r = run_voca("deadletters", "-c", str(a.config))
    assert r.returncode == 0 and "customfield_999" in r.stdout and "1 dead letter" in r.stdout
    # Fix the receiver side (the fake now knows the field) and re-queue.
    jira_known = FakeJira.create

    def create_any(self, body):
        b = json.loads(body)
        b["fields"].pop("customfield_999", None)
        return jira_known(self, json.dumps(b).encode())
    jira.create = create_any.__get__(jira)
    dead_id = a.scalar("SELECT id FROM deliveries WHERE status = 'dead'")
    r = run_voca("deadletters", "-c", str(a.config), "--requeue", str(dead_id))
    assert r.returncode == 0, r.stderr
    wait_for(lambda: deliveries(a, "done"), timeout=20, what="the re-queued delivery")
    assert len(jira.issues) == 1


def test_kill_during_create_does_not_duplicate_despite_search_lag(agent_factory, fakes):
    jira = fakes["jira"]
    jira.search_lag = 4.0          # new issues invisible to search for 4 s
    jira.hang(r"/rest/api/3/issue$", 1.5)   # the create is slow: kill voca inside it
    a = agent_factory(extra=delivery_config(fakes, only=["jira"])).start()
    a.send_event(defect("e1", "2026-03-01T10:00:00Z"))
    wait_for(lambda: jira.calls("POST", r"/issue$"), timeout=20, what="the create request")
    a.proc.kill()
    a.proc.wait()
    a.proc = None
    a.logfile.close()
    wait_for(lambda: len(jira.issues) == 1, timeout=5, what="the fake to finish the create")
    jira.hangs.clear()
    a.start()
    wait_for(lambda: settled(a, 1), timeout=30, what="the resumed delivery")
    assert len(jira.issues) == 1, list(jira.issues)
    assert "a create was interrupted" in a.log_text()
    assert deliveries(a)[0][2] == "done"
    issue = next(iter(jira.issues.values()))
    assert len(issue["attachments"]) == 1


def test_slack_error_bodies_and_garbage(agent_factory, fakes):
    slack = fakes["slack"]
    slack.fail(r"chat.postMessage", 200, "<html>proxy error</html>", times=1)
    cfg = delivery_config(fakes, only=["slack"])
    a = agent_factory(extra=cfg).start()
    a.send_event(defect("e1", "2026-03-01T10:00:00Z"))
    wait_for(lambda: settled(a, 1), timeout=20, what="slack delivery")
    assert deliveries(a)[0][2] == "done"
    assert "not JSON" in a.log_text()
    # A channel the bot cannot post to is an answer that needs a person: dead letter.
    slack.channels.clear()
    a.send_event(defect("e2", "2026-03-01T10:00:00Z", sku="SKU-8"))
    wait_for(lambda: deliveries(a, "dead"), timeout=20, what="a dead letter")
    assert "Slack error channel_not_found" in deliveries(a, "dead")[0][3]


def test_servicenow_ignoring_the_query_field_does_not_adopt_another_record(agent_factory, fakes):
    snow = fakes["snow"]
    snow.create({"short_description": "someone else's", "correlation_id": "other"})
    orig = FakeServiceNow.query

    def sloppy(self, q, v1):   # as if correlation_id were unknown: every row comes back
        q = dict(q, sysparm_query=q.get("sysparm_query", "").replace("correlation_id", "corr_x"))
        return orig(self, q, v1)
    snow.query = sloppy.__get__(snow)
    a = agent_factory(extra=delivery_config(fakes, only=["snow"])).start()
    a.send_event(defect("e1", "2026-03-01T10:00:00Z"))
    wait_for(lambda: settled(a, 1), timeout=20, what="servicenow delivery")
    assert len(snow.records) == 2 and snow.records[1]["correlation_id"].startswith("voca-")
    assert snow.attachments[0][0] == snow.records[1]["sys_id"]


def test_huge_text_is_cut_and_teams_card_stays_under_28_kb(agent_factory, fakes):
    teams, jira = fakes["teams"], fakes["jira"]
    a = agent_factory(extra=delivery_config(fakes, only=["teams", "jira"])).start()
    # The schema caps a text at 65536 characters (longer ones are quarantined).
    for i in range(8):
        a.send_event(defect(f"big{i}", f"2026-03-01T10:0{i}:00Z", text=f"{i} " + "x" * 65000))
    wait_for(lambda: settled(a, 2) and teams.runs, timeout=30, what="deliveries")
    assert all(r["ok"] for r in teams.runs), [r["error"] for r in teams.runs]
    issue = next(iter(jira.issues.values()))
    assert len(json.dumps(issue["fields"]["description"])) < 32767


def test_bad_receiver_config_names_file_line_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("receivers:\n  - name: j\n    kind: jira\n    url: http://jira.example.com\n"
                   "    token: ${env:HOME}\n    user: ${env:HOME}\n    project: P\n")
    r = run_voca("check", "-c", str(cfg))
    assert r.returncode == 1
    assert "bad.yaml:2: receivers[0]: url: must be https://" in r.stderr
    cfg.write_text("receivers:\n  - name: c\n    kind: console\nroutes:\n  - receivers: [nope]\n")
    r = run_voca("check", "-c", str(cfg))
    assert "bad.yaml:5: routes[0]: receivers: no receiver is named 'nope'" in r.stderr


def test_jira_data_center_gets_wiki_strings_and_a_bearer_token(agent_factory, fakes, monkeypatch):
    dc = FakeJira(mode="dc", token="dc-pat").start()
    try:
        monkeypatch.setenv("VOCA_TEST_JIRA_TOKEN", "dc-pat")
        cfg = RULES + f"""receivers:
  - name: jira-dc
    kind: jira
    mode: datacenter
    url: {dc.url}
    token: ${{env:VOCA_TEST_JIRA_TOKEN}}
    project: OPS
routes:
  - receivers: [jira-dc]
"""
        a = agent_factory(extra=cfg).start()
        a.send_event(defect("e1", "2026-03-01T10:00:00Z", text="{noformat}*x*[y|http://e]"))
        wait_for(lambda: settled(a, 1), timeout=20, what="the DC delivery")
        a.send_event(defect("e2", "2026-03-01T10:10:00Z"))
        wait_for(lambda: settled(a, 2), timeout=20, what="the DC re-alert")
        assert {r[2] for r in deliveries(a)} == {"done"}, deliveries(a)
        (issue,) = dc.issues.values()
        assert isinstance(issue["fields"]["description"], str)
        assert "\\{noformat\\}" in issue["fields"]["description"]
        assert len(issue["comments"]) == 1 and isinstance(issue["comments"][0], str)
        assert dc.calls("POST", r"/rest/api/2/search$") and not dc.calls(None, r"search/jql")
        assert all(h.get("Authorization") == "Bearer dc-pat" for _, _, h, _ in dc.requests)
    finally:
        dc.stop()


def test_a_hanging_receiver_times_out_and_is_retried(agent_factory, fakes):
    teams = fakes["teams"]
    teams.hang(r"/workflows/", 3)
    cfg = delivery_config(fakes, only=["teams"]).replace(
        "    kind: teams\n", "    kind: teams\n    timeout: 500ms\n")
    a = agent_factory(extra=cfg).start()
    a.send_event(defect("e1", "2026-03-01T10:00:00Z"))
    wait_for(lambda: a.scalar("SELECT count(*) FROM delivery_log WHERE verdict = 'retry'"),
             timeout=20, what="a timed-out attempt")
    assert "Timeout was reached" in a.query("SELECT detail FROM delivery_log")[0][0]
    teams.hangs.clear()
    wait_for(lambda: settled(a, 1), timeout=20, what="the retry")
    assert deliveries(a)[0][2] == "done"


def test_webhook_is_signed_and_its_signature_verifies(agent_factory, tmp_path, monkeypatch):
    import hashlib
    import hmac
    import http.server
    import threading

    got = []

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv("VOCA_TEST_HOOK_SECRET", "s3cret")
    try:
        cfg = RULES + f"""receivers:
  - name: hook
    kind: webhook
    url: http://127.0.0.1:{srv.server_address[1]}/voca
    secret: ${{env:VOCA_TEST_HOOK_SECRET}}
routes:
  - receivers: [hook]
"""
        a = agent_factory(extra=cfg).start()
        a.send_event(defect("e1", "2026-03-01T10:00:00Z"))
        wait_for(lambda: settled(a, 1), timeout=20, what="the webhook delivery")
        (headers, body), = got
        mac = hmac.new(b"s3cret", headers["X-Voca-Timestamp"].encode() + b"." + body,
                       hashlib.sha256).hexdigest()
        assert headers["X-Voca-Signature"] == "sha256=" + mac
        msg = json.loads(body)
        assert msg["type"] == "voca.incident" and msg["action"] == "open"
        assert msg["pack"]["incident"]["rule"] == "defects"
        assert headers["X-Voca-Delivery"] == str(msg["delivery"])
    finally:
        srv.shutdown()


def test_pending_deliveries_of_a_removed_receiver_are_reported(agent_factory, fakes):
    slack = fakes["slack"]
    slack.fail(r"chat.postMessage", 503, "", times=1000)   # keep it pending
    a = agent_factory(extra=delivery_config(fakes, only=["slack", "teams"])).start()
    a.send_event(defect("e1", "2026-03-01T10:00:00Z"))
    wait_for(lambda: a.scalar("SELECT count(*) FROM delivery_log WHERE verdict = 'retry'"),
             timeout=20, what="a retry")
    a.stop()
    a.write_config(extra=delivery_config(fakes, only=["teams"]))
    a.start()
    wait_for(lambda: "receiver 'slack', which is no longer configured" in a.log_text(),
             timeout=10, what="the warning")
    assert deliveries(a, "pending")[0][0] == "slack"


def test_a_dead_letter_is_announced_to_the_deadletter_receivers(agent_factory, fakes):
    slack, jira = fakes["slack"], fakes["jira"]
    jira.fail(r"/rest/api/3/issue$", 400, {"errorMessages": ["Field 'priority' is required"],
                                           "errors": {}})
    cfg = delivery_config(fakes, only=["jira", "slack"]) + \
        "delivery:\n  deadletter_receivers: [slack]\n"
    a = agent_factory(extra=cfg).start()
    a.send_event(defect("e1", "2026-03-01T10:00:00Z"))
    wait_for(lambda: a.scalar("SELECT count(*) FROM deliveries WHERE action = 'alert'"
                              " AND status = 'done'"), timeout=20, what="the alert")
    (parent,) = [m for m in slack.messages if m["thread_ts"] is None]
    (alert,) = [m for m in slack.messages if m["thread_ts"] == parent["ts"]]
    text = json.dumps(alert["blocks"])
    assert "NOT DELIVERED" in alert["text"]
    assert "Delivery to jira failed for good" in text and "priority" in text
    assert a.scalar("SELECT count(*) FROM incident_changes WHERE change LIKE 'dead letter %'") == 1
    assert "alert queued to delivery.deadletter_receivers" in a.log_text()
    # The alert itself failing is not announced again (no loops).
    slack.channels.clear()
    a.send_event(defect("e2", "2026-03-01T10:00:00Z", sku="SKU-9"))
    jira.fail(r"/rest/api/3/issue$", 400, {"errorMessages": ["again"], "errors": {}})
    wait_for(lambda: a.scalar("SELECT count(*) FROM deliveries WHERE status = 'dead'") >= 3,
             timeout=20, what="dead letters")
    time.sleep(1)
    assert a.scalar("SELECT count(*) FROM deliveries WHERE action = 'alert'") == 2


def test_deadletter_receivers_must_be_chat_receivers(tmp_path, fakes):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(delivery_config(fakes, only=["jira"]) +
                   "delivery:\n  deadletter_receivers: [jira]\n")
    r = run_voca("check", "-c", str(cfg))
    assert r.returncode == 1
    assert "delivery.deadletter_receivers: 'jira' is not a configured chat" in r.stderr


def test_routes_on_a_field_the_key_lacks_through_the_examples(agent_factory, fakes):
    # The rule is keyed by sku; the route asks for a category: the examples' dominant one.
    cfg = delivery_config(fakes, only=["slack", "teams"]).split("routes:\n")[0] + """routes:
  - matchers: ["category == shipping"]
    receivers: [teams]
  - matchers: ["category == product_defect", "change == opened"]
    owner: quality
    receivers: [slack]
"""
    a = agent_factory(extra=cfg).start()
    a.send_event(defect("e1", "2026-03-01T10:00:00Z"))
    wait_for(lambda: settled(a, 1), timeout=20, what="the routed delivery")
    a.send_event(defect("e2", "2026-03-01T10:10:00Z"))   # a re-alert: no route takes it
    wait_for(lambda: "no route matches" in a.log_text(), timeout=20, what="the no-route line")
    assert [(r[0], r[1]) for r in deliveries(a)] == [("slack", "open")]
    assert fakes["teams"].runs == []


SILENCE_UNTIL_1030 = """silences:
  - matchers: ["rule == defects"]
    start: 2026-03-01T10:00:00Z
    end: 2026-03-01T10:30:00Z
    author: oncall@example.com
    comment: a recall is under way
"""


def test_an_incident_opened_in_a_silence_is_announced_when_it_ends(agent_factory, fakes):
    """The team hears of an incident a silence muted when the silence ends
    and the problem is still there - as an opening (a ticket, the owner's
    mention), at its first firing after the end, not at the next re-alert
    interval; one that resolved unheard of is not announced at all."""
    cfg = delivery_config(fakes, only=["jira", "slack"]).replace("cooldown: 1m", "cooldown: 6h")
    a = agent_factory(extra=cfg.replace("realert_max: 1m", "realert_max: 48h")
                      + SILENCE_UNTIL_1030).start()
    a.send_event(defect("e1", "2026-03-01T10:05:00Z", sku="SKU-8"))
    a.send_event(defect("f1", "2026-03-01T10:06:00Z", sku="SKU-9"))
    a.send_event(defect("e2", "2026-03-01T10:20:00Z", sku="SKU-8"))
    wait_for(lambda: a.scalar("SELECT count(*) FROM incident_changes") == 3, what="the changes")
    assert deliveries(a) == []
    a.send_event(defect("e3", "2026-03-01T10:40:00Z", sku="SKU-8"))
    wait_for(lambda: settled(a, 2), timeout=30, what="the announcement")
    assert sorted(r[:3] for r in deliveries(a)) == [("jira", "open", "done"),
                                                    ("slack", "open", "done")]
    jira, slack = fakes["jira"], fakes["slack"]
    assert len(jira.issues) == 1
    assert next(iter(jira.issues.values()))["fields"]["summary"].startswith(
        "[voca] tier 1 defects: sku=SKU-8")
    parents = [m for m in slack.messages if m["thread_ts"] is None]
    assert len(parents) == 1 and "<!subteam^S0QUALITY>" in json.dumps(parents[0]["blocks"])
    # Both resolve; only the one the team heard of is resolved where it was told.
    a.send_event(event("later", ts="2026-03-01T13:00:00Z", category="praise"))
    wait_for(lambda: a.scalar("SELECT count(*) FROM incidents WHERE status = 'resolved'") == 2,
             what="both resolved")
    wait_for(lambda: settled(a, 4), timeout=30, what="the resolve deliveries")
    a.stop()
    got = a.query("SELECT i.key, d.receiver, d.action FROM deliveries d "
                  "JOIN incidents i ON i.id = d.incident_id ORDER BY d.id")
    assert sorted(got) == [("sku=SKU-8", "jira", "open"), ("sku=SKU-8", "jira", "resolve"),
                           ("sku=SKU-8", "slack", "open"), ("sku=SKU-8", "slack", "resolve")]


def test_evidence_of_keys_with_spaces_and_of_keys_too_long_to_keep_whole(agent_factory, fakes):
    """The schema bounds no group field: a SKU may hold spaces or run to
    hundreds of characters. Such an event counts in its group (a key too
    long is cut and ends in a hash of the whole), and the evidence pack
    still finds the group's reports."""
    a = agent_factory(extra=delivery_config(fakes, only=["slack"])).start()
    long_sku = "SKU-" + "x" * 250
    a.send_event(defect("sp-1", "2026-03-01T10:00:00Z", sku="Big Kettle 2000"))
    a.send_event(defect("lg-1", "2026-03-01T10:00:00Z", sku=long_sku))
    wait_for(lambda: settled(a, 2), timeout=20, what="the deliveries")
    a.stop()
    keys = [k for (k,) in a.query("SELECT key FROM incidents ORDER BY id")]
    assert keys[0] == "sku=Big Kettle 2000"
    assert len(keys[1]) == 191 and re.fullmatch(r"sku=SKU-x+~[0-9a-f]{16}", keys[1]), keys[1]
    packs = [json.loads(p) for (p,) in a.query("SELECT pack FROM evidence ORDER BY change_id")]
    assert [[e["id"] for e in p["examples"]] for p in packs] == [["sp-1"], ["lg-1"]]
    assert a.counter("rules_ungrouped") in (None, 0)


def test_evidence_quotes_an_event_over_the_default_size_limit(agent_factory, fakes):
    """The evidence builder reads stored events back: one the ingest took
    under a larger ingest.max_message_bytes is quoted too (it was decoded
    with the default 1 MiB limit and left out of the pack)."""
    a = agent_factory(ingest_extra="  max_message_bytes: 4MiB\n",
                      extra=delivery_config(fakes, only=["slack"])).start()
    a.send_event(defect("big-1", "2026-03-01T10:00:00Z", attachment="x" * (3 << 19)))
    wait_for(lambda: settled(a, 1), timeout=20, what="the delivery")
    a.stop()
    (pack,) = [json.loads(p) for (p,) in a.query("SELECT pack FROM evidence")]
    assert [e["id"] for e in pack["examples"]] == ["big-1"]


def test_a_known_issue_gets_comments_on_its_ticket_and_no_ticket_of_its_own(agent_factory, fakes):
    """DESIGN.md section 5: an incident a known issue covers opens no ticket
    and tells no channel; each change that would have notified (opening,
    due re-alert, resolution) is a comment on the known issue's existing
    ticket - Jira or ServiceNow - which voca never transitions. A ticket
    that does not exist is a dead letter with the tracker's answer."""
    jira, snow, slack = fakes["jira"], fakes["snow"], fakes["slack"]
    status, made, _ = jira.create(json.dumps({"fields": {
        "project": {"key": "PROD"}, "issuetype": {"name": "Bug"},
        "summary": "Kettle lids crack (recall)"}}).encode())
    assert status == 201
    status, rec, _ = snow.create({"short_description": "Blender motor recall",
                                  "assignment_group": "Hardware"})
    assert status == 201
    known_jira, known_snow = made["key"], rec["result"]["number"]
    cfg = delivery_config(fakes, only=["jira", "snow", "slack"]) + f"""known_issues:
  - matchers: ["sku == SKU-8"]
    ticket: {known_jira}
    receiver: jira
    comment: lid recall under way
  - matchers: ["sku == SKU-9"]
    ticket: {known_snow}
    receiver: snow
  - matchers: ["sku == SKU-10"]
    ticket: PROD-999
    receiver: jira
"""
    a = agent_factory(extra=cfg).start()
    a.send_event(defect("k1", "2026-03-01T10:00:00Z", sku="SKU-8"))
    a.send_event(defect("n1", "2026-03-01T10:00:00Z", sku="SKU-9"))
    a.send_event(defect("x1", "2026-03-01T10:00:00Z", sku="SKU-10"))
    a.send_event(defect("k2", "2026-03-01T10:20:00Z", sku="SKU-8"))   # a due re-alert
    wait_for(lambda: settled(a, 4), timeout=30, what="the known-issue comments")
    a.send_event(event("later", ts="2026-03-01T13:00:00Z", category="praise"))
    wait_for(lambda: a.scalar("SELECT count(*) FROM incidents WHERE status = 'resolved'") == 3,
             what="all resolved")
    wait_for(lambda: settled(a, 7), timeout=30, what="the cleared comments")
    a.stop()
    rows = sorted(a.query("SELECT i.key, d.receiver, d.action, d.status, d.remote_key"
                          " FROM deliveries d JOIN incidents i ON i.id = d.incident_id"))
    assert rows == sorted(
        [("sku=SKU-8", "jira", "known", "done", known_jira)] * 3
        + [("sku=SKU-9", "snow", "known", "done", known_snow)] * 2
        + [("sku=SKU-10", "jira", "known", "dead", "PROD-999")] * 2), rows
    err = a.scalar("SELECT last_error FROM deliveries WHERE remote_key = 'PROD-999' LIMIT 1")
    assert "404" in err and "Issue does not exist" in err, err
    # No ticket, record or message of voca's own; the known ones were not moved.
    assert list(jira.issues) == [known_jira] and len(snow.records) == 1
    assert slack.messages == []
    issue = jira.issues[known_jira]
    assert issue["status"] == "To Do" and issue["history"] == [] and issue["attachments"] == []
    texts = [json.dumps(c) for c in issue["comments"]]
    assert len(texts) == 3
    assert "(defects, sku=SKU-8) fired at 2026-03-01T10:00:00" in texts[0]
    assert "matches this known issue" in texts[0] and "SKU-8 kettle cracked" in texts[0]
    assert "is still firing" in texts[1] and "cleared" in texts[2]
    assert snow.records[0]["state"] == "1"
    notes = [v for sid, el, v in snow.journal if sid == rec["result"]["sys_id"]]
    assert len(notes) == 2 and "(defects, sku=SKU-9) fired" in notes[0] and "cleared" in notes[1]
    assert snow.attachments == []
    # The ledger did not adopt the known tickets as the incidents' own.
    assert a.scalar("SELECT count(*) FROM tickets") == 0
    pack = json.loads(a.scalar("SELECT e.pack FROM evidence e JOIN deliveries d"
                               " ON d.change_id = e.change_id WHERE d.remote_key = ?",
                               known_jira))
    assert pack["known_issue"] == {"ticket": known_jira, "receiver": "jira",
                                   "comment": "lid recall under way"}


def test_a_known_issue_must_name_a_ticket_receiver(tmp_path, fakes):
    for receiver, ticket, want in (
            ("slack", "PROD-1", "receiver: 'slack' is not a configured jira or servicenow"),
            ("nope", "PROD-1", "receiver: 'nope' is not a configured jira or servicenow"),
            ("jira", "PROD-1/../../x", "ticket: 'PROD-1/../../x' is not a ticket key")):
        cfg = tmp_path / "voca.yaml"
        cfg.write_text(delivery_config(fakes, only=["jira", "slack"]) + f"""known_issues:
  - matchers: ["sku == SKU-8"]
    ticket: "{ticket}"
    receiver: {receiver}
""")
        r = run_voca("check", "-c", str(cfg))
        assert r.returncode != 0 and want in r.stderr and "known_issues[0]" in r.stderr, r.stderr


def test_a_known_issue_added_by_sighup_comments_from_the_next_change(agent_factory, fakes):
    """Known issues apply on SIGHUP like silences; receivers do not, so one
    naming a receiver the reload adds is warned about, not lost."""
    jira = fakes["jira"]
    _, made, _ = jira.create(json.dumps({"fields": {
        "project": {"key": "PROD"}, "issuetype": {"name": "Bug"}, "summary": "Lids"}}).encode())
    a = agent_factory(extra=delivery_config(fakes, only=["jira"])).start()
    a.send_event(defect("a1", "2026-03-01T10:00:00Z", sku="SKU-1"))
    wait_for(lambda: settled(a, 1), timeout=30, what="the first ticket")
    snow = delivery_config(fakes, only=["snow"]).split("receivers:\n")[1].split("owners:")[0]
    a.write_config(extra=delivery_config(fakes, only=["jira"]).replace(
        "owners:", snow + "owners:") + f"""known_issues:
  - matchers: ["sku == SKU-2"]
    ticket: {made['key']}
    receiver: jira
  - matchers: ["sku == SKU-3"]
    ticket: INC0000001
    receiver: snow
""")
    a.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in a.log_text(), what="reload")
    assert ("known_issues[1]: receiver 'snow' starts at the next restart; its comments on "
            "INC0000001 wait until then") in a.log_text()
    # The configuration's warnings are logged at start and at each reload
    # (these tests run with engine.lateness 0s, under the default max_future).
    assert a.log_text().count("ingest.max_future (300s) is more than engine.lateness (0s)") == 2
    a.send_event(defect("b1", "2026-03-01T10:01:00Z", sku="SKU-2"))
    wait_for(lambda: settled(a, 2), timeout=30, what="the comment")
    a.stop()
    assert len(jira.issues) == 2 and len(jira.issues[made["key"]]["comments"]) == 1
    assert sorted(r[:3] for r in deliveries(a)) == [("jira", "known", "done"),
                                                    ("jira", "open", "done")]


def test_a_known_issue_on_a_receiver_that_runs_as_another_kind_is_a_dead_letter(agent_factory,
                                                                                fakes):
    """A reload may give a running receiver's name to a jira receiver and a
    known issue; until the restart the name still runs as what it started as,
    which cannot comment: warned at the reload, and each comment is a dead
    letter with that reason, not a message posted to the wrong place."""
    a = agent_factory(extra=delivery_config(fakes, only=["hook"])).start()
    jira_as_hook = delivery_config(fakes, only=["jira"]).replace(
        "- name: jira", "- name: hook").replace("receivers: [jira]", "receivers: [hook]")
    a.write_config(extra=jira_as_hook + """known_issues:
  - matchers: ["sku == SKU-2"]
    ticket: PROD-1
    receiver: hook
""")
    a.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in a.log_text(), what="reload")
    assert ("known_issues[0]: receiver 'hook' runs as slack until the next restart; its "
            "comments on PROD-1 are dead letters until then") in a.log_text()
    a.send_event(defect("b1", "2026-03-01T10:01:00Z", sku="SKU-2"))
    wait_for(lambda: settled(a, 1), timeout=30, what="the delivery")
    a.stop()
    assert [r[:3] for r in deliveries(a)] == [("hook", "known", "dead")]
    assert deliveries(a)[0][3] == "a known issue's comment cannot go to a slack receiver"
    assert fakes["hook"].messages == []


def test_a_regression_reopens_the_same_ticket_and_a_quiet_watch_is_verified(agent_factory, fakes):
    """DESIGN.md section 5: resolved, then watched (a week by default); firing
    again two days later is the same problem back: its tickets reopen, no second
    ticket. Quiet for the whole watch, the incident is recorded as verified,
    which notifies nobody."""
    jira, snow = fakes["jira"], fakes["snow"]
    a = agent_factory(extra=delivery_config(fakes, only=["jira", "snow"])).start()
    a.send_event(defect("e1", "2026-03-01T10:00:00Z"))
    a.send_event(event("quiet1", ts="2026-03-01T13:00:00Z", category="praise"))
    wait_for(lambda: settled(a, 4), timeout=30, what="the opening and the resolution")
    issue = next(iter(jira.issues.values()))
    assert issue["status"] == "Done" and snow.records[0]["state"] == "6"

    a.send_event(defect("e2", "2026-03-03T10:00:00Z"))  # 2 days on: far past the cooldown
    wait_for(lambda: settled(a, 6), timeout=30, what="the reopening")
    assert len(jira.issues) == 1 and len(snow.records) == 1
    assert issue["history"] == ["Done", "Reopen"] and len(issue["comments"]) == 2
    assert snow.records[0]["state"] == "2"
    assert a.query("SELECT count(*), max(reopens), max(status) FROM incidents") == [(1, 1, "open")]
    why = json.loads(a.scalar("SELECT why FROM incidents"))
    assert why["hours_since_resolved"] == 47.0  # resolved at 11:00, fired 10:00 two days on
    assert "fired again at 2026-03-03T10:00:00.000Z, 47 h after it resolved" in json.dumps(
        issue["comments"][-1])

    a.send_event(event("quiet2", ts="2026-03-03T13:00:00Z", category="praise"))
    wait_for(lambda: settled(a, 8), timeout=30, what="the second resolution")
    listed = run_voca("incidents", "-c", str(a.config))
    assert "watched until 2026-03-10T11:00: firing again reopens it" in listed.stdout, listed.stdout
    one = json.loads(run_voca("incidents", "-c", str(a.config), "--json", "1").stdout)
    assert one["incident"][0]["watched_until_ms"] == one["incident"][0]["resolved_ms"] + 7 * 86400000
    a.send_event(event("quiet3", ts="2026-03-11T00:00:00Z", category="praise"))
    wait_for(lambda: a.scalar("SELECT status FROM incidents") == "verified", timeout=30,
             what="the verification")
    changes = a.query("SELECT change, notify FROM incident_changes ORDER BY id")
    assert [c for c, _ in changes] == ["opened", "resolved", "reopened", "resolved", "verified"]
    assert changes[-1][1] == 0
    time.sleep(0.5)
    assert len(deliveries(a)) == 8 and {r[2] for r in deliveries(a)} == {"done"}
    assert len(jira.issues) == 1 and issue["status"] == "Done"
    a.stop()
    r = run_voca("incidents", "-c", str(a.config))
    assert re.search(r"#1\s+verified", r.stdout), r.stdout
    r = run_voca("stats", "-c", str(a.config))
    assert re.search(r"1 resolved \(1 verified\), 1 reopened", r.stdout), r.stdout


def test_a_reopening_after_an_upgrade_finds_the_ticket_opened_before_it(agent_factory, fakes):
    """An incident resolved under a voca whose key records had no first-opening
    time ("VKE3") and reopened after the upgrade: the tickets' key comes from the
    store's row, so the reopening lands on the first ticket, not a second one."""
    jira = fakes["jira"]
    a = agent_factory(extra=delivery_config(fakes, only=["jira"])).start()
    a.send_event(defect("e1", "2026-03-01T10:00:00Z"))
    a.send_event(event("quiet1", ts="2026-03-01T13:00:00Z", category="praise"))
    wait_for(lambda: settled(a, 2), timeout=30, what="the opening and the resolution")
    a.stop()
    # Rewrite each key record as the previous layout: magic "VKE3", no last_opened.
    db = sqlite3.connect(a.rules_db)
    rewritten = 0
    for rule, key, blob in db.execute("SELECT rule, key, blob FROM rule_state").fetchall():
        if blob[:4] == b"VKE4":
            db.execute("UPDATE rule_state SET blob = ? WHERE rule = ? AND key = ?",
                       (b"VKE3" + blob[4:48] + blob[64:], rule, key))
            rewritten += 1
    db.commit()
    db.close()
    assert rewritten >= 1
    a.start()
    a.send_event(defect("e2", "2026-03-03T10:00:00Z"))
    wait_for(lambda: settled(a, 3), timeout=30, what="the reopening")
    assert [r[1] for r in deliveries(a)] == ["open", "resolve", "reopen"]
    assert len(jira.issues) == 1, list(jira.issues)
    issue = next(iter(jira.issues.values()))
    assert issue["history"] == ["Done", "Reopen"]
    a.stop()
