/*
 * store.c: the SQLite file (see store.h).
 *
 * Durability: WAL with synchronous=NORMAL. A committed transaction survives
 * the process being killed at any moment (the WAL write is done before
 * COMMIT returns); only a power cut can take back the last commits, and
 * replay is safe because ingest is idempotent. Migrations are numbered SQL
 * scripts applied in order, each in its own transaction, recorded in
 * PRAGMA user_version.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include <voca/xalloc.h>

#include "store.h"

static const char *const migrations[] = {
        /* 1: events, quarantine, sequence gaps, counters. */
        "CREATE TABLE events ("
        " event_id TEXT NOT NULL UNIQUE,"
        " revision INTEGER NOT NULL,"
        " ts_ms INTEGER NOT NULL,"
        " received_ms INTEGER NOT NULL,"
        " source TEXT, channel TEXT, sku TEXT,"
        " category TEXT NOT NULL, subcategory TEXT,"
        " sentiment TEXT NOT NULL, severity TEXT NOT NULL,"
        " confidence REAL, needs_review INTEGER NOT NULL, rating INTEGER,"
        " region TEXT, publisher TEXT, seq INTEGER,"
        " body TEXT NOT NULL);"
        "CREATE INDEX events_ts ON events(ts_ms);"
        "CREATE TABLE quarantine ("
        " id INTEGER PRIMARY KEY,"
        " received_ms INTEGER NOT NULL,"
        " topic TEXT,"
        " code TEXT NOT NULL,"
        " reason TEXT NOT NULL,"
        " size INTEGER NOT NULL,"
        " raw BLOB);"
        "CREATE INDEX quarantine_code ON quarantine(code);"
        "CREATE TABLE gaps ("
        " id INTEGER PRIMARY KEY,"
        " publisher TEXT NOT NULL,"
        " expected_seq INTEGER NOT NULL,"
        " got_seq INTEGER NOT NULL,"
        " missing INTEGER NOT NULL,"
        " detected_ms INTEGER NOT NULL);"
        "CREATE TABLE publishers ("
        " publisher TEXT PRIMARY KEY,"
        " last_seq INTEGER NOT NULL,"
        " last_seen_ms INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
        "INSERT INTO counters(name, value) VALUES"
        " ('events_new', 0), ('events_superseded', 0), ('events_duplicate', 0),"
        " ('events_stale', 0), ('quarantined', 0), ('gaps', 0), ('gap_missing', 0);",
};

#define NMIGRATIONS (int)(sizeof(migrations) / sizeof(migrations[0]))

enum stmt_id {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_INSERT,
	S_REVISION,
	S_UPDATE,
	S_QUARANTINE,
	S_GAP,
	S_PUBLISHER,
	S_COUNTER,
	S_COUNT,
};

#define EVENT_COLS                                                                                 \
	"revision, ts_ms, received_ms, source, channel, sku, category, subcategory, sentiment, "   \
	"severity, confidence, needs_review, rating, region, publisher, seq, body"

static const char *const stmt_sql[S_COUNT] = {
        [S_BEGIN] = "BEGIN IMMEDIATE",
        [S_COMMIT] = "COMMIT",
        [S_ROLLBACK] = "ROLLBACK",
        [S_INSERT] = "INSERT INTO events(" EVENT_COLS ", event_id) "
                     "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18) "
                     "ON CONFLICT(event_id) DO NOTHING",
        [S_REVISION] = "SELECT revision FROM events WHERE event_id = ?1",
        [S_UPDATE] = "UPDATE events SET (" EVENT_COLS ") = "
                     "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17) "
                     "WHERE event_id = ?18",
        [S_QUARANTINE] = "INSERT INTO quarantine(received_ms, topic, code, reason, size, raw) "
                         "VALUES(?1,?2,?3,?4,?5,?6)",
        [S_GAP] = "INSERT INTO gaps(publisher, expected_seq, got_seq, missing, detected_ms) "
                  "VALUES(?1,?2,?3,?4,?5)",
        [S_PUBLISHER] = "INSERT INTO publishers(publisher, last_seq, last_seen_ms) "
                        "VALUES(?1,?2,?3) ON CONFLICT(publisher) DO UPDATE SET "
                        "last_seq = excluded.last_seq, last_seen_ms = excluded.last_seen_ms",
        [S_COUNTER] = "UPDATE counters SET value = value + ?2 WHERE name = ?1",
};

struct store {
	sqlite3 *db;
	sqlite3_stmt *stmt[S_COUNT];
	int in_tx;
	int schema_version;
	size_t pending;
	struct store_counts counts;
	char err[256];
};

static int set_err(struct store *st, const char *what)
{
	snprintf(st->err, sizeof(st->err), "%s: %s", what, sqlite3_errmsg(st->db));
	return -1;
}

const char *store_error(const struct store *st)
{
	return st->err;
}

static int exec(struct store *st, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(st->err, sizeof(st->err), "%s", msg ? msg : sqlite3_errmsg(st->db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int migrate(struct store *st)
{
	sqlite3_stmt *s;
	int version;

	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
		return set_err(st, "read schema version");
	sqlite3_step(s);
	version = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	if (version > NMIGRATIONS) {
		snprintf(st->err, sizeof(st->err),
		         "the file is at schema version %d, newer than this voca knows (%d)",
		         version, NMIGRATIONS);
		return -1;
	}
	for (; version < NMIGRATIONS; version++) {
		char pragma[64];

		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", version + 1);
		if (exec(st, "BEGIN IMMEDIATE") < 0)
			return -1;
		if (exec(st, migrations[version]) < 0 || exec(st, pragma) < 0) {
			char why[256];

			memcpy(why, st->err, sizeof(why));
			exec(st, "ROLLBACK");
			snprintf(st->err, sizeof(st->err), "migration %d: %.200s", version + 1,
			         why);
			return -1;
		}
		if (exec(st, "COMMIT") < 0)
			return -1;
	}
	st->schema_version = version;
	return 0;
}

struct store *store_open(const char *path, int64_t cache_bytes, char *err, size_t errlen)
{
	struct store *st = xcalloc(1, sizeof(*st));
	char pragmas[256];

	/*
	 * Memory statistics take a global mutex on every SQLite allocation;
	 * nothing reads them. Only possible before SQLite initialises, so a
	 * later call fails harmlessly.
	 */
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	/* NOMUTEX: a store is used from one thread, so no per-call locking. */
	if (sqlite3_open_v2(path, &st->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	                    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: cannot open: %s", path,
		         st->db ? sqlite3_errmsg(st->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(st->db, 5000);
	snprintf(pragmas, sizeof(pragmas),
	         /* 16 KiB pages: an event row is ~1 KB, so fewer splits and writes than 4 KiB.
	          * Takes effect only when the file is created. */
	         "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
	         " PRAGMA foreign_keys=ON; PRAGMA cache_size=-%lld;",
	         (long long)(cache_bytes / 1024));
	if (exec(st, pragmas) < 0 || migrate(st) < 0) {
		snprintf(err, errlen, "%s: %s", path, st->err);
		goto fail;
	}
	for (int i = 0; i < S_COUNT; i++) {
		if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
		                       &st->stmt[i], NULL) != SQLITE_OK) {
			snprintf(err, errlen, "%s: prepare: %s", path, sqlite3_errmsg(st->db));
			goto fail;
		}
	}
	return st;
fail:
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	sqlite3_close(st->db);
	free(st);
	return NULL;
}

void store_close(struct store *st)
{
	if (st == NULL)
		return;
	store_commit(st);
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	sqlite3_close(st->db);
	free(st);
}

int store_schema_version(const struct store *st)
{
	return st->schema_version;
}

/* Steps a statement that returns no rows, then resets it. */
static int run(struct store *st, enum stmt_id id, const char *what)
{
	sqlite3_stmt *s = st->stmt[id];
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc != SQLITE_DONE)
		return set_err(st, what);
	return 0;
}

static int begin(struct store *st)
{
	if (st->in_tx)
		return 0;
	if (run(st, S_BEGIN, "begin") < 0)
		return -1;
	st->in_tx = 1;
	return 0;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

static void bind_real(sqlite3_stmt *s, int i, double v)
{
	if (v == v) /* not NAN */
		sqlite3_bind_double(s, i, v);
	else
		sqlite3_bind_null(s, i);
}

/* Binds the 18 columns of S_INSERT / S_UPDATE (same parameter numbers). */
static void bind_event(sqlite3_stmt *s, const struct event *ev, int64_t received_ms)
{
	sqlite3_bind_int64(s, 1, ev->revision);
	sqlite3_bind_int64(s, 2, ev->ts_ms);
	sqlite3_bind_int64(s, 3, received_ms);
	bind_text(s, 4, ev->source);
	bind_text(s, 5, ev->channel ? channel_name(ev->channel) : NULL);
	bind_text(s, 6, ev->sku);
	bind_text(s, 7, ev->category);
	bind_text(s, 8, ev->subcategory);
	bind_text(s, 9, sentiment_name(ev->sentiment));
	bind_text(s, 10, severity_name(ev->severity));
	bind_real(s, 11, ev->confidence);
	sqlite3_bind_int(s, 12, ev->needs_review);
	if (ev->rating)
		sqlite3_bind_int(s, 13, ev->rating);
	else
		sqlite3_bind_null(s, 13);
	bind_text(s, 14, ev->region);
	bind_text(s, 15, ev->publisher);
	if (ev->seq >= 0)
		sqlite3_bind_int64(s, 16, ev->seq);
	else
		sqlite3_bind_null(s, 16);
	sqlite3_bind_text(s, 17, ev->raw, (int)ev->raw_len, SQLITE_STATIC);
	sqlite3_bind_text(s, 18, ev->event_id, -1, SQLITE_STATIC);
}

int store_put(struct store *st, const struct event *ev, int64_t received_ms,
              enum store_verdict *verdict)
{
	sqlite3_stmt *s;
	int64_t stored;
	int rc;

	if (begin(st) < 0)
		return -1;
	/* Fast path: a new event is one INSERT. */
	bind_event(st->stmt[S_INSERT], ev, received_ms);
	if (run(st, S_INSERT, "insert event") < 0)
		return -1;
	st->pending++;
	if (sqlite3_changes(st->db) == 1) {
		*verdict = STORE_NEW;
		goto done;
	}
	s = st->stmt[S_REVISION];
	sqlite3_bind_text(s, 1, ev->event_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	stored = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc != SQLITE_ROW)
		return set_err(st, "read revision");
	if (ev->revision == stored) {
		*verdict = STORE_DUPLICATE;
	} else if (ev->revision < stored) {
		*verdict = STORE_STALE;
	} else {
		bind_event(st->stmt[S_UPDATE], ev, received_ms);
		if (run(st, S_UPDATE, "supersede event") < 0)
			return -1;
		*verdict = STORE_SUPERSEDED;
	}
done:
	st->counts.verdict[*verdict]++;
	return 0;
}

int store_quarantine(struct store *st, int64_t received_ms, const char *topic,
                     enum reject_code code, const char *reason, const char *raw, size_t len,
                     size_t keep)
{
	sqlite3_stmt *s = st->stmt[S_QUARANTINE];

	if (begin(st) < 0)
		return -1;
	sqlite3_bind_int64(s, 1, received_ms);
	bind_text(s, 2, topic);
	sqlite3_bind_text(s, 3, reject_code_name(code), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, reason, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, (int64_t)len);
	sqlite3_bind_blob(s, 6, raw ? raw : "", (int)(len < keep ? len : keep), SQLITE_STATIC);
	if (run(st, S_QUARANTINE, "quarantine") < 0)
		return -1;
	st->pending++;
	st->counts.quarantined++;
	return 0;
}

int store_gap(struct store *st, const char *publisher, int64_t expected, int64_t got,
              int64_t detected_ms)
{
	sqlite3_stmt *s = st->stmt[S_GAP];

	if (begin(st) < 0)
		return -1;
	sqlite3_bind_text(s, 1, publisher, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, expected);
	sqlite3_bind_int64(s, 3, got);
	sqlite3_bind_int64(s, 4, got - expected);
	sqlite3_bind_int64(s, 5, detected_ms);
	if (run(st, S_GAP, "record gap") < 0)
		return -1;
	st->pending++;
	st->counts.gaps++;
	st->counts.gap_missing += (uint64_t)(got - expected);
	return 0;
}

int store_publisher(struct store *st, const char *publisher, int64_t last_seq, int64_t last_seen_ms)
{
	sqlite3_stmt *s = st->stmt[S_PUBLISHER];

	if (begin(st) < 0)
		return -1;
	sqlite3_bind_text(s, 1, publisher, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, last_seq);
	sqlite3_bind_int64(s, 3, last_seen_ms);
	return run(st, S_PUBLISHER, "save publisher");
}

int store_publishers_each(struct store *st,
                          void (*fn)(void *arg, const char *publisher, int64_t last_seq,
                                     int64_t last_seen_ms),
                          void *arg)
{
	sqlite3_stmt *s;

	if (sqlite3_prepare_v2(st->db, "SELECT publisher, last_seq, last_seen_ms FROM publishers",
	                       -1, &s, NULL) != SQLITE_OK)
		return set_err(st, "read publishers");
	while (sqlite3_step(s) == SQLITE_ROW)
		fn(arg, (const char *)sqlite3_column_text(s, 0), sqlite3_column_int64(s, 1),
		   sqlite3_column_int64(s, 2));
	sqlite3_finalize(s);
	return 0;
}

static int bump(struct store *st, const char *name, uint64_t by)
{
	sqlite3_stmt *s = st->stmt[S_COUNTER];

	if (by == 0)
		return 0;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (int64_t)by);
	return run(st, S_COUNTER, "update counter");
}

int store_commit(struct store *st)
{
	const struct store_counts *c = &st->counts;

	if (!st->in_tx)
		return 0;
	if (bump(st, "events_new", c->verdict[STORE_NEW]) < 0 ||
	    bump(st, "events_superseded", c->verdict[STORE_SUPERSEDED]) < 0 ||
	    bump(st, "events_duplicate", c->verdict[STORE_DUPLICATE]) < 0 ||
	    bump(st, "events_stale", c->verdict[STORE_STALE]) < 0 ||
	    bump(st, "quarantined", c->quarantined) < 0 || bump(st, "gaps", c->gaps) < 0 ||
	    bump(st, "gap_missing", c->gap_missing) < 0 || run(st, S_COMMIT, "commit") < 0) {
		char why[256];

		memcpy(why, st->err, sizeof(why));
		run(st, S_ROLLBACK, "rollback");
		memcpy(st->err, why, sizeof(why));
		st->in_tx = 0;
		st->pending = 0;
		memset(&st->counts, 0, sizeof(st->counts));
		return -1;
	}
	st->in_tx = 0;
	st->pending = 0;
	memset(&st->counts, 0, sizeof(st->counts));
	return 0;
}

size_t store_pending(const struct store *st)
{
	return st->pending;
}

const struct store_counts *store_uncommitted(const struct store *st)
{
	return &st->counts;
}
