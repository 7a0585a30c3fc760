/*
 * flatline.c: a source or key that stops sending (upstream freshness).
 *
 * Each key learns its events per bucket (exponentially weighted, with an
 * hour-of-day profile so a quiet night is not an outage). While a key has
 * been silent, the events it was expected to send add up; silence is
 * significant when P(0 events | that expectation) = exp(-sum) < alpha and
 * at least min_expected were due. The engine closes every key's buckets for
 * this kind (a silent key has no events to do it).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <voca/rule.h>

#define HOUR_MS     3600000LL
#define MIN_HISTORY 48 /* buckets before the key is judged */

struct flatline_config {
	struct rule_common common;
	double alpha;
	double min_expected;
	int64_t half_life_ms;
	double decay; /* compiled */
};

struct flatline_state {
	float level;   /* EW events per bucket, deseasonalised */
	float hod[24]; /* hour-of-day factors, mean 1 */
	float due;     /* events expected since the silence began */
	uint32_t cur, buckets, silent;
	int64_t last_event;
};

#define OFF(m) offsetof(struct flatline_config, m)

static const struct conf_key keys[] = {
        RULE_COMMON_KEYS(struct flatline_config, "1h", "1h"),
        CONF_KEY("alpha", CONF_DOUBLE, OFF(alpha), "1e-6", 0, 1, NULL,
                 "P(no events | expected) below which silence is an outage"),
        CONF_KEY("min_expected", CONF_DOUBLE, OFF(min_expected), "10", 0, 1e9, NULL,
                 "fewest events that must have been due during the silence"),
        CONF_KEY("half_life", CONF_DURATION, OFF(half_life_ms), "7d", HOUR_MS, 365 * 86400000LL,
                 NULL, "how fast the expected rate forgets"),
        CONF_END,
};

static int check(void *config, char *err, size_t errlen)
{
	struct flatline_config *c = config;

	if (rule_common_check(&c->common, err, errlen) < 0)
		return -1;
	c->decay = 1 - pow(2, -(double)c->common.bucket_ms / (double)c->half_life_ms);
	return 0;
}

static int hour_of(int64_t ms)
{
	return (int)((ms % 86400000 + 86400000) % 86400000 / HOUR_MS);
}

static enum rule_verdict on_event(struct rule_ctx *ctx, const struct event *ev, struct firing *f)
{
	struct flatline_state *st = ctx->state;

	(void)f;
	if (st->buckets == 0 && st->cur == 0)
		for (int i = 0; i < 24; i++)
			st->hod[i] = 1;
	st->cur++;
	st->last_event = ev->ts_ms;
	return RULE_QUIET;
}

/*
 * The hour's factor a silence is judged by. The profile learns each hour as
 * a running mean in which the flat start counts as one visit: a shrinkage
 * a bursty source needs (without it, the Amazon feed's source reopened 101
 * times instead of once). But an hour quieter than the day is then judged
 * as busier than it is: on a Poisson source's third night (3 an hour, a
 * day's mean of 19) the profile said 11. For its first 20 visits an hour
 * below 1 is judged by the mean of its visits alone, (n + 1) f - 1 over n
 * (the prior taken out), never by more than the profile says.
 */
static double judged_factor(const struct flatline_state *st, int h)
{
	double f = st->hod[h], n = (double)(st->buckets / 24) - 1; /* visits so far */

	if (n < 1 || n >= 20 || f >= 1)
		return f;
	return fmax(((n + 1) * f - 1) / n, 0.02);
}

static enum rule_verdict on_close(struct rule_ctx *ctx, int64_t end_ms, struct firing *f)
{
	const struct flatline_config *c = ctx->config;
	struct flatline_state *st = ctx->state;
	int h = hour_of(end_ms - c->common.bucket_ms);
	double mu = st->level * st->hod[h], a;
	enum rule_verdict v = RULE_QUIET;

	if (st->cur > 0) {
		st->silent = 0;
		st->due = 0;
	} else {
		st->silent++;
		st->due += (float)(st->level * judged_factor(st, h));
	}
	if (st->buckets >= MIN_HISTORY && st->silent > 0 && st->due >= c->min_expected &&
	    exp(-st->due) < c->alpha) {
		cJSON *why = cJSON_CreateObject();
		char t[48];

		rfc3339_format(st->last_event, t, sizeof(t));
		cJSON_AddStringToObject(why, "last_event", t);
		cJSON_AddNumberToObject(why, "silent_buckets", st->silent);
		cJSON_AddNumberToObject(why, "expected", round(st->due * 10) / 10);
		cJSON_AddNumberToObject(why, "observed", 0);
		cJSON_AddStringToObject(why, "test", "Poisson P(0 | expected)");
		cJSON_AddNumberToObject(why, "p_value", exp(-st->due));
		cJSON_AddNumberToObject(why, "alpha", c->alpha);
		rule_why_window(why, st->last_event, end_ms);
		rule_why_guard(why, "min_expected", "%.1f>=%g ok", st->due, c->min_expected);
		rule_why_guard(why, "history", "%u>=%d buckets ok", st->buckets, MIN_HISTORY);
		cJSON_AddNumberToObject(why, "baseline_age_h",
		                        (double)st->buckets * (double)c->common.bucket_ms /
		                                HOUR_MS);
		f->why = why;
		f->window_start_ms = end_ms - (int64_t)st->silent * c->common.bucket_ms;
		f->window_end_ms = end_ms;
		snprintf(f->summary, sizeof(f->summary),
		         "%.100s: no events for %u bucket%s since %.16s, %.0f were expected "
		         "(p=%.1g)",
		         ctx->key, st->silent, st->silent == 1 ? "" : "s", t, st->due,
		         exp(-st->due));
		v = RULE_FIRE;
	}
	/* Learn from buckets that are not part of an outage, winsorised once
	 * the key is judged (BASELINES.md section 1, step 2; its clamp, with
	 * phi = 1), so that a surge does not become the normal: a day of 25x
	 * billing complaints through zendesk, learned as it came, raised the
	 * expectation of the hours it touched for days. */
	if (!ctx->incident_open && v != RULE_FIRE) {
		double x = st->cur;

		if (st->buckets >= MIN_HISTORY)
			x = fmin(x, mu + 4 * sqrt(mu) + 1);
		a = st->buckets < 1 / c->decay ? 1.0 / (st->buckets + 1) : c->decay;
		st->level += (float)(a * (x / st->hod[h] - st->level));
		if (st->level > 0 && st->buckets >= 24) {
			double sum = 0;

			/* A running mean for the first 20 visits of each hour, then EW:
			 * at 5% from the start, nights still looked like days after ten days.
			 * The flat start counts as a visit, a shrinkage a bursty source
			 * needs; judged_factor takes it out of a quiet hour's test. */
			double g = fmax(0.05, 1.0 / (st->buckets / 24 + 1));

			st->hod[h] += (float)(g * (x / st->level - st->hod[h]));
			st->hod[h] = fmaxf(st->hod[h], 0.02f);
			for (int i = 0; i < 24; i++)
				sum += st->hod[i];
			for (int i = 0; i < 24; i++)
				st->hod[i] = (float)(st->hod[i] * 24 / sum);
		}
	}
	st->buckets++;
	st->cur = 0;
	return v;
}

const struct rule_kind rule_flatline = {
        .name = "flatline",
        .keys = keys,
        .config_size = sizeof(struct flatline_config),
        .state_size = sizeof(struct flatline_state),
        .every_bucket = 1,
        .check = check,
        .on_event = on_event,
        .on_close = on_close,
};
