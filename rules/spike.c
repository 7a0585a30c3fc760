/*
 * spike.c: volume of a group key against its seasonal baseline
 * (BASELINES.md sections 1.2, 1.3 and 1.7).
 *
 * Expected count per bucket: mu = max(floor, level_eff * hod[h] * dow[d]).
 * level is the key's exponentially weighted deseasonalised rate (14-day
 * half-life, a running mean while young, shrunk toward its category's mean
 * per-key rate with the weight of 10 events), updated with winsorised counts so
 * a spike cannot inflate its own baseline, and frozen while an incident is
 * open. Seasonal factors are pooled per category (a SKU has too few events
 * to learn 31 factors). The test is the negative-binomial upper tail on the
 * last bucket and on the long window, Bonferroni over the two; it fires only
 * when the guards hold too: a minimum count, a minimum ratio and excess, and
 * warmth (else the cold-start path: alpha/10 and twice the minimum count).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/rule.h>
#include <voca/tz.h>
#include <voca/xalloc.h>

#define RING         24
#define MIDS         2          /* mid windows at most */
#define SCALES       (MIDS + 2) /* the last bucket, the mid windows, the long window */
#define MU_FLOOR     0.02
#define PRIOR_EVENTS 10.0
#define MIN_HISTORY  24   /* buckets of key and category history before any test */
#define OUTLIER_P    1e-3 /* buckets this unlikely do not update the dispersion */
#define PHI_AFTER    48   /* buckets before dispersion is learned */
#define MAX_CATS     1024
#define CAT_NAME     48
#define HOUR_MS      3600000LL
#define DAY_MS       86400000LL

struct spike_config {
	struct rule_common common;
	int64_t window_ms;
	struct conf_list mid_window;
	double alpha;
	double clear_p;
	int64_t min_count;
	double min_ratio;
	double min_excess;
	int64_t warmup_ms;
	int64_t warmup_events;
	int64_t half_life_ms;
	double season_gamma;
	char *time_zone;
	/* compiled */
	struct tz_clock clock; /* time_zone's */
	int win;               /* long window in buckets */
	/* the scales tested, in buckets: 1, the mid windows (shortest first),
	 * win; the state's sums are of len[1] to len[ns - 1] */
	int len[SCALES];
	int ns;
	double alpha_level;
	double mean_until; /* buckets learned as a running mean first: 1 / alpha_level */
	int64_t warmup_buckets;
};

/*
 * What outlives a quiet spell comes first (idle_size): a key quiet for the
 * long window sleeps with only that; its ring is all zeros then, except mu,
 * which wake recomputes from the level and the category's season.
 */
struct spike_state {
	int64_t last_end;
	float level;
	float phi1, phiw;
	uint32_t buckets, events;
	uint16_t cat;
	uint16_t cur, cur_neg;
	uint8_t head;
	/* the ring of the last RING buckets, with the sums over each window
	 * tested (the mid windows', then the long one's), kept as buckets come
	 * and go, not summed each close; the expectations' sums are exact (see
	 * window_sums) */
	uint32_t n_sum[MIDS + 1], neg_sum[MIDS + 1];
	float mu[RING];
	uint16_t n[RING];
	uint8_t neg[RING];
	double mu_sum[MIDS + 1];
};

_Static_assert(sizeof(struct spike_state) <= RULE_MAX_STATE, "spike's state");

/*
 * The layouts before (read by upgrade): the same idle part, then one mid
 * window's and the long window's counts, the rings, and since 2026-11-23
 * their expectations' sums (v2, 240 bytes; v1 ended where they start, 224).
 */
#define SPIKE_IDLE offsetof(struct spike_state, n_sum)

struct spike_state_v2 {
	unsigned char idle[SPIKE_IDLE];
	uint32_t n_mid, n_win, neg_mid, neg_win;
	float mu[RING];
	uint16_t n[RING];
	uint8_t neg[RING];
	double mu_mid, mu_win;
};

_Static_assert(offsetof(struct spike_state_v2, mu_mid) == 224 &&
                       sizeof(struct spike_state_v2) == 240,
               "the layouts saved before");

struct season {
	char name[CAT_NAME];
	float hod[24], dow[7];
	float level;    /* EW deseasonalised events per bucket, all keys */
	int64_t bucket; /* index of the open bucket */
	uint32_t cur, buckets, keys;
};

struct shared {
	const struct spike_config *c;
	struct season *cats;
	size_t n;
};

#define OFF(m) offsetof(struct spike_config, m)

static const struct conf_key keys[] = {
        RULE_COMMON_KEYS(struct spike_config, "1h", "6h"),
        CONF_KEY("mid_window", CONF_STRLIST, OFF(mid_window), "6h", 0, 0, NULL,
                 "middle windows tested too, shorter than window: one (6h) or two "
                 "([6h, 12h]); 0: none"),
        CONF_KEY("window", CONF_DURATION, OFF(window_ms), "24h", 300000, 24 * DAY_MS, NULL,
                 "the long window tested beside the last bucket (at most 24 buckets)"),
        CONF_KEY("alpha", CONF_DOUBLE, OFF(alpha), "2e-6", 0, 1, NULL,
                 "p-value below which a bucket is significant (sized to the fleet)"),
        CONF_KEY("clear_p", CONF_DOUBLE, OFF(clear_p), "0.1", 0, 1, NULL,
                 "hysteresis: while a window after the last firing is above expectation "
                 "at p < clear_p, the incident is not clear (0: off)"),
        CONF_KEY("min_count", CONF_INT, OFF(min_count), "5", 1, 1000000, NULL,
                 "fewest events in the window"),
        CONF_KEY("min_ratio", CONF_DOUBLE, OFF(min_ratio), "2", 1, 1000, NULL,
                 "observed / expected at least this"),
        CONF_KEY("min_excess", CONF_DOUBLE, OFF(min_excess), "5", 0, 1000000, NULL,
                 "observed - expected at least this"),
        CONF_KEY("warmup", CONF_DURATION, OFF(warmup_ms), "7d", 0, 90 * DAY_MS, NULL,
                 "history a key needs before the normal test applies"),
        CONF_KEY("warmup_events", CONF_INT, OFF(warmup_events), "30", 0, 1000000, NULL,
                 "events a key needs before the normal test applies"),
        CONF_KEY("half_life", CONF_DURATION, OFF(half_life_ms), "14d", HOUR_MS, 365 * DAY_MS, NULL,
                 "how fast the level forgets"),
        CONF_KEY("time_zone", CONF_STR, OFF(time_zone), NULL, 0, 0, NULL,
                 "the IANA zone whose hours and weekdays the season follows; unset: the "
                 "top-level time_zone"),
        CONF_KEY("season_gamma", CONF_DOUBLE, OFF(season_gamma), "0.05", 0, 1, NULL,
                 "learning rate of the category's hour-of-day and day-of-week factors"),
        CONF_END,
};

static int check(void *config, char *err, size_t errlen)
{
	struct spike_config *c = config;
	int64_t b = c->common.bucket_ms;

	if (rule_common_check(&c->common, err, errlen) < 0)
		return -1;
	if (tz_clock_init(&c->clock, c->time_zone, err, errlen) < 0)
		return -1;
	if ((c->win = rule_window_buckets(&c->common, c->window_ms, RING, err, errlen)) < 0)
		return -1;
	c->len[0] = 1;
	c->ns = 1;
	for (size_t i = 0; i < c->mid_window.n; i++) {
		int64_t ms;

		if (conf_parse_duration(c->mid_window.v[i], &ms) < 0) {
			snprintf(err, errlen, "mid_window: '%s' is not a duration (such as 6h)",
			         c->mid_window.v[i]);
			return -1;
		}
		if (ms == 0 && c->mid_window.n == 1)
			break; /* none */
		if (ms <= 0 || ms % b || ms >= c->window_ms ||
		    (c->ns > 1 && ms / b <= c->len[c->ns - 1])) {
			snprintf(err, errlen,
			         "mid_window must be whole buckets, shorter than window, each "
			         "longer than the one before");
			return -1;
		}
		if (c->ns == 1 + MIDS) {
			snprintf(err, errlen, "mid_window: at most %d windows", MIDS);
			return -1;
		}
		c->len[c->ns++] = (int)(ms / b);
	}
	c->len[c->ns++] = c->win;
	c->alpha_level = 1 - pow(2, -(double)b / (double)c->half_life_ms);
	c->mean_until = 1 / c->alpha_level;
	c->warmup_buckets = c->warmup_ms / b;
	return 0;
}

static void *new_shared(const void *config)
{
	struct shared *sh = xcalloc(1, sizeof(*sh));

	sh->c = config;
	sh->cats = xcalloc(MAX_CATS, sizeof(*sh->cats));
	return sh;
}

static void free_shared(void *p)
{
	struct shared *sh = p;

	free(sh->cats);
	free(sh);
}

/* The hour and weekday (0 Monday) at t on the wall clock of the rule's zone. */
static void slot(const struct spike_config *c, int64_t t, int *hour, int *dow)
{
	tz_hour_weekday(tz_clock_local(&c->clock, t), hour, dow);
}

static double season_factor(const struct spike_config *c, const struct season *s, int64_t start_ms)
{
	int h, d;

	slot(c, start_ms, &h, &d);
	return (double)s->hod[h] * s->dow[d];
}

/* The categories in use, as they are: a season is plain data. */
static void save_shared(const void *p, struct buf *out)
{
	const struct shared *sh = p;

	buf_add(out, sh->cats, sh->n * sizeof(*sh->cats));
}

static int load_shared(void *p, const void *blob, size_t len)
{
	struct shared *sh = p;

	if (len % sizeof(*sh->cats) || len / sizeof(*sh->cats) > MAX_CATS)
		return -1;
	memcpy(sh->cats, blob, len);
	sh->n = len / sizeof(*sh->cats);
	return 0;
}

static uint16_t category_index(struct shared *sh, const char *name)
{
	for (size_t i = 0; i < sh->n; i++)
		if (strncmp(sh->cats[i].name, name, CAT_NAME - 1) == 0)
			return (uint16_t)i;
	if (sh->n == MAX_CATS)
		return MAX_CATS - 1; /* beyond this many categories they share a profile */
	struct season *s = &sh->cats[sh->n];

	snprintf(s->name, sizeof(s->name), "%s", name);
	for (int i = 0; i < 24; i++)
		s->hod[i] = 1;
	for (int i = 0; i < 7; i++)
		s->dow[i] = 1;
	s->bucket = -1;
	return (uint16_t)sh->n++;
}

/* Closes a category's bucket: learns its level and seasonal factors. */
static void season_close(const struct spike_config *c, struct season *s, int64_t start_ms)
{
	double x = s->cur, f = season_factor(c, s, start_ms), g = c->season_gamma;
	double a = s->buckets < c->mean_until ? 1.0 / (s->buckets + 1) : c->alpha_level;
	int h, d;

	slot(c, start_ms, &h, &d);
	if (s->level > 0 && s->buckets >= 24) {
		double ratio = x / s->level, sum = 0;
		/* A factor's first visits are averaged (weight 1/n), then blended at
		 * g: blended at g from the flat start, a weekday's factor (one visit
		 * a week) was a fifth of the way to its value after a month, and the
		 * busiest keys' weekend evenings looked like spikes. */
		double days = (double)(s->buckets - 24) / 24;
		double gh = fmax(g, 1 / (days + 3)), gd = fmax(g, 1 / (days / 7 + 3)) / 24;

		s->hod[h] += (float)(gh * (ratio / s->dow[d] - s->hod[h]));
		s->dow[d] += (float)(gd * (ratio / s->hod[h] - s->dow[d]));
		s->hod[h] = fminf(fmaxf(s->hod[h], 0.05f), 20);
		s->dow[d] = fminf(fmaxf(s->dow[d], 0.05f), 20);
		for (int i = 0; i < 24; i++)
			sum += s->hod[i];
		for (int i = 0; i < 24; i++)
			s->hod[i] = (float)(s->hod[i] * 24 / sum);
		sum = 0;
		for (int i = 0; i < 7; i++)
			sum += s->dow[i];
		for (int i = 0; i < 7; i++)
			s->dow[i] = (float)(s->dow[i] * 7 / sum);
	}
	s->level += (float)(a * (x / f - s->level));
	s->buckets++;
	s->cur = 0;
}

/* Counts an event into its category's bucket, closing the ones before it. */
static void season_count(const struct spike_config *c, struct season *s, int64_t ts)
{
	int64_t b = c->common.bucket_ms, idx = ts / b;

	if (s->bucket < 0)
		s->bucket = idx;
	if (idx > s->bucket) {
		/* At most a week of empty buckets is worth learning from. */
		int64_t from = idx - s->bucket > 168 ? idx - 168 : s->bucket;

		for (int64_t i = from; i < idx; i++)
			season_close(c, s, i * b);
		s->bucket = idx;
	}
	if (idx == s->bucket)
		s->cur++;
}

static enum rule_verdict on_event(struct rule_ctx *ctx, const struct event *ev, struct firing *f)
{
	struct spike_state *st = ctx->state;
	struct shared *sh = ctx->shared;

	(void)f;
	if (st->events == 0 && st->buckets == 0) {
		st->cat = category_index(sh, ev->category);
		sh->cats[st->cat].keys++;
		st->phi1 = st->phiw = 1;
	}
	season_count(sh->c, &sh->cats[st->cat], ev->ts_ms);
	if (st->cur < UINT16_MAX)
		st->cur++;
	if (ev->sentiment == SENTIMENT_NEGATIVE && st->cur_neg < UINT16_MAX)
		st->cur_neg++;
	st->events++;
	return RULE_QUIET;
}

/* Expected events in a bucket whose season factor is sf. */
static double expected_sf(const struct spike_state *st, const struct season *s, double sf,
                          double *level_eff)
{
	/* The prior is worth PRIOR_EVENTS events: it carries a sparse key and fades
	 * for a busy one (weighting it in buckets halved a bestseller's baseline). */
	double prior = s->keys ? s->level / s->keys : 0;
	double wk = st->events / (st->events + PRIOR_EVENTS);

	*level_eff = wk * st->level + (1 - wk) * prior;
	return fmax(MU_FLOOR, *level_eff * sf);
}

static double expected(const struct spike_config *c, const struct spike_state *st,
                       const struct season *s, int64_t start_ms, double *level_eff)
{
	return expected_sf(st, s, season_factor(c, s, start_ms), level_eff);
}

static void explain(struct rule_ctx *ctx, const struct spike_state *st, const struct season *s,
                    int64_t start_ms, int64_t end_ms, int w, double x, double m, double phi,
                    double p, double alpha, double level_eff, int warm, int neg, struct firing *f)
{
	static const char *const days[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
	                                   "Friday", "Saturday", "Sunday"};
	const struct spike_config *c = ctx->config;
	int64_t wstart = end_ms - (int64_t)w * c->common.bucket_ms;
	cJSON *why = cJSON_CreateObject(), *o;
	char how[32], scale[32];
	int h, d;

	slot(c, start_ms, &h, &d);
	snprintf(how, sizeof(how), "%s %02d:00", days[d], h);
	if (w * c->common.bucket_ms % DAY_MS == 0)
		snprintf(scale, sizeof(scale), "%lldd",
		         (long long)(w * c->common.bucket_ms / DAY_MS));
	else if (w * c->common.bucket_ms % HOUR_MS == 0)
		snprintf(scale, sizeof(scale), "%lldh",
		         (long long)(w * c->common.bucket_ms / HOUR_MS));
	else
		snprintf(scale, sizeof(scale), "%lldm",
		         (long long)(w * c->common.bucket_ms / 60000));
	cJSON_AddStringToObject(rule_why_window(why, wstart, end_ms), "scale", scale);
	cJSON_AddNumberToObject(why, "observed", x);
	cJSON_AddNumberToObject(why, "expected", round(m * 100) / 100);
	o = cJSON_AddObjectToObject(why, "expected_breakdown");
	cJSON_AddNumberToObject(o, "level_per_bucket", round(level_eff * 1000) / 1000);
	cJSON_AddNumberToObject(o, "key_level", st->level); /* frozen while open */
	cJSON_AddNumberToObject(o, "season_factor",
	                        round(season_factor(c, s, start_ms) * 100) / 100);
	cJSON_AddStringToObject(o, "how_slot", how);
	cJSON_AddStringToObject(o, "pooled_over", s->name);
	cJSON_AddNumberToObject(why, "ratio", round(x / m * 10) / 10);
	cJSON_AddNumberToObject(why, "excess", round((x - m) * 10) / 10);
	cJSON_AddNumberToObject(why, "dispersion_phi", round(phi * 100) / 100);
	cJSON_AddStringToObject(
	        why, "test", phi > 1.0001 ? "negative-binomial upper tail" : "Poisson upper tail");
	cJSON_AddNumberToObject(why, "p_value", p);
	cJSON_AddNumberToObject(why, "alpha", alpha);
	rule_why_guard(why, "min_count", "%.0f>=%lld ok", x,
	               (long long)(warm ? c->min_count : 2 * c->min_count));
	rule_why_guard(why, "lift", "%.1f>=%g ok", x / m, c->min_ratio);
	rule_why_guard(why, "excess", "%.1f>=%g ok", x - m, c->min_excess);
	/* Read in a ticket as "warmup done, 300 buckets ok". */
	rule_why_guard(why, "warmup",
	               warm ? "done, %u buckets ok"
	                    : "not done, %u buckets: alpha/10, 2 x min_count ok",
	               st->buckets);
	cJSON_AddNumberToObject(why, "baseline_age_h",
	                        (double)st->buckets * (double)c->common.bucket_ms / HOUR_MS);
	o = cJSON_AddObjectToObject(why, "neg_rate");
	cJSON_AddNumberToObject(o, "k", neg);
	cJSON_AddNumberToObject(o, "n", x);
	f->why = why;
	f->window_start_ms = wstart;
	f->window_end_ms = end_ms;
	/* One bucket: "in the last 1h vs 4.1 expected for a Friday 13:00". More:
	 * "in the 6h to Sunday 01:00 vs 9.9 expected" (the last bucket's slot
	 * alone read as if 9.9 were expected in that hour). */
	if (w == 1) {
		snprintf(
		        f->summary, sizeof(f->summary),
		        "%s: %.0f events in the last %s vs %.1f expected for a %s (%.1fx, p=%.1g); "
		        "%d/%.0f negative",
		        ctx->key, x, scale, m, how, x / m, p, neg, x);
	} else {
		slot(c, end_ms, &h, &d);
		snprintf(f->summary, sizeof(f->summary),
		         "%s: %.0f events in the %s to %s %02d:%02d vs %.1f expected (%.1fx, "
		         "p=%.1g); %d/%.0f negative",
		         ctx->key, x, scale, days[d], h,
		         (int)(tz_clock_local(&c->clock, end_ms) / 60000 % 60), m, x / m, p, neg,
		         x);
	}
}

/*
 * The window sums from the ring, newest bucket first, for a key woken or
 * read from the file. Kept as running sums (a bucket added as it
 * comes, taken off as it leaves the window) they are exactly these: the
 * counts are integers, and an expectation is a float of at least
 * MU_FLOOR, so a multiple of 2^-29, and while the sums stay under
 * EXACT_SUM every sum and difference of them is a double without rounding,
 * in any order. Past it (a key expecting a million events a day) the sums
 * are taken afresh each close.
 */
#define EXACT_SUM 1048576.0

static void window_sums(const struct spike_config *c, struct spike_state *st)
{
	uint32_t n = 0, neg = 0;
	double m = 0;
	int k = st->head, done = 0;

	for (int j = 1; j < c->ns; j++) {
		for (; done < c->len[j]; done++) {
			k = k == 0 ? RING - 1 : k - 1;
			n += st->n[k];
			neg += st->neg[k];
			m += st->mu[k];
		}
		st->n_sum[j - 1] = n;
		st->neg_sum[j - 1] = neg;
		st->mu_sum[j - 1] = m;
	}
}

/* Is scale j (of len buckets) tested while the key has w buckets of history? */
static inline int scale_used(const int *scales, int j, int w)
{
	return scales[j] >= 1 && (j == 0 || scales[j] > scales[j - 1]) && scales[j] <= w;
}

/*
 * Is a firing on the last bucket alone, with the key's incident open, a new
 * episode? An incident stays open while its long window still holds the
 * surge that opened it (a day, for 24 h), so a fresh spike the next
 * morning only updated it: told to nobody before the next re-alert, or
 * ever, rolled up into its category's surge. BASELINES.md 1.6's edge
 * trigger re-arms after p > clear_p for R buckets: here the resolve_after
 * buckets before this one, taken as one window, clear (and wholly after
 * the opening), so this is an edge of its own. The ring holds them: no
 * state of its own, the same after a restart. Returns how many buckets were
 * clear before it, or 0.
 */
static int again(const struct spike_config *c, const struct spike_state *st, int last,
                 int64_t end_ms, int64_t opened_ms, int nscales, double m_long)
{
	int64_t b = c->common.bucket_ms, r = c->common.resolve_after_ms / b;
	int quiet = r < 1 ? 1 : r > RING - 1 ? RING - 1 : (int)r;
	double x = 0, m = 0, phi = st->phi1, clear = c->clear_p > 0 ? c->clear_p : 0.1;

	if (end_ms - (int64_t)(quiet + 1) * b < opened_ms || st->buckets < (uint32_t)quiet + 1)
		return 0;
	for (int i = 1; i <= quiet; i++) {
		int k = (last - i + RING) % RING;

		x += st->n[k];
		m += st->mu[k];
	}
	/* The window's dispersion as the mid windows take it (negative binomial 2). */
	if (st->phiw > 1 && m_long > 0)
		phi = fmax(phi, 1 + (st->phiw - 1) * m / m_long);
	return x <= m || nscales * nb_upper_tail(x, m, phi) >= clear ? quiet : 0;
}

static enum rule_verdict on_close(struct rule_ctx *ctx, int64_t end_ms, struct firing *f)
{
	const struct spike_config *c = ctx->config;
	struct spike_state *st = ctx->state;
	struct shared *sh = ctx->shared;
	struct season *s = &sh->cats[st->cat];
	int64_t start = end_ms - c->common.bucket_ms;
	double sf = season_factor(c, s, start), level_eff, mu = expected_sf(st, s, sf, &level_eff);
	double x = st->cur;
	double xw = 0, mw = 0, p = 1;
	int w;
	enum rule_verdict v = RULE_QUIET;

	uint8_t neg_now = (uint8_t)(st->cur_neg > 255 ? 255 : st->cur_neg);
	float mu_now = (float)mu;

	/* Each window's sums: the bucket coming in, the one leaving. */
	for (int j = 1; j < c->ns; j++) {
		int out = st->head - c->len[j];

		out += out < 0 ? RING : 0;
		st->n_sum[j - 1] += (uint32_t)st->cur - st->n[out];
		st->neg_sum[j - 1] += (uint32_t)neg_now - st->neg[out];
		st->mu_sum[j - 1] += (double)mu_now - st->mu[out];
	}
	st->n[st->head] = st->cur;
	st->neg[st->head] = neg_now;
	st->mu[st->head] = mu_now;
	int last = st->head; /* the bucket just closed */

	st->head = (uint8_t)(st->head + 1 == RING ? 0 : st->head + 1);
	if (st->mu_sum[c->ns - 2] >= EXACT_SUM)
		window_sums(c, st);
	w = c->win < (int)st->buckets + 1 ? c->win : (int)st->buckets + 1;

	int warm = st->buckets >= c->warmup_buckets && st->events >= c->warmup_events;
	double alpha = warm ? c->alpha : c->alpha / 10;
	double min_count = warm ? (double)c->min_count : 2.0 * (double)c->min_count;
	/* No baseline, no spike: a key (and its category) first learn for a day. */
	int testable = st->buckets >= MIN_HISTORY && s->buckets >= MIN_HISTORY;

	/*
	 * The scales tested: the last bucket, the mid windows and the long one
	 * (Bonferroni over those in use). A window counts only once its
	 * expectations were learned: each bucket in it expected with a day
	 * (MIN_HISTORY) of the key's history at least. (Twice its length was
	 * the rule: a 12 h window was tested at the key's 24th hour, its
	 * buckets expected from the key's first night, and fired on the first
	 * day's evening.) The tail only
	 * matters well above the mean (an outlier is p < 1e-3, about three
	 * standard deviations up); most windows are not, and skip it. The ring
	 * holds zeros before the key's first bucket, so the window sums are
	 * those of the buckets it has.
	 */
	const int *scales = c->len, ns = c->ns, L = ns - 1; /* L: the long window */
	int nscales = 0, best = -1, outlier = 0, learned[SCALES] = {0};
	double X[SCALES] = {st->n[last]}, M[SCALES] = {st->mu[last]}, P[SCALES], PHI[SCALES];
	int NEG[SCALES] = {st->neg[last]};

	/* Nothing in any window (every window lies in the long one): no tail to
	 * take, nothing to fire or hold; the learning below only needs the long
	 * window's expectation. Most closes are these, a quiet key's empty
	 * buckets. */
	int empty = x == 0 && st->n_sum[ns - 2] == 0;

	for (int j = 1; j < ns; j++) {
		X[j] = st->n_sum[j - 1];
		NEG[j] = (int)st->neg_sum[j - 1];
		M[j] = st->mu_sum[j - 1];
	}
	if (empty && !scale_used(scales, L, w))
		M[L] = 0;
	for (int j = 0; j < ns && !empty; j++) {
		int len = scales[j];

		P[j] = 1;

		if (!scale_used(scales, j, w)) {
			X[j] = M[j] = NEG[j] = 0;
			continue;
		}
		nscales++;
		learned[j] = len == 1 || st->buckets >= (uint32_t)(MIN_HISTORY + len);
		double phi = len == 1 ? st->phi1 : st->phiw;

		/* The long window's excess variance is mostly the expectation's own
		 * error, which grows with the mean squared (negative binomial 2):
		 * phiw = 1 + M/k at the long window is 1 + M'/k at a shorter one. */
		if (j > 0 && j < L && phi > 1 && M[L] > 0)
			phi = 1 + (phi - 1) * M[j] / M[L];
		PHI[j] = phi;

		/* (A window without events skips this: most closes are of quiet buckets.) */
		if (X[j] > 0 && learned[j] && X[j] > M[j] + 3 * sqrt(phi * M[j]))
			P[j] = nb_upper_tail(X[j], M[j], phi);
		outlier |= P[j] < OUTLIER_P;
		if (best < 0 || P[j] < P[best])
			best = j;
	}
	xw = X[L] > 0 || M[L] > 0 ? X[L] : X[0];
	mw = X[L] > 0 || M[L] > 0 ? M[L] : M[0];
	if (testable && best >= 0)
		p = fmin(1, nscales * P[best]);
	if (best >= 0 && p < alpha && X[best] >= min_count && X[best] / M[best] >= c->min_ratio &&
	    X[best] - M[best] >= c->min_excess) {
		/* The last bucket fires on its own, whichever window tells most... */
		int alone = scale_used(scales, 0, w) && nscales * P[0] < alpha &&
		            X[0] >= min_count && X[0] / M[0] >= c->min_ratio &&
		            X[0] - M[0] >= c->min_excess;
		/* ...after a clear spell in an open incident: a new episode, told
		 * by its own bucket, not by the window still holding the old one. */
		int clear = alone && ctx->incident_open
		                    ? again(c, st, last, end_ms, ctx->opened_ms, nscales, M[L])
		                    : 0;
		int j = clear ? 0 : best;

		explain(ctx, st, s, start, end_ms, scales[j], X[j], M[j], PHI[j],
		        fmin(1, nscales * P[j]), alpha, level_eff, warm, NEG[j], f);
		v = RULE_FIRE;
		if (clear) {
			size_t used = strlen(f->summary);
			int64_t min = clear * c->common.bucket_ms / 60000;

			f->again = 1;
			cJSON_AddNumberToObject(f->why, "again_after_clear_buckets", clear);
			snprintf(f->summary + used, sizeof(f->summary) - used,
			         min % 60 ? "; again, after %lld min clear"
			                  : "; again, after %lld h clear",
			         (long long)(min % 60 ? min : min / 60));
		}
	}
	/* Hysteresis (BASELINES.md 1.6): an open incident is not clear while a
	 * window lying wholly after its last firing is still above expectation
	 * at p < clear_p (a window holding the surge itself would keep it open
	 * for a day after a one-hour spike). */
	for (int j = 0; j < ns && v == RULE_QUIET && ctx->incident_open && testable && !empty;
	     j++) {
		if (!learned[j] || end_ms - scales[j] * c->common.bucket_ms < ctx->fired_ms ||
		    X[j] <= M[j])
			continue;
		if (nscales * (P[j] < 1 ? P[j] : nb_upper_tail(X[j], M[j], PHI[j])) < c->clear_p)
			v = RULE_HOLD;
	}
	/* Learn, unless this bucket fired or an incident is open: a surge must
	 * stay abnormal until it ends, not become the new normal. */
	if (!ctx->incident_open && v != RULE_FIRE) {
		double clamp = x > 0 ? fmin(x, mu + 4 * sqrt(st->phi1 * mu) + 1) : 0;
		double a = st->buckets < c->mean_until ? 1.0 / (st->buckets + 1) : c->alpha_level;
		double r1 = (x - mu) * (x - mu) / mu, rw = mw > 0 ? (xw - mw) * (xw - mw) / mw : 1;
		double aphi = fmax(c->alpha_level, 1.0 / (st->buckets + 2));

		st->level += (float)(a * (clamp / sf - st->level));
		/* Dispersion means something only once the expectation does: residuals
		 * against a level still learning from zero would inflate phi for weeks. */
		if (st->buckets >= (uint32_t)c->warmup_buckets && st->buckets >= PHI_AFTER &&
		    !outlier) {
			st->phi1 = (float)fmax(1, (1 - aphi) * st->phi1 +
			                                  aphi * fmin(r1, 25 * st->phi1));
			st->phiw = (float)fmax(1, (1 - aphi) * st->phiw +
			                                  aphi * fmin(rw, 25 * st->phiw));
		}
	}
	st->buckets++;
	st->cur = st->cur_neg = 0;
	st->last_end = end_ms;
	return v;
}

static int64_t quiet_buckets(const void *config)
{
	return ((const struct spike_config *)config)->win;
}

/* A key wakes from sleep: its counts are zero; the expectations are recomputed. */
static void wake(struct rule_ctx *ctx)
{
	const struct spike_config *c = ctx->config;
	struct spike_state *st = ctx->state;
	struct shared *sh = ctx->shared;
	int n = st->buckets < RING ? (int)st->buckets : RING;
	double level_eff;

	for (int i = 1; i <= n; i++)
		st->mu[(st->head - i + RING) % RING] = (float)expected(
		        c, st, &sh->cats[st->cat], st->last_end - (int64_t)i * c->common.bucket_ms,
		        &level_eff);
	window_sums(c, st);
}

/* State saved in an older layout: the same rings (restored() sums them). */
static size_t upgrade(void *state, const void *old, size_t len)
{
	struct spike_state *st = state;
	const unsigned char *o = old;

	if (len != offsetof(struct spike_state_v2, mu_mid) && len != sizeof(struct spike_state_v2))
		return 0;
	memcpy(st, o, SPIKE_IDLE);
	memcpy(st->mu, o + offsetof(struct spike_state_v2, mu), sizeof(st->mu));
	memcpy(st->n, o + offsetof(struct spike_state_v2, n), sizeof(st->n));
	memcpy(st->neg, o + offsetof(struct spike_state_v2, neg), sizeof(st->neg));
	return sizeof(*st);
}

/*
 * A key's state from the file: the mid windows may not be the ones it was
 * saved with. Their sums are the ring's, and their dispersion is the long
 * window's scaled, so mid_window does not shape the state: a rule moved
 * from [6h] to [6h, 12h] keeps its baselines. (The long window does: phiw
 * is learned at its length, and a key sleeps after it.)
 */
static void restored(void *state, const void *config)
{
	window_sums(config, state);
}

static const char *const shape[] = {"window", "time_zone=UTC", NULL};

const struct rule_kind rule_spike = {
        .name = "spike",
        .shape = shape,
        .keys = keys,
        .config_size = sizeof(struct spike_config),
        .state_size = sizeof(struct spike_state),
        .check = check,
        .new_shared = new_shared,
        .free_shared = free_shared,
        .save_shared = save_shared,
        .load_shared = load_shared,
        .on_event = on_event,
        .on_close = on_close,
        .idle_size = SPIKE_IDLE,
        .upgrade = upgrade,
        .restored = restored,
        .quiet_buckets = quiet_buckets,
        .wake = wake,
};
