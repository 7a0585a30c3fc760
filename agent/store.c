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
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include <voca/rule.h>
#include <voca/suppress.h>
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
        /* 2: the rules' state, incidents and their changes, the review queue. */
        "CREATE TABLE rule_state ("
        " rule TEXT NOT NULL, key TEXT NOT NULL, blob BLOB NOT NULL,"
        " PRIMARY KEY (rule, key)) WITHOUT ROWID;"
        "CREATE TABLE incidents ("
        " id INTEGER PRIMARY KEY,"
        " rule TEXT NOT NULL, kind TEXT NOT NULL, tier INTEGER NOT NULL, key TEXT NOT NULL,"
        " status TEXT NOT NULL,"
        " opened_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, resolved_ms INTEGER,"
        " firings INTEGER NOT NULL, realerts INTEGER NOT NULL, reopens INTEGER NOT NULL,"
        " summary TEXT NOT NULL, why TEXT NOT NULL, suppressed TEXT);"
        "CREATE INDEX incidents_status ON incidents(status, rule);"
        "CREATE TABLE incident_changes ("
        " id INTEGER PRIMARY KEY,"
        " incident_id INTEGER NOT NULL REFERENCES incidents(id),"
        " at_ms INTEGER NOT NULL, change TEXT NOT NULL, notify INTEGER NOT NULL,"
        " summary TEXT NOT NULL, suppressed TEXT,"
        " UNIQUE (incident_id, at_ms, change));"
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE revisions ("
        " event_id TEXT NOT NULL, revision INTEGER NOT NULL, body TEXT NOT NULL,"
        " PRIMARY KEY (event_id, revision)) WITHOUT ROWID;"
        "CREATE TABLE review_queue ("
        " event_id TEXT PRIMARY KEY, ts_ms INTEGER NOT NULL, reason TEXT NOT NULL,"
        " status TEXT NOT NULL DEFAULT 'pending') WITHOUT ROWID;"
        "INSERT INTO counters(name, value) VALUES ('review_queued', 0);",
        /* 3: the outbox (deliveries, written with the incident change), the
         * evidence packs they share, the ticket ledger, the attempt log. */
        "CREATE TABLE evidence ("
        " change_id INTEGER PRIMARY KEY REFERENCES incident_changes(id),"
        " incident_id INTEGER NOT NULL, dedupe TEXT NOT NULL, pack TEXT NOT NULL);"
        "CREATE TABLE deliveries ("
        " id INTEGER PRIMARY KEY,"
        " change_id INTEGER NOT NULL REFERENCES evidence(change_id),"
        " incident_id INTEGER NOT NULL, receiver TEXT NOT NULL, owner TEXT,"
        " action TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',"
        " step INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,"
        " created_ms INTEGER NOT NULL, next_ms INTEGER NOT NULL, done_ms INTEGER,"
        " inflight_ms INTEGER, create_tried_ms INTEGER,"
        " remote_id TEXT, remote_key TEXT, aux TEXT, last_error TEXT,"
        " UNIQUE (change_id, receiver));"
        "CREATE INDEX deliveries_due ON deliveries(receiver, status, next_ms);"
        "CREATE TABLE tickets ("
        " receiver TEXT NOT NULL, dedupe TEXT NOT NULL, incident_id INTEGER NOT NULL,"
        " remote_id TEXT, remote_key TEXT, updated_ms INTEGER NOT NULL,"
        " PRIMARY KEY (receiver, dedupe)) WITHOUT ROWID;"
        "CREATE TABLE delivery_log ("
        " id INTEGER PRIMARY KEY, delivery_id INTEGER NOT NULL, at_ms INTEGER NOT NULL,"
        " step INTEGER NOT NULL, status INTEGER, verdict TEXT NOT NULL, detail TEXT);"
        "CREATE INDEX delivery_log_delivery ON delivery_log(delivery_id);",
        /* 4: where each higher revision arrived among the events (after the
         * event with rowid after_rowid), so that a replay feeds the rules
         * events and revisions in the order they came. */
        "CREATE TABLE revision_arrivals ("
        " seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, revision INTEGER NOT NULL,"
        " after_rowid INTEGER NOT NULL);",
        /* 5: the review queue is worked: who took a report off it, when and
         * why ('reviewed' by a person; 'rescored' when a higher revision
         * came back confident). */
        "ALTER TABLE review_queue ADD COLUMN done_ms INTEGER;"
        "ALTER TABLE review_queue ADD COLUMN done_by TEXT;"
        "ALTER TABLE review_queue ADD COLUMN note TEXT;",
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
	S_COUNTER_SET,
	S_INCIDENT,
	S_INCIDENT_CHANGE,
	S_INCIDENT_VERIFIED,
	S_REVIEW_AGAIN,
	S_REVIEW_CLEAR,
	S_REVIEW,
	S_META,
	S_KEEP_REVISION,
	S_ARRIVAL,
	S_EVIDENCE,
	S_DELIVERY,
	S_EVENT_BODY,
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
        [S_COUNTER_SET] = "INSERT INTO counters(name, value) VALUES (?1, ?2)"
                          " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        [S_INCIDENT] = "INSERT INTO incidents(id, rule, kind, tier, key, status, opened_ms,"
                       " updated_ms, resolved_ms, firings, realerts, reopens, summary, why,"
                       " suppressed) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)"
                       " ON CONFLICT(id) DO UPDATE SET status = excluded.status,"
                       " updated_ms = excluded.updated_ms, resolved_ms = excluded.resolved_ms,"
                       " firings = excluded.firings, realerts = excluded.realerts,"
                       " reopens = excluded.reopens, summary = excluded.summary,"
                       " why = excluded.why, suppressed = excluded.suppressed",
        [S_INCIDENT_CHANGE] = "INSERT INTO incident_changes(incident_id, at_ms, change, notify,"
                              " summary, suppressed) VALUES(?1,?2,?3,?4,?5,?6)"
                              " ON CONFLICT DO NOTHING",
        /* Only a resolved one: a replay after a reopen must not undo it. */
        [S_INCIDENT_VERIFIED] = "UPDATE incidents SET status = 'verified'"
                                " WHERE id = ?1 AND status = 'resolved'",
        [S_ARRIVAL] = "INSERT INTO revision_arrivals(event_id, revision, after_rowid)"
                      " VALUES(?1, ?2, (SELECT coalesce(max(rowid), 0) FROM events))",
        [S_KEEP_REVISION] = "INSERT INTO revisions(event_id, revision, body)"
                            " SELECT event_id, revision, body FROM events WHERE event_id = ?1"
                            " ON CONFLICT DO NOTHING",
        [S_META] = "INSERT INTO meta(name, value) VALUES(?1,?2)"
                   " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        [S_EVIDENCE] = "INSERT INTO evidence(change_id, incident_id, dedupe, pack)"
                       " VALUES(?1,?2,?3,?4) ON CONFLICT DO NOTHING",
        [S_DELIVERY] = "INSERT INTO deliveries(change_id, incident_id, receiver, owner, action,"
                       " created_ms, next_ms, remote_key) VALUES(?1,?2,?3,?4,?5,?6,?6,?7)"
                       " ON CONFLICT DO NOTHING",
        [S_EVENT_BODY] = "SELECT body FROM events WHERE event_id = ?1",
        [S_REVIEW] = "INSERT INTO review_queue(event_id, ts_ms, reason) VALUES(?1,?2,?3)"
                     " ON CONFLICT(event_id) DO NOTHING",
        /* Queued again: the latest scoring's reason; a person's verdict stands. */
        [S_REVIEW_AGAIN] =
                "UPDATE review_queue SET reason = ?3, status = 'pending', done_ms = NULL,"
                " note = NULL WHERE event_id = ?1 AND status != 'reviewed'",
        [S_REVIEW_CLEAR] = "UPDATE review_queue SET status = 'rescored', done_ms = ?2, note = ?3"
                           " WHERE event_id = ?1 AND status = 'pending'",
};

/*
 * The WAL checkpointer: its own connection, its own thread. SQLite's
 * automatic checkpoint runs inside the COMMIT that crosses the threshold,
 * and that commit's latency jumps (p99 ~55 ms at 50k events/s); a PASSIVE
 * checkpoint every second from here never blocks the writer.
 */
struct checkpointer {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	sqlite3 *db;
	int stop, running;
};

/* Writers take turns, first come first served (see store_writer_enter). */
struct wlock {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t next, serving;
};

struct store {
	sqlite3 *db;
	struct wlock own;
	struct wlock *wl; /* &own, or the primary's for a peer */
	struct checkpointer ck;
	sqlite3_stmt *stmt[S_COUNT];
	int in_tx;
	int schema_version;
	size_t pending;
	int64_t last_event_rowid;
	int64_t last_revision_seq;
	size_t deliveries_queued; /* in the open transaction */
	void (*on_deliveries)(void *arg);
	void *on_deliveries_arg;
	struct store_counts counts;
	char err[256];
};

static void checkpointer_start(struct store *st, const char *path);

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

/* Opens one connection; a peer (primary non-NULL) shares its writer lock and checkpointer. */
static struct store *open_conn(const char *path, int64_t cache_bytes, struct store *primary,
                               char *err, size_t errlen)
{
	struct store *st = xcalloc(1, sizeof(*st));
	char pragmas[256];

	pthread_mutex_init(&st->own.mu, NULL);
	pthread_cond_init(&st->own.cv, NULL);
	st->wl = primary ? primary->wl : &st->own;
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
	if (primary == NULL)
		checkpointer_start(st, path);
	else if (primary->ck.running)
		exec(st, "PRAGMA wal_autocheckpoint=0");
	return st;
fail:
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	sqlite3_close(st->db);
	pthread_mutex_destroy(&st->own.mu);
	pthread_cond_destroy(&st->own.cv);
	free(st);
	return NULL;
}

struct store *store_open(const char *path, int64_t cache_bytes, char *err, size_t errlen)
{
	return open_conn(path, cache_bytes, NULL, err, errlen);
}

struct store *store_open_peer(struct store *primary, int64_t cache_bytes, char *err, size_t errlen)
{
	const char *path = sqlite3_db_filename(primary->db, "main");

	return open_conn(path, cache_bytes, primary, err, errlen);
}

static void *checkpoint_loop(void *arg)
{
	struct checkpointer *ck = arg;

	pthread_mutex_lock(&ck->mu);
	while (!ck->stop) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&ck->cv, &ck->mu, &until);
		if (ck->stop)
			break;
		pthread_mutex_unlock(&ck->mu);
		sqlite3_wal_checkpoint_v2(ck->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
		pthread_mutex_lock(&ck->mu);
	}
	pthread_mutex_unlock(&ck->mu);
	return NULL;
}

/* Starts the checkpointer; without it SQLite's automatic checkpoint stays on. */
static void checkpointer_start(struct store *st, const char *path)
{
	struct checkpointer *ck = &st->ck;

	if (sqlite3_open_v2(path, &ck->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		sqlite3_close(ck->db);
		ck->db = NULL;
		return;
	}
	sqlite3_busy_timeout(ck->db, 1000);
	pthread_mutex_init(&ck->mu, NULL);
	pthread_cond_init(&ck->cv, NULL);
	if (pthread_create(&ck->thread, NULL, checkpoint_loop, ck) != 0) {
		sqlite3_close(ck->db);
		ck->db = NULL;
		return;
	}
	ck->running = 1;
	exec(st, "PRAGMA wal_autocheckpoint=0");
}

static void checkpointer_stop(struct checkpointer *ck)
{
	if (!ck->running)
		return;
	pthread_mutex_lock(&ck->mu);
	ck->stop = 1;
	pthread_cond_signal(&ck->cv);
	pthread_mutex_unlock(&ck->mu);
	pthread_join(ck->thread, NULL);
	sqlite3_close(ck->db);
	pthread_mutex_destroy(&ck->mu);
	pthread_cond_destroy(&ck->cv);
	ck->running = 0;
}

void store_close(struct store *st)
{
	if (st == NULL)
		return;
	store_commit(st);
	checkpointer_stop(&st->ck);
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	sqlite3_close(st->db);
	pthread_mutex_destroy(&st->own.mu);
	pthread_cond_destroy(&st->own.cv);
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

/*
 * Writers take turns, first come first served (a ticket lock). Under load
 * the ingest commits and begins again within microseconds; SQLite's busy
 * handler sleeps and polls, so a delivery worker waiting for the write lock
 * could wait forever. With tickets it waits for at most the transaction in
 * progress (a batch: a few milliseconds).
 */
void store_writer_enter(struct store *st)
{
	struct wlock *wl = st->wl;

	pthread_mutex_lock(&wl->mu);
	uint64_t me = wl->next++;

	while (wl->serving != me)
		pthread_cond_wait(&wl->cv, &wl->mu);
	pthread_mutex_unlock(&wl->mu);
}

void store_writer_leave(struct store *st)
{
	struct wlock *wl = st->wl;

	pthread_mutex_lock(&wl->mu);
	wl->serving++;
	pthread_cond_broadcast(&wl->cv);
	pthread_mutex_unlock(&wl->mu);
}

static int begin(struct store *st)
{
	if (st->in_tx)
		return 0;
	store_writer_enter(st);
	if (run(st, S_BEGIN, "begin") < 0) {
		store_writer_leave(st);
		return -1;
	}
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
		st->last_event_rowid = sqlite3_last_insert_rowid(st->db);
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
		/* Keep what is replaced: the history, and what the rules first saw. */
		sqlite3_bind_text(st->stmt[S_KEEP_REVISION], 1, ev->event_id, -1, SQLITE_STATIC);
		if (run(st, S_KEEP_REVISION, "keep revision") < 0)
			return -1;
		bind_event(st->stmt[S_UPDATE], ev, received_ms);
		if (run(st, S_UPDATE, "supersede event") < 0)
			return -1;
		sqlite3_bind_text(st->stmt[S_ARRIVAL], 1, ev->event_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st->stmt[S_ARRIVAL], 2, ev->revision);
		if (run(st, S_ARRIVAL, "note revision") < 0)
			return -1;
		st->last_revision_seq = sqlite3_last_insert_rowid(st->db);
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

/* A (name, value) row, inserted or replaced in the open transaction. */
static int put_named(struct store *st, enum stmt_id id, const char *name, int64_t value,
                     const char *what)
{
	sqlite3_stmt *s = st->stmt[id];

	if (begin(st) < 0)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, value);
	return run(st, id, what);
}

int store_set_counter(struct store *st, const char *name, int64_t value)
{
	return put_named(st, S_COUNTER_SET, name, value, "set counter");
}

int store_drop_rule_state(struct store *st)
{
	if (begin(st) < 0 || exec(st, "DELETE FROM rule_state") < 0)
		return -1;
	return store_commit(st);
}

int store_rules_position(struct store *st, int64_t rowid, int64_t revision_seq)
{
	char path[4096];
	int fd, rc;

	if (store_meta_set(st, "rules_checkpoint", rowid) < 0 ||
	    store_meta_set(st, "rules_checkpoint_revision", revision_seq) < 0 ||
	    store_commit(st) < 0)
		return -1;
	/*
	 * Every commit so far is either still in the WAL, flushed here, or was
	 * copied to the database by a WAL checkpoint, which syncs the WAL before
	 * and the database after, before the WAL starts over. A commit with
	 * synchronous=FULL would flush the same, holding the write lock for
	 * the flush (~200 ms at 100,000 events/s): this does not.
	 */
	snprintf(path, sizeof(path), "%s-wal", sqlite3_db_filename(st->db, "main"));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(st->err, sizeof(st->err), "open the WAL: %s", strerror(errno));
		return -1;
	}
	rc = fdatasync(fd);
	if (rc < 0)
		snprintf(st->err, sizeof(st->err), "fdatasync of the WAL: %s", strerror(errno));
	close(fd);
	return rc < 0 ? -1 : 0;
}

int store_rule_state_each(struct store *st,
                          int (*fn)(void *arg, const char *rule, const char *key, const void *blob,
                                    size_t len),
                          void *arg)
{
	sqlite3_stmt *s;
	int n = 0;

	if (sqlite3_prepare_v2(st->db, "SELECT rule, key, blob FROM rule_state ORDER BY rule, key",
	                       -1, &s, NULL) != SQLITE_OK)
		return set_err(st, "read rule state");
	while (sqlite3_step(s) == SQLITE_ROW) {
		fn(arg, (const char *)sqlite3_column_text(s, 0),
		   (const char *)sqlite3_column_text(s, 1), sqlite3_column_blob(s, 2),
		   (size_t)sqlite3_column_bytes(s, 2));
		n++;
	}
	sqlite3_finalize(s);
	return n;
}

static const char *const change_names[] = {"opened", "updated", "resolved", "reopened", "verified"};

/* A resolved incident quiet for its whole watch: its status and one logged change. */
static int store_verified(struct store *st, const struct incident *inc, int64_t *change_id)
{
	sqlite3_stmt *s = st->stmt[S_INCIDENT_VERIFIED];

	sqlite3_bind_int64(s, 1, (int64_t)inc->id);
	if (run(st, S_INCIDENT_VERIFIED, "verify incident") < 0)
		return -1;
	/* Not resolved: verified already (a replay), or not in this store at all
	 * (state from another store): nothing to log about it then. */
	if (sqlite3_changes(st->db) == 0 && store_incident_opened(st, (int64_t)inc->id) < 0)
		return 0;
	s = st->stmt[S_INCIDENT_CHANGE];
	sqlite3_bind_int64(s, 1, (int64_t)inc->id);
	sqlite3_bind_int64(s, 2, inc->updated_ms);
	sqlite3_bind_text(s, 3, change_names[INCIDENT_VERIFIED], -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 4, 0);
	sqlite3_bind_text(s, 5, inc->summary, -1, SQLITE_STATIC);
	sqlite3_bind_null(s, 6);
	if (run(st, S_INCIDENT_CHANGE, "log incident change") < 0)
		return -1;
	if (sqlite3_changes(st->db) == 1)
		*change_id = sqlite3_last_insert_rowid(st->db);
	st->pending++;
	return 0;
}

int store_incident(struct store *st, const struct incident *inc, enum incident_change ch,
                   int64_t *change_id)
{
	sqlite3_stmt *s = st->stmt[S_INCIDENT];
	char *why;
	int rc;

	if (begin(st) < 0)
		return -1;
	*change_id = 0;
	if (ch == INCIDENT_VERIFIED)
		return store_verified(st, inc, change_id);
	why = cJSON_PrintUnformatted(inc->why);
	sqlite3_bind_int64(s, 1, (int64_t)inc->id);
	sqlite3_bind_text(s, 2, inc->rule, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, inc->kind, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 4, inc->tier);
	sqlite3_bind_text(s, 5, inc->key, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, ch == INCIDENT_RESOLVED ? "resolved" : "open", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 7, inc->opened_ms);
	sqlite3_bind_int64(s, 8, inc->updated_ms);
	if (ch == INCIDENT_RESOLVED)
		sqlite3_bind_int64(s, 9, inc->resolved_ms);
	else
		sqlite3_bind_null(s, 9);
	sqlite3_bind_int64(s, 10, (int64_t)inc->firings);
	sqlite3_bind_int(s, 11, (int)inc->realerts);
	sqlite3_bind_int(s, 12, (int)inc->reopens);
	sqlite3_bind_text(s, 13, inc->summary, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 14, why, -1, SQLITE_STATIC);
	bind_text(s, 15, inc->suppressed[0] ? inc->suppressed : NULL);
	rc = run(st, S_INCIDENT, "save incident");
	cJSON_free(why);
	if (rc < 0)
		return -1;
	*change_id = 0;
	/* The log keeps what a person would hear of, and what was muted. */
	if (ch != INCIDENT_UPDATED || inc->notify || inc->suppressed[0]) {
		s = st->stmt[S_INCIDENT_CHANGE];
		sqlite3_bind_int64(s, 1, (int64_t)inc->id);
		sqlite3_bind_int64(s, 2,
		                   ch == INCIDENT_RESOLVED ? inc->resolved_ms : inc->updated_ms);
		sqlite3_bind_text(s, 3, change_names[ch], -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 4, inc->notify);
		sqlite3_bind_text(s, 5, inc->summary, -1, SQLITE_STATIC);
		bind_text(s, 6, inc->suppressed[0] ? inc->suppressed : NULL);
		if (run(st, S_INCIDENT_CHANGE, "log incident change") < 0)
			return -1;
		/* A replay after a crash meets the change already logged: no new id. */
		if (sqlite3_changes(st->db) == 1)
			*change_id = sqlite3_last_insert_rowid(st->db);
	}
	st->pending++;
	return 0;
}

int store_evidence(struct store *st, int64_t change_id, int64_t incident_id, const char *dedupe,
                   const char *pack)
{
	sqlite3_stmt *s = st->stmt[S_EVIDENCE];

	if (begin(st) < 0)
		return -1;
	sqlite3_bind_int64(s, 1, change_id);
	sqlite3_bind_int64(s, 2, incident_id);
	sqlite3_bind_text(s, 3, dedupe, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, pack, -1, SQLITE_STATIC);
	return run(st, S_EVIDENCE, "save evidence");
}

int store_delivery(struct store *st, int64_t change_id, int64_t incident_id, const char *receiver,
                   const char *owner, const char *action, const char *remote_key, int64_t now_ms)
{
	sqlite3_stmt *s = st->stmt[S_DELIVERY];

	if (begin(st) < 0)
		return -1;
	sqlite3_bind_int64(s, 1, change_id);
	sqlite3_bind_int64(s, 2, incident_id);
	sqlite3_bind_text(s, 3, receiver, -1, SQLITE_STATIC);
	bind_text(s, 4, owner);
	sqlite3_bind_text(s, 5, action, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 6, now_ms);
	bind_text(s, 7, remote_key);
	if (run(st, S_DELIVERY, "queue delivery") < 0)
		return -1;
	st->pending++;
	st->deliveries_queued += (size_t)sqlite3_changes(st->db);
	return 0;
}

char *store_event_body(struct store *st, const char *event_id)
{
	sqlite3_stmt *s = st->stmt[S_EVENT_BODY];
	char *body = NULL;

	sqlite3_bind_text(s, 1, event_id, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		body = xstrdup((const char *)sqlite3_column_text(s, 0));
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return body;
}

int store_events_between(struct store *st, int64_t from_ms, int64_t to_ms, const char *key,
                         size_t max, int (*fn)(void *arg, const char *body, size_t len), void *arg)
{
	static const char *const columns[] = {"sku",    "category", "subcategory",
	                                      "source", "region",   "channel"};
	char sql[512], vals[4][128];
	sqlite3_stmt *s;
	int n = 0, nv = 0;

	/* The key's fields that are columns narrow the scan before any JSON is read. */
	snprintf(sql, sizeof(sql), "SELECT body FROM events WHERE ts_ms >= ?1 AND ts_ms < ?2");
	for (const char *p = key ? key : ""; *p && nv < 4;) {
		size_t len = key_pair_len(p), eq = strspn(p, KEY_FIELD_CHARS);

		/* The last value of a cut key (rule_group_key's long keys) is no column value. */
		if (p[eq] != '=' || (p[len] == '\0' && rule_key_cut(key)))
			break;
		const char *v = p + eq + 1;
		size_t vl = len - eq - 1;

		for (size_t c = 0; c < sizeof(columns) / sizeof(columns[0]); c++) {
			if (strlen(columns[c]) == eq && strncmp(p, columns[c], eq) == 0 &&
			    vl < sizeof(vals[0])) {
				snprintf(vals[nv], sizeof(vals[nv]), "%.*s", (int)vl, v);
				snprintf(sql + strlen(sql), sizeof(sql) - strlen(sql),
				         " AND %s = ?%d", columns[c], nv + 4);
				nv++;
			}
		}
		p += len + (p[len] == ' ');
	}
	snprintf(sql + strlen(sql), sizeof(sql) - strlen(sql), " ORDER BY ts_ms DESC LIMIT ?3");
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return set_err(st, "read events");
	sqlite3_bind_int64(s, 1, from_ms);
	sqlite3_bind_int64(s, 2, to_ms);
	sqlite3_bind_int64(s, 3, (int64_t)max);
	for (int i = 0; i < nv; i++)
		sqlite3_bind_text(s, i + 4, vals[i], -1, SQLITE_STATIC);
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (fn(arg, (const char *)sqlite3_column_text(s, 0),
		       (size_t)sqlite3_column_bytes(s, 0)) < 0)
			break;
		n++;
	}
	sqlite3_finalize(s);
	return n;
}

int64_t store_last_event_rowid(const struct store *st)
{
	return st->last_event_rowid;
}

int64_t store_last_revision_seq(const struct store *st)
{
	return st->last_revision_seq;
}

int store_meta_set(struct store *st, const char *name, int64_t value)
{
	return put_named(st, S_META, name, value, "save meta");
}

int64_t store_meta_get(struct store *st, const char *name, int64_t dflt)
{
	sqlite3_stmt *s;
	int64_t v = dflt;

	if (sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE name = ?1", -1, &s, NULL) !=
	    SQLITE_OK)
		return dflt;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

int store_open_incidents(struct store *st,
                         int (*fn)(void *arg, int64_t id, const char *rule, const char *key),
                         void *arg)
{
	sqlite3_stmt *s;
	int n = 0, rc;

	if (sqlite3_prepare_v2(st->db, "SELECT id, rule, key FROM incidents WHERE status = 'open'",
	                       -1, &s, NULL) != SQLITE_OK)
		return set_err(st, "list the open incidents");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW && n >= 0) {
		if (fn(arg, sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 1),
		       (const char *)sqlite3_column_text(s, 2)) < 0)
			n = -1;
		else
			n++;
	}
	if (rc != SQLITE_DONE && n >= 0)
		n = set_err(st, "list the open incidents");
	sqlite3_finalize(s);
	return n;
}

int store_close_incident(struct store *st, int64_t id, const char *why)
{
	static const char *const sql[] = {
	        /* The change first: it reads the incident as it was. */
	        "INSERT INTO incident_changes(incident_id, at_ms, change, notify, summary,"
	        " suppressed) SELECT id, updated_ms, 'resolved', 0, summary, ?2 FROM incidents"
	        " WHERE id = ?1 ON CONFLICT DO NOTHING",
	        "UPDATE incidents SET status = 'resolved', resolved_ms = updated_ms,"
	        " suppressed = ?2 WHERE id = ?1",
	};

	if (begin(st) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
		sqlite3_stmt *s;
		int rc;

		if (sqlite3_prepare_v2(st->db, sql[i], -1, &s, NULL) != SQLITE_OK)
			return set_err(st, "close an incident");
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_text(s, 2, why, -1, SQLITE_STATIC);
		rc = sqlite3_step(s);
		sqlite3_finalize(s);
		if (rc != SQLITE_DONE)
			return set_err(st, "close an incident");
	}
	st->pending++;
	return 0;
}

int store_incident_announced(struct store *st, int64_t incident_id, int64_t before_change)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(
	            st->db,
	            "SELECT EXISTS (SELECT 1 FROM incident_changes WHERE incident_id = ?1"
	            " AND notify = 1 AND id < ?2)",
	            -1, &s, NULL) != SQLITE_OK) {
		return set_err(st, "find an incident's notifications");
	}
	sqlite3_bind_int64(s, 1, incident_id);
	sqlite3_bind_int64(s, 2, before_change);
	rc = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
	if (rc < 0)
		set_err(st, "find an incident's notifications");
	sqlite3_finalize(s);
	return rc;
}

int64_t store_incident_opened(struct store *st, int64_t incident_id)
{
	sqlite3_stmt *s;
	int64_t v = -1;

	if (sqlite3_prepare_v2(st->db, "SELECT opened_ms FROM incidents WHERE id = ?1", -1, &s,
	                       NULL) != SQLITE_OK)
		return set_err(st, "find when an incident opened");
	sqlite3_bind_int64(s, 1, incident_id);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

int store_events_since(struct store *st, int64_t rowid, int64_t revision_seq,
                       int (*fn)(void *arg, int64_t tag, const char *body, size_t len), void *arg)
{
	sqlite3_stmt *ev = NULL, *rv = NULL;
	int n = 0, have_ev, have_rv;

	/*
	 * Each event as first stored, in rowid order; each higher revision in
	 * arrival order, placed after the event it followed (after_rowid never
	 * decreases with seq). Merged, that is what the rules saw, in the order
	 * they saw it. Two index walks: nothing is sorted or held.
	 */
	if (sqlite3_prepare_v2(
	            st->db,
	            "SELECT e.rowid, coalesce((SELECT r.body FROM revisions r"
	            " WHERE r.event_id = e.event_id ORDER BY r.revision LIMIT 1), e.body)"
	            " FROM events e WHERE e.rowid > ?1 ORDER BY e.rowid",
	            -1, &ev, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(
	            st->db,
	            "SELECT a.seq, a.after_rowid, coalesce((SELECT r.body FROM revisions r"
	            " WHERE r.event_id = a.event_id AND r.revision = a.revision),"
	            " (SELECT e.body FROM events e WHERE e.event_id = a.event_id"
	            " AND e.revision = a.revision), '')"
	            " FROM revision_arrivals a WHERE a.seq > ?1 ORDER BY a.seq",
	            -1, &rv, NULL) != SQLITE_OK) {
		sqlite3_finalize(ev);
		return set_err(st, "read events");
	}
	sqlite3_bind_int64(ev, 1, rowid);
	sqlite3_bind_int64(rv, 1, revision_seq);
	have_ev = sqlite3_step(ev) == SQLITE_ROW;
	have_rv = sqlite3_step(rv) == SQLITE_ROW;
	while (have_ev || have_rv) {
		/* A revision that arrived after event p goes before event p + 1. */
		int take_rv = have_rv && (!have_ev || sqlite3_column_int64(rv, 1) <
		                                              sqlite3_column_int64(ev, 0));
		sqlite3_stmt *s = take_rv ? rv : ev;
		int col = take_rv ? 2 : 1;
		int64_t tag = take_rv ? -sqlite3_column_int64(rv, 0) : sqlite3_column_int64(ev, 0);

		int rc = fn(arg, tag, (const char *)sqlite3_column_text(s, col),
		            (size_t)sqlite3_column_bytes(s, col));

		if (rc < 0)
			break;
		n++;
		if (rc > 0)
			break;
		if (take_rv)
			have_rv = sqlite3_step(rv) == SQLITE_ROW;
		else
			have_ev = sqlite3_step(ev) == SQLITE_ROW;
	}
	sqlite3_finalize(ev);
	sqlite3_finalize(rv);
	return n;
}

int store_review(struct store *st, const char *event_id, int64_t ts_ms, const char *reason)
{
	sqlite3_stmt *s = st->stmt[S_REVIEW];

	if (begin(st) < 0)
		return -1;
	sqlite3_bind_text(s, 1, event_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, ts_ms);
	sqlite3_bind_text(s, 3, reason, -1, SQLITE_STATIC);
	if (run(st, S_REVIEW, "queue for review") < 0)
		return -1;
	if (sqlite3_changes(st->db) > 0) {
		st->counts.review_queued++;
		return 0;
	}
	s = st->stmt[S_REVIEW_AGAIN]; /* a report queued before, re-scored */
	sqlite3_bind_text(s, 1, event_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, reason, -1, SQLITE_STATIC);
	return run(st, S_REVIEW_AGAIN, "queue for review again");
}

int store_review_clear(struct store *st, const char *event_id, int64_t now_ms, const char *note)
{
	sqlite3_stmt *s = st->stmt[S_REVIEW_CLEAR];

	if (begin(st) < 0)
		return -1;
	sqlite3_bind_text(s, 1, event_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, now_ms);
	sqlite3_bind_text(s, 3, note, -1, SQLITE_STATIC);
	return run(st, S_REVIEW_CLEAR, "take off the review queue");
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
	    bump(st, "gap_missing", c->gap_missing) < 0 ||
	    bump(st, "review_queued", c->review_queued) < 0 || run(st, S_COMMIT, "commit") < 0) {
		char why[256];

		memcpy(why, st->err, sizeof(why));
		run(st, S_ROLLBACK, "rollback");
		memcpy(st->err, why, sizeof(why));
		st->in_tx = 0;
		store_writer_leave(st);
		st->pending = 0;
		st->deliveries_queued = 0;
		memset(&st->counts, 0, sizeof(st->counts));
		return -1;
	}
	st->in_tx = 0;
	store_writer_leave(st);
	st->pending = 0;
	memset(&st->counts, 0, sizeof(st->counts));
	if (st->deliveries_queued && st->on_deliveries)
		st->on_deliveries(st->on_deliveries_arg);
	st->deliveries_queued = 0;
	return 0;
}

void store_on_deliveries(struct store *st, void (*fn)(void *arg), void *arg)
{
	st->on_deliveries = fn;
	st->on_deliveries_arg = arg;
}

size_t store_pending(const struct store *st)
{
	return st->pending;
}
