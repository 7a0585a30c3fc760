/*
 * engine.h: runs the configured rules over events in event time and turns
 * their firings into incidents.
 *
 * Pure: events and a clock (the watermark: the latest event time seen less
 * the allowed lateness, or a time given to engine_flush) go in; incident
 * changes come out through a callback. The same code serves `voca backtest`
 * over a file and, later, the daemon over the live stream.
 *
 * An incident is one open problem per (rule, group key): while it is open,
 * further firings update it instead of opening another; it resolves once
 * the rule has not fired for the rule's resolve_after. Alert fatigue: an
 * update is marked notify only every cooldown, doubling up to realert_max,
 * while the condition persists. A resolved incident is watched for the
 * rule's watch (at least its cooldown): a firing on the key meanwhile
 * reopens it (same id: a regression, or flapping) instead of opening
 * another; quiet throughout, it is verified (a change nobody is notified of).
 */
#ifndef VOCA_ENGINE_H
#define VOCA_ENGINE_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include <voca/conf.h>
#include <voca/event.h>

enum incident_change {
	INCIDENT_OPENED = 0,
	INCIDENT_UPDATED = 1,
	INCIDENT_RESOLVED = 2,
	INCIDENT_REOPENED = 3, /* fired again while watched after resolving: same id */
	INCIDENT_VERIFIED = 4, /* quiet for the whole watch after resolving */
};

struct incident {
	uint64_t id;
	const char *rule;
	const char *kind;
	int tier;
	char key[192];                                            /* RULE_KEY_MAX */
	int64_t opened_ms, updated_ms, resolved_ms, last_fire_ms; /* event time */
	int64_t held_ms; /* the last bucket that was not clear (RULE_HOLD), 0: none */
	uint64_t firings;
	uint32_t realerts, reopens;
	int rollup;            /* a roll-up of the rule's incidents sharing a rollup_by value */
	int64_t next_alert_ms; /* when an update next deserves a notification */
	int notify;            /* this change deserves a notification (opened, reopened,
	                        * resolved, or an update past next_alert_ms) */
	char summary[320];     /* of the latest firing */
	char suppressed[256];  /* what muted this change's notification ("" if nothing) */
	int muted_by;          /* enum suppressed_by (suppress.h) when a list muted it, else 0 */
	cJSON *why;            /* the latest firing's explanation, with examples */
};

/* inc is valid during the call only. */
typedef void (*incident_fn)(void *arg, const struct incident *inc, enum incident_change ch);

struct engine_stats {
	uint64_t events;     /* given to engine_event */
	uint64_t revisions;  /* given to engine_revision */
	uint64_t late;       /* events behind a key's open bucket: a bucketed rule left them out */
	uint64_t ungrouped;  /* events that matched a rule but lacked a group_by field */
	uint64_t capped;     /* events of a new key for a rule holding max_keys keys */
	uint64_t keys;       /* group keys with state, over all rules */
	uint64_t awake;      /* of those, keys of sleeping kinds holding their full state */
	uint64_t review;     /* sent to the review queue */
	uint64_t suppressed; /* notifications muted (gate, roll-ups): recorded, not sent */
	uint64_t forgotten;  /* keys forgotten after engine_forget_after of quiet */
	uint64_t slab_bytes; /* held for keys, forgotten ones' included (reused first) */
	uint64_t retired;    /* rules no longer configured whose records were deleted */
};

struct engine;

/*
 * rules is the configuration's list (items of rule_variants()), already
 * checked; it must outlive the engine. lateness_ms is how far behind the
 * latest event time an event may arrive and still land in its bucket.
 */
struct engine *engine_new(const struct conf_items *rules, int64_t lateness_ms, incident_fn fn,
                          void *arg);
void engine_free(struct engine *e);

void engine_event(struct engine *e, const struct event *ev);

/* Does any rule read an event's raw JSON? If not, events may come without it. */
int engine_reads_raw(const struct engine *e);

/*
 * A higher revision of an event given before (the store superseded it).
 * Only kinds that take revisions see it (threshold: it counts each event id
 * once), gated like any event but not queued for review again; volume
 * kinds have counted the event already and cannot take it back.
 */
void engine_revision(struct engine *e, const struct event *ev);

/* Closes every bucket that ends at or before until_ms and resolves what is due. */
void engine_flush(struct engine *e, int64_t until_ms);

/*
 * End of input (a backtest's last line): closes each key's open bucket as if
 * it were complete, then resolves what is due at the latest event time.
 * Incidents still open stay open.
 */
void engine_finish(struct engine *e);

/*
 * Confidence gating. An event whose confidence is below min_confidence, or
 * that the scorer flagged needs_review, goes to fn with a one-line reason
 * (the review queue). It never counts toward a tier-1 rule of a per-event
 * kind (threshold, new_topic): it cannot open a tier-1 incident on its own.
 * Toward volume kinds (spike, rate_shift, flatline) it counts only when
 * counts_volume is set. Without this call nothing is gated. A higher
 * revision that needs review goes to fn too (a report re-scored as unsure),
 * so fn may see a report more than once: the queue keeps one row per report.
 * A higher revision that does not goes to fn with reason NULL: if the report
 * was queued, it need not be any more.
 */
typedef void (*review_fn)(void *arg, const struct event *ev, const char *reason);

/*
 * The notification gate: a change that would notify is checked at its event
 * time against known issues, silences and time windows (suppress.h), then
 * inhibition (an open incident of a higher tier whose key covers it), then
 * an hourly budget of tier-1/2 notifications (0: none; at most 1024). If
 * muted, notify is cleared and suppressed says by what. lists must outlive
 * the engine.
 */
struct suppress_lists;
void engine_suppress(struct engine *e, const struct suppress_lists *lists, int budget_per_hour);
void engine_review(struct engine *e, double min_confidence, int counts_volume, review_fn fn);

/*
 * Persistence, so that a restart gives the incidents an uninterrupted run
 * gives. engine_save calls put for every key touched since the last save
 * (rule name, group key, blob), for each rule's own record (key "") when its
 * shared state changed, for each rule's shape record (rule "", key: the
 * rule's name; what its state means, once a day of event time) and for the
 * engine's (rule "", key ""); first, with blob NULL, for each key forgotten
 * since (delete its record), and with key and blob NULL for each rule no
 * longer configured for engine_forget_after (delete all its records).
 * Returns 0, or the first non-zero put returned. Blobs are native-endian and
 * tied to this build's state layouts: a key whose size no longer fits is
 * dropped at restore (the key starts over), never misread; so is the state
 * of a rule whose kind, group_by, where, bucket or the kind's shape keys
 * changed (the key's incidents are kept).
 */
typedef int (*engine_put_fn)(void *arg, const char *rule, const char *key, const void *blob,
                             size_t len);
int engine_save(struct engine *e, engine_put_fn put, void *arg);

/* The next engine_save writes every record, changed or not (to a new file). */
void engine_save_everything(struct engine *e);

/*
 * Restores one saved record; unknown rules and mismatched blobs are skipped
 * (returns 1). Records of rule "" come first (the file's (rule, key) order).
 */
int engine_restore(struct engine *e, const char *rule, const char *key, const void *blob,
                   size_t len);

/*
 * For `voca check`: would the saved shape record of rule (rule "", key: its
 * name) make the configured rule start over? 1 (changed names the
 * settings), 0 (no), -1 (no rule of that name is configured).
 */
int engine_shape_changed(const struct engine *e, const char *rule, const void *blob, size_t len,
                         char *changed, size_t changedlen);

/* After the restore, one line per rule whose state did not fit (for the log). */
typedef void (*restore_note_fn)(void *arg, const char *rule, const char *note);
void engine_restore_notes(const struct engine *e, restore_note_fn fn, void *arg);

/* The latest event time seen (INT64_MIN before the first event). */
int64_t engine_max_ts(const struct engine *e);

const struct engine_stats *engine_stats(const struct engine *e);

/*
 * Each rule keeps at most max keys (default: no limit); an event of a
 * further key is not counted for it (stats.capped). Keys are forgotten only
 * after engine_forget_after of quiet, so without a limit a group_by finer
 * than meant (a customer or an event id) could grow until the process is
 * killed.
 */
/*
 * Keys quiet for at least ms of event time (asleep, no open incident, no
 * incident under watch) are forgotten, their memory reused by new keys and
 * their records deleted at the next engine_save; a key that comes back
 * starts over, as a new one. Checked once a day of event time. 0: never.
 */
void engine_forget_after(struct engine *e, int64_t ms);

void engine_max_keys(struct engine *e, size_t max);

/* Is incident id open in the engine (restored or opened since)? */
int engine_is_open(const struct engine *e, uint64_t id);

#endif
