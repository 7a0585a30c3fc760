/*
 * incidents.c: `voca incidents` and `voca review` (see incidents.h).
 *
 * Nothing the rules decide is invisible: every incident change is stored
 * with whether it notified and, if not, what muted it (a silence, a time
 * window, a known issue, inhibition, a roll-up, the hourly budget); every
 * delivery with its state and last error. These commands show them to the
 * operator without SQL, as text or as JSON.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/event.h>
#include <voca/rule.h>

#include "clock.h"

#include "incidents.h"
#include "storeview.h"

#define num storeview_num
#define str storeview_str

/* "2026-03-01T10:05" (minutes are enough to read a list by), or "-". */
static const char *when(const cJSON *row, const char *key, char *out, size_t len)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);

	if (!cJSON_IsNumber(v))
		return "-";
	rfc3339_format((int64_t)v->valuedouble, out, len);
	out[16 < len ? 16 : len - 1] = '\0';
	return out;
}

/*
 * A resolved incident is watched (its rule's watch, at least its cooldown):
 * adds watched_until_ms to each such row, by the configuration's rule.
 */
static void add_watch(const struct config *cfg, cJSON *rows)
{
	cJSON *row;

	cJSON_ArrayForEach(row, rows)
	{
		const struct rule_common *c = config_rule(cfg, str(row, "rule"));

		if (c == NULL || c->watch_ms == 0 || strcmp(str(row, "status"), "resolved") != 0 ||
		    !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(row, "resolved_ms")))
			continue;
		cJSON_AddNumberToObject(row, "watched_until_ms",
		                        num(row, "resolved_ms") +
		                                (double)(c->watch_ms > c->cooldown_ms
		                                                 ? c->watch_ms
		                                                 : c->cooldown_ms));
	}
}

static void print_list(const cJSON *rows)
{
	const cJSON *row;
	char t[40], u[40];

	if (cJSON_GetArraySize(rows) == 0)
		printf("no incidents\n");
	cJSON_ArrayForEach(row, rows)
	{
		printf("#%-5.0f %-8s tier %.0f  %-20s %-.80s\n", num(row, "id"), str(row, "status"),
		       num(row, "tier"), str(row, "rule"), str(row, "key"));
		double firings = num(row, "firings"), realerts = num(row, "realerts"),
		       reopens = num(row, "reopens");

		printf("       opened %s, last %s; %.0f firing%s, %.0f re-alert%s, %.0f reopen%s\n",
		       when(row, "opened_ms", t, sizeof(t)), when(row, "updated_ms", u, sizeof(u)),
		       firings, firings == 1 ? "" : "s", realerts, realerts == 1 ? "" : "s",
		       reopens, reopens == 1 ? "" : "s");
		printf("       %.300s\n", str(row, "summary"));
		if (str(row, "suppressed")[0])
			printf("       muted: %.250s\n", str(row, "suppressed"));
		if (cJSON_GetObjectItemCaseSensitive(row, "watched_until_ms"))
			printf("       watched until %s: firing again reopens it\n",
			       when(row, "watched_until_ms", t, sizeof(t)));
	}
}

static void print_muted(const cJSON *rows)
{
	const cJSON *row;
	char t[40];

	if (cJSON_GetArraySize(rows) == 0)
		printf("no muted changes\n");
	cJSON_ArrayForEach(row, rows) printf(
	        "%s  #%-5.0f %-8s tier %.0f %-20s %-.60s\n                  not notified: "
	        "%.250s\n",
	        when(row, "at_ms", t, sizeof(t)), num(row, "incident_id"), str(row, "change"),
	        num(row, "tier"), str(row, "rule"), str(row, "key"), str(row, "suppressed"));
}

static void print_one(const cJSON *r)
{
	const cJSON *inc = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "incident"), 0);
	const cJSON *row, *why = cJSON_GetObjectItemCaseSensitive(inc, "why");
	char t[40];

	printf("incident #%.0f: %s, tier %.0f, rule %s (%s)\n", num(inc, "id"), str(inc, "status"),
	       num(inc, "tier"), str(inc, "rule"), str(inc, "kind"));
	printf("  key:      %s\n", str(inc, "key"));
	printf("  opened:   %s\n", when(inc, "opened_ms", t, sizeof(t)));
	printf("  updated:  %s\n", when(inc, "updated_ms", t, sizeof(t)));
	printf("  resolved: %s\n", when(inc, "resolved_ms", t, sizeof(t)));
	if (cJSON_GetObjectItemCaseSensitive(inc, "watched_until_ms"))
		printf("  watched:  until %s (firing again reopens it; quiet, it is verified)\n",
		       when(inc, "watched_until_ms", t, sizeof(t)));
	printf("  firings %.0f, re-alerts %.0f, reopens %.0f\n", num(inc, "firings"),
	       num(inc, "realerts"), num(inc, "reopens"));
	printf("  summary:  %s\n", str(inc, "summary"));
	printf("changes:\n");
	cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(r, "changes"))
	{
		printf("  %s  %-20s %s", when(row, "at_ms", t, sizeof(t)), str(row, "change"),
		       num(row, "notify") ? "notified" : "not notified");
		if (str(row, "suppressed")[0])
			printf(": %s", str(row, "suppressed"));
		printf("\n");
	}
	printf("deliveries:\n");
	if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "deliveries")) == 0)
		printf("  none\n");
	cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(r, "deliveries"))
	{
		/* attempts counts the failed tries of the step under way (or the last) */
		double retries = num(row, "attempts");

		printf("  %-5.0f %-14s %-8s %-8s %-14s %.0f %s", num(row, "id"),
		       str(row, "receiver"), str(row, "action"), str(row, "status"),
		       str(row, "remote_key")[0] ? str(row, "remote_key") : "-", retries,
		       retries == 1 ? "retry" : "retries");
		if (str(row, "last_error")[0])
			printf("; last error: %.200s", str(row, "last_error"));
		printf("\n");
	}
	if (why) {
		char *s = cJSON_Print(why);

		printf("why (the latest firing's explanation):\n%s\n", s);
		cJSON_free(s);
	}
}

/* The incident's stored explanation, as JSON rather than a string of it. */
static void parse_why(cJSON *inc)
{
	const cJSON *text = cJSON_GetObjectItemCaseSensitive(inc, "why");
	cJSON *why = cJSON_IsString(text) ? cJSON_Parse(text->valuestring) : NULL;

	if (why)
		cJSON_ReplaceItemInObjectCaseSensitive(inc, "why", why);
}

static void usage(FILE *f)
{
	fputs("usage: voca incidents [-c FILE] [-d DB] [--open | --muted] [--limit N] [--json] "
	      "[ID]\n"
	      "\n"
	      "Lists the incidents the rules opened, newest first, with what muted them.\n"
	      "With ID, one incident in full: each change (notified, or what muted it),\n"
	      "its deliveries (receiver, state, ticket, last error) and the latest firing's\n"
	      "explanation.\n"
	      "\n"
	      "  -c, --config FILE   the configuration naming the store (default: built-in)\n"
	      "  -d, --db PATH       the store file, overriding the configuration\n"
	      "      --open          only the incidents still open\n"
	      "      --muted         the changes that were not notified, and what muted each\n"
	      "                      (silence, time window, known issue, inhibition, roll-up,\n"
	      "                      budget)\n"
	      "  -n, --limit N       at most N rows (default 50)\n"
	      "      --json          print JSON instead of text\n",
	      f);
}

static int parse_count(const char *cmd, const char *what, const char *s, int64_t *out)
{
	char *end;
	long long v = strtoll(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 1) {
		fprintf(stderr, "voca %s: %s takes a whole number from 1, not '%s'\n", cmd, what,
		        s);
		return -1;
	}
	*out = v;
	return 0;
}

int incidents_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'}, {"db", required_argument, NULL, 'd'},
	        {"open", no_argument, NULL, 'o'},         {"muted", no_argument, NULL, 'm'},
	        {"limit", required_argument, NULL, 'n'},  {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	const char *file = NULL, *dbpath = NULL;
	int c, json = 0, open_only = 0, muted = 0, rc = 0;
	int64_t args[2] = {0, 50}, id = 0;
	struct config cfg;
	sqlite3 *db;
	cJSON *r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:d:n:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': file = optarg; break;
		case 'd': dbpath = optarg; break;
		case 'o': open_only = 1; break;
		case 'm': muted = 1; break;
		case 'n':
			if (parse_count("incidents", "--limit", optarg, &args[1]) < 0)
				return 2;
			break;
		case 'j': json = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc && parse_count("incidents", "ID", argv[optind++], &id) < 0)
		return 2;
	if (optind < argc || (open_only && muted) || (id && (open_only || muted))) {
		usage(stderr);
		return 2;
	}
	if (storeview_open("incidents", file, dbpath, &cfg, NULL, 0, &db) < 0)
		return 1;
	r = cJSON_CreateObject();
	if (id) {
		cJSON *inc = storeview_rows(
		        db, r, "incident",
		        "SELECT id, status, tier, rule, kind, key, opened_ms, updated_ms, resolved_ms,"
		        " firings, realerts, reopens, summary, suppressed, why FROM incidents"
		        " WHERE id = ?1",
		        &id, 1);

		if (cJSON_GetArraySize(inc) == 0) {
			fprintf(stderr, "voca incidents: no incident %lld in %s\n", (long long)id,
			        cfg.store.path);
			rc = 1;
			goto out;
		}
		parse_why(cJSON_GetArrayItem(inc, 0));
		add_watch(&cfg, inc);
		storeview_rows(db, r, "changes",
		               "SELECT id, at_ms, change, notify, summary, suppressed"
		               " FROM incident_changes WHERE incident_id = ?1 ORDER BY id",
		               &id, 1);
		storeview_rows(
		        db, r, "deliveries",
		        "SELECT id, change_id, receiver, action, status, attempts, remote_key,"
		        " last_error, created_ms, done_ms FROM deliveries"
		        " WHERE incident_id = ?1 ORDER BY id",
		        &id, 1);
		if (json)
			storeview_print_json(r);
		else
			print_one(r);
	} else if (muted) {
		cJSON *rows = storeview_rows(
		        db, r, "muted",
		        "SELECT c.id AS change_id, c.at_ms, c.incident_id, c.change, c.suppressed,"
		        " i.rule, i.tier, i.key FROM incident_changes c"
		        " JOIN incidents i ON i.id = c.incident_id"
		        " WHERE c.suppressed IS NOT NULL AND NOT c.notify ORDER BY c.id DESC LIMIT ?1",
		        &args[1], 1);

		if (json)
			storeview_print_json(r);
		else
			print_muted(rows);
	} else {
		args[0] = open_only;
		cJSON *rows = storeview_rows(
		        db, r, "incidents",
		        "SELECT id, status, tier, rule, kind, key, opened_ms, updated_ms, resolved_ms,"
		        " firings, realerts, reopens, summary, suppressed FROM incidents"
		        " WHERE NOT ?1 OR status = 'open' ORDER BY id DESC LIMIT ?2",
		        args, 2);

		add_watch(&cfg, rows);
		if (json)
			storeview_print_json(r);
		else
			print_list(rows);
	}
out:
	cJSON_Delete(r);
	sqlite3_close(db);
	config_free(&cfg);
	return rc;
}

static void review_usage(FILE *f)
{
	fputs("usage: voca review [-c FILE] [-d DB] [--limit N] [--all] [--json]\n"
	      "       voca review [-c FILE] [-d DB] --done [--by NAME] [--note TEXT] EVENT_ID...\n"
	      "\n"
	      "Lists the reports held for a person to review, newest first: those the\n"
	      "scorer was unsure of (under engine.review_confidence, or flagged\n"
	      "needs_review), which never open a tier-1 incident on their own; with the\n"
	      "reason, and what the report says. A report leaves the queue when a person\n"
	      "marks it --done, or when a higher revision comes back confident.\n"
	      "\n"
	      "  -c, --config FILE   the configuration naming the store (default: built-in)\n"
	      "  -d, --db PATH       the store file, overriding the configuration\n"
	      "  -n, --limit N       at most N rows (default 50)\n"
	      "      --all           also the reports off the queue: by whom, when, why\n"
	      "      --json          print JSON instead of text\n"
	      "      --done          take the EVENT_IDs off the queue as reviewed\n"
	      "      --by NAME       who reviewed them (default: $USER)\n"
	      "      --note TEXT     what the review found\n",
	      f);
}

/* Marks pending reports reviewed. Returns 0 if every one was pending, 1 if not. */
static int review_done(const char *path, char **ids, int n, const char *by, const char *note)
{
	sqlite3 *db;
	sqlite3_stmt *s = NULL;
	int marked = 0, missed = 0;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
	    (sqlite3_busy_timeout(db, 10000),
	     sqlite3_prepare_v2(
	             db,
	             "UPDATE review_queue SET status = 'reviewed', done_ms = ?2,"
	             " done_by = ?3, note = ?4 WHERE event_id = ?1 AND status = 'pending'",
	             -1, &s, NULL)) != SQLITE_OK) {
		/* A store the daemon has not migrated yet lacks the columns. */
		fprintf(stderr, "voca review: %s: %s%s\n", path, sqlite3_errmsg(db),
		        strstr(sqlite3_errmsg(db), "no such column")
		                ? " (an older store: start voca run once to upgrade it)"
		                : "");
		sqlite3_close(db);
		return 1;
	}
	for (int i = 0; i < n; i++) {
		sqlite3_bind_text(s, 1, ids[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, clock_wall_ms());
		sqlite3_bind_text(s, 3, by, -1, SQLITE_STATIC);
		if (note)
			sqlite3_bind_text(s, 4, note, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(s, 4);
		if (sqlite3_step(s) != SQLITE_DONE) {
			fprintf(stderr, "voca review: %s: %s\n", ids[i], sqlite3_errmsg(db));
			missed++;
		} else if (sqlite3_changes(db) == 1) {
			marked++;
		} else {
			fprintf(stderr,
			        "voca review: %s: not on the queue (unknown, or taken off already)\n",
			        ids[i]);
			missed++;
		}
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	printf("marked %d report%s reviewed by %s\n", marked, marked == 1 ? "" : "s", by);
	return missed ? 1 : 0;
}

int review_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'}, {"db", required_argument, NULL, 'd'},
	        {"limit", required_argument, NULL, 'n'},  {"json", no_argument, NULL, 'j'},
	        {"all", no_argument, NULL, 'a'},          {"done", no_argument, NULL, 'D'},
	        {"by", required_argument, NULL, 'b'},     {"note", required_argument, NULL, 'N'},
	        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	const char *file = NULL, *dbpath = NULL, *by = NULL, *note = NULL;
	int c, json = 0, all = 0, done = 0, rc = 0;
	int64_t limit = 50;
	struct config cfg;
	sqlite3 *db;
	const cJSON *row;
	char t[40], u[40];

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:d:n:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': file = optarg; break;
		case 'd': dbpath = optarg; break;
		case 'n':
			if (parse_count("review", "--limit", optarg, &limit) < 0)
				return 2;
			break;
		case 'j': json = 1; break;
		case 'a': all = 1; break;
		case 'D': done = 1; break;
		case 'b': by = optarg; break;
		case 'N': note = optarg; break;
		case 'h': review_usage(stdout); return 0;
		default: review_usage(stderr); return 2;
		}
	}
	if (done ? optind == argc || all || json : optind < argc || by || note) {
		review_usage(stderr);
		return 2;
	}
	if (storeview_open("review", file, dbpath, &cfg, NULL, 0, &db) < 0)
		return 1;
	if (done) {
		sqlite3_close(db);
		if (by == NULL)
			by = getenv("USER") && *getenv("USER") ? getenv("USER") : "unknown";
		rc = review_done(cfg.store.path, argv + optind, argc - optind, by, note);
		config_free(&cfg);
		return rc;
	}
	cJSON *r = cJSON_CreateObject(), *rows;

	rows = storeview_rows(
	        db, r, "review",
	        all ? "SELECT q.event_id, q.ts_ms, q.reason, q.status, q.done_ms, q.done_by, q.note,"
	              " e.source, e.sku, e.category, e.severity, e.confidence,"
	              " json_extract(e.body, '$.summary') AS summary"
	              " FROM review_queue q LEFT JOIN events e ON e.event_id = q.event_id"
	              " ORDER BY q.ts_ms DESC, q.event_id LIMIT ?1"
	            : "SELECT q.event_id, q.ts_ms, q.reason, q.status, e.source, e.sku, e.category,"
	              " e.severity, e.confidence, json_extract(e.body, '$.summary') AS summary"
	              " FROM review_queue q LEFT JOIN events e ON e.event_id = q.event_id"
	              " WHERE q.status = 'pending' ORDER BY q.ts_ms DESC, q.event_id LIMIT ?1",
	        &limit, 1);
	if (rows == NULL) {
		rc = 1;
	} else if (json) {
		storeview_print_json(r);
	} else {
		if (cJSON_GetArraySize(rows) == 0)
			printf("review queue: %s\n", all ? "nothing was ever queued" : "empty");
		cJSON_ArrayForEach(row, rows)
		{
			printf("%s  %-24.64s %-.120s\n", when(row, "ts_ms", t, sizeof(t)),
			       str(row, "event_id"), str(row, "reason"));
			printf("                  %s%s%s %s, severity %s, confidence %.2f: %.160s\n",
			       str(row, "source"), str(row, "source")[0] ? " " : "",
			       str(row, "sku"), str(row, "category"), str(row, "severity"),
			       num(row, "confidence"), str(row, "summary"));
			if (all && strcmp(str(row, "status"), "pending") != 0)
				printf("                  %s %s%s%s%s%s\n", str(row, "status"),
				       when(row, "done_ms", u, sizeof(u)),
				       str(row, "done_by")[0] ? " by " : "", str(row, "done_by"),
				       str(row, "note")[0] ? ": " : "", str(row, "note"));
		}
	}
	cJSON_Delete(r);
	sqlite3_close(db);
	config_free(&cfg);
	return rc;
}
