/*
 * threshold.c: k events meeting the rule's conditions within a window,
 * optionally from k distinct values of a field (customers, orders).
 *
 * k = 1 is the safety fast path: the first matching event fires, with no
 * statistics and no waiting for a bucket to close. State per key is the
 * last 16 matching events' times, identities and ids, so k is at most 16.
 * The kind takes higher revisions of events (a re-scored report that now
 * matches counts, and fires a fast path), each event id once.
 *
 * With max_p (BASELINES.md P2, repeated severe defects) the count must also
 * be unlikely for this key: a Poisson tail at the key's rate of matching
 * events before the window times the window. Three severe reports a day is
 * news for most SKUs, and routine for a bestseller.
 *
 * The rate is the key's own history shrunk toward a prior rate (a gamma
 * prior worth PRIOR_DAYS of exposure), so a young key is judged on what is
 * known about keys like it, not on nothing. With one group field the prior
 * is half an event a week. With several (group_by [sku, subcategory]) it is
 * BASELINES' lambda_floor: the rate of the key's prefix (the SKU, across
 * all its defects) times the share of its last field's value (this defect,
 * across all SKUs), from counts the rule keeps in its shared state. A
 * bestseller's defects are not news in its first week because the SKU's
 * rate is known after a day or two; a quiet SKU's stay news.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/rule.h>
#include <voca/xalloc.h>

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
	/* Added later, so last (a state saved before restores with zeros):
	 * each event's id, so a higher revision of one counts once. */
	uint32_t id[MAX_K];
};

#define DAY_MS            86400000.0
#define PRIOR_EVENTS      0.5 /* a key's prior with one group field: per PRIOR_DAYS */
#define PRIOR_DAYS        7.0 /* the prior weighs as much as this much history */
#define PREFIX_PRIOR_DAYS 1.0 /* the rule's mean rate per prefix weighs this much */

/*
 * Matching events counted per value, for the prior of keys with several
 * group fields: an open-addressing table of 32-bit hashes (a collision
 * merges two values' counts, which only blurs a prior).
 */
struct tally_slot {
	uint32_t h, n;
	uint32_t first_s; /* seconds after the rule's first event */
};

struct tally {
	struct tally_slot *slot;
	uint32_t cap, used; /* cap a power of two, or 0 */
};

struct shared {
	int64_t origin_ms; /* the rule's first matching event; 0: none yet */
	uint64_t total;
	struct tally prefix, last;
};

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
                 "also require the count, or the latest count reports' span (the scan), to be "
                 "this unlikely for the key's own rate, each test at max_p/2 (0: off)"),
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

static struct tally_slot *tally_find(const struct tally *t, uint32_t h)
{
	for (uint32_t i = h & (t->cap - 1); t->cap; i = (i + 1) & (t->cap - 1)) {
		if (t->slot[i].h == h)
			return &t->slot[i];
		if (t->slot[i].h == 0)
			return NULL;
	}
	return NULL;
}

/* The slot of h, added (n = 0) if new. */
static struct tally_slot *tally_get(struct tally *t, uint32_t h, uint32_t first_s)
{
	struct tally_slot *sl = tally_find(t, h);

	if (sl)
		return sl;
	if ((uint64_t)(t->used + 1) * 4 > (uint64_t)t->cap * 3) {
		struct tally old = *t;

		t->cap = old.cap ? old.cap * 2 : 256;
		t->slot = xcalloc(t->cap, sizeof(*t->slot));
		t->used = 0;
		for (uint32_t i = 0; i < old.cap; i++)
			if (old.slot[i].h)
				*tally_get(t, old.slot[i].h, 0) = old.slot[i];
		free(old.slot);
	}
	uint32_t i = h & (t->cap - 1);

	while (t->slot[i].h)
		i = (i + 1) & (t->cap - 1);
	t->slot[i] = (struct tally_slot){.h = h, .first_s = first_s};
	t->used++;
	return &t->slot[i];
}

static void *new_shared(const void *config)
{
	(void)config;
	return xcalloc(1, sizeof(struct shared));
}

static void free_shared(void *p)
{
	struct shared *sh = p;

	free(sh->prefix.slot);
	free(sh->last.slot);
	free(sh);
}

struct shared_head {
	int64_t origin_ms;
	uint64_t total;
	uint32_t nprefix, nlast;
};

static void save_tally(const struct tally *t, struct buf *out)
{
	for (uint32_t i = 0; i < t->cap; i++)
		if (t->slot[i].h)
			buf_add(out, &t->slot[i], sizeof(t->slot[i]));
}

/* The counts, and the slots in use (a few MB at 100,000 SKUs). */
static void save_shared(const void *p, struct buf *out)
{
	const struct shared *sh = p;
	struct shared_head hd = {sh->origin_ms, sh->total, sh->prefix.used, sh->last.used};

	buf_add(out, &hd, sizeof(hd));
	save_tally(&sh->prefix, out);
	save_tally(&sh->last, out);
}

static int load_shared(void *p, const void *blob, size_t len)
{
	struct shared *sh = p;
	struct shared_head hd;
	const struct tally_slot *sl = (const struct tally_slot *)((const char *)blob + sizeof(hd));

	if (len < sizeof(hd))
		return -1;
	memcpy(&hd, blob, sizeof(hd));
	if (len != sizeof(hd) + ((size_t)hd.nprefix + hd.nlast) * sizeof(*sl))
		return -1;
	sh->origin_ms = hd.origin_ms;
	sh->total = hd.total;
	for (uint32_t i = 0; i < hd.nprefix + hd.nlast; i++) {
		struct tally_slot v;

		memcpy(&v, sl + i, sizeof(v));
		if (v.h == 0)
			return -1;
		*tally_get(i < hd.nprefix ? &sh->prefix : &sh->last, v.h, 0) = v;
	}
	return 0;
}

/* distinct_by a field outside the schema is read from the raw JSON. */
static int reads_raw(const void *config)
{
	const struct threshold_config *c = config;

	return c->distinct_by && c->distinct_field < 0;
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

/* Does the rule keep counts for a hierarchical prior (max_p, several group fields)? */
static int hierarchical(const struct threshold_config *c)
{
	return c->max_p > 0 && c->common.ngroup > 1;
}

/* Hash of the key's prefix (all group fields but the last) and of its last field. */
static void split_key(const struct threshold_config *c, const struct event *ev, uint32_t *prefix,
                      uint32_t *last)
{
	char buf[512], num[32];
	size_t off = 0;
	int n = c->common.ngroup;

	for (int i = 0; i < n - 1; i++) {
		const char *v = rule_field_text(c->common.group[i], ev, num, sizeof(num));
		size_t vl = strnlen(v, sizeof(buf) / RULE_MAX_GROUP - 1);

		memcpy(buf + off, v, vl);
		off += vl;
		buf[off++] = '\x1f';
	}
	*prefix = rule_hash(buf, off);
	const char *v = rule_field_text(c->common.group[n - 1], ev, num, sizeof(num));

	*last = rule_hash(v, strlen(v));
}

/*
 * Counts a matching event toward the priors of keys with several group
 * fields (add 1), or only reads their counts (add 0).
 */
static void note(struct shared *sh, const struct threshold_config *c, const struct event *ev,
                 int add, struct tally_slot *prefix, struct tally_slot *last)
{
	uint32_t ph, lh;

	if (sh->origin_ms == 0)
		sh->origin_ms = ev->ts_ms;
	split_key(c, ev, &ph, &lh);
	/* A late event from before the rule's first is clamped to it. */
	uint32_t first_s =
	        ev->ts_ms > sh->origin_ms ? (uint32_t)((ev->ts_ms - sh->origin_ms) / 1000) : 0;
	struct tally_slot *p = tally_get(&sh->prefix, ph, first_s),
	                  *l = tally_get(&sh->last, lh, 0);

	p->n += (uint32_t)add;
	l->n += (uint32_t)add;
	sh->total += (uint32_t)add;
	*prefix = *p;
	*last = *l;
}

/*
 * A key that fires takes its window's n events back out of the priors'
 * counts: they are the burst, not the prefix's usual rate (a baseline
 * learns nothing from what fires, BASELINES.md). Else a SKU whose
 * "stopped_working" burst opened an incident one day had three reports of
 * "broken_part" the next expected at 0.7 and was let through.
 */
static void unnote(struct shared *sh, const struct threshold_config *c, const struct event *ev,
                   int n)
{
	uint32_t ph, lh;

	split_key(c, ev, &ph, &lh);
	struct tally_slot *p = tally_get(&sh->prefix, ph, 0), *l = tally_get(&sh->last, lh, 0);

	p->n -= (uint32_t)n < p->n ? (uint32_t)n : p->n;
	l->n -= (uint32_t)n < l->n ? (uint32_t)n : l->n;
	sh->total -= (uint64_t)n < sh->total ? (uint64_t)n : sh->total;
}

/*
 * The prior rate per day of a key, before window_start, its own n events in
 * the window left out of the counts. The prefix's rate is its own from its
 * first event on, shrunk toward the rule's mean rate per prefix (worth
 * PREFIX_PRIOR_DAYS), so a prefix seen for the first time is an average
 * one; the share of the last field's value is smoothed by half an event.
 */
static double prior_per_day(const struct threshold_config *c, const struct shared *sh,
                            const struct tally_slot *prefix, const struct tally_slot *last, int n,
                            int64_t window_start)
{
	if (!hierarchical(c))
		return PRIOR_EVENTS / PRIOR_DAYS;
	double others = fmax(0, (double)sh->total - n);
	double life = fmax(1, ((double)window_start - (double)sh->origin_ms) / DAY_MS);
	double mean = fmax(PRIOR_EVENTS / PRIOR_DAYS, others / life / sh->prefix.used);
	double first = (double)sh->origin_ms + (double)prefix->first_s * 1000;
	double days = fmax(0, ((double)window_start - first) / DAY_MS);
	double rate = (fmax(0, (double)prefix->n - n) + PREFIX_PRIOR_DAYS * mean) /
	              (days + PREFIX_PRIOR_DAYS);
	double share = (fmax(0, (double)last->n - n) + 0.5) / (others + 1);

	return rate * share;
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

static int latest_first(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x < y) - (x > y);
}

static enum rule_verdict on_event(struct rule_ctx *ctx, const struct event *ev, struct firing *f)
{
	const struct threshold_config *c = ctx->config;
	struct threshold_state *s = ctx->state;
	uint32_t seen[MAX_K];
	int n = 0, distinct = 0;
	char win[32], conds[256] = "";
	struct tally_slot prefix = {0}, last = {0};
	uint32_t id = rule_hash(ev->event_id, strlen(ev->event_id));

	/* A higher revision of an event this key has counted: not again. */
	for (int i = 0; i < s->n; i++)
		if (s->id[i] == id)
			return RULE_QUIET;
	/* While the key's incident is open, its events are the incident's. */
	if (hierarchical(c))
		note(ctx->shared, c, ev, !ctx->incident_open, &prefix, &last);
	if (s->total == 0)
		s->first_seen = ev->ts_ms;
	s->total++;
	/* A late event from before the key's first is clamped to it. */
	s->ts[s->head] =
	        ev->ts_ms > s->first_seen ? (uint32_t)((ev->ts_ms - s->first_seen) / 1000) : 0;
	s->who[s->head] = identity(c, ev);
	s->id[s->head] = id;
	s->head = (uint8_t)((s->head + 1) % MAX_K);
	if (s->n < MAX_K)
		s->n++;
	int64_t times[MAX_K];

	for (int i = 0; i < s->n; i++) {
		int64_t ts = s->first_seen + (int64_t)s->ts[i] * 1000;

		if (ts <= ev->ts_ms - c->window_ms || ts > ev->ts_ms)
			continue;
		times[n] = ts;
		n++;
		int dup = 0;

		for (int j = 0; j < distinct; j++)
			dup |= seen[j] == s->who[i];
		if (!dup)
			seen[distinct++] = s->who[i];
	}
	if ((c->distinct_by ? distinct : n) < c->count)
		return RULE_QUIET;
	/* The key's rate before this window (events and days outside it), shrunk
	 * toward the prior: the gamma posterior mean. */
	double hist = (double)s->total - n,
	       days = fmax(0, (double)(ev->ts_ms - c->window_ms - s->first_seen) / DAY_MS);
	double prior = prior_per_day(c, ctx->shared, &prefix, &last, n, ev->ts_ms - c->window_ms);
	double expected =
	        (hist + PRIOR_DAYS * prior) / (days + PRIOR_DAYS) * ((double)c->window_ms / DAY_MS);
	double p = nb_upper_tail(n, expected, 1);
	/* The scan (Naus): count events within span d of the window W are
	 * about count x W/d times as likely anywhere in it as in one such span. */
	double p_scan = 1, span_h = 0;

	if (c->max_p > 0 && n >= c->count) {
		qsort(times, (size_t)n, sizeof(*times), latest_first);
		double d =
		        fmax((double)(ev->ts_ms - times[c->count - 1]), (double)c->window_ms / 8);

		span_h = d / 3600000.0;
		p_scan = fmin(1, (double)c->count * (double)c->window_ms / d *
		                         nb_upper_tail((double)c->count,
		                                       expected * d / (double)c->window_ms, 1));
		p = fmin(1, 2 * fmin(p, p_scan));
	}

	if (c->max_p > 0 && p >= c->max_p)
		return RULE_QUIET;

	format_window(c->window_ms, win, sizeof(win));
	cJSON *why = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(why, "conditions");

	for (int i = 0; i < c->common.nconds; i++) {
		cJSON_AddItemToArray(arr, cJSON_CreateString(c->common.conds[i].text));
		snprintf(conds + strlen(conds), sizeof(conds) - strlen(conds), "%s%s",
		         i ? ", " : "", c->common.conds[i].text);
	}
	rule_why_window(why, ev->ts_ms - c->window_ms, ev->ts_ms);
	if (span_h > 0) {
		cJSON_AddNumberToObject(why, "span_h", round(span_h * 10) / 10);
		cJSON_AddNumberToObject(why, "p_scan", p_scan);
	}
	cJSON_AddNumberToObject(why, "observed", n);
	cJSON_AddNumberToObject(why, "required", (double)c->count);
	cJSON_AddNumberToObject(why, "expected", round(expected * 1000) / 1000);
	cJSON_AddNumberToObject(why, "p_value", p);
	rule_why_guard(why, "count", "%d>=%lld ok", c->distinct_by ? distinct : n,
	               (long long)c->count);
	if (c->max_p > 0)
		rule_why_guard(why, "max_p", "%.2g<%g ok", p, c->max_p);
	cJSON_AddNumberToObject(why, "baseline_age_h",
	                        round((double)(ev->ts_ms - s->first_seen) / 3600000.0 * 10) / 10);
	if (c->max_p > 0) {
		cJSON_AddNumberToObject(why, "max_p", c->max_p);
		cJSON_AddNumberToObject(why, "history_events", hist);
		cJSON_AddNumberToObject(why, "history_days", round(days * 100) / 100);
		cJSON_AddNumberToObject(why, "prior_per_day", round(prior * 1e4) / 1e4);
		cJSON_AddStringToObject(why, "prior",
		                        hierarchical(c)
		                                ? "the key's prefix's rate x its last field's share"
		                                : "half an event a week");
	}
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
	if (hierarchical(c) && !ctx->incident_open)
		unnote(ctx->shared, c, ev, n);
	return RULE_FIRE;
}

/* Events within window count: the key keeps at least that long. */
static int64_t memory_ms(const void *config)
{
	return ((const struct threshold_config *)config)->window_ms;
}

static const char *const shape[] = {"distinct_by", NULL};

const struct rule_kind rule_threshold = {
        .name = "threshold",
        .shape = shape,
        .keys = keys,
        .config_size = sizeof(struct threshold_config),
        .state_size = sizeof(struct threshold_state),
        .revisions = 1,
        .reads_raw = reads_raw,
        .check = check,
        .new_shared = new_shared,
        .free_shared = free_shared,
        .save_shared = save_shared,
        .load_shared = load_shared,
        .on_event = on_event,
        .memory_ms = memory_ms,
};
