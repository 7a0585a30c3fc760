/*
 * flatline.c: a source or key that stops sending (upstream freshness).
 *
 * Each key learns its events per bucket (exponentially weighted, with an
 * hour-of-day profile so a quiet night is not an outage, and a day-of-week
 * one so a quiet weekend is not either). While a key has been silent, the
 * events it was expected to send add up; silence is significant when
 * P(0 events | that expectation) = exp(-sum) < alpha and at least
 * min_expected were due. The engine closes every key's buckets for this
 * kind (a silent key has no events to do it).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <voca/rule.h>
#include <voca/tz.h>

#define HOUR_MS 3600000LL
#define DAY_MS  (24 * HOUR_MS)
#define WARM_MS (7 * DAY_MS) /* history before a key is judged: every weekday seen */

struct flatline_config {
	struct rule_common common;
	double alpha;
	double min_expected;
	int64_t half_life_ms;
	char *time_zone;
	struct tz_clock clock; /* compiled: time_zone's */
	double decay;          /* compiled */
	uint32_t warm;         /* compiled: buckets of WARM_MS */
	double per_hour;       /* compiled: buckets an hour (1 for an hour or longer) */
};

/*
 * The layout before 2026-11-24 ended at last_event (128 bytes). What came
 * after is added at the end, and zeros are its start (no weekday seen, no
 * bucket closed), so the engine reads an older record zero-extended.
 */
struct flatline_state {
	float level;   /* EW events per bucket, deseasonalised */
	float hod[24]; /* hour-of-day factors, mean 1 */
	float due;     /* events expected since the silence began */
	uint32_t cur, buckets, silent;
	int64_t last_event;
	int64_t closed;      /* the end of the last bucket closed */
	float dow[7];        /* each weekday's volume over the level's, for days seen */
	float day_x, day_mu; /* closed's local day so far: events learnt, level x hod */
	uint8_t seen[7];     /* days of each weekday learnt (at most 255) */
	float day_due;       /* what of due that day's buckets added */
};

_Static_assert(offsetof(struct flatline_state, closed) == 128, "the layout saved before");

#define OFF(m) offsetof(struct flatline_config, m)

static const struct conf_key keys[] = {
        RULE_COMMON_KEYS(struct flatline_config, "1h", "1h"),
        CONF_KEY("alpha", CONF_DOUBLE, OFF(alpha), "1e-6", 0, 1, NULL,
                 "P(no events | expected) below which silence is an outage"),
        CONF_KEY("min_expected", CONF_DOUBLE, OFF(min_expected), "10", 0, 1e9, NULL,
                 "fewest events that must have been due during the silence"),
        CONF_KEY("half_life", CONF_DURATION, OFF(half_life_ms), "7d", HOUR_MS, 365 * 86400000LL,
                 NULL, "how fast the expected rate forgets"),
        CONF_KEY("time_zone", CONF_STR, OFF(time_zone), NULL, 0, 0, NULL,
                 "the IANA zone whose hours and weekdays the source keeps (its weekend); "
                 "unset: the top-level time_zone"),
        CONF_END,
};

static int check(void *config, char *err, size_t errlen)
{
	struct flatline_config *c = config;

	if (rule_common_check(&c->common, err, errlen) < 0)
		return -1;
	if (tz_clock_init(&c->clock, c->time_zone, err, errlen) < 0)
		return -1;
	c->decay = 1 - pow(2, -(double)c->common.bucket_ms / (double)c->half_life_ms);
	c->warm = (uint32_t)((WARM_MS + c->common.bucket_ms - 1) / c->common.bucket_ms);
	c->per_hour = c->common.bucket_ms < HOUR_MS ? (double)HOUR_MS / c->common.bucket_ms : 1;
	return 0;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b < 0);
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

/* Whole days of the key's history: each hour's visits so far. */
static double days_seen(const struct flatline_state *st, const struct flatline_config *c)
{
	return (double)((int64_t)st->buckets * c->common.bucket_ms / DAY_MS);
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
static double judged_factor(const struct flatline_state *st, const struct flatline_config *c, int h)
{
	double f = st->hod[h], n = days_seen(st, c) - 1; /* visits so far */

	if (n < 1 || n >= 20 || f >= 1)
		return f;
	return fmax(((n + 1) * f - 1) / n, 0.02);
}

/*
 * The weekday profile: dow[d] is the mean, over the days of weekday d seen,
 * of the day's events over what the level and the hours expected (a running
 * mean for 10 days, then weighted 0.1, about 7 weeks' half-life). A day not
 * yet seen counts as 1; the factors are scaled to a mean of 1.
 */
static double day_scale(const struct flatline_state *st)
{
	double sum = 0;

	for (int d = 0; d < 7; d++)
		sum += st->seen[d] ? st->dow[d] : 1;
	return sum > 0 ? 7 / sum : 1;
}

static double day_factor(const struct flatline_state *st, int d)
{
	return day_scale(st) * (st->seen[d] ? st->dow[d] : 1);
}

/* A seen weekday's factor as judged, before scaling. */
static double judged_seen(const struct flatline_state *st, int d)
{
	double f = st->dow[d], n = st->seen[d];

	return f > 1 && n < 20 ? (1 + n * f) / (n + 1) : f;
}

/*
 * The weekday's factor a silence is judged by: a day quieter than the
 * level as it was seen (a weekend a support desk is closed is 0), a busier
 * one shrunk to 1 as if the flat start were one more day, for its first 20
 * days, so that one busy day does not make the next silent one an outage.
 * A weekday not yet seen is judged as the quietest seen: a key's first day
 * is left out, so a week later that weekday is judged before it is learnt,
 * and a Los Angeles desk's first Sunday evening, expected as a weekday's,
 * fired on 7 of 8 simulated feeds.
 */
static double judged_day(const struct flatline_state *st, int d)
{
	double f = 1;

	if (st->seen[d])
		f = judged_seen(st, d);
	else
		for (int i = 0, any = 0; i < 7; i++)
			if (st->seen[i] && (!any++ || judged_seen(st, i) < f))
				f = judged_seen(st, i);
	return day_scale(st) * f;
}

/*
 * A bucket of another day (the zone's) than the last one closed: the day
 * of the last one is over, and a key older than the day learns its factor
 * from it. A key's first day is left out: its level was still a running
 * mean of a few buckets (a source's first night, at 3 an hour, then its
 * day at 30), and the next Monday was judged 1.65 times as busy as the
 * other days, and a quiet night fired. In the week before a key is judged,
 * a silence that ran through the day is then due what the day's new factor
 * says: a new source's first weekend, silent and due as a weekday, fired
 * at the first empty bucket judged (with 15-minute buckets, Monday 00:15,
 * 193 due in the unit test, 390 in a backtest). Later, a silent day learnt
 * is not taken back out of a silence (a sparse source's outage of days
 * would be found a day later).
 */
static void learn_day(struct flatline_state *st, const struct flatline_config *c)
{
	int64_t last = tz_clock_local(&c->clock, st->closed - 1),
	        began = floor_div(last, DAY_MS) * DAY_MS;
	int h, d;

	tz_hour_weekday(last, &h, &d);
	if (st->day_mu > 0 && (int64_t)st->buckets * c->common.bucket_ms > last + 1 - began) {
		double r = st->day_x / st->day_mu,
		       g = st->seen[d] < 10 ? 1.0 / (st->seen[d] + 1) : 0.1,
		       was = judged_day(st, d);

		st->dow[d] += (float)(g * (r - st->dow[d]));
		if (st->seen[d] < 255)
			st->seen[d]++;
		if (was > 0 && st->buckets <= c->warm) /* the day ended unjudged */
			st->due += (float)(st->day_due * (judged_day(st, d) / was - 1));
	}
	st->day_due = 0;
	st->day_x = st->day_mu = 0;
}

/*
 * The engine replays the last 31 days of a longer silence (time jumps so
 * far only in a backtest, or after the daemon was down): the buckets it
 * left out, from the last one closed to start, were silent too, and what
 * they were due is added as the profile has it (whole weeks at once), so
 * the silence is as long as it was. The level learns nothing from them.
 */
/* What a silent bucket starting at t (UTC) is due, over the level. */
static double due_at(const struct flatline_state *st, const struct flatline_config *c, int64_t t)
{
	int h, d;

	tz_hour_weekday(tz_clock_local(&c->clock, t), &h, &d);
	return judged_factor(st, c, h) * judged_day(st, d);
}

static void add_skipped(struct flatline_state *st, const struct flatline_config *c,
                        int64_t start_ms)
{
	int64_t b = c->common.bucket_ms, n = (start_ms - st->closed) / b, week = 7 * DAY_MS / b;
	double sum = 0;

	/* A week's buckets once, each as many times as the gap holds its slot. */
	for (int64_t i = 0; i < n && i < week; i++)
		sum += due_at(st, c, st->closed + i * b) * (double)(n / week + (i < n % week));
	st->silent += (uint32_t)n;
	st->due += (float)(st->level * sum);
}

static enum rule_verdict on_close(struct rule_ctx *ctx, int64_t end_ms, struct firing *f)
{
	const struct flatline_config *c = ctx->config;
	struct flatline_state *st = ctx->state;
	int64_t start_ms = end_ms - c->common.bucket_ms;
	int64_t lstart = tz_clock_local(&c->clock, start_ms);
	int h, d;
	double fd, mu, a;
	enum rule_verdict v = RULE_QUIET;

	tz_hour_weekday(lstart, &h, &d);
	if (st->closed > 0 && floor_div(tz_clock_local(&c->clock, st->closed - 1), DAY_MS) !=
	                              floor_div(lstart, DAY_MS))
		learn_day(st, c);
	if (st->closed > 0 && start_ms > st->closed)
		add_skipped(st, c, start_ms);
	st->closed = end_ms;
	fd = day_factor(st, d);
	mu = st->level * st->hod[h] * fd;
	if (st->cur > 0) {
		st->silent = 0;
		st->due = st->day_due = 0;
	} else {
		double due = st->level * judged_factor(st, c, h) * judged_day(st, d);

		st->silent++;
		st->due += (float)due;
		st->day_due += (float)due;
	}
	if (st->buckets >= c->warm && st->silent > 0 && st->due >= c->min_expected &&
	    exp(-st->due) < c->alpha) {
		cJSON *why = cJSON_CreateObject();
		char t[48];

		rfc3339_format(st->last_event, t, sizeof(t));
		cJSON_AddStringToObject(why, "last_event", t);
		cJSON_AddNumberToObject(why, "silent_buckets", st->silent);
		cJSON_AddNumberToObject(why, "expected", round(st->due * 10) / 10);
		cJSON_AddNumberToObject(why, "observed", 0);
		cJSON_AddNumberToObject(why, "hour_factor",
		                        round(judged_factor(st, c, h) * 100) / 100);
		cJSON_AddNumberToObject(why, "day_factor", round(judged_day(st, d) * 100) / 100);
		cJSON_AddStringToObject(why, "test", "Poisson P(0 | expected)");
		cJSON_AddNumberToObject(why, "p_value", exp(-st->due));
		cJSON_AddNumberToObject(why, "alpha", c->alpha);
		rule_why_window(why, st->last_event, end_ms);
		rule_why_guard(why, "min_expected", "%.1f>=%g ok", st->due, c->min_expected);
		rule_why_guard(why, "history", "%u>=%u buckets ok", st->buckets, c->warm);
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

		if (st->buckets >= c->warm)
			x = fmin(x, mu + 4 * sqrt(mu) + 1);
		st->day_x += (float)x;
		st->day_mu += st->level * st->hod[h];
		a = st->buckets < 1 / c->decay ? 1.0 / (st->buckets + 1) : c->decay;
		/* Events over what the profile expected (the ratio of their sums),
		 * not each bucket's events over its factors: a sparse source's
		 * event in an hour that had seen few counted as up to 50, and the
		 * Amazon feed's source, at 4 a day, was judged by 17. Weighted by
		 * the day's factor, a weekend a source never sends on teaches the
		 * level nothing. */
		st->level += (float)(a * (x - st->hod[h] * fd * st->level));
		if (st->level > 0 && days_seen(st, c) >= 1) {
			double sum = 0;

			/* A running mean for the first 20 visits of each hour, then EW:
			 * at 5% from the start, nights still looked like days after ten days.
			 * The flat start counts as a visit, a shrinkage a bursty source
			 * needs; judged_factor takes it out of a quiet hour's test. A
			 * visit is a day, its rate shared by the hour's buckets. */
			double g = fmax(0.05, 1.0 / (days_seen(st, c) + 1)) / c->per_hour;

			st->hod[h] += (float)(g * (x / st->level - fd * st->hod[h]));
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

/* The profiles are learnt in the zone's hours and weekdays. */
static const char *const shape[] = {"time_zone=UTC", NULL};

const struct rule_kind rule_flatline = {
        .name = "flatline",
        .keys = keys,
        .config_size = sizeof(struct flatline_config),
        .state_size = sizeof(struct flatline_state),
        .every_bucket = 1,
        .check = check,
        .on_event = on_event,
        .on_close = on_close,
        .shape = shape,
};
