/*
 * rule.h: what a rule kind is, for the engine that drives it.
 *
 * A kind is one exported const struct (rule_threshold, rule_spike, ...)
 * listed in rule_kinds[] (rules/registry.c). It brings its configuration
 * keys, the size of its per-key state, and pure callbacks: the engine hands
 * them events and closed buckets in event time, with the state of one group
 * key; they never read a clock, never touch storage, never log. A firing
 * carries its explanation (JSON) and a one-line summary for people.
 */
#ifndef VOCA_RULE_H
#define VOCA_RULE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include <voca/buf.h>
#include <voca/conf.h>
#include <voca/event.h>

#define RULE_MAX_STATE 256 /* bytes of per-key state a kind may ask for */
#define RULE_MAX_WHERE 16
#define RULE_MAX_GROUP 4

/* A compiled "field op value" condition (rules/cond.c). */
struct cond {
	int field;
	int op;
	double num;      /* numeric and ordinal fields */
	const char *str; /* string fields: points at value */
	char value[96];
	char text[128]; /* as written, for explanations */
};

/* Keys every kind has, first in its configuration struct. */
struct rule_common {
	char *name;
	int64_t tier;
	struct conf_list group_by; /* event fields forming the group key */
	struct conf_list where;    /* conditions an event must meet to count */
	int64_t bucket_ms;
	int64_t resolve_after_ms; /* resolve once the condition has been clear this long */
	int64_t cooldown_ms;      /* re-alert interval while open; reopen window after resolve */
	int64_t watch_ms; /* after resolving: a firing reopens (a regression), else verified */
	int64_t realert_max_ms; /* the re-alert interval doubles up to this */
	char *rollup_by;        /* a group_by field; NULL: no roll-up */
	int64_t rollup_min;     /* open incidents sharing its value that roll up */
	/* compiled by rule_common_check() */
	struct cond conds[RULE_MAX_WHERE];
	int nconds;
	int group[RULE_MAX_GROUP];
	int ngroup;
};

/* The rows for struct rule_common, to start each kind's key table with. */
#define RULE_COMMON_KEYS(type, bucket_def, resolve_def)                                            \
	CONF_KEY("name", CONF_STR, offsetof(type, common.name), NULL, 0, 0, NULL,                  \
	         "unique name, shown in incidents"),                                               \
	        CONF_KEY("tier", CONF_INT, offsetof(type, common.tier), "2", 1, 3, NULL,           \
	                 "1 ticket and page, 2 chat alert, 3 digest only"),                        \
	        CONF_KEY("group_by", CONF_STRLIST, offsetof(type, common.group_by), "sku", 0, 0,   \
	                 NULL, "event fields forming the group key"),                              \
	        CONF_KEY("where", CONF_STRLIST, offsetof(type, common.where), NULL, 0, 0, NULL,    \
	                 "conditions such as 'severity >= high'; all must hold"),                  \
	        CONF_KEY("bucket", CONF_DURATION, offsetof(type, common.bucket_ms), bucket_def,    \
	                 300000, 86400000, NULL, "bucket size, 5m to 1d"),                         \
	        CONF_KEY("resolve_after", CONF_DURATION, offsetof(type, common.resolve_after_ms),  \
	                 resolve_def, 60000, 30LL * 86400000, NULL,                                \
	                 "resolve when clear for this long"),                                      \
	        CONF_KEY("cooldown", CONF_DURATION, offsetof(type, common.cooldown_ms), "6h", 0,   \
	                 30LL * 86400000, NULL,                                                    \
	                 "re-alert interval while open; firing again this soon after resolving "   \
	                 "reopens the incident"),                                                  \
	        CONF_KEY("watch", CONF_DURATION, offsetof(type, common.watch_ms), "7d", 0,         \
	                 90LL * 86400000, NULL,                                                    \
	                 "after resolving, watched this long: firing again reopens the incident "  \
	                 "(a regression); quiet throughout, it is verified; 0: no watch"),         \
	        CONF_KEY("realert_max", CONF_DURATION, offsetof(type, common.realert_max_ms),      \
	                 "48h", 0, 30LL * 86400000, NULL,                                          \
	                 "the re-alert interval doubles up to this"),                              \
	        CONF_KEY("rollup_by", CONF_STR, offsetof(type, common.rollup_by), NULL, 0, 0,      \
	                 NULL,                                                                     \
	                 "a group_by field: many keys sharing its value become one incident"),     \
	        CONF_KEY("rollup_min", CONF_INT, offsetof(type, common.rollup_min), "3", 2, 1000,  \
	                 NULL, "open incidents sharing the rollup_by value that roll up")

/* What the engine passes a rule for one group key. */
struct rule_ctx {
	const void *config; /* the kind's configuration struct */
	void *state;        /* state_size bytes for this key, zeroed when the key is new */
	void *shared;       /* per rule, from new_shared (may be NULL) */
	const char *key;    /* "sku=SKU-1 category=shipping" */
	int incident_open;  /* an incident is open for this rule and key */
	int64_t fired_ms;   /* when it last fired (event time), if open */
	int64_t opened_ms;  /* when it first opened (event time), if open */
};

struct firing {
	cJSON *why;        /* explanation object; the engine takes ownership */
	char summary[320]; /* one line: what changed, against what */
	int64_t window_start_ms, window_end_ms;
	/* A new episode inside an open incident (BASELINES.md 1.6: fired again
	 * after the key re-armed): it notifies now, a re-alert due or not, and
	 * a roll-up does not mute it. */
	int again;
};

enum rule_verdict {
	RULE_QUIET = 0,
	RULE_FIRE = 1,
	/* Not firing, and not clear either (hysteresis: the statistic is still
	 * inside the kind's clear_p band): an open incident does not resolve. */
	RULE_HOLD = 2,
};

struct rule_kind {
	const char *name;
	const struct conf_key *keys;
	size_t config_size;
	/* Per key, at most RULE_MAX_STATE. A kind that does not sleep may grow
	 * it at the end: a shorter saved state is restored zero-extended. */
	size_t state_size;
	/* Close every key's bucket as time passes, not only active keys' (for silence). */
	int every_bucket;
	/*
	 * Takes higher revisions of events it was given (engine_revision): the
	 * kind counts each event id once itself, so a re-scored event that now
	 * meets the rule's conditions counts and one it counted already does
	 * not count twice. Kinds without it (volume) never see a revision.
	 */
	int revisions;
	/* Does on_event read ev->raw (the event's JSON)? NULL: never. */
	int (*reads_raw)(const void *config);
	/* Checks and compiles a loaded configuration. Returns 0, or -1 with err. */
	int (*check)(void *config, char *err, size_t errlen);
	/*
	 * Shared state per rule. Plain data: give shared_size and the engine
	 * allocates it zeroed, frees, saves and restores it by copy. With
	 * pointers inside: give the four callbacks instead.
	 */
	size_t shared_size;
	void *(*new_shared)(const void *config);
	void (*free_shared)(void *shared);
	/* Persist and restore the shared state (for restarts). load returns 0 or -1. */
	void (*save_shared)(const void *shared, struct buf *out);
	int (*load_shared)(void *shared, const void *blob, size_t len);
	/* An event that met the rule's conditions, in event-time order per key. */
	enum rule_verdict (*on_event)(struct rule_ctx *c, const struct event *ev, struct firing *f);
	/* The key's bucket ending at end_ms closed (possibly empty). */
	enum rule_verdict (*on_close)(struct rule_ctx *c, int64_t end_ms, struct firing *f);
	/*
	 * Sleep (optional, bucketed kinds). Most of 100,000s of keys are quiet at
	 * any moment, and a quiet key's per-bucket rings hold nothing but zeros.
	 * A key whose last quiet_buckets(config) buckets closed empty keeps only
	 * the first idle_size bytes of its state (the state struct starts with
	 * what outlives a quiet spell); when it is next used, the rest is zeroed
	 * and wake rebuilds whatever is not zero in a quiet ring.
	 */
	size_t idle_size;
	/*
	 * A key's state saved by an older voca, whose layout was not this one
	 * (optional): writes into state (RULE_MAX_STATE bytes, zeroed) what the
	 * old len bytes hold and returns the size it wrote, the full state_size
	 * or idle_size for a sleeping key's record; 0 for a length it does not
	 * know (the key starts over). An upgrade keeps what keys learnt; what
	 * the new layout derives from them, restored() fills in.
	 */
	size_t (*upgrade)(void *state, const void *old, size_t len);
	/*
	 * A key's whole state as read from the file (optional): derives again
	 * what it keeps for settings that are not its shape, which may differ
	 * from the run that saved it (spike's sums over its mid windows).
	 */
	void (*restored)(void *state, const void *config);
	int64_t (*quiet_buckets)(const void *config);
	void (*wake)(struct rule_ctx *c);
	/*
	 * The configuration keys, besides group_by, where and bucket, that give
	 * the per-key and shared state its meaning (a ring's length, what a
	 * share counts, what an identity hashes): NULL-terminated, may be NULL.
	 * Saved state learned under other values is not restored (the engine
	 * starts the rule's baselines over), never misread. A key added to the
	 * shape since state was first saved is written "key=value", the value
	 * the state was learned under before (flatline's "time_zone=UTC"): a
	 * saved shape without the key is the same as one with that value.
	 */
	const char *const *shape;
	/* How long after its latest event a key's state still decides anything
	 * (a new_topic's lookback): engine_forget_after never forgets it sooner.
	 * NULL: as soon as the engine's setting says. */
	int64_t (*memory_ms)(const void *config);
};

/* NULL-terminated; rule_variants() gives the same kinds in the same order for conf. */
extern const struct rule_kind *const rule_kinds[];
const struct conf_variant *rule_variants(void);

/* Compiles group_by and where (shared by every kind's check). */
int rule_common_check(struct rule_common *c, char *err, size_t errlen);

/* A window's length in the rule's buckets, from 1 to most; else -1 with an
 * error saying what would fit. */
int rule_window_buckets(const struct rule_common *c, int64_t window_ms, int most, char *err,
                        size_t errlen);

/* Does ev meet every condition? */
int rule_matches(const struct rule_common *c, const struct event *ev);
/*
 * A condition as its meaning, not its spelling ("severity>=high" and
 * "severity >= high" alike: "severity >= 2"). Returns 0, or -1 if text is
 * not a condition.
 */
int cond_canonical(const char *text, char *out, size_t outlen);
/* Does ev meet each of n compiled conditions? */
int conds_hold(const struct cond *conds, int n, const struct event *ev);

/* The longest group key kept, with its NUL (engine, incidents, evidence). */
#define RULE_KEY_MAX 192

/*
 * Writes "sku=SKU-1 category=shipping" for ev; returns 0, or -1 if a field
 * is missing. A key longer than outlen (at least 64; RULE_KEY_MAX wherever
 * keys are compared) is cut and ends in "~" and 16 hex digits of a hash of
 * the whole: still one key per group.
 */
int rule_group_key(const struct rule_common *c, const struct event *ev, char *out, size_t outlen);

/* Does key end as rule_group_key ends a cut one (its last value is not whole)? */
int rule_key_cut(const char *key);

/*
 * What every event of the rule has by its conditions, as key tokens: the
 * string fields compared with == ("category=product_defect"), space
 * separated. Returns 0, or -1 if they did not fit (out holds those that did).
 */
int rule_implied_key(const struct rule_common *c, char *out, size_t outlen);

/* The text value of a named event field ("" if absent), for distinct_by and keys. */
const char *rule_field_text(int field, const struct event *ev, char *buf, size_t buflen);
int rule_field_lookup(const char *name);

/* FNV-1a of n bytes: keys, topics and identities in rule state. Never 0. */
uint32_t rule_hash(const char *s, size_t n);

/* Upper tail P(X >= x) of a negative binomial with mean m and variance phi*m (Poisson at phi=1). */
double nb_upper_tail(double x, double m, double phi);

/* Upper tail P(X >= k) of a binomial(n, p), exact. */
double binom_upper_tail(double k, double n, double p);

/* Wilson score interval's lower bound for k successes in n at z (1.96: 95%). */
double wilson_lower(double k, double n, double z);

/*
 * Parts every kind's explanation has, in one shape for the renderers: the
 * window the evidence is from ("window": {"start", "end"}, RFC 3339; the
 * object, for more members) and each guard that held ("guards": {name: text}).
 */
cJSON *rule_why_window(cJSON *why, int64_t start_ms, int64_t end_ms);
void rule_why_guard(cJSON *why, const char *name, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#endif
