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
 * z-test). A Bernoulli CUSUM per event catches slow drift (cusum_h > 0). The
 * baseline learns nothing from a bucket that fires or while an incident is
 * open.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	/* the ring of the last RING buckets, and its sums over the window */
	uint32_t sum_k, sum_n;
	uint16_t k[RING], n[RING];
};

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
                 NULL, "how fast the baseline share forgets"),
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
	if (c->window_ms % c->common.bucket_ms || c->window_ms / c->common.bucket_ms > RING) {
		snprintf(err, errlen, "window must be 1 to %d whole buckets", RING);
		return -1;
	}
	c->win = (int)(c->window_ms / c->common.bucket_ms);
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

static void summary(struct rule_ctx *ctx, double k, double n, double p0, double p, struct firing *f,
                    int64_t start, int64_t end)
{
	const struct rate_config *c = ctx->config;
	char what[160] = "";
	int64_t w = end - start;

	for (int i = 0; i < c->nshare; i++)
		snprintf(what + strlen(what), sizeof(what) - strlen(what), "%s%s", i ? ", " : "",
		         c->share[i].text);
	snprintf(
	        f->summary, sizeof(f->summary),
	        "%.80s: %.0f/%.0f %.120s in the last %lld%s (%.0f%%, baseline %.0f%%, %+.0f points; "
	        "p=%.1g)",
	        ctx->key, k, n, what, (long long)(w % 86400000 ? w / 3600000 : w / 86400000),
	        w % 86400000 ? "h" : "d", 100 * k / n, 100 * p0, 100 * (k / n - p0), p);
	f->window_start_ms = start;
	f->window_end_ms = end;
}

/* How much history the key's baseline share has: hours of buckets seen. */
static void add_baseline_age(cJSON *why, const struct rate_config *c, const struct rate_state *st)
{
	cJSON_AddNumberToObject(why, "baseline_age_h",
	                        (double)st->buckets * (double)c->common.bucket_ms / 3600000.0);
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

	st->cusum = (float)fmax(0, st->cusum + (x ? log(p1 / p0) : log((1 - p1) / (1 - p0))));
	if (st->cusum <= c->cusum_h)
		return RULE_QUIET;
	cJSON *why = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(why, "cusum");

	cJSON_AddStringToObject(why, "test", "Bernoulli CUSUM (slow drift)");
	cJSON_AddNumberToObject(o, "S", round(st->cusum * 100) / 100);
	cJSON_AddNumberToObject(o, "h", c->cusum_h);
	cJSON_AddNumberToObject(o, "p0", round(p0 * 1000) / 1000);
	cJSON_AddNumberToObject(o, "p1", round(p1 * 1000) / 1000);
	add_baseline_age(why, c, st);
	f->why = why;
	snprintf(f->summary, sizeof(f->summary),
	         "%.100s: the share drifted up from its %.0f%% baseline (CUSUM S=%.1f > h=%g)",
	         ctx->key, 100 * p0, st->cusum, c->cusum_h);
	f->window_start_ms = f->window_end_ms = ev->ts_ms;
	st->cusum = 0; /* reset after the alarm */
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
	if (st->buckets >= MIN_HISTORY && n >= (double)c->min_n && n > 0) {
		p = binom_upper_tail(k, n, p0);
		lo = wilson_lower(k, n, 1.96);
		if (p < c->alpha && k / n - p0 >= c->min_lift && lo > p0) {
			int64_t start = end_ms - (int64_t)c->win * c->common.bucket_ms;
			cJSON *why = cJSON_CreateObject(), *g;
			char t[48];

			cJSON_AddNumberToObject(why, "k", k);
			cJSON_AddNumberToObject(why, "n", n);
			cJSON_AddNumberToObject(why, "p_hat", round(k / n * 1000) / 1000);
			cJSON_AddNumberToObject(why, "wilson95_lower", round(lo * 1000) / 1000);
			cJSON_AddNumberToObject(why, "p0", round(p0 * 1000) / 1000);
			cJSON_AddNumberToObject(why, "p0_effective_n",
			                        round(st->ew_n + c->prior_m));
			cJSON_AddNumberToObject(why, "delta", round((k / n - p0) * 1000) / 1000);
			cJSON_AddStringToObject(why, "test", "exact binomial upper tail");
			cJSON_AddNumberToObject(why, "p_value", p);
			cJSON_AddNumberToObject(why, "alpha", c->alpha);
			g = cJSON_AddObjectToObject(why, "guards");
			snprintf(t, sizeof(t), "%.0f>=%lld ok", n, (long long)c->min_n);
			cJSON_AddStringToObject(g, "min_n", t);
			snprintf(t, sizeof(t), "%.3f>=%g ok", k / n - p0, c->min_lift);
			cJSON_AddStringToObject(g, "lift", t);
			snprintf(t, sizeof(t), "%.3f>%.3f ok", lo, p0);
			cJSON_AddStringToObject(g, "wilson", t);
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
        .quiet_buckets = quiet_buckets,
};
