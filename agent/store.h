/*
 * store.h: everything voca keeps, in one SQLite file.
 *
 * One writer (the daemon, from one thread) batches work into transactions: the first write
 * opens one, store_commit() ends it (group commit). Events are keyed by
 * event_id and keep their highest revision. Readers (`voca stats`, the
 * tests) open the same file in WAL mode without blocking the writer.
 */
#ifndef VOCA_STORE_H
#define VOCA_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <voca/engine.h>
#include <voca/event.h>

struct store;

/* What store_put() did with an event. Stored in counters: never renumber. */
enum store_verdict {
	STORE_NEW = 0,        /* first time this event_id was seen */
	STORE_SUPERSEDED = 1, /* a higher revision replaced the stored one */
	STORE_DUPLICATE = 2,  /* same event_id and revision again: dropped */
	STORE_STALE = 3,      /* lower revision than the stored one: dropped */
};

/* Counters of the open transaction, added to the stored totals on commit. */
struct store_counts {
	uint64_t verdict[4]; /* indexed by enum store_verdict */
	uint64_t quarantined;
	uint64_t gaps;
	uint64_t gap_missing;
	uint64_t review_queued;
};

/*
 * Opens (creating if needed) the file at path and brings its schema up to
 * date. cache_bytes sizes SQLite's page cache. Returns NULL with err filled.
 */
struct store *store_open(const char *path, int64_t cache_bytes, char *err, size_t errlen);

/*
 * A second connection to primary's file, for another thread: it takes turns
 * with primary's writers (store_writer_enter) and leaves the WAL to primary's
 * checkpointer. Close it before primary.
 */
struct store *store_open_peer(struct store *primary, int64_t cache_bytes, char *err, size_t errlen);

/* Commits what is pending, then closes. NULL is a no-op. */
void store_close(struct store *st);

/* The schema version the file is at after store_open(). */
int store_schema_version(const struct store *st);

int store_put(struct store *st, const struct event *ev, int64_t received_ms,
              enum store_verdict *verdict);

/* Keeps at most keep bytes of raw; size records the full length. */
int store_quarantine(struct store *st, int64_t received_ms, const char *topic,
                     enum reject_code code, const char *reason, const char *raw, size_t len,
                     size_t keep);

/* Records a sequence gap: got arrived when expected was due. */
int store_gap(struct store *st, const char *publisher, int64_t expected, int64_t got,
              int64_t detected_ms);

/* Saves a publisher's sequence position (upsert), in the open transaction. */
int store_publisher(struct store *st, const char *publisher, int64_t last_seq,
                    int64_t last_seen_ms);

/* Calls fn for each saved publisher position (for a restart to resume gap detection). */
int store_publishers_each(struct store *st,
                          void (*fn)(void *arg, const char *publisher, int64_t last_seq,
                                     int64_t last_seen_ms),
                          void *arg);

/*
 * The rules' saved state as earlier versions kept it in this file (it lives
 * in a file of its own now, rulestate.h): calls fn for every record.
 * Returns how many, or -1.
 */
int store_rule_state_each(struct store *st,
                          int (*fn)(void *arg, const char *rule, const char *key, const void *blob,
                                    size_t len),
                          void *arg);
/* Deletes those records, once they are in the rules' own file; commits. */
int store_drop_rule_state(struct store *st);

/*
 * Records the rules' position (meta rules_checkpoint and
 * rules_checkpoint_revision) with what is pending, commits, and returns
 * once that commit and every one before it is on disk (they share one WAL;
 * the flush does not hold the write lock). The rules' thread calls it
 * before it commits a checkpoint to its own file, so that file never covers
 * what a power cut could take back from this one.
 */
int store_rules_position(struct store *st, int64_t rowid, int64_t revision_seq);

/*
 * Records an incident change: the incident's row, and the change log for
 * what notifies. *change_id is the new change's id, or 0 when nothing new
 * was logged (an update that notifies nobody, or a change replayed after a
 * crash that is logged already): only a new change gets deliveries.
 */
int store_incident(struct store *st, const struct incident *inc, enum incident_change ch,
                   int64_t *change_id);

/*
 * The outbox, in the open transaction: a change's evidence pack, then its
 * deliveries. remote_key (may be NULL) is a ticket the delivery starts from
 * (a known issue's).
 */
int store_evidence(struct store *st, int64_t change_id, int64_t incident_id, const char *dedupe,
                   const char *pack);
int store_delivery(struct store *st, int64_t change_id, int64_t incident_id, const char *receiver,
                   const char *owner, const char *action, const char *remote_key, int64_t now_ms);
/* fn runs after each commit that queued deliveries (to wake the workers). */
void store_on_deliveries(struct store *st, void (*fn)(void *arg), void *arg);

/* A stored event's JSON (free()), or NULL. */
char *store_event_body(struct store *st, const char *event_id);
/*
 * Calls fn with at most max events with from_ms <= ts < to_ms, newest first.
 * key ("sku=A category=b", may be NULL) narrows to events whose stored
 * columns match its fields (fields that are not columns are not filtered).
 */
int store_events_between(struct store *st, int64_t from_ms, int64_t to_ms, const char *key,
                         size_t max, int (*fn)(void *arg, const char *body, size_t len), void *arg);

/* The rowid of the last event store_put inserted (for checkpoints). */
int64_t store_last_event_rowid(const struct store *st);

/* The arrival number (seq) of the last higher revision store_put stored. */
int64_t store_last_revision_seq(const struct store *st);

/* Named integers that belong to the file (the rules' checkpoint). */
int store_meta_set(struct store *st, const char *name, int64_t value);
int64_t store_meta_get(struct store *st, const char *name, int64_t dflt);

/*
 * Calls fn, in the order they arrived, with every event inserted after rowid
 * (as first stored; tag: its rowid) and every higher revision that arrived
 * after revision_seq (tag: minus its seq). fn returns 0 to go on, 1 to stop
 * after this one, -1 to stop before it. Returns how many, or -1.
 */
int store_events_since(struct store *st, int64_t rowid, int64_t revision_seq,
                       int (*fn)(void *arg, int64_t tag, const char *body, size_t len), void *arg);

/*
 * Puts an event in the review queue with its reason: one row per event_id.
 * A report queued before (re-scored, still unsure) is pending again with the
 * latest reason, unless a person has reviewed it.
 */
int store_review(struct store *st, const char *event_id, int64_t ts_ms, const char *reason);

/* Takes a pending report off the queue: a higher revision came back confident. */
int store_review_clear(struct store *st, const char *event_id, int64_t now_ms, const char *note);

/* Calls fn for each incident the store has open; returns how many, or -1. */
int store_open_incidents(struct store *st,
                         int (*fn)(void *arg, int64_t id, const char *rule, const char *key),
                         void *arg);

/*
 * Marks an open incident resolved (at its last update, notifying nobody),
 * with why in its suppressed column and in a change row: for one the rules
 * no longer hold.
 */
int store_close_incident(struct store *st, int64_t id, const char *why);

/*
 * Did a change of the incident before change id before_change notify?
 * Returns 1 or 0, or -1 on error.
 */
int store_incident_announced(struct store *st, int64_t incident_id, int64_t before_change);

/* When the incident first opened, as the store has it (the row keeps it), or -1. */
int64_t store_incident_opened(struct store *st, int64_t incident_id);

/*
 * Sets a counter (creating it) in the open transaction: for counts whose
 * writer knows the total, such as the rules' (exact across a replay).
 */
int store_set_counter(struct store *st, const char *name, int64_t value);

/* Commits the open transaction, if any, with its counters. */
int store_commit(struct store *st);

/* Operations waiting in the open transaction. */
size_t store_pending(const struct store *st);

/*
 * Other writers to the same file from this process (the delivery workers,
 * each on its own connection) wrap their write transactions in these, so
 * that writers take turns in arrival order. Thread-safe.
 */
void store_writer_enter(struct store *st);
void store_writer_leave(struct store *st);

/* The last error, for the layer that logs. */
const char *store_error(const struct store *st);

#endif
