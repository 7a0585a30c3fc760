/*
 * rate_shift.c: the share of a key's events that meet share_where (e.g.
 * negative sentiment) against the key's baseline share (BASELINES.md 1.4).
 *
 * Baseline p0 = (ew_k + a) / (ew_n + a + b): exponentially weighted counts
 * (28-day half-life) with a Beta prior of strength prior_m centred on the
 * rule-wide share, so a young key borrows from the fleet. The last window's
 * k of n is tested with the exact binomial upper tail; it fires when
 * p < alpha, n >= min_n, the rise p_hat - p0 >= min_lift, and the Wilson 95%
 * lower bound of p_hat is above p0 (small n overstate significance in a
 * z-test). A Bernoulli CUSUM per event catches slow drift (cusum_h > 0); its
 * firing gives as evidence the run since it last left zero (k of n since
 * then, against p0) and must pass the window test's guards on it (min_n,
 * min_lift, Wilson); a run is at most half_life long. The baseline learns nothing from a bucket
 * that fires or while an incident is open.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/event.h>
#include <voca/rule.h>
#include <voca/xalloc.h>

#define RING        24
#define MIN_HISTORY 24 /* buckets before the key is tested */

struct rate_config {
	struct rule_common common;
	struct conf_list share_where;
	int64_t window_ms;
	double alpha;
	double clear_p;
	int64_t min_n;
	double min_lift;
	int64_t half_life_ms;
	double prior_m;
	double cusum_h;
	/* compiled */
	struct cond share[RULE_MAX_WHERE];
	int nshare;
	int win;
	double decay;
};

/* What outlives a quiet spell comes first (idle_size); a quiet key's ring and sums are zeros. */
struct rate_state {
	float ew_k, ew_n;
	float cusum;
	uint32_t buckets;
	uint16_t cur_k, cur_n;
	uint8_t head;
	/* The CUSUM's run: the events since it last left zero, and when the
	 * first of them was (minutes since the epoch; 0: no run). */
	uint16_t run_k, run_n;
	uint32_t run_from;
	/* the ring of the last RING buckets, and its sums over the window */
	uint32_t sum_k, sum_n;
	uint16_t k[RING], n[RING];
};

/* The layout before the run (2026-11-23): the same up to head, then the sums. */
_Static_assert(offsetof(struct rate_state, head) + 1 == 21, "the old layout's head");
#define V1_HEAD (offsetof(struct rate_state, head) + 1)
#define V1_IDLE 24
#define V1_FULL (V1_IDLE + sizeof(struct rate_state) - offsetof(struct rate_state, sum_k))

struct shared {
	double ew_k, ew_n; /* rule-wide, for the prior */
	int64_t bucket;    /* the latest bucket they have decayed to */
};

#define OFF(m) offsetof(struct rate_config, m)

static const struct conf_key keys[] = {
        RULE_COMMON_KEYS(struct rate_config, "1h", "24h"),
        CONF_KEY("share_where", CONF_STRLIST, OFF(share_where), "sentiment == negative", 0, 0, NULL,
                 "conditions for the events whose share is watched"),
        CONF_KEY("window", CONF_DURATION, OFF(window_ms), "24h", 300000, 24 * 86400000LL, NULL,
                 "the window the current share is taken over (at most 24 buckets)"),
        CONF_KEY("alpha", CONF_DOUBLE, OFF(alpha), "1e-5", 0, 1, NULL,
                 "binomial p-value below which the rise is significant"),
        CONF_KEY("clear_p", CONF_DOUBLE, OFF(clear_p), "0.1", 0, 1, NULL,
                 "hysteresis: while the window after the last firing is above the baseline "
                 "at p < clear_p, the incident is not clear (0: off)"),
        CONF_KEY("min_n", CONF_INT, OFF(min_n), "10", 1, 1000000, NULL,
                 "fewest events in the window"),
        CONF_KEY("min_lift", CONF_DOUBLE, OFF(min_lift), "0.10", 0, 1, NULL,
                 "smallest rise of the share that matters (0.10 = 10 points)"),
        CONF_KEY("half_life", CONF_DURATION, OFF(half_life_ms), "28d", 3600000, 365 * 86400000LL,
                 NULL, "how fast the baseline share forgets; the CUSUM's run is at most this long"),
        CONF_KEY("prior_m", CONF_DOUBLE, OFF(prior_m), "20", 0, 10000, NULL,
                 "weight, in events, of the rule-wide share in a key's baseline"),
        CONF_KEY("cusum_h", CONF_DOUBLE, OFF(cusum_h), "8", 0, 100, NULL,
                 "Bernoulli CUSUM alarm level for slow drift (0: off)"),
        CONF_END,
};

static int check(void *config, char *err, size_t errlen)
{
	struct rate_config *c = config;
	struct rule_common tmp = {.name = c->common.name, .where = c->share_where};

	if (rule_common_check(&c->common, err, errlen) < 0)
		return -1;
	/* share_where compiles like where. */
	if (rule_common_check(&tmp, err, errlen) < 0)
		return -1;
	memcpy(c->share, tmp.conds, sizeof(c->share));
	c->nshare = tmp.nconds;
	if ((c->win = rule_window_buckets(&c->common, c->window_ms, RING, err, errlen)) < 0)
		return -1;
	c->decay = pow(2, -(double)c->common.bucket_ms / (double)c->half_life_ms);
	return 0;
}

static int in_share(const struct rate_config *c, const struct event *ev)
{
	return conds_hold(c->share, c->nshare, ev);
}

static double baseline(const struct rate_config *c, const struct rate_state *st,
                       const struct shared *sh)
{
	/* The fleet's share, with a weak prior of its own for the very start. */
	double pg = (sh->ew_k + 1) / (sh->ew_n + 4);
	double a = c->prior_m * pg, b = c->prior_m * (1 - pg);

	return (st->ew_k + a) / (st->ew_n + a + b);
}

/* How much history the key's baseline share has: hours of buckets seen. */
static void add_baseline_age(cJSON *why, const struct rate_config *c, const struct rate_state *st)
{
	cJSON_AddNumberToObject(why, "baseline_age_h",
	                        (double)st->buckets * (double)c->common.bucket_ms / 3600000.0);
}

/* The share's conditions as one text: "sentiment == negative". */
static void share_text(const struct rate_config *c, char *what, size_t len)
{
	what[0] = '\0';
	for (int i = 0; i < c->nshare; i++)
		snprintf(what + strlen(what), len - strlen(what), "%s%s", i ? ", " : "",
		         c->share[i].text);
}

static void summary(struct rule_ctx *ctx, double k, double n, double p0, double p, struct firing *f,
                    int64_t start, int64_t end)
{
	const struct rate_config *c = ctx->config;
	char what[160];
	int64_t w = end - start;

	share_text(c, what, sizeof(what));
	snprintf(
	        f->summary, sizeof(f->summary),
	        "%.80s: %.0f/%.0f %.120s in the last %lld%s (%.0f%%, baseline %.0f%%, %+.0f points; "
	        "p=%.1g)",
	        ctx->key, k, n, what, (long long)(w % 86400000 ? w / 3600000 : w / 86400000),
	        w % 86400000 ? "h" : "d", 100 * k / n, 100 * p0, 100 * (k / n - p0), p);
	f->window_start_ms = start;
	f->window_end_ms = end;
}

/*
 * What both tests report: the window, and the matching events in it
 * observed against those the baseline share expects of its n.
 */
static void add_observed(cJSON *why, double k, double n, double p0, int64_t start, int64_t end)
{
	rule_why_window(why, start, end);
	cJSON_AddNumberToObject(why, "observed", k);
	cJSON_AddNumberToObject(why, "expected", round(n * p0 * 10) / 10);
	cJSON_AddNumberToObject(why, "k", k);
	cJSON_AddNumberToObject(why, "n", n);
	cJSON_AddNumberToObject(why, "p_hat", round(k / n * 1000) / 1000);
}

/* The CUSUM's run goes on while its sum is above zero and ends when it drains. */
static void run_add(struct rate_state *st, int x, int64_t ts_ms)
{
	if (st->cusum <= 0) {
		st->run_k = st->run_n = 0;
		st->run_from = 0;
		return;
	}
	if (st->run_n == 0) {
		int64_t m = ts_ms / 60000;

		st->run_k = 0;
		st->run_from = (uint32_t)(m < 1 ? 1 : m > UINT32_MAX ? UINT32_MAX : m);
	}
	if (st->run_n < UINT16_MAX) { /* a longer run: its first 65,535 events */
		st->run_n++;
		st->run_k = (uint16_t)(st->run_k + (x != 0));
	}
}

/* The CUSUM's alarm, with its run as the evidence (k of n since it left zero). */
static void cusum_firing(struct rule_ctx *ctx, const struct event *ev, double p0, double p1,
                         struct firing *f)
{
	const struct rate_config *c = ctx->config;
	const struct rate_state *st = ctx->state;
	double k = st->run_k, n = st->run_n, p = binom_upper_tail(k, n, p0);
	int64_t from = (int64_t)st->run_from * 60000;
	cJSON *why = cJSON_CreateObject(), *o;
	char what[160], t[48];

	if (from > ev->ts_ms)
		from = ev->ts_ms; /* the run's first event came late */
	add_observed(why, k, n, p0, from, ev->ts_ms);
	cJSON_AddNumberToObject(why, "p0", round(p0 * 1000) / 1000);
	cJSON_AddNumberToObject(why, "p0_effective_n", round(st->ew_n + c->prior_m));
	cJSON_AddNumberToObject(why, "delta", round((k / n - p0) * 1000) / 1000);
	cJSON_AddStringToObject(why, "test", "Bernoulli CUSUM (slow drift)");
	o = cJSON_AddObjectToObject(why, "cusum");
	cJSON_AddNumberToObject(o, "S", round(st->cusum * 100) / 100);
	cJSON_AddNumberToObject(o, "h", c->cusum_h);
	cJSON_AddNumberToObject(o, "p0", round(p0 * 1000) / 1000);
	cJSON_AddNumberToObject(o, "p1", round(p1 * 1000) / 1000);
	/* The run's start is where the data took the sum off zero: its p is
	 * smaller than a fixed window's would be, and is not the alarm's test. */
	cJSON_AddNumberToObject(why, "p_value", p);
	cJSON_AddStringToObject(why, "p_value_of", "k of n since the CUSUM left zero (post hoc)");
	rule_why_guard(why, "history", "%u>=%d buckets ok", st->buckets, MIN_HISTORY);
	rule_why_guard(why, "cusum", "%.2f>%g ok", st->cusum, c->cusum_h);
	rule_why_guard(why, "min_n", "%.0f>=%lld ok", n, (long long)c->min_n);
	rule_why_guard(why, "lift", "%.3f>=%g ok", k / n - p0, c->min_lift);
	rule_why_guard(why, "wilson", "%.3f>%.3f ok", wilson_lower(k, n, 1.96), p0);
	add_baseline_age(why, c, st);
	f->why = why;
	share_text(c, what, sizeof(what));
	rfc3339_format(from, t, sizeof(t));
	snprintf(f->summary, sizeof(f->summary),
	         "%.80s: %.0f/%.0f %.100s since %.16s (%.0f%%, baseline %.0f%%, %+.0f points; "
	         "a slow drift: CUSUM %.1f > %g, p=%.1g)",
	         ctx->key, k, n, what, t, 100 * k / n, 100 * p0, 100 * (k / n - p0), st->cusum,
	         c->cusum_h, p);
	f->window_start_ms = from;
	f->window_end_ms = ev->ts_ms;
}

static enum rule_verdict on_event(struct rule_ctx *ctx, const struct event *ev, struct firing *f)
{
	const struct rate_config *c = ctx->config;
	struct rate_state *st = ctx->state;
	struct shared *sh = ctx->shared;
	int x = in_share(c, ev);

	st->cur_n = (uint16_t)(st->cur_n < UINT16_MAX ? st->cur_n + 1 : st->cur_n);
	st->cur_k = (uint16_t)(st->cur_k + (x && st->cur_k < UINT16_MAX));
	if (c->cusum_h <= 0 || st->buckets < MIN_HISTORY || ctx->incident_open)
		return RULE_QUIET;
	/* Bernoulli CUSUM: drift toward p1 accumulates, back toward p0 drains. */
	double p0 = baseline(c, st, sh), p1 = fmin(0.95, fmax(p0 + 0.10, 1.5 * p0));

	/* A run as old as the baseline's half-life is no drift the baseline
	 * missed: it is a key whose share the baseline cannot learn (a few
	 * events a month, the prior's weight on them), above the fleet's for
	 * months. Its sum starts over instead of firing on a year of it. */
	if (st->run_n && ev->ts_ms / 60000 - (int64_t)st->run_from > c->half_life_ms / 60000) {
		st->cusum = 0;
		run_add(st, 0, 0);
	}

	st->cusum = (float)fmax(0, st->cusum + (x ? log(p1 / p0) : log((1 - p1) / (1 - p0))));
	run_add(st, x, ev->ts_ms);
	if (st->cusum <= c->cusum_h)
		return RULE_QUIET;
	/* The window test's guards, on the run: a sum over h whose run rose
	 * less than min_lift, or not surely above p0, is no change that matters
	 * (it waits, summing on, until its run shows one or drains). */
	double k = st->run_k, n = st->run_n;

	if (n < (double)c->min_n || k / n - p0 < c->min_lift || wilson_lower(k, n, 1.96) <= p0)
		return RULE_QUIET;
	cusum_firing(ctx, ev, p0, p1, f);
	st->cusum = 0; /* reset after the alarm */
	run_add(st, 0, 0);
	return RULE_FIRE;
}

static enum rule_verdict on_close(struct rule_ctx *ctx, int64_t end_ms, struct firing *f)
{
	const struct rate_config *c = ctx->config;
	struct rate_state *st = ctx->state;
	struct shared *sh = ctx->shared;
	double k = 0, n = 0, p0 = baseline(c, st, sh), p = 1, lo = 0;
	enum rule_verdict v = RULE_QUIET;

	/* The window's sums move by the bucket coming in and the one leaving
	 * (integers: exact), instead of a pass over the ring at every close. */
	int out = (st->head - c->win + RING) % RING;

	st->sum_k += (uint32_t)st->cur_k - st->k[out];
	st->sum_n += (uint32_t)st->cur_n - st->n[out];
	st->k[st->head] = st->cur_k;
	st->n[st->head] = st->cur_n;
	st->head = (uint8_t)((st->head + 1) % RING);
	k = st->sum_k;
	n = st->sum_n;
	/* The tail only where it can decide something: a rise of min_lift (a
	 * firing), or any rise while the incident is open (hysteresis). Most
	 * closes are of windows at or under their baseline, and skip it. */
	if (st->buckets >= MIN_HISTORY && n >= (double)c->min_n && n > 0 &&
	    (k / n - p0 >= c->min_lift || (ctx->incident_open && k / n > p0))) {
		p = binom_upper_tail(k, n, p0);
		int rise = p < c->alpha && k / n - p0 >= c->min_lift;

		if (rise)
			lo = wilson_lower(k, n, 1.96);
		if (rise && lo > p0) {
			int64_t start = end_ms - (int64_t)c->win * c->common.bucket_ms;
			cJSON *why = cJSON_CreateObject();

			add_observed(why, k, n, p0, start, end_ms);
			cJSON_AddNumberToObject(why, "wilson95_lower", round(lo * 1000) / 1000);
			cJSON_AddNumberToObject(why, "p0", round(p0 * 1000) / 1000);
			cJSON_AddNumberToObject(why, "p0_effective_n",
			                        round(st->ew_n + c->prior_m));
			cJSON_AddNumberToObject(why, "delta", round((k / n - p0) * 1000) / 1000);
			cJSON_AddStringToObject(why, "test", "exact binomial upper tail");
			cJSON_AddNumberToObject(why, "p_value", p);
			cJSON_AddNumberToObject(why, "alpha", c->alpha);
			rule_why_guard(why, "min_n", "%.0f>=%lld ok", n, (long long)c->min_n);
			rule_why_guard(why, "lift", "%.3f>=%g ok", k / n - p0, c->min_lift);
			rule_why_guard(why, "wilson", "%.3f>%.3f ok", lo, p0);
			add_baseline_age(why, c, st);
			f->why = why;
			summary(ctx, k, n, p0, p, f, start, end_ms);
			v = RULE_FIRE;
		}
	}
	/* Hysteresis: the window after the last firing still above the baseline
	 * at p < clear_p keeps the incident from resolving. */
	if (v != RULE_FIRE && ctx->incident_open && p < c->clear_p && k / n > p0 &&
	    end_ms - (int64_t)c->win * c->common.bucket_ms >= ctx->fired_ms)
		v = RULE_HOLD;
	if (!ctx->incident_open && v != RULE_FIRE) {
		st->ew_k = (float)(st->ew_k * c->decay + st->cur_k);
		st->ew_n = (float)(st->ew_n * c->decay + st->cur_n);
		/* The fleet's share forgets by time, once per bucket, not once per
		 * key close (which made its memory a few thousand closes, and
		 * dependent on how often keys close). */
		int64_t b = end_ms / c->common.bucket_ms;

		if (b > sh->bucket) {
			double d = sh->bucket ? pow(c->decay, (double)(b - sh->bucket)) : 1;

			sh->ew_k *= d;
			sh->ew_n *= d;
			sh->bucket = b;
		}
		sh->ew_k += st->cur_k;
		sh->ew_n += st->cur_n;
	}
	st->buckets++;
	st->cur_k = st->cur_n = 0;
	return v;
}

static int64_t quiet_buckets(const void *config)
{
	return ((const struct rate_config *)config)->win;
}

/* A record saved before the CUSUM kept its run: the same fields, no run known. */
static size_t upgrade(void *state, const void *old, size_t len)
{
	struct rate_state *st = state;

	if (len != V1_IDLE && len != V1_FULL)
		return 0;
	memcpy(st, old, V1_HEAD);
	if (len == V1_IDLE)
		return offsetof(struct rate_state, sum_k);
	memcpy(&st->sum_k, (const unsigned char *)old + V1_IDLE, V1_FULL - V1_IDLE);
	return sizeof(*st);
}

static const char *const shape[] = {"window", "share_where", NULL};

const struct rule_kind rule_rate_shift = {
        .name = "rate_shift",
        .shape = shape,
        .keys = keys,
        .config_size = sizeof(struct rate_config),
        .state_size = sizeof(struct rate_state),
        .check = check,
        .shared_size = sizeof(struct shared),
        .on_event = on_event,
        .on_close = on_close,
        .idle_size = offsetof(struct rate_state, sum_k),
        .upgrade = upgrade,
        .quiet_buckets = quiet_buckets,
};
