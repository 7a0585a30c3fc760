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
"$voca" run 2> voca.log &
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
echo
echo "Files are in $dir: feed.jsonl.gz, truth.json, voca.db, voca.log"
