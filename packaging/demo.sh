#!/usr/bin/env bash
# make demo: simulate a scored-feedback feed, run voca on its built-in
# configuration (packaging/voca.example.yaml compiled in: subscribe to
# tcp://127.0.0.1:7600, store in ./voca.db, five rules), publish the feed to
# it, and show what was stored, quarantined and why, and the incidents found.
set -euo pipefail

voca=${1:?usage: demo.sh PATH-TO-VOCA}
dir=build/demo
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. Simulate two weeks of scored feedback (200 SKUs, ~4000 events/day, 0.2% malformed)"
"$voca" simulate --seed 42 --days 14 --invalid 0.002 -o feed.jsonl.gz --truth truth.json

say "2. Start the agent on its built-in configuration (the example, with its rules): voca run"
"$voca" run > console.txt 2> voca.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
	grep -q "running (store schema" voca.log && break
	kill -0 $pid 2>/dev/null || { cat voca.log; exit 1; }
	sleep 0.1
done
sed 's/^/   /' voca.log

say "3. Publish the feed over ZeroMQ PUB: voca publish --endpoint tcp://127.0.0.1:7600"
"$voca" publish --endpoint tcp://127.0.0.1:7600 feed.jsonl.gz

say "4. Stop the agent (SIGTERM commits what it holds)"
sleep 0.5
kill -TERM $pid
wait $pid
trap - EXIT
echo "   quarantine reasons as the agent logged them (rate-limited per reason):"
grep -E "quarantined|stopped" voca.log | sed 's/^/   /'
echo "   incidents as the agent logged them:"
grep -E "incident [0-9]+ (opened|reopened)" voca.log | cut -c1-200 | sed 's/^/   /'

say "5. What was stored, quarantined and why, and the incidents the rules opened: voca stats"
"$voca" stats

say "6. The rules over the same feed: voca backtest -c packaging/voca.example.yaml"
echo "   (the injected incidents are listed under step 1; what the rules open, and why:)"
"$voca" backtest -c "$OLDPWD/packaging/voca.example.yaml" feed.jsonl.gz | grep -v "resolved #"

say "7. What the console receiver printed (the built-in configuration routes everything there)"
awk '/^---- console/{n++} n==1' console.txt | sed 's/^/   /'
echo "   ... $(grep -c '^---- console' console.txt) notifications in all (console.txt)"

say "8. Real HTTP: the same feed, routed to local fake Jira, Slack and Teams"
echo "   tier 1 -> a Jira ticket (Cloud REST v3, ADF) and a Slack thread (bot, evidence file);"
echo "   tier 2 -> a Teams Adaptive Card. The fakes enforce the vendors' contracts."
fakes="$OLDPWD/tests/e2e/fakes.py"
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pending() { /usr/bin/python3 -c 'import sqlite3; print(sqlite3.connect("delivery.db").execute("SELECT count(*) FROM deliveries WHERE status = ?", ("pending",)).fetchone()[0])'; }
jp=$(port); sp=$(port); tp=$(port); zp=$(port)
/usr/bin/python3 -u "$fakes" jira=$jp slack=$sp teams=$tp > fakes.txt 2>&1 &
fpid=$!
trap 'kill $fpid 2>/dev/null || true' EXIT
until grep -q "fakes listening" fakes.txt; do sleep 0.1; done
export DEMO_JIRA_USER=bot@example.com DEMO_JIRA_TOKEN=jira-token DEMO_SLACK_TOKEN=xoxb-fake-token
# A Teams workflow URL carries its signature: it is a secret, so it comes from the environment.
export DEMO_TEAMS_URL="http://127.0.0.1:$tp/workflows/abc123/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=fakesig"
{
	sed -n '/^engine:/,/^# ---- delivery/p' "$OLDPWD/packaging/voca.example.yaml" | sed '$d'
	cat <<EOF
ingest:
  mode: pull
  endpoints: [tcp://127.0.0.1:$zp]
store:
  path: delivery.db
receivers:
  - name: jira
    kind: jira
    url: http://127.0.0.1:$jp
    user: \${env:DEMO_JIRA_USER}
    token: \${env:DEMO_JIRA_TOKEN}
    project: OPS
  - name: slack
    kind: slack
    mode: bot
    url: http://127.0.0.1:$sp/api
    token: \${env:DEMO_SLACK_TOKEN}
    channel: C0ALERTS
    min_interval: 100ms
  - name: teams
    kind: teams
    url: \${env:DEMO_TEAMS_URL}
owners:
  - name: product-quality
    slack_mentions: [S0PRODQUAL]
    teams_mentions: ["quality@example.com|Product Quality"]
routes:
  - matchers: ["tier == 1"]
    owner: product-quality
    receivers: [jira, slack]
  - matchers: ["tier == 2"]
    owner: product-quality
    receivers: [teams]
EOF
} > delivery.yaml
"$voca" run -c delivery.yaml 2> delivery.log &
pid=$!
trap 'kill $pid $fpid 2>/dev/null || true' EXIT
until grep -q "running (store schema" delivery.log; do sleep 0.1; done
"$voca" publish -q -s push -e "tcp://127.0.0.1:$zp" feed.jsonl.gz
sleep 1
for _ in $(seq 300); do
	[ "$(pending)" = 0 ] && break
	sleep 0.2
done
kill -TERM $pid
wait $pid
sleep 0.3
kill $fpid 2>/dev/null || true
trap - EXIT
# The first tier-1 ticket and Slack thread, and the first Teams card, in full.
awk '/^\[fake jira\] created/ {j++} /^\[fake slack\] message to/ {s++} /^\[fake teams\]/ {t++}
     /^\[fake/ {cur = ($0 ~ /^\[fake jira\] created/ && j == 1) || ($0 ~ /^\[fake slack\] message to/ && s == 1) || ($0 ~ /^\[fake teams\]/ && t == 1)}
     cur && !/^fakes listening/ {print}' fakes.txt | sed 's/^/   /'
echo
echo "   in all: $(grep -c '^\[fake jira\] created' fakes.txt) Jira tickets," \
	"$(grep -c '^\[fake jira\] comment' fakes.txt) comments," \
	"$(grep -c 'transitioned' fakes.txt) transitions;" \
	"$(grep -c '^\[fake slack\] message to' fakes.txt) Slack threads with" \
	"$(grep -c 'reply in thread' fakes.txt) replies; $(grep -c '^\[fake teams\]' fakes.txt) Teams cards"
echo "   $("$voca" deadletters -d delivery.db | tail -1)"
echo
echo "Files are in $dir: feed.jsonl.gz, truth.json, voca.db (+ voca.rules.db), voca.log, console.txt,"
echo "delivery.yaml, delivery.db, delivery.log (what was sent, step by step), fakes.txt"
