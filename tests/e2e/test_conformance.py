"""Rendered payloads checked with the vendors' own artifacts.

A simulated month through the example rules (every rule kind fires) plus an
event whose text is full of markup, PII and odd characters: every Jira
description and comment voca sends must validate against Atlassian's ADF
JSON schema, and every Teams card must parse cleanly with Microsoft's
adaptivecards library (tests/conformance/check.js, pinned by its lock file).
"""
import json
import os
import pathlib
import subprocess

from conftest import event, run_voca, wait_for
from fakes import FakeJira, FakeTeams
from test_delivery import secrets_env  # noqa: F401  (the fixture)

HERE = pathlib.Path(__file__).resolve().parent
CHECK = HERE.parent / "conformance" / "check.js"
EXAMPLE = HERE.parent.parent / "packaging" / "voca.example.yaml"


def example_rules():
    text = EXAMPLE.read_text()
    return text[text.index("\nengine:") + 1:text.index("# ---- delivery")]


def test_adf_and_adaptive_cards_validate_with_vendor_libraries(agent_factory, tmp_path,
                                                               monkeypatch):
    assert (CHECK.parent / "node_modules").is_dir(), \
        "run `make test` (it installs tests/conformance with npm ci)"
    jira, teams = FakeJira().start(), FakeTeams().start()
    monkeypatch.setenv("VOCA_TEST_TEAMS_URL", teams.url + teams.path())
    try:
        critical = ("rules:\n  - name: critical-now\n    kind: threshold\n    tier: 1\n"
                    "    group_by: [sku]\n    where: [\"severity >= critical\"]\n"
                    "    count: 1\n    max_p: 0\n")
        cfg = example_rules().replace("budget_per_hour: 30", "budget_per_hour: 0")
        cfg = cfg.replace("rules:\n", critical, 1) + f"""
receivers:
  - name: jira
    kind: jira
    url: {jira.url}
    user: ${{env:VOCA_TEST_JIRA_USER}}
    token: ${{env:VOCA_TEST_JIRA_TOKEN}}
    project: OPS
  - name: teams
    kind: teams
    url: ${{env:VOCA_TEST_TEAMS_URL}}
owners:
  - name: quality
    teams_mentions: ["q@example.com|Quality & *Co*"]
routes:
  - owner: quality
    receivers: [jira, teams]
"""
        feed = tmp_path / "feed.jsonl"
        assert run_voca("simulate", "--seed", "5", "--days", "21", "-o", str(feed)).returncode == 0
        a = agent_factory(extra=cfg).start()
        r = run_voca("publish", "-s", "push", "-e", a.endpoint, "--frames", "1", "-q", str(feed))
        assert r.returncode == 0, r.stderr
        odd = ("*bold* _it_ [link](http://x) <at>Boss</at> {code} `tick` \\ \u0000-free "
               "\u200b zero-width, emoji \U0001F525, RTL \u05e9\u05dc\u05d5\u05dd, "
               "a.b@example.org +44 20 7946 0958 | table | # heading")
        a.send_event(event("odd", ts="2026-02-01T00:00:00Z", sku="SKU-ODD",
                           category="product_defect", severity="critical", text=odd,
                           summary="", suggested_action="Call <!channel>"))
        n_changes = lambda: a.scalar("SELECT count(*) FROM deliveries") or 0
        wait_for(lambda: n_changes() >= 10 and a.scalar(
            "SELECT count(*) FROM deliveries WHERE status = 'pending'") == 0,
            timeout=90, what="the month's deliveries")
        assert a.scalar("SELECT count(*) FROM deliveries WHERE status = 'dead'") == 0, \
            a.query("SELECT receiver, last_error FROM deliveries WHERE status = 'dead'")
        a.stop()
        docs = [i["fields"]["description"] for i in jira.issues.values()]
        docs += [c for i in jira.issues.values() for c in i["comments"]]
        cards = [run["card"]["attachments"][0]["content"] for run in teams.runs]
        kinds = {row[0] for row in a.query("SELECT DISTINCT kind FROM incidents")}
        assert {"threshold", "spike"} <= kinds, kinds
        assert len(docs) >= 5 and len(cards) >= 10, (len(docs), len(cards))
        odd_issue = [i for i in jira.issues.values() if "SKU-ODD" in i["fields"]["summary"]]
        assert len(odd_issue) == 1
        assert "a.b@example.org" not in json.dumps(odd_issue[0]["fields"])
        payloads = tmp_path / "payloads.json"
        payloads.write_text(json.dumps({"adf": docs, "cards": cards}))
        r = subprocess.run(["node", str(CHECK), str(payloads)], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"checked {len(docs)} ADF documents and {len(cards)} Adaptive Cards: 0" in r.stdout
    finally:
        jira.stop()
        teams.stop()
