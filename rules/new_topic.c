/*
 * new_topic.c: a category or subcategory appearing for a key for the first
 * time (a new failure mode: "battery swelling" on a kettle).
 *
 * Per key: up to 8 topics with the hour each was last seen (the least
 * recently seen is forgotten first, so a key with more than 8 live topics
 * may hear an old one again as new). A value the key has not had is news
 * when it is new for the whole rule too (first seen by the rule within
 * lookback and on fewer than 3 keys: a new failure mode, or one spreading), or when the key has
 * min_events events (an established key has shown its usual topics; a sparse one has not, and 595
 * false incidents a month said so). Nothing is new in the rule's first min_age; a topic new
 * for the key alone is not news in the key's first min_age either, nor is a key's first event.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/rule.h>
#include <voca/xalloc.h>

#define TOPICS 8    /* a key's topics remembered: a SKU+category has 2-5 subcategories */
#define GLOBAL 4096 /* topics remembered for the whole rule */

struct new_topic_config {
	struct rule_common common;
	char *field;
	int64_t lookback_ms;
	int64_t min_age_ms;
	int64_t min_events;
	int field_id; /* compiled */
};

struct new_topic_state {
	uint32_t hash[TOPICS];
	uint16_t last[TOPICS]; /* days since first_seen, for forgetting the least recent */
	int64_t first_seen;
	uint32_t events;
	uint8_t n;
};

#define OFF(m) offsetof(struct new_topic_config, m)

static const struct conf_key keys[] = {
        RULE_COMMON_KEYS(struct new_topic_config, "1h", "7d"),
        CONF_KEY("field", CONF_STR, OFF(field), "subcategory", 0, 0, NULL,
                 "the event field whose new values are news (category or subcategory)"),
        CONF_KEY("lookback", CONF_DURATION, OFF(lookback_ms), "30d", 3600000, 365 * 86400000LL,
                 NULL,
                 "a value the rule first saw this recently, on few keys, is new for every key"),
        CONF_KEY("min_age", CONF_DURATION, OFF(min_age_ms), "7d", 0, 365 * 86400000LL, NULL,
                 "history a key needs before anything is new for it"),
        CONF_KEY("min_events", CONF_INT, OFF(min_events), "50", 0, 100000000, NULL,
                 "events a key needs before anything is new for it (to have seen its regulars)"),
        CONF_END,
};

struct shared {
	int64_t first_event;
	uint32_t hash[GLOBAL];
	int64_t first[GLOBAL]; /* when the rule first saw the topic */
	uint16_t keys[GLOBAL]; /* keys that have had it */
	size_t n;
};

#define RARE_KEYS 3 /* a topic fewer keys have had is news for the rule */

/*
 * Notes the topic at the rule level for a key that has not had it. Returns
 * 1 if the topic is news for the rule: first seen by the rule within
 * lookback, and by fewer than RARE_KEYS other keys so far. A topic that
 * merely went quiet for a while is not news: in a sparse stream every
 * low-rate topic does.
 */
static int global_note(struct shared *g, uint32_t h, int64_t now, int64_t lookback, int *others)
{
	size_t i = h & (GLOBAL - 1);

	if (g->first_event == 0)
		g->first_event = now;
	while (g->hash[i] && g->hash[i] != h)
		i = (i + 1) & (GLOBAL - 1);
	if (g->hash[i] == 0) {
		if (g->n * 4 >= GLOBAL * 3) {
			*others = RARE_KEYS;
			return 0; /* table full: treat as known rather than flood */
		}
		g->hash[i] = h;
		g->n++;
		g->first[i] = now;
		g->keys[i] = 0;
	}
	*others = g->keys[i];
	if (g->keys[i] < UINT16_MAX)
		g->keys[i]++;
	return now - g->first[i] < lookback && *others < RARE_KEYS;
}

static int check(void *config, char *err, size_t errlen)
{
	struct new_topic_config *c = config;

	if (rule_common_check(&c->common, err, errlen) < 0)
		return -1;
	c->field_id = rule_field_lookup(c->field);
	if (c->field_id < 0) {
		snprintf(err, errlen, "field: unknown event field '%s'", c->field);
		return -1;
	}
	return 0;
}

static enum rule_verdict on_event(struct rule_ctx *ctx, const struct event *ev, struct firing *f)
{
	const struct new_topic_config *c = ctx->config;
	struct new_topic_state *st = ctx->state;
	char buf[32];
	const char *topic = rule_field_text(c->field_id, ev, buf, sizeof(buf));
	uint32_t h;
	int64_t days;
	int i, oldest = 0, known = 0;

	if (topic[0] == '\0')
		return RULE_QUIET;
	if (st->n == 0 && st->first_seen == 0)
		st->first_seen = ev->ts_ms;
	st->events++;
	h = rule_hash(topic, strlen(topic));
	for (i = 0; i < st->n; i++) {
		if (st->hash[i] == h)
			break;
		if (st->last[i] < st->last[oldest])
			oldest = i;
	}
	if (i < st->n) {
		known = 1;
	} else if (st->n < TOPICS) {
		i = st->n++;
	} else {
		i = oldest; /* forget the least recently seen */
	}
	days = ev->ts_ms > st->first_seen ? (ev->ts_ms - st->first_seen) / 86400000 : 0;
	st->hash[i] = h;
	st->last[i] = (uint16_t)(days < UINT16_MAX ? days : UINT16_MAX);
	if (known) {
		/* Known to this key, however long ago: a sparse key's own topics go
		 * quiet for months, and coming back is not news (the Amazon feed said
		 * so 176 times). */
		return RULE_QUIET;
	}
	struct shared *g = ctx->shared;
	int others;
	int globally_new = global_note(g, h, ev->ts_ms, c->lookback_ms, &others) &&
	                   ev->ts_ms - g->first_event >= c->min_age_ms;

	/* New for this key only: the key needs its own history first (every topic
	 * of a new product's first reviews is new to it). New for the rule too
	 * (which has watched the fleet for min_age): news on a young key, as long
	 * as the key had something before (its first event is no change). */
	if (globally_new ? st->events <= 1
	                 : ev->ts_ms - st->first_seen < c->min_age_ms ||
	                           st->events <= (uint32_t)c->min_events)
		return RULE_QUIET;

	cJSON *why = cJSON_CreateObject();
	double age_d = (double)(ev->ts_ms - st->first_seen) / 86400000.0;

	cJSON_AddStringToObject(why, "field", c->field);
	cJSON_AddStringToObject(why, "topic", topic);
	cJSON_AddNumberToObject(why, "lookback_days", (double)c->lookback_ms / 86400000.0);
	cJSON_AddNumberToObject(why, "key_age_days", round(age_d * 10) / 10);
	cJSON_AddNumberToObject(why, "known_topics", st->n);
	cJSON_AddNumberToObject(why, "other_keys_with_it", others);
	cJSON_AddStringToObject(why, "test", "first occurrence for the key");
	/* Seen once now, never in the key's history before (no p-value: no model). */
	rule_why_window(why, st->first_seen, ev->ts_ms);
	cJSON_AddNumberToObject(why, "observed", 1);
	cJSON_AddNumberToObject(why, "expected", 0);
	if (globally_new)
		rule_why_guard(why, "history", "%u events of the key before ok", st->events - 1);
	else
		rule_why_guard(why, "history", "%.1fd>=%gd and %u>%lld events ok", age_d,
		               (double)c->min_age_ms / 86400000.0, st->events - 1,
		               (long long)c->min_events);
	cJSON_AddNumberToObject(why, "baseline_age_h", round(age_d * 240) / 10);
	f->why = why;
	f->window_start_ms = ev->ts_ms - c->lookback_ms;
	f->window_end_ms = ev->ts_ms;
	snprintf(f->summary, sizeof(f->summary),
	         "%.100s: %.20s '%.60s' for the first time, %s (key seen for %.1f days)", ctx->key,
	         c->field, topic,
	         !globally_new ? "new for this key"
	         : others      ? "rare across keys"
	                       : "new for every key",
	         age_d);
	return RULE_FIRE;
}

/*
 * "A value the key never had" is about the key's whole history: judged as
 * "absent for 30 days" it raised 432 false incidents on the Amazon feed,
 * where low-rate topics go quiet for months. So a key is kept a year at
 * least (or lookback, if longer): a SKU back after a year of silence is a
 * relaunch, and relearns its topics (a young key waits out min_age).
 */
#define KEEP_MS (365LL * 86400000)

static int64_t memory_ms(const void *config)
{
	int64_t lookback = ((const struct new_topic_config *)config)->lookback_ms;

	return lookback > KEEP_MS ? lookback : KEEP_MS;
}

static const char *const shape[] = {"field", NULL};

const struct rule_kind rule_new_topic = {
        .name = "new_topic",
        .shape = shape,
        .keys = keys,
        .config_size = sizeof(struct new_topic_config),
        .state_size = sizeof(struct new_topic_state),
        .check = check,
        .shared_size = sizeof(struct shared),
        .on_event = on_event,
        .memory_ms = memory_ms,
};
