/*
 * suppress.h: silences and recurring time windows that mute notifications.
 *
 * A suppressed firing still opens or updates its incident (nothing becomes
 * invisible); the incident carries what suppressed it and is not notified.
 * Both take matchers on the incident: "rule == complaint-spike",
 * "tier == 2", "sku == SKU-1042", "category != praise" (key fields come
 * from the rule's group_by).
 *
 * Silences: matchers, start, end (RFC 3339), author and comment, from the
 * configuration. Time windows: weekdays, times of day and months in an IANA
 * time zone, evaluated with the system's zoneinfo, so daylight saving moves
 * the window with the wall clock ("09:00-17:00 Europe/Berlin" is 08:00 UTC
 * in winter and 07:00 UTC in summer).
 */
#ifndef VOCA_SUPPRESS_H
#define VOCA_SUPPRESS_H

#include <stddef.h>
#include <stdint.h>

#include <voca/conf.h>

#define SUPPRESS_MAX_MATCHERS 8
#define SUPPRESS_MAX_TIMES    8

struct matcher {
	char field[32];
	int negate;
	char value[96];
};

struct silence {
	struct conf_list matchers;
	char *start, *end, *author, *comment;
	/* compiled */
	int64_t start_ms, end_ms;
	struct matcher m[SUPPRESS_MAX_MATCHERS];
	int nm;
};

struct time_window {
	char *name;
	struct conf_list matchers;
	struct conf_list weekdays, times, months;
	char *time_zone;
	/* compiled */
	struct matcher m[SUPPRESS_MAX_MATCHERS];
	int nm;
	uint8_t days;                                              /* bit 0 = Monday */
	uint16_t months_mask;                                      /* bit 0 = January */
	uint16_t from[SUPPRESS_MAX_TIMES], to[SUPPRESS_MAX_TIMES]; /* minutes of the day */
	int ntimes;
	const struct tz *zone; /* tz.h: loaded once, shared, never freed */
};

/*
 * A known issue: matching incidents belong to an existing ticket, and are
 * not news. With a receiver (jira or servicenow), each change of such an
 * incident that would have notified is added to that ticket as a comment.
 */
#define KNOWN_TICKET_MAX 63

struct known_issue {
	struct conf_list matchers;
	char *ticket, *comment;
	char *receiver; /* NULL: muted only */
	/* compiled */
	struct matcher m[SUPPRESS_MAX_MATCHERS];
	int nm;
};

/* Everything that can mute a notification, from the configuration. */
struct suppress_lists {
	const struct conf_items *silences;     /* struct silence */
	const struct conf_items *windows;      /* struct time_window */
	const struct conf_items *known_issues; /* struct known_issue */
};

const struct conf_variant *known_issue_variants(void);
int known_issue_check(struct known_issue *k, char *err, size_t errlen);

/* The first known issue whose matchers hold for the incident, or NULL. */
const struct known_issue *known_issue_find(const struct conf_items *known, const char *rule,
                                           const char *kind, int tier, const char *key);

const struct conf_variant *silence_variants(void);
const struct conf_variant *time_window_variants(void);

/*
 * Compiles "field == value" / "field != value" strings (at most
 * SUPPRESS_MAX_MATCHERS) into m and *n. Returns 0, or -1 with err.
 */
int matchers_compile(const struct conf_list *l, struct matcher *m, int *n, char *err,
                     size_t errlen);

/* Looks up a field by name into out; returns 1 if there is one. */
typedef int (*matcher_field_fn)(void *arg, const char *field, char *out, size_t outlen);

/* Do all n matchers hold for the fields field() gives? (a missing field is unequal) */
int matchers_hold(const struct matcher *m, int n, matcher_field_fn field, void *arg);

/* The value of field in a group key "sku=A category=b"; returns 1 if present. */
int key_field(const char *key, const char *field, char *out, size_t outlen);

/* The characters of a field name in a group key. */
#define KEY_FIELD_CHARS "abcdefghijklmnopqrstuvwxyz0123456789_."

/*
 * Where a group key's value starting at v ends: at the next " name=" or
 * at the end. A value may hold spaces ("sku=Big Kettle 2000 category=x").
 */
const char *key_value_end(const char *v);

/* The length of the "name=value" pair that starts at p (to the next pair or the end). */
size_t key_pair_len(const char *p);

/* The "field=value" pair of key for field, and its length in *len; NULL if absent. */
const char *key_find(const char *key, const char *field, size_t *len);

/* Compile after loading. Return 0, or -1 with err. */
int silence_check(struct silence *s, char *err, size_t errlen);
int time_window_check(struct time_window *w, char *err, size_t errlen);

/* What suppressed a notification. */
enum suppressed_by {
	SUPPRESSED_NOT = 0,
	SUPPRESSED_KNOWN_ISSUE, /* for as long as the issue is configured */
	SUPPRESSED_SILENCE,     /* until its end */
	SUPPRESSED_TIME_WINDOW, /* until the window closes */
};

/*
 * Does anything suppress an incident of rule (kind, tier) with group key
 * key ("sku=A category=b") at t_ms? Known issues first, then silences, then
 * time windows. Writes what does into why and returns which kind, or
 * returns SUPPRESSED_NOT (0).
 */
enum suppressed_by suppress_match(const struct suppress_lists *l, const char *rule,
                                  const char *kind, int tier, const char *key, int64_t t_ms,
                                  char *why, size_t whylen);

/* Is t_ms inside the window (ignoring its matchers)? For tests. */
int time_window_contains(const struct time_window *w, int64_t t_ms);

#endif
