/*
 * stats.c: `voca stats` (see stats.h).
 *
 * Reads the store through its own read-only connection (WAL lets it run
 * beside the daemon). The figures are gathered once into a cJSON object,
 * which is printed either as JSON (--json, for scripts and tests) or as
 * text, so the two views cannot disagree.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include <voca/event.h>
#include <voca/log.h>
#include <voca/xalloc.h>

#include "config.h"
#include "stats.h"
#include "storeview.h"

static void add_query(sqlite3 *db, cJSON *parent, const char *name, const char *sql)
{
	storeview_rows(db, parent, name, sql, NULL, 0);
}

#define num storeview_num
#define str storeview_str

/* The rules' state file: its size and records (read-only; absent is not an error). */
static void add_rules_file(cJSON *rules, const char *path)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s;
	struct stat sb;

	cJSON_AddStringToObject(rules, "state_file", path);
	if (stat(path, &sb) < 0)
		return;
	cJSON_AddNumberToObject(rules, "state_bytes", (double)sb.st_size);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_busy_timeout(db, 5000) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT count(*) FROM rule_state", -1, &s, NULL) == SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW)
			cJSON_AddNumberToObject(rules, "state_records",
			                        sqlite3_column_double(s, 0));
		sqlite3_finalize(s);
	}
	sqlite3_close(db);
}

static cJSON *gather(sqlite3 *db, const char *path, const char *rules_path)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *counters = cJSON_AddObjectToObject(root, "counters");
	sqlite3_stmt *s;

	cJSON_AddStringToObject(root, "store", path);
	if (sqlite3_prepare_v2(db, "SELECT name, value FROM counters ORDER BY name", -1, &s,
	                       NULL) == SQLITE_OK) {
		while (sqlite3_step(s) == SQLITE_ROW)
			cJSON_AddNumberToObject(counters, (const char *)sqlite3_column_text(s, 0),
			                        sqlite3_column_double(s, 1));
		sqlite3_finalize(s);
	}
	add_query(db, root, "events",
	          "SELECT count(*) AS stored, min(ts_ms) AS first_ts_ms, max(ts_ms) AS last_ts_ms,"
	          " count(DISTINCT sku) AS skus, count(DISTINCT category) AS categories,"
	          " sum(sentiment = 'negative') AS negative,"
	          " sum(needs_review) AS needs_review FROM events");
	add_query(db, root, "by_category",
	          "SELECT category, count(*) AS events FROM events GROUP BY category"
	          " ORDER BY events DESC, category LIMIT 12");
	add_query(db, root, "quarantine",
	          "SELECT code, count(*) AS count, max(reason) AS example FROM quarantine"
	          " GROUP BY code ORDER BY count DESC, code");
	add_query(db, root, "publishers",
	          "SELECT p.publisher, p.last_seq, p.last_seen_ms,"
	          " (SELECT count(*) FROM gaps g WHERE g.publisher = p.publisher) AS gaps,"
	          " (SELECT coalesce(sum(missing), 0) FROM gaps g WHERE g.publisher = p.publisher)"
	          " AS missing FROM publishers p ORDER BY p.publisher");
	add_query(db, root, "incidents_by_rule",
	          "SELECT rule, kind, tier, sum(status = 'open') AS open,"
	          " sum(status IN ('resolved', 'verified')) AS resolved,"
	          " sum(status = 'verified') AS verified, sum(reopens) AS reopens,"
	          " sum(realerts) AS realerts FROM incidents GROUP BY rule ORDER BY tier, rule");
	add_query(db, root, "recent_incidents",
	          "SELECT id, rule, tier, status, opened_ms, summary, suppressed FROM incidents"
	          " ORDER BY opened_ms DESC LIMIT 5");
	add_query(db, root, "review",
	          "SELECT count(*) AS pending, min(reason) AS example FROM review_queue"
	          " WHERE status = 'pending'");
	/* Where the rules' last checkpoint is: what a crash now would replay. */
	add_query(
	        db, root, "rules",
	        "SELECT (SELECT value FROM meta WHERE name = 'rules_checkpoint') AS checkpoint_rowid,"
	        " (SELECT count(*) FROM events WHERE rowid > coalesce((SELECT value FROM meta"
	        " WHERE name = 'rules_checkpoint'), 0)) AS since_checkpoint");
	add_rules_file(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "rules"), 0),
	               rules_path);
	add_query(
	        db, root, "deliveries",
	        "SELECT receiver, sum(status = 'pending') AS pending, sum(status = 'done') AS done,"
	        " sum(status = 'dead') AS dead,"
	        " (SELECT count(*) FROM delivery_log l JOIN deliveries x ON x.id = l.delivery_id"
	        "  WHERE x.receiver = d.receiver AND l.verdict = 'retry') AS retries,"
	        " (SELECT last_error FROM deliveries y WHERE y.receiver = d.receiver"
	        "  AND y.status = 'dead' ORDER BY y.id DESC LIMIT 1) AS last_dead"
	        " FROM deliveries d GROUP BY receiver ORDER BY receiver");
	add_query(db, root, "recent_gaps",
	          "SELECT publisher, expected_seq, got_seq, missing, detected_ms FROM gaps"
	          " ORDER BY id DESC LIMIT 10");
	return root;
}

static void print_text(const cJSON *r)
{
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(r, "counters");
	const cJSON *ev = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "events"), 0);
	const cJSON *row;
	char t1[32], t2[32];

	printf("store: %s\n", str(r, "store"));
	printf("events: %.0f stored (%.0f new, %.0f superseded by a higher revision); "
	       "%.0f duplicates and %.0f stale revisions dropped\n",
	       num(ev, "stored"), num(c, "events_new"), num(c, "events_superseded"),
	       num(c, "events_duplicate"), num(c, "events_stale"));
	if (num(ev, "stored") > 0) {
		rfc3339_format((int64_t)num(ev, "first_ts_ms"), t1, sizeof(t1));
		rfc3339_format((int64_t)num(ev, "last_ts_ms"), t2, sizeof(t2));
		printf("  written %s .. %s; %.0f SKUs, %.0f categories, %.1f%% negative, "
		       "%.0f flagged needs_review\n",
		       t1, t2, num(ev, "skus"), num(ev, "categories"),
		       100.0 * num(ev, "negative") / num(ev, "stored"), num(ev, "needs_review"));
		printf("  by category:");
		cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(r, "by_category"))
		        printf(" %s %.0f", str(row, "category"), num(row, "events"));
		printf("\n");
	}
	printf("quarantine: %.0f inputs rejected\n", num(c, "quarantined"));
	cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(r, "quarantine"))
	        printf("  %-16s %6.0f  e.g. %s\n", str(row, "code"), num(row, "count"),
	               str(row, "example"));
	double opened = 0;

	cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(r, "incidents_by_rule")) opened +=
	        num(row, "open") + num(row, "resolved");
	printf("incidents: %.0f opened\n", opened);
	cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(r, "incidents_by_rule"))
	        printf("  %-24s %-10s tier %.0f  %4.0f open, %4.0f resolved (%.0f verified), "
	               "%.0f reopened, %.0f re-alert%s\n",
	               str(row, "rule"), str(row, "kind"), num(row, "tier"), num(row, "open"),
	               num(row, "resolved"), num(row, "verified"), num(row, "reopens"),
	               num(row, "realerts"), num(row, "realerts") == 1 ? "" : "s");
	cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(r, "recent_incidents"))
	{
		rfc3339_format((int64_t)num(row, "opened_ms"), t1, sizeof(t1));
		printf("  #%-4.0f %.16s %-8s %.150s\n", num(row, "id"), t1, str(row, "status"),
		       str(row, "summary"));
	}
	row = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "review"), 0);
	printf("review queue: %.0f events pending%s%s\n", num(row, "pending"),
	       num(row, "pending") > 0 ? ", e.g. " : "",
	       num(row, "pending") > 0 ? str(row, "example") : "");
	row = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "rules"), 0);
	if (cJSON_GetObjectItemCaseSensitive(row, "state_bytes")) /* the rules have run */
	{
		printf("rules: state in %s (%.1f MB, %.0f records); %.0f events stored since the last "
		       "checkpoint (a crash now replays them)\n",
		       str(row, "state_file"), num(row, "state_bytes") / 1e6,
		       num(row, "state_records"), num(row, "since_checkpoint"));
		printf("  left out: %.0f events too late for the bucketed rules (over engine.lateness "
		       "behind the newest), %.0f without a rule's group_by field, %.0f of keys over "
		       "engine.max_keys\n",
		       num(c, "rules_late"), num(c, "rules_ungrouped"), num(c, "rules_capped"));
		printf("  forgotten: %.0f keys quiet for engine.forget_after (their memory reused)\n",
		       num(c, "rules_forgotten"));
	}
	printf("deliveries:%s\n",
	       cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "deliveries")) ? ""
	                                                                             : " none");
	cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(r, "deliveries"))
	{
		printf("  %-16s %5.0f done, %3.0f pending, %3.0f dead letters, %4.0f retries",
		       str(row, "receiver"), num(row, "done"), num(row, "pending"),
		       num(row, "dead"), num(row, "retries"));
		if (num(row, "dead") > 0)
			printf("; last: %.120s", str(row, "last_dead"));
		printf("\n");
	}
	printf("sequence gaps: %.0f, %.0f events missing\n", num(c, "gaps"), num(c, "gap_missing"));
	cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(r, "publishers"))
	{
		rfc3339_format((int64_t)num(row, "last_seen_ms"), t1, sizeof(t1));
		printf("  publisher %s: last seq %.0f seen %s; %.0f gaps, %.0f missing\n",
		       str(row, "publisher"), num(row, "last_seq"), t1, num(row, "gaps"),
		       num(row, "missing"));
	}
}

static void usage(FILE *f)
{
	fputs("usage: voca stats [-c FILE] [--json]\n"
	      "\n"
	      "Prints what the store holds: events, duplicates and stale revisions dropped,\n"
	      "inputs quarantined and why, and publisher sequence gaps.\n"
	      "\n"
	      "  -c, --config FILE   the configuration naming the store (default: built-in)\n"
	      "  -d, --db PATH       the store file, overriding the configuration\n"
	      "      --json          print JSON instead of text\n",
	      f);
}

int stats_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"db", required_argument, NULL, 'd'},
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *file = NULL, *dbpath = NULL;
	struct config cfg;
	char rules_path[4096];
	int c, json = 0;
	sqlite3 *db;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:d:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': file = optarg; break;
		case 'd': dbpath = optarg; break;
		case 'j': json = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (storeview_open("stats", file, dbpath, &cfg, rules_path, sizeof(rules_path), &db) < 0)
		return 1;
	cJSON *r = gather(db, cfg.store.path, rules_path);

	if (json)
		storeview_print_json(r);
	else
		print_text(r);
	cJSON_Delete(r);
	sqlite3_close(db);
	config_free(&cfg);
	return 0;
}
