/*
 * rulestate.c: the rules' state file (see rulestate.h).
 *
 * WAL with synchronous=NORMAL, like the store: a commit survives the process
 * being killed; a power cut may take back the last checkpoint, which only
 * means a longer replay. One connection, from the rules' thread; SQLite's
 * automatic WAL checkpoint runs on that thread after a commit, where no
 * other writer waits for it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include <voca/xalloc.h>

#include "rulestate.h"

#define SCHEMA_VERSION 1

static const char schema[] =
        "CREATE TABLE rule_state ("
        " rule TEXT NOT NULL, key TEXT NOT NULL, blob BLOB NOT NULL,"
        " PRIMARY KEY (rule, key)) WITHOUT ROWID;"
        /* The position the records cover: 'rowid' and 'revision_seq'. */
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
        "PRAGMA user_version = 1;";

struct rulestate {
	sqlite3 *db;
	sqlite3_stmt *put, *del, *del_rule, *meta;
	int in_tx;
	char err[512];
};

static int set_err(struct rulestate *rs, const char *what)
{
	snprintf(rs->err, sizeof(rs->err), "%s: %s", what, sqlite3_errmsg(rs->db));
	return -1;
}

static int exec(struct rulestate *rs, const char *sql, const char *what)
{
	char *msg = NULL;

	if (sqlite3_exec(rs->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(rs->err, sizeof(rs->err), "%s: %s", what,
		         msg ? msg : sqlite3_errmsg(rs->db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int schema_version(struct rulestate *rs)
{
	sqlite3_stmt *s;
	int v = -1;

	if (sqlite3_prepare_v2(rs->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
		return set_err(rs, "read schema version");
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return v;
}

static int create(struct rulestate *rs)
{
	int v;

	if (exec(rs, "BEGIN IMMEDIATE", "begin") < 0)
		return -1;
	v = schema_version(rs);
	if (v < 0 || (v == 0 && exec(rs, schema, "create") < 0)) {
		sqlite3_exec(rs->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	if (v > SCHEMA_VERSION) {
		sqlite3_exec(rs->db, "ROLLBACK", NULL, NULL, NULL);
		snprintf(rs->err, sizeof(rs->err),
		         "the file is at schema version %d, newer than this voca knows (%d)", v,
		         SCHEMA_VERSION);
		return -1;
	}
	return exec(rs, "COMMIT", "commit");
}

struct rulestate *rulestate_open(const char *path, int64_t cache_bytes, char *err, size_t errlen)
{
	struct rulestate *rs = xcalloc(1, sizeof(*rs));
	char pragmas[256];

	if (sqlite3_open_v2(path, &rs->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	                    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: cannot open: %s", path,
		         rs->db ? sqlite3_errmsg(rs->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(rs->db, 5000);
	snprintf(pragmas, sizeof(pragmas),
	         "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
	         " PRAGMA cache_size=-%lld;",
	         (long long)(cache_bytes / 1024));
	if (exec(rs, pragmas, "pragmas") < 0 || create(rs) < 0)
		goto fail_err;
	if (sqlite3_prepare_v3(rs->db,
	                       "INSERT INTO rule_state(rule, key, blob) VALUES(?1,?2,?3)"
	                       " ON CONFLICT(rule, key) DO UPDATE SET blob = excluded.blob",
	                       -1, SQLITE_PREPARE_PERSISTENT, &rs->put, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v3(rs->db, "DELETE FROM rule_state WHERE rule = ?1 AND key = ?2", -1,
	                       SQLITE_PREPARE_PERSISTENT, &rs->del, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v3(rs->db, "DELETE FROM rule_state WHERE rule = ?1", -1,
	                       SQLITE_PREPARE_PERSISTENT, &rs->del_rule, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v3(rs->db,
	                       "INSERT INTO meta(name, value) VALUES(?1,?2)"
	                       " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
	                       -1, SQLITE_PREPARE_PERSISTENT, &rs->meta, NULL) != SQLITE_OK) {
		set_err(rs, "prepare");
		goto fail_err;
	}
	return rs;
fail_err:
	snprintf(err, errlen, "%s: %s", path, rs->err);
fail:
	rulestate_close(rs);
	return NULL;
}

void rulestate_close(struct rulestate *rs)
{
	if (rs == NULL)
		return;
	rulestate_commit(rs);
	sqlite3_finalize(rs->put);
	sqlite3_finalize(rs->del);
	sqlite3_finalize(rs->del_rule);
	sqlite3_finalize(rs->meta);
	sqlite3_close(rs->db);
	free(rs);
}

static int begin(struct rulestate *rs)
{
	if (rs->in_tx)
		return 0;
	if (exec(rs, "BEGIN IMMEDIATE", "begin") < 0)
		return -1;
	rs->in_tx = 1;
	return 0;
}

/* Steps a statement that returns no rows, then resets it. */
static int run(struct rulestate *rs, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_DONE ? 0 : set_err(rs, what);
}

int rulestate_put(struct rulestate *rs, const char *rule, const char *key, const void *blob,
                  size_t len)
{
	if (begin(rs) < 0)
		return -1;
	if (key == NULL) {
		sqlite3_bind_text(rs->del_rule, 1, rule, -1, SQLITE_STATIC);
		return run(rs, rs->del_rule, "delete a rule's state");
	}
	if (blob == NULL) {
		sqlite3_bind_text(rs->del, 1, rule, -1, SQLITE_STATIC);
		sqlite3_bind_text(rs->del, 2, key, -1, SQLITE_STATIC);
		return run(rs, rs->del, "forget rule state");
	}
	sqlite3_bind_text(rs->put, 1, rule, -1, SQLITE_STATIC);
	sqlite3_bind_text(rs->put, 2, key, -1, SQLITE_STATIC);
	sqlite3_bind_blob(rs->put, 3, blob, (int)len, SQLITE_STATIC);
	return run(rs, rs->put, "save rule state");
}

int rulestate_each(struct rulestate *rs,
                   int (*fn)(void *arg, const char *rule, const char *key, const void *blob,
                             size_t len),
                   void *arg)
{
	sqlite3_stmt *s;
	int n = 0, rc;

	if (sqlite3_prepare_v2(rs->db, "SELECT rule, key, blob FROM rule_state ORDER BY rule, key",
	                       -1, &s, NULL) != SQLITE_OK)
		return set_err(rs, "read rule state");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		fn(arg, (const char *)sqlite3_column_text(s, 0),
		   (const char *)sqlite3_column_text(s, 1), sqlite3_column_blob(s, 2),
		   (size_t)sqlite3_column_bytes(s, 2));
		n++;
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? n : set_err(rs, "read rule state");
}

int rulestate_each_shape(const char *path,
                         void (*fn)(void *arg, const char *rule, const void *blob, size_t len,
                                    int64_t records),
                         void *arg, char *err, size_t errlen)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	struct stat sb;
	int rc = SQLITE_DONE;

	if (stat(path, &sb) < 0)
		return 0;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_busy_timeout(db, 5000) != SQLITE_OK ||
	    sqlite3_prepare_v2(db,
	                       "SELECT s.key, s.blob, (SELECT count(*) FROM rule_state r"
	                       " WHERE r.rule = s.key) FROM rule_state s"
	                       " WHERE s.rule = '' AND s.key != '' ORDER BY s.key",
	                       -1, &s, NULL) != SQLITE_OK)
		rc = SQLITE_ERROR;
	while (rc != SQLITE_ERROR && (rc = sqlite3_step(s)) == SQLITE_ROW)
		fn(arg, (const char *)sqlite3_column_text(s, 0), sqlite3_column_blob(s, 1),
		   (size_t)sqlite3_column_bytes(s, 1), sqlite3_column_int64(s, 2));
	if (rc != SQLITE_DONE)
		snprintf(err, errlen, "cannot read the rules' state in %s: %s", path,
		         db ? sqlite3_errmsg(db) : "out of memory");
	sqlite3_finalize(s);
	sqlite3_close(db);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int set_meta(struct rulestate *rs, const char *name, int64_t value)
{
	sqlite3_bind_text(rs->meta, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(rs->meta, 2, value);
	return run(rs, rs->meta, "save the position");
}

int rulestate_set_position(struct rulestate *rs, int64_t rowid, int64_t revision_seq)
{
	if (begin(rs) < 0)
		return -1;
	return set_meta(rs, "rowid", rowid) < 0 || set_meta(rs, "revision_seq", revision_seq) < 0
	               ? -1
	               : 0;
}

int rulestate_position(struct rulestate *rs, int64_t *rowid, int64_t *revision_seq)
{
	sqlite3_stmt *s;
	int found = 0, rc;

	*rowid = *revision_seq = 0;
	if (sqlite3_prepare_v2(rs->db, "SELECT name, value FROM meta", -1, &s, NULL) != SQLITE_OK)
		return set_err(rs, "read the position");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 0);

		if (strcmp(name, "rowid") == 0) {
			*rowid = sqlite3_column_int64(s, 1);
			found = 1;
		} else if (strcmp(name, "revision_seq") == 0) {
			*revision_seq = sqlite3_column_int64(s, 1);
		}
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? found : set_err(rs, "read the position");
}

int rulestate_clear(struct rulestate *rs)
{
	if (begin(rs) < 0 || exec(rs, "DELETE FROM rule_state; DELETE FROM meta", "clear") < 0)
		return -1;
	return rulestate_commit(rs);
}

int rulestate_commit(struct rulestate *rs)
{
	if (!rs->in_tx)
		return 0;
	rs->in_tx = 0;
	if (exec(rs, "COMMIT", "commit") < 0) {
		sqlite3_exec(rs->db, "ROLLBACK", NULL, NULL, NULL); /* keeps the commit's error */
		return -1;
	}
	return 0;
}

const char *rulestate_error(const struct rulestate *rs)
{
	return rs->err;
}
