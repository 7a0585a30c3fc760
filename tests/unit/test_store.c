/*
 * test_store.c: the SQLite store on a real file: identity by (event_id,
 * revision), quarantine, gaps, counters that survive a reopen, migrations;
 * and the rules' state file beside it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include <voca/event.h>

#include "rulestate.h"
#include "store.h"

struct fixture {
	char dir[64];
	char path[96];
	struct store *st;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/voca-store-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
	f->st = store_open(f->path, 2 << 20, err, sizeof(err));
	if (f->st == NULL)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	static const char *const suffixes[] = {"", "-wal", "-shm"};
	char p[128];

	store_close(f->st);
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", f->path, suffixes[i]);
		unlink(p);
		snprintf(p, sizeof(p), "%s/r.db%s", f->dir, suffixes[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

static struct event ev(const char *id, int64_t revision, const char *category)
{
	static char raw[256];
	struct event e = {0};

	snprintf(raw, sizeof(raw), "{\"event_id\":\"%s\",\"revision\":%lld}", id,
	         (long long)revision);
	e.event_id = id;
	e.revision = revision;
	e.ts_ms = 1772355600000LL;
	e.category = category;
	e.sentiment = SENTIMENT_NEGATIVE;
	e.sentiment_score = 0.0 / 0.0;
	e.confidence = 0.9;
	e.seq = -1;
	e.raw = raw;
	e.raw_len = strlen(raw);
	return e;
}

static int64_t query_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	int64_t v = -1;

	sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW)
			v = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
	}
	sqlite3_close(db);
	return v;
}

static void put(struct store *st, struct event e, enum store_verdict want)
{
	enum store_verdict got;

	assert_int_equal(store_put(st, &e, 1, &got), 0);
	assert_int_equal(got, want);
}

static void test_identity(void **state)
{
	struct fixture *f = *state;

	put(f->st, ev("a", 0, "shipping"), STORE_NEW);
	put(f->st, ev("a", 0, "shipping"), STORE_DUPLICATE);
	put(f->st, ev("a", 2, "billing"), STORE_SUPERSEDED);
	put(f->st, ev("a", 1, "sizing"), STORE_STALE);
	put(f->st, ev("a", 2, "sizing"), STORE_DUPLICATE);
	put(f->st, ev("b", 5, "other"), STORE_NEW);
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(query_int(f->path, "SELECT count(*) FROM events"), 2);
	/* The higher revision's fields won; the stale and duplicate ones changed nothing. */
	assert_int_equal(query_int(f->path, "SELECT revision FROM events WHERE event_id='a'"), 2);
	assert_int_equal(query_int(f->path, "SELECT category='billing' FROM events "
	                                    "WHERE event_id='a'"),
	                 1);
	assert_int_equal(query_int(f->path, "SELECT value FROM counters WHERE name='events_new'"),
	                 2);
	assert_int_equal(
	        query_int(f->path, "SELECT value FROM counters WHERE name='events_duplicate'"), 2);
	assert_int_equal(
	        query_int(f->path, "SELECT value FROM counters WHERE name='events_superseded'"), 1);
	assert_int_equal(query_int(f->path, "SELECT value FROM counters WHERE name='events_stale'"),
	                 1);
}

static void test_group_commit_is_one_transaction(void **state)
{
	struct fixture *f = *state;
	char ids[50][16];

	for (int i = 0; i < 50; i++) {
		snprintf(ids[i], sizeof(ids[i]), "g%d", i);
		put(f->st, ev(ids[i], 0, "x"), STORE_NEW);
	}
	assert_int_equal(store_pending(f->st), 50);
	/* Nothing is visible to another connection before the commit. */
	assert_int_equal(query_int(f->path, "SELECT count(*) FROM events"), 0);
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(store_pending(f->st), 0);
	assert_int_equal(query_int(f->path, "SELECT count(*) FROM events"), 50);
}

static void test_quarantine_caps_raw(void **state)
{
	struct fixture *f = *state;
	char raw[1000];

	memset(raw, 'x', sizeof(raw));
	assert_int_equal(store_quarantine(f->st, 5, "feedback", REJECT_INVALID_JSON, "bad", raw,
	                                  sizeof(raw), 100),
	                 0);
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(query_int(f->path, "SELECT size FROM quarantine"), 1000);
	assert_int_equal(query_int(f->path, "SELECT length(raw) FROM quarantine"), 100);
	assert_int_equal(query_int(f->path, "SELECT code='invalid_json' FROM quarantine"), 1);
	assert_int_equal(query_int(f->path, "SELECT value FROM counters WHERE name='quarantined'"),
	                 1);
}

static void publisher_cb(void *arg, const char *publisher, int64_t last_seq, int64_t seen)
{
	(void)seen;
	if (strcmp(publisher, "p1") == 0)
		*(int64_t *)arg = last_seq;
}

static void test_gaps_and_publishers_survive_reopen(void **state)
{
	struct fixture *f = *state;
	char err[256];
	int64_t last = -1;

	assert_int_equal(store_gap(f->st, "p1", 10, 14, 7), 0);
	assert_int_equal(store_publisher(f->st, "p1", 14, 7), 0);
	assert_int_equal(store_commit(f->st), 0);
	store_close(f->st);
	f->st = store_open(f->path, 2 << 20, err, sizeof(err));
	assert_non_null(f->st);
	assert_int_equal(store_schema_version(f->st), 5);
	assert_int_equal(store_publishers_each(f->st, publisher_cb, &last), 0);
	assert_int_equal(last, 14);
	assert_int_equal(query_int(f->path, "SELECT missing FROM gaps"), 4);
	assert_int_equal(query_int(f->path, "SELECT value FROM counters WHERE name='gap_missing'"),
	                 4);
}

static int collect(void *arg, int64_t tag, const char *body, size_t len)
{
	char *out = arg;

	snprintf(out + strlen(out), 512 - strlen(out), "%lld %.*s\n", (long long)tag, (int)len,
	         body);
	return 0;
}

/*
 * A replay gives the rules what they saw, in the order they saw it: each
 * event as first stored at its rowid, each higher revision where it
 * arrived (tag: minus its arrival number), from a checkpoint of both.
 */
static void test_events_since_interleaves_revisions_as_they_arrived(void **state)
{
	struct fixture *f = *state;
	char got[512] = "";

	put(f->st, ev("a", 0, "x"), STORE_NEW);        /* rowid 1 */
	put(f->st, ev("b", 0, "x"), STORE_NEW);        /* rowid 2 */
	put(f->st, ev("a", 1, "x"), STORE_SUPERSEDED); /* seq 1, after 2 */
	assert_int_equal(store_last_revision_seq(f->st), 1);
	put(f->st, ev("c", 0, "x"), STORE_NEW);        /* rowid 3 */
	put(f->st, ev("b", 1, "x"), STORE_SUPERSEDED); /* seq 2, after 3 */
	put(f->st, ev("a", 2, "x"), STORE_SUPERSEDED); /* seq 3, after 3 */
	assert_int_equal(store_commit(f->st), 0);

	assert_int_equal(store_events_since(f->st, 1, 0, collect, got), 5);
	assert_string_equal(got, "2 {\"event_id\":\"b\",\"revision\":0}\n"
	                         "-1 {\"event_id\":\"a\",\"revision\":1}\n"
	                         "3 {\"event_id\":\"c\",\"revision\":0}\n"
	                         "-2 {\"event_id\":\"b\",\"revision\":1}\n"
	                         "-3 {\"event_id\":\"a\",\"revision\":2}\n");
	got[0] = '\0';
	assert_int_equal(store_events_since(f->st, 3, 1, collect, got), 2);
	assert_string_equal(got, "-2 {\"event_id\":\"b\",\"revision\":1}\n"
	                         "-3 {\"event_id\":\"a\",\"revision\":2}\n");
}

static void test_refuses_newer_schema(void **state)
{
	struct fixture *f = *state;
	char err[256];
	sqlite3 *db;

	store_close(f->st);
	f->st = NULL;
	sqlite3_open(f->path, &db);
	sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL);
	sqlite3_close(db);
	assert_null(store_open(f->path, 2 << 20, err, sizeof(err)));
	assert_non_null(strstr(err, "newer than this voca knows"));
}

static void test_close_commits_pending(void **state)
{
	struct fixture *f = *state;
	char err[256];

	put(f->st, ev("z", 0, "x"), STORE_NEW);
	store_close(f->st);
	f->st = store_open(f->path, 2 << 20, err, sizeof(err));
	assert_int_equal(query_int(f->path, "SELECT count(*) FROM events"), 1);
}

/*
 * One row per report: queued again (re-scored, still unsure) it is pending
 * with the latest reason; re-scored confident it leaves the queue; a
 * person's "reviewed" stands whatever the scorer says next.
 */
static void test_the_review_queue_keeps_one_row_and_the_latest_word(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(store_review(f->st, "r", 1, "confidence 0.30 is under 0.60"), 0);
	assert_int_equal(store_review(f->st, "r", 1, "confidence 0.40 is under 0.60"), 0);
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(query_int(f->path, "SELECT count(*) FROM review_queue WHERE status ="
	                                    " 'pending' AND reason LIKE '%0.40%'"),
	                 1);
	assert_int_equal(store_review_clear(f->st, "r", 5, "re-scored: confidence 0.95"), 0);
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(query_int(f->path, "SELECT count(*) FROM review_queue WHERE status ="
	                                    " 'rescored' AND done_ms = 5"),
	                 1);
	assert_int_equal(store_review(f->st, "r", 1, "the scorer flagged it needs_review"), 0);
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(query_int(f->path, "SELECT count(*) FROM review_queue WHERE status ="
	                                    " 'pending' AND done_ms IS NULL AND note IS NULL"),
	                 1);
	assert_int_equal(query_int(f->path, "SELECT value FROM counters WHERE name = "
	                                    "'review_queued'"),
	                 1);
	/* A person reviews it (voca review --done); the scorer's next word does not undo it. */
	sqlite3 *db;

	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(
	        sqlite3_exec(db, "UPDATE review_queue SET status = 'reviewed'", NULL, NULL, NULL),
	        SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_review(f->st, "r", 1, "confidence 0.10 is under 0.60"), 0);
	assert_int_equal(store_review_clear(f->st, "r", 9, "re-scored"), 0);
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(query_int(f->path, "SELECT count(*) FROM review_queue WHERE status ="
	                                    " 'reviewed' AND reason LIKE '%needs_review%'"),
	                 1);
}

/*
 * A verification logs one change and sets the status; a replay of it adds
 * nothing; one about an incident this store never had (a state file kept
 * beside a new store) is let go, not a foreign-key failure that stops voca.
 */
static void test_verified_is_logged_once_and_only_for_a_known_incident(void **state)
{
	struct fixture *f = *state;
	struct incident inc = {.id = 1,
	                       .rule = "r",
	                       .kind = "threshold",
	                       .tier = 2,
	                       .opened_ms = 1,
	                       .updated_ms = 2,
	                       .resolved_ms = 3,
	                       .firings = 1};
	int64_t change = 0;

	snprintf(inc.key, sizeof(inc.key), "sku=A");
	snprintf(inc.summary, sizeof(inc.summary), "s");
	inc.why = cJSON_CreateObject();
	assert_int_equal(store_incident(f->st, &inc, INCIDENT_RESOLVED, &change), 0);
	inc.updated_ms = 100;
	for (int i = 0; i < 2; i++)
		assert_int_equal(store_incident(f->st, &inc, INCIDENT_VERIFIED, &change), 0);
	inc.id = 99;
	assert_int_equal(store_incident(f->st, &inc, INCIDENT_VERIFIED, &change), 0);
	assert_int_equal(change, 0);
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(query_int(f->path, "SELECT count(*) FROM incident_changes WHERE change ="
	                                    " 'verified' AND incident_id = 1 AND at_ms = 100"),
	                 1);
	assert_int_equal(query_int(f->path, "SELECT count(*) FROM incident_changes"), 2);
	assert_int_equal(query_int(f->path, "SELECT count(*) FROM incidents WHERE status ="
	                                    " 'verified'"),
	                 1);
	cJSON_Delete(inc.why);
}

/* A store of the previous schema (4) gains the review columns and keeps its rows. */
static void test_a_schema_4_store_is_migrated(void **state)
{
	struct fixture *f = *state;
	char err[256];
	sqlite3 *db;

	assert_int_equal(store_review(f->st, "old", 1, "confidence 0.30 is under 0.60"), 0);
	store_close(f->st);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                              "ALTER TABLE review_queue DROP COLUMN done_ms;"
	                              "ALTER TABLE review_queue DROP COLUMN done_by;"
	                              "ALTER TABLE review_queue DROP COLUMN note;"
	                              "PRAGMA user_version = 4",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	f->st = store_open(f->path, 2 << 20, err, sizeof(err));
	assert_non_null(f->st);
	assert_int_equal(store_schema_version(f->st), 5);
	assert_int_equal(store_review_clear(f->st, "old", 7, "re-scored"), 0);
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(query_int(f->path, "SELECT done_ms FROM review_queue WHERE status ="
	                                    " 'rescored'"),
	                 7);
}

static int count_record(void *arg, const char *rule, const char *key, const void *blob, size_t len)
{
	int *n = arg;

	(void)rule;
	(void)key;
	(void)blob;
	*n += (int)len;
	return 0;
}

static void test_rules_state_file_keeps_records_and_position(void **state)
{
	struct fixture *f = *state;
	char path[128], err[256];
	struct rulestate *rs;
	int64_t rowid = -1, seq = -1;
	int bytes = 0;

	snprintf(path, sizeof(path), "%s/r.db", f->dir);
	rs = rulestate_open(path, 1 << 20, err, sizeof(err));
	assert_non_null(rs);
	assert_int_equal(rulestate_position(rs, &rowid, &seq), 0); /* a new file: none */
	assert_int_equal(rowid, 0);
	assert_int_equal(rulestate_put(rs, "spike", "sku=A", "abc", 3), 0);
	assert_int_equal(rulestate_put(rs, "spike", "sku=B", "de", 2), 0);
	assert_int_equal(rulestate_put(rs, "spike", "sku=A", "abcdefg", 7), 0); /* replaces */
	assert_int_equal(rulestate_set_position(rs, 7, 3), 0);
	assert_int_equal(rulestate_commit(rs), 0);
	rulestate_close(rs);

	rs = rulestate_open(path, 1 << 20, err, sizeof(err));
	assert_non_null(rs);
	assert_int_equal(rulestate_position(rs, &rowid, &seq), 1);
	assert_int_equal(rowid, 7);
	assert_int_equal(seq, 3);
	assert_int_equal(rulestate_each(rs, count_record, &bytes), 2);
	assert_int_equal(bytes, 9);
	assert_int_equal(rulestate_clear(rs), 0);
	assert_int_equal(rulestate_position(rs, &rowid, &seq), 0);
	bytes = 0;
	assert_int_equal(rulestate_each(rs, count_record, &bytes), 0);
	rulestate_close(rs);

	/* A file of a newer voca is refused, not misread. */
	sqlite3 *db;

	sqlite3_open(path, &db);
	sqlite3_exec(db, "PRAGMA user_version = 2", NULL, NULL, NULL);
	sqlite3_close(db);
	assert_null(rulestate_open(path, 1 << 20, err, sizeof(err)));
	assert_non_null(strstr(err, "newer than this voca knows"));
}

static void test_rules_position_is_committed_to_the_store(void **state)
{
	struct fixture *f = *state;

	put(f->st, ev("a", 0, "x"), STORE_NEW); /* pending: committed with it */
	assert_int_equal(store_rules_position(f->st, 1, 0), 0);
	assert_int_equal(store_pending(f->st), 0);
	assert_int_equal(query_int(f->path, "SELECT count(*) FROM events"), 1);
	assert_int_equal(
	        query_int(f->path, "SELECT value FROM meta WHERE name = 'rules_checkpoint'"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_the_review_queue_keeps_one_row_and_the_latest_word, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_a_schema_4_store_is_migrated, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_verified_is_logged_once_and_only_for_a_known_incident, setup,
	                teardown),
	        cmocka_unit_test_setup_teardown(test_group_commit_is_one_transaction, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_quarantine_caps_raw, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_gaps_and_publishers_survive_reopen, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(
	                test_events_since_interleaves_revisions_as_they_arrived, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_refuses_newer_schema, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_close_commits_pending, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_rules_state_file_keeps_records_and_position,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_rules_position_is_committed_to_the_store,
	                                        setup, teardown),
	};

	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
