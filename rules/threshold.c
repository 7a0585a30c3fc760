/*
 * threshold.c: k events meeting the rule's conditions within a window,
 * optionally from k distinct values of a field (customers, orders).
 *
 * k = 1 is the safety fast path: the first matching event fires, with no
 * statistics and no waiting for a bucket to close. State per key is the
 * last 16 matching events' times and identities, so k is at most 16.
 *
 * With max_p (BASELINES.md P2, repeated severe defects) the count must also
 * be unlikely for this key: expected = the key's own rate of matching events
 * before the window times the window, with a prior of half an event per
 * week so a young quiet key is not judged on nothing, and a Poisson tail.
 * Three severe reports a day is news for most SKUs, and routine for a
 * bestseller.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <voca/rule.h>

#define MAX_K 16

struct threshold_config {
	struct rule_common common;
	int64_t count;
	int64_t window_ms;
	char *distinct_by;
	double max_p;
	int distinct_field; /* compiled; -1: a top-level field outside the schema */
};

struct threshold_state {
	uint32_t ts[MAX_K]; /* seconds since first_seen */
	uint32_t who[MAX_K];
	int64_t first_seen;
	uint32_t total; /* matching events ever */
	uint8_t n, head;
};

#define PRIOR_EVENTS 0.5
#define MIN_EXPOSURE (7 * 86400000.0)

#define OFF(m) offsetof(struct threshold_config, m)

static const struct conf_key keys[] = {
        RULE_COMMON_KEYS(struct threshold_config, "1h", "24h"),
        CONF_KEY("count", CONF_INT, OFF(count), "1", 1, MAX_K, NULL,
                 "events needed within the window (1: fire on the first)"),
        CONF_KEY("window", CONF_DURATION, OFF(window_ms), "24h", 60000, 30LL * 86400000, NULL,
                 "how far back matching events count"),
        CONF_KEY("distinct_by", CONF_STR, OFF(distinct_by), NULL, 0, 0, NULL,
                 "count only distinct values of this field (e.g. a customer id)"),
        CONF_KEY("max_p", CONF_DOUBLE, OFF(max_p), "0", 0, 1, NULL,
                 "also require the count to be this unlikely for the key's own rate (0: off)"),
        CONF_END,
};

static int check(void *config, char *err, size_t errlen)
{
	struct threshold_config *c = config;

	if (rule_common_check(&c->common, err, errlen) < 0)
		return -1;
	c->distinct_field = c->distinct_by ? rule_field_lookup(c->distinct_by) : -1;
	return 0;
}

/* The identity of an event for distinct_by: a schema field, or a raw top-level one. */
static uint32_t identity(const struct threshold_config *c, const struct event *ev)
{
	char buf[32];

	if (c->distinct_by == NULL)
		return 0;
	if (c->distinct_field >= 0) {
		const char *v = rule_field_text(c->distinct_field, ev, buf, sizeof(buf));

		return rule_hash(v, strlen(v));
	}
	cJSON *root = cJSON_ParseWithLength(ev->raw, ev->raw_len);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, c->distinct_by);
	uint32_t h = cJSON_IsString(v) ? rule_hash(v->valuestring, strlen(v->valuestring)) : 0;

	cJSON_Delete(root);
	return h;
}

static void format_window(int64_t ms, char *out, size_t len)
{
	if (ms % 86400000 == 0)
		snprintf(out, len, "%lldd", (long long)(ms / 86400000));
	else if (ms % 3600000 == 0)
		snprintf(out, len, "%lldh", (long long)(ms / 3600000));
	else
		snprintf(out, len, "%lldm", (long long)(ms / 60000));
}

static enum rule_verdict on_event(struct rule_ctx *ctx, const struct event *ev, struct firing *f)
{
	const struct threshold_config *c = ctx->config;
	struct threshold_state *s = ctx->state;
	uint32_t seen[MAX_K];
	int n = 0, distinct = 0;
	char win[32], conds[256] = "";

	if (s->total == 0)
		s->first_seen = ev->ts_ms;
	s->total++;
	/* A late event from before the key's first is clamped to it. */
	s->ts[s->head] =
	        ev->ts_ms > s->first_seen ? (uint32_t)((ev->ts_ms - s->first_seen) / 1000) : 0;
	s->who[s->head] = identity(c, ev);
	s->head = (uint8_t)((s->head + 1) % MAX_K);
	if (s->n < MAX_K)
		s->n++;
	for (int i = 0; i < s->n; i++) {
		int64_t ts = s->first_seen + (int64_t)s->ts[i] * 1000;

		if (ts <= ev->ts_ms - c->window_ms || ts > ev->ts_ms)
			continue;
		n++;
		int dup = 0;

		for (int j = 0; j < distinct; j++)
			dup |= seen[j] == s->who[i];
		if (!dup)
			seen[distinct++] = s->who[i];
	}
	if ((c->distinct_by ? distinct : n) < c->count)
		return RULE_QUIET;
	/* The key's rate before this window: events and exposure outside it. */
	double hist = (double)s->total - n,
	       exposure = (double)(ev->ts_ms - c->window_ms - s->first_seen);
	double expected =
	        (hist + PRIOR_EVENTS) / fmax(exposure, MIN_EXPOSURE) * (double)c->window_ms;
	double p = nb_upper_tail(n, expected, 1);

	if (c->max_p > 0 && p >= c->max_p)
		return RULE_QUIET;

	format_window(c->window_ms, win, sizeof(win));
	cJSON *why = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(why, "conditions");

	for (int i = 0; i < c->common.nconds; i++) {
		cJSON_AddItemToArray(arr, cJSON_CreateString(c->common.conds[i].text));
		snprintf(conds + strlen(conds), sizeof(conds) - strlen(conds), "%s%s",
		         i ? ", " : "", c->common.conds[i].text);
	}
	cJSON_AddNumberToObject(why, "observed", n);
	cJSON_AddNumberToObject(why, "required", (double)c->count);
	cJSON_AddNumberToObject(why, "expected", round(expected * 1000) / 1000);
	cJSON_AddNumberToObject(why, "p_value", p);
	if (c->max_p > 0)
		cJSON_AddNumberToObject(why, "max_p", c->max_p);
	cJSON_AddStringToObject(why, "test",
	                        c->count == 1 ? "first match (safety fast path)"
	                                      : "count within window");
	if (c->distinct_by) {
		cJSON_AddStringToObject(why, "distinct_by", c->distinct_by);
		cJSON_AddNumberToObject(why, "distinct", distinct);
	}
	f->why = why;
	f->window_start_ms = ev->ts_ms - c->window_ms;
	f->window_end_ms = ev->ts_ms;
	if (c->distinct_by)
		snprintf(f->summary, sizeof(f->summary),
		         "%.80s: %d events matching %.120s within %.16s, from %d distinct %.24s",
		         ctx->key, n, conds[0] ? conds : "the rule", win, distinct, c->distinct_by);
	else
		snprintf(f->summary, sizeof(f->summary),
		         "%.80s: %d event%s matching %.120s within %.16s (%.2f expected, p=%.1g)",
		         ctx->key, n, n == 1 ? "" : "s", conds[0] ? conds : "the rule", win,
		         expected, p);
	return RULE_FIRE;
}

const struct rule_kind rule_threshold = {
        .name = "threshold",
        .keys = keys,
        .config_size = sizeof(struct threshold_config),
        .state_size = sizeof(struct threshold_state),
        .check = check,
        .on_event = on_event,
};
