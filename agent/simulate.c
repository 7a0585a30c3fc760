/*
 * simulate.c: `voca simulate` (see simulate.h).
 *
 * The stream: SKUs with Zipf-skewed volumes; a category mix in which praise
 * dominates; hour-of-day and day-of-week seasonality; sentiment, rating,
 * severity and confidence that depend on the category the way an LLM scorer's
 * would; customer text from templates, a few with e-mail addresses and phone
 * numbers (for redaction). Events per hour are Poisson around the seasonal
 * mean, so quiet keys are bursty the way real low-volume streams are.
 *
 * Injected incidents, written to the ground-truth file:
 *   volume_spike    extra negative events for one sku+category, N x its rate
 *   negative_shift  a SKU's negative share up by N points for days
 *   defect_burst    3 high-severity, high-confidence reports of one defect in hours
 *   flatline        one source stops sending for hours
 *   new_topic       a subcategory never seen before appears for a SKU
 *   category_surge  (--campaigns only) one category's negatives 5x on several
 *                   SKUs at once, hours long (a carrier's failure, a bad
 *                   batch of a shared part); every other one lifts one of its
 *                   SKUs 25x (a defect of its own in the middle of it)
 * Incidents start after the first quarter of the span, so baselines have
 * clean history to learn from. The PRNG is xoshiro256** seeded by splitmix64:
 * the same seed gives the same bytes on every machine.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include <voca/event.h>
#include <voca/tz.h>
#include <voca/xalloc.h>

#include "jsonl.h"
#include "simulate.h"

#define HOUR_MS (3600LL * 1000)
#define DAY_MS  (24 * HOUR_MS)

/* ---- PRNG ---- */

struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_u64(struct rng *r)
{
	uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

static double rng_unit(struct rng *r)
{
	return (double)(rng_u64(r) >> 11) * 0x1.0p-53;
}

static int rng_below(struct rng *r, int n)
{
	return (int)(rng_unit(r) * n);
}

static int rng_chance(struct rng *r, double p)
{
	return rng_unit(r) < p;
}

/* Poisson: Knuth's method for small means, a rounded normal for large ones. */
static int rng_poisson(struct rng *r, double mean)
{
	if (mean <= 0)
		return 0;
	if (mean < 30) {
		double l = exp(-mean), p = 1;
		int k = 0;

		do {
			k++;
			p *= rng_unit(r);
		} while (p > l);
		return k - 1;
	}
	double u1 = rng_unit(r), u2 = rng_unit(r);
	double z = sqrt(-2 * log(u1 > 0 ? u1 : 1e-300)) * cos(2 * M_PI * u2);
	long k = lround(mean + sqrt(mean) * z);

	return k < 0 ? 0 : (int)k;
}

/* Index into weights (summing to total) picked in proportion. */
static int pick_cumulative(struct rng *r, const double *cum, int n)
{
	double x = rng_unit(r) * cum[n - 1];
	int lo = 0, hi = n - 1;

	while (lo < hi) {
		int mid = (lo + hi) / 2;

		if (cum[mid] > x)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* ---- the world ---- */

struct category {
	const char *name;
	double share;
	double negative; /* probability of a negative label */
	const char *subs[4];
	const char *owner;
	const char *action;
};

static const struct category categories[] = {
        {"praise", 0.40, 0.00, {"general", "quality", "value", NULL}, NULL, NULL},
        {"product_defect",
         0.09,
         0.80,
         {"stopped_working", "broken_part", "leaking", "overheating"},
         "hardware-quality",
         "Check the batch and open a quality investigation"},
        {"shipping",
         0.11,
         0.75,
         {"late", "damaged_in_transit", "wrong_item", NULL},
         "logistics",
         "Check the carrier and the fulfilment centre for the affected orders"},
        {"sizing",
         0.06,
         0.70,
         {"runs_small", "runs_large", NULL, NULL},
         "merchandising",
         "Review the size chart on the product page"},
        {"packaging",
         0.05,
         0.70,
         {"damaged_box", "excess_packaging", NULL, NULL},
         "logistics",
         "Review the packaging spec with the warehouse"},
        {"billing",
         0.07,
         0.80,
         {"double_charge", "refund_delay", "subscription", NULL},
         "payments",
         "Check the payment provider for failed or duplicate captures"},
        {"usability",
         0.08,
         0.65,
         {"setup", "app_pairing", "instructions", NULL},
         "product-ux",
         "Review the setup flow and the quick-start guide"},
        {"support",
         0.06,
         0.75,
         {"slow_response", "unresolved", NULL, NULL},
         "customer-care",
         "Review the queue's response times"},
        {"feature_request",
         0.04,
         0.10,
         {"integration", "colour_options", NULL, NULL},
         "product",
         NULL},
        {"other", 0.04, 0.40, {"unclassified", NULL, NULL, NULL}, NULL, NULL},
};

#define NCAT       ((int)(sizeof(categories) / sizeof(categories[0])))
#define CAT_DEFECT 1

static const char *const adjectives[] = {"Aero", "Nimbus", "Terra", "Lumen", "Vela",     "Orbit",
                                         "Pico", "Zephyr", "Atlas", "Nova",  "Solstice", "Ember"};
static const char *const nouns[] = {"Kettle", "Blender",  "Headphones", "Backpack", "Lamp",
                                    "Jacket", "Scale",    "Toaster",    "Speaker",  "Router",
                                    "Mug",    "Sneakers", "Charger",    "Tent",     "Vacuum"};

static const char *const texts_negative[NCAT][3] = {
        {"", "", ""},
        {"My %s stopped working after %d days. Very disappointed.",
         "The %s arrived with a cracked part and now it leaks everywhere.",
         "Second %s in a month that overheats and shuts off. Not safe."},
        {"Ordered the %s %d days ago and it still has not arrived.",
         "The %s box was crushed and the item was damaged in transit.",
         "Received the wrong item instead of the %s I ordered."},
        {"The %s runs at least one size small, had to send it back.",
         "Sizing on the %s is way off compared to the chart.",
         "The %s is too large, returning it."},
        {"The %s came in a box three times its size, so wasteful.",
         "Packaging for the %s was torn open when it arrived.",
         "The %s box was soaked and falling apart."},
        {"I was charged twice for the %s. Please refund me.",
         "Still waiting %d days for the refund on my %s.",
         "My subscription for the %s renewed without notice."},
        {"Could not get the %s to pair with the app at all.",
         "The setup instructions for the %s are confusing and incomplete.",
         "Spent %d minutes trying to set up the %s."},
        {"Support took %d days to answer about my %s.",
         "Nobody from support has resolved my %s issue yet.",
         "Chatted with support three times about the %s, still unresolved."},
        {"Would love the %s to integrate with my calendar.", "Wish the %s came in more colours.",
         "The %s needs a timer option."},
        {"Not sure what to make of the %s.", "The %s is fine I guess, nothing special.",
         "Mixed feelings about the %s after %d days."},
};

static const char *const texts_positive[] = {
        "Love the %s, works exactly as described.",
        "The %s is great value, would buy again.",
        "Really happy with my %s after %d days of use.",
        "Five stars: the %s is well made and arrived fast.",
};

static const double hour_of_day[24] = {0.35, 0.25, 0.2,  0.2, 0.25, 0.35, 0.55, 0.8,
                                       1.0,  1.1,  1.15, 1.2, 1.25, 1.2,  1.15, 1.1,
                                       1.1,  1.2,  1.35, 1.5, 1.55, 1.4,  1.0,  0.6};
/* Monday first: weekends are busier for consumer feedback. */
static const double day_of_week[7] = {1.0, 0.95, 0.95, 1.0, 1.05, 1.2, 1.25};

struct sku {
	char id[16];
	char product[48];
	double weight;
};

enum inj_kind {
	INJ_VOLUME_SPIKE,
	INJ_NEGATIVE_SHIFT,
	INJ_DEFECT_BURST,
	INJ_FLATLINE,
	INJ_NEW_TOPIC,
	INJ_CATEGORY_SURGE
};

static const char *const inj_names[] = {"volume_spike", "negative_shift", "defect_burst",
                                        "flatline",     "new_topic",      "category_surge"};

#define SURGE_MAX     8  /* SKUs a category surge lifts */
#define STANDOUT_SIZE 25 /* x rate: a surge's standout */

struct injection {
	enum inj_kind kind;
	int sku, cat;
	const char *source;
	int64_t start_ms, end_ms;
	double size; /* factor, points, or count */
	double baseline_per_hour;
	int injected;            /* events added, flipped or dropped (those the feed shows) */
	double expected;         /* the key's events in the window without it (its rate's sum) */
	int seen, seen_negative; /* the key's events in the window the feed holds */
	/* a spike's, hour by hour (it lasts 24 hours at most): when an ideal
	 * test could have seen it (tests/bench/detect's delay) */
	double hour_expected[24];
	int hour_seen[24];
	int sub; /* defect_burst: the one defect reported, -1 until drawn */
	/* a category surge's SKUs (sku is -1), each with its expectation and
	 * the events the feed holds in the window, as a spike's; standout: the
	 * member lifted STANDOUT_SIZE x instead (-1: none) */
	int nmembers, members[SURGE_MAX], member_seen[SURGE_MAX], standout;
	double member_expected[SURGE_MAX];
};

struct sim {
	struct rng rng;
	uint64_t seed;
	int64_t start_ms;
	int days, nskus, ninj, ncampaigns; /* ninj counts the campaigns, last */
	double per_day, invalid;
	struct sku *skus;
	double *sku_cum, cat_cum[NCAT], sku_total;
	struct injection *inj;
	struct jsonl_out *out;
	char publisher[32];
	uint64_t seq, serial, events, duplicates, revisions, invalid_n[6];
	const char *time_zone; /* whose wall clock the seasons follow (UTC) */
	struct tz_clock clock;
	double weekend; /* Saturday's and Sunday's volume, times theirs (1) */
};

/* The seasons at ms, on the wall clock of --time-zone (a business's own). */
static double seasonal(const struct sim *s, int64_t ms)
{
	int hour, dow;

	tz_hour_weekday(tz_clock_local(&s->clock, ms), &hour, &dow);
	return hour_of_day[hour] * day_of_week[dow] * (dow >= 5 ? s->weekend : 1);
}

static double seasonal_mean(const struct sim *s)
{
	double h = 0, d = 0;

	for (int i = 0; i < 24; i++)
		h += hour_of_day[i];
	for (int i = 0; i < 7; i++)
		d += day_of_week[i] * (i >= 5 ? s->weekend : 1);
	return (h / 24) * (d / 7);
}

/* Expected events per hour for one sku+category (cat < 0: all categories). */
static double key_rate(const struct sim *s, int sku, int cat, int64_t ms)
{
	double r = s->per_day / 24 * seasonal(s, ms) / seasonal_mean(s) * s->skus[sku].weight /
	           s->sku_total;

	return cat < 0 ? r : r * categories[cat].share;
}

static void build_world(struct sim *s)
{
	double c = 0;

	s->skus = xcalloc((size_t)s->nskus, sizeof(*s->skus));
	s->sku_cum = xcalloc((size_t)s->nskus, sizeof(double));
	for (int i = 0; i < s->nskus; i++) {
		struct sku *k = &s->skus[i];

		snprintf(k->id, sizeof(k->id), "SKU-%04d", 1000 + i);
		snprintf(k->product, sizeof(k->product), "%s %s %d",
		         adjectives[rng_below(&s->rng, 12)], nouns[rng_below(&s->rng, 15)],
		         1 + rng_below(&s->rng, 9));
		k->weight = 1.0 / pow(i + 1, 1.1); /* Zipf: a few SKUs have most volume */
		s->sku_total += k->weight;
		s->sku_cum[i] = s->sku_total;
	}
	for (int i = 0; i < NCAT; i++) {
		c += categories[i].share;
		s->cat_cum[i] = c;
	}
}

/* SKU whose all-category rate at a typical hour is within [lo, hi] per hour. */
static int sku_with_rate(struct sim *s, double lo, double hi)
{
	int tries = 0, i;

	do {
		i = rng_below(&s->rng, s->nskus);
		double r = s->per_day / 24 * s->skus[i].weight / s->sku_total;

		if (r >= lo && r <= hi)
			return i;
	} while (++tries < 10000);
	return 0;
}

/* Does an earlier flatline than the i-th lie within a day of a silence starting at start? */
static int flatline_near(const struct sim *s, int i, int64_t start)
{
	for (int k = 0; k < i; k++)
		if (s->inj[k].kind == INJ_FLATLINE && start < s->inj[k].end_ms + DAY_MS &&
		    start + 8 * HOUR_MS + DAY_MS > s->inj[k].start_ms)
			return 1;
	return 0;
}

/* An injection's first hour: on the hour, from `from` to room later. */
static int64_t draw_start(struct sim *s, int64_t from, int64_t room)
{
	int64_t t = from + (room > 0 ? (int64_t)(rng_unit(&s->rng) * (double)room) : 0);

	return t - t % HOUR_MS;
}

/*
 * The c-th category surge: its category's busiest SKUs are those whose key
 * (sku+category) sees 0.3-20 events at a typical hour; it lifts 5 to 8 of
 * them (fewer if fewer qualify; the busiest 8 if not 3 do) for 6 or 12
 * hours. Every other surge lifts one of them 25x: a problem of its own in
 * the middle of the surge, which the roll-up must not mute. Surges of one
 * category are three days apart at least: closer, the second finds the
 * first's incidents open, and the report cannot tell them apart.
 */
static void plan_campaign(struct sim *s, int i, int c, int64_t from, int64_t room)
{
	static const int cats[] = {CAT_DEFECT, 2, 4, 5};
	struct injection *j = &s->inj[i];
	int pool[4 * SURGE_MAX], n = 0, want, near;

	j->kind = INJ_CATEGORY_SURGE;
	j->sku = -1;
	j->cat = cats[rng_below(&s->rng, 4)];
	for (int tries = 0; tries < 100; tries++) {
		j->start_ms = draw_start(s, from, room);
		near = 0;
		for (int k = 0; k < i; k++)
			near |= s->inj[k].kind == INJ_CATEGORY_SURGE && s->inj[k].cat == j->cat &&
			        llabs(s->inj[k].start_ms - j->start_ms) < 3 * DAY_MS;
		if (!near)
			break;
	}
	j->end_ms = j->start_ms + (rng_chance(&s->rng, 0.5) ? 6 : 12) * HOUR_MS;
	j->size = 5;
	for (int k = 0; k < s->nskus && n < (int)(sizeof(pool) / sizeof(pool[0])); k++) {
		double r = s->per_day / 24 * s->skus[k].weight / s->sku_total *
		           categories[j->cat].share;

		if (r >= 0.3 && r <= 20)
			pool[n++] = k;
	}
	if (n < 3)
		for (n = 0; n < SURGE_MAX && n < s->nskus; n++)
			pool[n] = n; /* SKUs are in order of weight */
	want = 5 + rng_below(&s->rng, 4);
	j->nmembers = want < n ? want : n;
	for (int m = 0; m < j->nmembers; m++) { /* a partial Fisher-Yates shuffle */
		int k = m + rng_below(&s->rng, n - m), t = pool[m];

		pool[m] = pool[k];
		pool[k] = t;
		j->members[m] = pool[m];
		j->baseline_per_hour += key_rate(s, pool[m], j->cat, j->start_ms);
	}
	j->standout = c % 2 ? rng_below(&s->rng, j->nmembers) : -1;
}

static void plan_injections(struct sim *s)
{
	int64_t span = (int64_t)s->days * DAY_MS;
	int64_t from = s->start_ms + span / 4;

	s->inj = xcalloc((size_t)(s->ninj ? s->ninj : 1), sizeof(*s->inj));
	for (int i = 0; i < s->ninj; i++) {
		struct injection *j = &s->inj[i];
		static const int spike_hours[] = {1, 3, 6, 12, 24};
		static const int spike_cats[] = {CAT_DEFECT, 2, 4, 5};
		int64_t room = span - span / 4 - 4 * DAY_MS;

		if (i >= s->ninj - s->ncampaigns) {
			plan_campaign(s, i, i - (s->ninj - s->ncampaigns), from, room);
			continue;
		}
		j->kind = (enum inj_kind)(i % 5);
		j->start_ms = draw_start(s, from, room);
		j->cat = -1;
		switch (j->kind) {
		case INJ_VOLUME_SPIKE:
			j->cat = spike_cats[rng_below(&s->rng, 4)];
			/* 0.2-20 events/hour on the key at a typical hour */
			j->sku = sku_with_rate(s, 0.2 / categories[j->cat].share,
			                       20 / categories[j->cat].share);
			j->end_ms = j->start_ms + spike_hours[rng_below(&s->rng, 5)] * HOUR_MS;
			j->size = 5;
			j->baseline_per_hour = key_rate(s, j->sku, j->cat, j->start_ms);
			break;
		case INJ_NEGATIVE_SHIFT:
			j->sku = sku_with_rate(s, 10.0 / 24, 1e9); /* >= 10 events a day */
			j->end_ms = j->start_ms + 3 * DAY_MS;
			j->size = 20;
			j->baseline_per_hour = key_rate(s, j->sku, -1, j->start_ms);
			break;
		case INJ_DEFECT_BURST:
			j->sku = rng_below(&s->rng, s->nskus);
			j->cat = CAT_DEFECT;
			j->sub = -1;
			j->end_ms = j->start_ms + 6 * HOUR_MS;
			j->size = 3;
			j->baseline_per_hour = key_rate(s, j->sku, j->cat, j->start_ms);
			break;
		case INJ_FLATLINE:
			j->sku = -1;
			j->source = "zendesk";
			/* Two silences of the source a day apart at least: back to
			 * back they are one silence, one incident, and the truth
			 * would list two. */
			for (int tries = 0; tries < 100 && flatline_near(s, i, j->start_ms);
			     tries++)
				j->start_ms = draw_start(s, from, room);
			j->end_ms = j->start_ms + 8 * HOUR_MS;
			j->size = 8;
			break;
		case INJ_NEW_TOPIC:
			/* A key the topic was injected on before would know it: not new. */
			for (int tries = 0; tries < 100; tries++) {
				int dup = 0;

				j->sku = rng_below(&s->rng, s->nskus / 4 + 1);
				for (int k = 0; k < i; k++)
					dup |= s->inj[k].kind == INJ_NEW_TOPIC &&
					       s->inj[k].sku == j->sku;
				if (!dup)
					break;
			}
			j->cat = CAT_DEFECT;
			j->end_ms = j->start_ms + DAY_MS;
			j->size = 4;
			j->baseline_per_hour = 0;
			break;
		case INJ_CATEGORY_SURGE: break; /* plan_campaign's, above */
		}
	}
}

/* ---- events ---- */

struct draft {
	int64_t ts;
	int sku, cat, sub;
	enum sentiment sentiment;
	enum severity severity;
	double confidence;
	const char *subcategory; /* overrides categories[cat].subs[sub] */
	const char *source, *channel;
	int inj; /* the injection that added it, + 1 (0: a regular draft) */
};

static int cmp_draft(const void *a, const void *b)
{
	const struct draft *x = a, *y = b;

	return (x->ts > y->ts) - (x->ts < y->ts);
}

static int nsubs(int cat)
{
	int n = 0;

	while (n < 4 && categories[cat].subs[n])
		n++;
	return n;
}

static const char *source_for(struct sim *s, int cat, const char **channel);

static void score(struct sim *s, struct draft *d)
{
	const struct category *c = &categories[d->cat];
	double u = rng_unit(&s->rng);

	d->source = source_for(s, d->cat, &d->channel);

	d->sub = rng_below(&s->rng, nsubs(d->cat));
	if (rng_chance(&s->rng, c->negative))
		d->sentiment = SENTIMENT_NEGATIVE;
	else if (d->cat == 0)
		d->sentiment = u < 0.9 ? SENTIMENT_POSITIVE : SENTIMENT_MIXED;
	else
		d->sentiment = u < 0.5   ? SENTIMENT_NEUTRAL
		               : u < 0.8 ? SENTIMENT_MIXED
		                         : SENTIMENT_POSITIVE;
	d->severity = SEVERITY_LOW;
	if (d->sentiment == SENTIMENT_NEGATIVE) {
		u = rng_unit(&s->rng);
		if (d->cat == CAT_DEFECT)
			d->severity = u < 0.01   ? SEVERITY_CRITICAL
			              : u < 0.15 ? SEVERITY_HIGH
			              : u < 0.65 ? SEVERITY_MEDIUM
			                         : SEVERITY_LOW;
		else
			d->severity = u < 0.02  ? SEVERITY_HIGH
			              : u < 0.3 ? SEVERITY_MEDIUM
			                        : SEVERITY_LOW;
	}
	/* Mostly confident, with a tail the scorer was unsure of. */
	d->confidence = rng_chance(&s->rng, 0.05)
	                        ? 0.25 + 0.3 * rng_unit(&s->rng)
	                        : 0.6 + 0.39 * (rng_unit(&s->rng) + rng_unit(&s->rng)) / 2;
}

static int rating_for(struct sim *s, enum sentiment sent)
{
	switch (sent) {
	case SENTIMENT_POSITIVE: return rng_chance(&s->rng, 0.7) ? 5 : 4;
	case SENTIMENT_NEUTRAL: return 3;
	case SENTIMENT_MIXED: return 2 + rng_below(&s->rng, 3);
	default: return rng_chance(&s->rng, 0.6) ? 1 : 2;
	}
}

static const char *pii_tail(struct sim *s, char *buf, size_t len)
{
	static const char *const names[] = {"jane.doe", "m.rossi", "kim.lee", "a.nowak"};

	switch (rng_below(&s->rng, 3)) {
	case 0:
		snprintf(buf, len, " You can reach me at %s%d@example.com.",
		         names[rng_below(&s->rng, 4)], rng_below(&s->rng, 100));
		break;
	case 1:
		snprintf(buf, len, " Call me on +1 415 555 %04d.", rng_below(&s->rng, 10000));
		break;
	default: snprintf(buf, len, " Order placed with card 4111 1111 1111 1111."); break;
	}
	return buf;
}

static void text_for(struct sim *s, const struct draft *d, char *out, size_t len)
{
	const char *fmt;
	char tail[96] = "";

	if (d->sentiment == SENTIMENT_POSITIVE || d->cat == 0)
		fmt = texts_positive[rng_below(&s->rng, 4)];
	else
		fmt = texts_negative[d->cat][rng_below(&s->rng, 3)];
	if (rng_chance(&s->rng, 0.03))
		pii_tail(s, tail, sizeof(tail));
	/* Templates take the product name and an optional number, in that order. */
	char body[256];
	const char *product = s->skus[d->sku].product;
	const char *pd = strstr(fmt, "%d"), *ps = strstr(fmt, "%s");

	if (pd && ps && pd < ps)
		snprintf(body, sizeof(body), fmt, 2 + rng_below(&s->rng, 40), product);
	else if (pd)
		snprintf(body, sizeof(body), fmt, product, 2 + rng_below(&s->rng, 40));
	else
		snprintf(body, sizeof(body), fmt, product);
	snprintf(out, len, "%s%s", body, tail);
}

static const char *source_for(struct sim *s, int cat, const char **channel)
{
	double u = rng_unit(&s->rng);

	if (cat == 7 || (cat == 5 && u < 0.6)) {
		*channel = "support";
		return "zendesk";
	}
	if (u < 0.10) {
		*channel = "survey";
		return "nps";
	}
	if (u < 0.18) {
		*channel = "chat";
		return "intercom";
	}
	*channel = "review";
	return "shopify";
}

static cJSON *render(struct sim *s, const struct draft *d)
{
	static const char *const regions[] = {"NA", "NA", "EU", "EU", "APAC"};
	static const char *const locales[] = {"en-US", "en-US", "en-GB", "de-DE", "en-AU"};
	static const char *const tiers[] = {"standard", "standard", "standard", "plus", "vip"};
	const struct category *c = &categories[d->cat];
	cJSON *o = cJSON_CreateObject(), *sent, *model;
	char buf[512], ts[32];
	int region = rng_below(&s->rng, 5);

	snprintf(buf, sizeof(buf), "sim%llx-%08llx", (unsigned long long)s->seed,
	         (unsigned long long)s->serial++);
	cJSON_AddStringToObject(o, "event_id", buf);
	cJSON_AddNumberToObject(o, "revision", 0);
	rfc3339_format(d->ts, ts, sizeof(ts));
	cJSON_AddStringToObject(o, "ts", ts);
	cJSON_AddStringToObject(o, "source", d->source);
	cJSON_AddStringToObject(o, "channel", d->channel);
	cJSON_AddStringToObject(o, "sku", s->skus[d->sku].id);
	cJSON_AddStringToObject(o, "product", s->skus[d->sku].product);
	cJSON_AddStringToObject(o, "category", c->name);
	cJSON_AddStringToObject(o, "subcategory",
	                        d->subcategory ? d->subcategory : c->subs[d->sub]);
	sent = cJSON_AddObjectToObject(o, "sentiment");
	cJSON_AddStringToObject(sent, "label", sentiment_name(d->sentiment));
	cJSON_AddNumberToObject(sent, "score",
	                        d->sentiment == SENTIMENT_POSITIVE   ? 0.8
	                        : d->sentiment == SENTIMENT_NEGATIVE ? -0.8
	                                                             : 0.0);
	cJSON_AddStringToObject(o, "severity", severity_name(d->severity));
	cJSON_AddNumberToObject(o, "urgency", d->severity >= SEVERITY_HIGH ? 0.9 : 0.3);
	cJSON_AddNumberToObject(o, "confidence", round(d->confidence * 1000) / 1000);
	if (d->confidence < 0.4)
		cJSON_AddTrueToObject(o, "needs_review");
	cJSON_AddNumberToObject(o, "rating", rating_for(s, d->sentiment));
	cJSON_AddStringToObject(o, "locale", locales[region]);
	cJSON_AddStringToObject(o, "region", regions[region]);
	cJSON_AddStringToObject(o, "customer_tier", tiers[rng_below(&s->rng, 5)]);
	text_for(s, d, buf, sizeof(buf));
	cJSON_AddStringToObject(o, "text", buf);
	snprintf(buf, sizeof(buf), "%s: %s", c->name,
	         d->subcategory ? d->subcategory : c->subs[d->sub]);
	cJSON_AddStringToObject(o, "summary", buf);
	if (c->owner && d->sentiment == SENTIMENT_NEGATIVE) {
		cJSON_AddStringToObject(o, "suggested_owner", c->owner);
		cJSON_AddStringToObject(o, "suggested_action", c->action);
	}
	snprintf(buf, sizeof(buf), "https://shop.example.com/reviews/%llx",
	         (unsigned long long)s->serial);
	cJSON_AddStringToObject(o, "url", buf);
	model = cJSON_AddObjectToObject(o, "model");
	cJSON_AddStringToObject(model, "name", "gpt-4o");
	cJSON_AddStringToObject(model, "version", "2024-08-06");
	cJSON_AddStringToObject(model, "prompt_version", "voc-7");
	cJSON_AddStringToObject(model, "taxonomy_version", "2026.11");
	return o;
}

static int emit(struct sim *s, cJSON *o)
{
	char *line;
	int rc;

	cJSON_AddStringToObject(o, "publisher", s->publisher);
	cJSON_AddNumberToObject(o, "seq", (double)s->seq++);
	line = cJSON_PrintUnformatted(o);
	rc = jsonl_write(s->out, line, strlen(line));
	free(line);
	return rc;
}

/* A malformed line of one of six kinds, from a misconfigured producer. */
static int emit_invalid(struct sim *s, cJSON *valid)
{
	char *line = cJSON_PrintUnformatted(valid);
	int kind = rng_below(&s->rng, 6), rc;
	size_t n = strlen(line);

	s->invalid_n[kind]++;
	switch (kind) {
	case 0: /* truncated */ rc = jsonl_write(s->out, line, n / 2); break;
	case 1: /* missing category */ cJSON_DeleteItemFromObject(valid, "category"); goto print;
	case 2: /* impossible date */
		cJSON_ReplaceItemInObject(valid, "ts", cJSON_CreateString("2026-02-30T10:00:00Z"));
		goto print;
	case 3: /* rating out of range */
		cJSON_ReplaceItemInObject(valid, "rating", cJSON_CreateNumber(7));
		goto print;
	case 4: /* wrong type */
		cJSON_ReplaceItemInObject(valid, "confidence", cJSON_CreateString("high"));
		goto print;
	default: /* unknown enum */
		cJSON_ReplaceItemInObject(valid, "channel", cJSON_CreateString("fax"));
	print:
		free(line);
		line = cJSON_PrintUnformatted(valid);
		rc = jsonl_write(s->out, line, strlen(line));
	}
	free(line);
	return rc;
}

static int in_window(const struct injection *j, int64_t ts)
{
	return ts >= j->start_ms && ts < j->end_ms;
}

static void add_draft(struct draft **v, size_t *n, size_t *alloc, const struct draft *d)
{
	if (*n == *alloc) {
		*alloc *= 2;
		*v = xrealloc(*v, *alloc * sizeof(**v));
	}
	(*v)[(*n)++] = *d;
}

/* A negative report injection i adds on sku+cat within hour, scored as the
 * category's; the caller sets what the injection makes of it. */
static struct draft injected_draft(struct sim *s, int i, int sku, int cat, int64_t hour)
{
	struct draft d = {.ts = hour + (int64_t)(rng_unit(&s->rng) * HOUR_MS),
	                  .sku = sku,
	                  .cat = cat,
	                  .inj = i + 1};

	score(s, &d);
	d.sentiment = SENTIMENT_NEGATIVE;
	return d;
}

/* A category surge's hour: each member's negatives, as a spike's. */
static void inject_surge(struct sim *s, int i, int64_t hour, struct draft **v, size_t *n,
                         size_t *alloc)
{
	struct injection *j = &s->inj[i];

	for (int m = 0; m < j->nmembers; m++) {
		double rate = key_rate(s, j->members[m], j->cat, hour);
		int extra = rng_poisson(&s->rng,
		                        ((m == j->standout ? STANDOUT_SIZE : j->size) - 1) * rate);

		j->member_expected[m] += rate;
		for (int k = 0; k < extra; k++) {
			struct draft d = injected_draft(s, i, j->members[m], j->cat, hour);

			if (d.severity == SEVERITY_LOW)
				d.severity = SEVERITY_MEDIUM;
			add_draft(v, n, alloc, &d);
			j->injected++;
		}
	}
}

/* Adds injected drafts for this hour; returns the new count. */
static size_t inject_hour(struct sim *s, int64_t hour, struct draft **v, size_t n, size_t *alloc)
{
	for (int i = 0; i < s->ninj; i++) {
		struct injection *j = &s->inj[i];
		int extra = 0;
		double rate = 0; /* the key's, without the injection (a spike's, a shift's) */

		if (!in_window(j, hour))
			continue;
		if (j->kind == INJ_CATEGORY_SURGE) {
			inject_surge(s, i, hour, v, &n, alloc);
			continue;
		}
		if (j->kind == INJ_VOLUME_SPIKE || j->kind == INJ_NEGATIVE_SHIFT) {
			rate = key_rate(s, j->sku, j->kind == INJ_VOLUME_SPIKE ? j->cat : -1, hour);
			j->expected += rate;
		}
		if (j->kind == INJ_VOLUME_SPIKE) {
			j->hour_expected[(hour - j->start_ms) / HOUR_MS] = rate;
			extra = rng_poisson(&s->rng, (j->size - 1) * rate);
		} else if (j->kind == INJ_DEFECT_BURST && (hour - j->start_ms) % (2 * HOUR_MS) == 0)
			extra = 1; /* three reports, two hours apart */
		else if (j->kind == INJ_NEW_TOPIC && (hour - j->start_ms) % (6 * HOUR_MS) == 0)
			extra = 1;
		for (int k = 0; k < extra; k++) {
			struct draft d = injected_draft(s, i, j->sku, j->cat, hour);

			if (j->kind == INJ_DEFECT_BURST) {
				/* One defect reported three times (BASELINES.md P2: the
				 * mentions share a topic); its first report draws it. */
				if (j->sub < 0)
					j->sub = d.sub;
				d.sub = j->sub;
				d.severity = SEVERITY_HIGH;
				d.confidence = 0.9 + 0.09 * rng_unit(&s->rng);
			} else if (j->kind == INJ_NEW_TOPIC) {
				d.subcategory = "battery_swelling";
				d.severity = SEVERITY_HIGH;
				d.confidence = 0.85 + 0.1 * rng_unit(&s->rng);
			} else if (d.severity == SEVERITY_LOW) {
				d.severity = SEVERITY_MEDIUM;
			}
			add_draft(v, &n, alloc, &d);
			j->injected++;
		}
	}
	return n;
}

/*
 * Applies negative shifts and flatlines to a draft. Returns 0 to drop it.
 * The truth counts what the feed holds: an event a silence drops is not
 * counted as added (a spike's) or flipped (a shift's); a spike that met a
 * silence of its source counted 24 events of which the feed held 13.
 */
static int adjust(struct sim *s, struct draft *d)
{
	int flipped = -1;

	for (int i = 0; i < s->ninj; i++) {
		struct injection *j = &s->inj[i];

		if (!in_window(j, d->ts))
			continue;
		if (j->kind == INJ_FLATLINE && strcmp(d->source, j->source) == 0) {
			j->injected++;
			if (d->inj > 0)
				s->inj[d->inj - 1].injected--;
			if (flipped >= 0)
				s->inj[flipped].injected--;
			return 0;
		}
		/* Base negative share is about 0.45: flipping 0.2 / 0.55 of the rest
		 * raises it by 20 points. */
		if (j->kind == INJ_NEGATIVE_SHIFT && d->sku == j->sku &&
		    d->sentiment != SENTIMENT_NEGATIVE && rng_chance(&s->rng, 0.2 / 0.55)) {
			d->sentiment = SENTIMENT_NEGATIVE;
			j->injected++;
			flipped = i;
		}
	}
	return 1;
}

/* Counts an emitted draft into the windows of the injections on its key. */
static void count_seen(struct sim *s, const struct draft *d)
{
	for (int i = 0; i < s->ninj; i++) {
		struct injection *j = &s->inj[i];

		if (j->kind == INJ_CATEGORY_SURGE && d->cat == j->cat && in_window(j, d->ts))
			for (int m = 0; m < j->nmembers; m++)
				j->member_seen[m] += d->sku == j->members[m];
		if ((j->kind != INJ_VOLUME_SPIKE && j->kind != INJ_NEGATIVE_SHIFT) ||
		    d->sku != j->sku || (j->cat >= 0 && d->cat != j->cat) || !in_window(j, d->ts))
			continue;
		j->seen++;
		j->seen_negative += d->sentiment == SENTIMENT_NEGATIVE;
		if (j->kind == INJ_VOLUME_SPIKE)
			j->hour_seen[(d->ts - j->start_ms) / HOUR_MS]++;
	}
}

static int run(struct sim *s)
{
	size_t alloc = 1024;
	struct draft *v = xmalloc(alloc * sizeof(*v));
	int rc = 0;

	for (int64_t hour = s->start_ms; hour < s->start_ms + (int64_t)s->days * DAY_MS && !rc;
	     hour += HOUR_MS) {
		double mean = s->per_day / 24 * seasonal(s, hour) / seasonal_mean(s);
		size_t n = (size_t)rng_poisson(&s->rng, mean);

		if (n > alloc) {
			alloc = n * 2;
			v = xrealloc(v, alloc * sizeof(*v));
		}
		for (size_t i = 0; i < n; i++) {
			v[i] = (struct draft){.ts = hour + (int64_t)(rng_unit(&s->rng) * HOUR_MS)};
			v[i].sku = pick_cumulative(&s->rng, s->sku_cum, s->nskus);
			v[i].cat = pick_cumulative(&s->rng, s->cat_cum, NCAT);
			score(s, &v[i]);
		}
		n = inject_hour(s, hour, &v, n, &alloc);
		qsort(v, n, sizeof(*v), cmp_draft);
		for (size_t i = 0; i < n && !rc; i++) {
			cJSON *o;

			if (!adjust(s, &v[i]))
				continue;
			count_seen(s, &v[i]);
			o = render(s, &v[i]);
			if (s->invalid > 0 && rng_chance(&s->rng, s->invalid)) {
				cJSON *bad = cJSON_Duplicate(o, 1);

				rc = emit_invalid(s, bad);
				cJSON_Delete(bad);
			}
			rc |= emit(s, o);
			s->events++;
			if (!rc && rng_chance(&s->rng, 0.005)) {
				/* The publisher re-sends: an exact duplicate. */
				cJSON_DeleteItemFromObject(o, "publisher");
				cJSON_DeleteItemFromObject(o, "seq");
				rc = emit(s, o);
				s->duplicates++;
			} else if (!rc && rng_chance(&s->rng, 0.01)) {
				/* Re-scored: same event, higher revision, new confidence. */
				cJSON_DeleteItemFromObject(o, "publisher");
				cJSON_DeleteItemFromObject(o, "seq");
				cJSON_ReplaceItemInObject(o, "revision", cJSON_CreateNumber(1));
				cJSON_ReplaceItemInObject(
				        o, "confidence",
				        cJSON_CreateNumber(
				                round((0.7 + 0.29 * rng_unit(&s->rng)) * 1000) /
				                1000));
				rc = emit(s, o);
				s->revisions++;
			}
			cJSON_Delete(o);
		}
	}
	free(v);
	return rc;
}

static int write_truth(struct sim *s, const char *path)
{
	cJSON *root = cJSON_CreateObject(), *arr, *inv;
	char ts[32], err[256];
	struct jsonl_out *out;
	char *text;
	int rc;
	static const char *const invalid_kinds[] = {"truncated",  "missing_category",
	                                            "bad_date",   "rating_out_of_range",
	                                            "wrong_type", "unknown_channel"};

	cJSON_AddNumberToObject(root, "seed", (double)s->seed);
	rfc3339_format(s->start_ms, ts, sizeof(ts));
	cJSON_AddStringToObject(root, "start", ts);
	rfc3339_format(s->start_ms + (int64_t)s->days * DAY_MS, ts, sizeof(ts));
	cJSON_AddStringToObject(root, "end", ts);
	cJSON_AddNumberToObject(root, "skus", s->nskus);
	if (strcmp(s->time_zone, "UTC") != 0 || s->weekend != 1) { /* a default feed's as before */
		cJSON_AddStringToObject(root, "time_zone", s->time_zone);
		cJSON_AddNumberToObject(root, "weekend", s->weekend);
	}
	cJSON_AddNumberToObject(root, "events", (double)s->events);
	cJSON_AddNumberToObject(root, "duplicates", (double)s->duplicates);
	cJSON_AddNumberToObject(root, "revisions", (double)s->revisions);
	cJSON_AddStringToObject(root, "publisher", s->publisher);
	cJSON_AddNumberToObject(root, "lines", (double)s->seq);
	inv = cJSON_AddObjectToObject(root, "invalid");
	for (int i = 0; i < 6; i++)
		cJSON_AddNumberToObject(inv, invalid_kinds[i], (double)s->invalid_n[i]);
	arr = cJSON_AddArrayToObject(root, "incidents");
	for (int i = 0; i < s->ninj; i++) {
		const struct injection *j = &s->inj[i];
		cJSON *o = cJSON_CreateObject();
		char id[16];

		cJSON_AddItemToArray(arr, o);
		snprintf(id, sizeof(id), "inj-%d", i + 1);
		cJSON_AddStringToObject(o, "id", id);
		cJSON_AddStringToObject(o, "kind", inj_names[j->kind]);
		if (j->sku >= 0)
			cJSON_AddStringToObject(o, "sku", s->skus[j->sku].id);
		if (j->cat >= 0)
			cJSON_AddStringToObject(o, "category", categories[j->cat].name);
		if (j->kind == INJ_NEW_TOPIC)
			cJSON_AddStringToObject(o, "subcategory", "battery_swelling");
		if (j->kind == INJ_DEFECT_BURST && j->sub >= 0)
			cJSON_AddStringToObject(o, "subcategory", categories[j->cat].subs[j->sub]);
		if (j->source)
			cJSON_AddStringToObject(o, "source", j->source);
		rfc3339_format(j->start_ms, ts, sizeof(ts));
		cJSON_AddStringToObject(o, "start", ts);
		rfc3339_format(j->end_ms, ts, sizeof(ts));
		cJSON_AddStringToObject(o, "end", ts);
		cJSON_AddNumberToObject(o, "size", j->size);
		cJSON_AddStringToObject(o, "size_unit",
		                        j->kind == INJ_VOLUME_SPIKE || j->kind == INJ_CATEGORY_SURGE
		                                ? "x rate"
		                        : j->kind == INJ_NEGATIVE_SHIFT ? "points of negative share"
		                        : j->kind == INJ_FLATLINE       ? "hours silent"
		                                                        : "events");
		cJSON_AddNumberToObject(o, "baseline_per_hour",
		                        round(j->baseline_per_hour * 1000) / 1000);
		cJSON_AddNumberToObject(o, "injected_events", j->injected);
		/* What an ideal test sees (tests/bench/detect): the key's events in
		 * the window as the feed holds them, and its expectation without the
		 * injection (a shift's: the events, whose negative share was 0.45). */
		if (j->kind == INJ_VOLUME_SPIKE || j->kind == INJ_NEGATIVE_SHIFT) {
			cJSON_AddNumberToObject(o, "baseline_events",
			                        round(j->expected * 100) / 100);
			cJSON_AddNumberToObject(o, "window_events", j->seen);
			if (j->kind == INJ_NEGATIVE_SHIFT)
				cJSON_AddNumberToObject(o, "window_negative", j->seen_negative);
		}
		if (j->kind == INJ_VOLUME_SPIKE) {
			int hours = (int)((j->end_ms - j->start_ms) / HOUR_MS);
			cJSON *e = cJSON_AddArrayToObject(o, "hour_expected");
			cJSON *n = cJSON_AddArrayToObject(o, "hour_events");

			for (int h = 0; h < hours; h++) {
				cJSON_AddItemToArray(
				        e, cJSON_CreateNumber(round(j->hour_expected[h] * 1000) /
				                              1000));
				cJSON_AddItemToArray(n, cJSON_CreateNumber(j->hour_seen[h]));
			}
		}
		if (j->kind == INJ_CATEGORY_SURGE) {
			cJSON *ms = cJSON_AddArrayToObject(o, "members");

			for (int m = 0; m < j->nmembers; m++) {
				cJSON *x = cJSON_CreateObject();

				cJSON_AddItemToArray(ms, x);
				cJSON_AddStringToObject(x, "sku", s->skus[j->members[m]].id);
				cJSON_AddNumberToObject(x, "size",
				                        m == j->standout ? STANDOUT_SIZE : j->size);
				cJSON_AddNumberToObject(x, "baseline_events",
				                        round(j->member_expected[m] * 100) / 100);
				cJSON_AddNumberToObject(x, "window_events", j->member_seen[m]);
			}
			if (j->standout >= 0)
				cJSON_AddStringToObject(o, "standout",
				                        s->skus[j->members[j->standout]].id);
		}
	}
	out = jsonl_create(path, err, sizeof(err));
	if (out == NULL) {
		fprintf(stderr, "voca simulate: %s\n", err);
		cJSON_Delete(root);
		return -1;
	}
	text = cJSON_Print(root);
	rc = jsonl_write(out, text, strlen(text));
	rc |= jsonl_finish(out);
	free(text);
	cJSON_Delete(root);
	return rc;
}

static void print_injections(const struct sim *s, FILE *out)
{
	for (int i = 0; i < s->ninj; i++) {
		const struct injection *j = &s->inj[i];
		char start[32], key[96];

		rfc3339_format(j->start_ms, start, sizeof(start));
		if (j->kind == INJ_FLATLINE)
			snprintf(key, sizeof(key), "source %s", j->source);
		else if (j->kind == INJ_CATEGORY_SURGE)
			snprintf(key, sizeof(key), "%d SKUs' %s", j->nmembers,
			         categories[j->cat].name);
		else if (j->cat >= 0)
			snprintf(key, sizeof(key), "%s %s", s->skus[j->sku].id,
			         categories[j->cat].name);
		else
			snprintf(key, sizeof(key), "%s", s->skus[j->sku].id);
		fprintf(out, "  inj-%-3d %-15s %-28s from %.16s for %3lldh  %s%s%s\n", i + 1,
		        inj_names[j->kind], key, start,
		        (long long)((j->end_ms - j->start_ms) / HOUR_MS),
		        j->kind == INJ_VOLUME_SPIKE     ? "5x the usual volume"
		        : j->kind == INJ_NEGATIVE_SHIFT ? "negative share +20 points"
		        : j->kind == INJ_DEFECT_BURST   ? "3 high-severity reports of one defect"
		        : j->kind == INJ_FLATLINE       ? "no events at all"
		        : j->kind == INJ_NEW_TOPIC      ? "new subcategory battery_swelling"
		                                        : "5x the usual volume on each",
		        j->kind == INJ_CATEGORY_SURGE && j->standout >= 0 ? ", 25x on " : "",
		        j->kind == INJ_CATEGORY_SURGE && j->standout >= 0
		                ? s->skus[j->members[j->standout]].id
		                : "");
	}
}

static void usage(FILE *f)
{
	fputs("usage: voca simulate [options]\n"
	      "\n"
	      "Writes a realistic scored-feedback stream as JSON Lines, with injected\n"
	      "incidents whose ground truth goes to --truth. Deterministic for a seed.\n"
	      "\n"
	      "  -o, --out FILE        where to write (default: stdout; .gz compresses)\n"
	      "      --truth FILE      ground truth as JSON (incidents, counts)\n"
	      "  -s, --seed N          random seed (default 1)\n"
	      "      --start TIME      first hour, RFC 3339 (default 2026-01-05T00:00:00Z)\n"
	      "      --days N          length of the stream (default 28)\n"
	      "      --skus N          number of SKUs (default 200)\n"
	      "      --per-day N       mean events per day (default 4000)\n"
	      "      --incidents N     incidents to inject (default 10)\n"
	      "      --campaigns N     category surges to inject besides (default 0)\n"
	      "      --time-zone ZONE  the IANA zone whose hours and weekdays the seasons\n"
	      "                        follow (default UTC)\n"
	      "      --weekend F       Saturday's and Sunday's volume, times their usual\n"
	      "                        (default 1; 0.1: a desk closed at weekends)\n"
	      "      --invalid F       fraction of extra malformed lines (default 0)\n",
	      f);
}

static int parse_num(const char *opt, const char *arg, double lo, double hi, double *out)
{
	char *end;
	double v = strtod(arg, &end);

	if (*end || end == arg || !(v >= lo && v <= hi)) {
		fprintf(stderr, "voca simulate: %s takes a number from %g to %g\n", opt, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

int simulate_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"out", required_argument, NULL, 'o'},
	        {"truth", required_argument, NULL, 'T'},
	        {"seed", required_argument, NULL, 's'},
	        {"start", required_argument, NULL, 'S'},
	        {"days", required_argument, NULL, 'd'},
	        {"skus", required_argument, NULL, 'k'},
	        {"per-day", required_argument, NULL, 'p'},
	        {"incidents", required_argument, NULL, 'i'},
	        {"campaigns", required_argument, NULL, 'C'},
	        {"time-zone", required_argument, NULL, 'z'},
	        {"weekend", required_argument, NULL, 'w'},
	        {"invalid", required_argument, NULL, 'I'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct sim s = {.days = 28,
	                .nskus = 200,
	                .per_day = 4000,
	                .ninj = 10,
	                .seed = 1,
	                .time_zone = "UTC",
	                .weekend = 1};
	const char *outpath = "-", *truth = NULL;
	char err[256];
	double v;
	int c, rc;

	rfc3339_parse("2026-01-05T00:00:00Z", &s.start_ms);
	optind = 1;
	while ((c = getopt_long(argc, argv, "o:s:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'o': outpath = optarg; break;
		case 'T': truth = optarg; break;
		case 's':
			if (parse_num("--seed", optarg, 0, 9e15, &v) < 0)
				return 2;
			s.seed = (uint64_t)v;
			break;
		case 'S':
			if (rfc3339_parse(optarg, &s.start_ms) < 0) {
				fprintf(stderr, "voca simulate: --start takes an RFC 3339 time\n");
				return 2;
			}
			s.start_ms -= s.start_ms % HOUR_MS;
			break;
		case 'd':
			if (parse_num("--days", optarg, 1, 3650, &v) < 0)
				return 2;
			s.days = (int)v;
			break;
		case 'k':
			if (parse_num("--skus", optarg, 1, 1000000, &v) < 0)
				return 2;
			s.nskus = (int)v;
			break;
		case 'p':
			if (parse_num("--per-day", optarg, 1, 1e8, &v) < 0)
				return 2;
			s.per_day = v;
			break;
		case 'i':
			if (parse_num("--incidents", optarg, 0, 10000, &v) < 0)
				return 2;
			s.ninj = (int)v;
			break;
		case 'C':
			if (parse_num("--campaigns", optarg, 0, 1000, &v) < 0)
				return 2;
			s.ncampaigns = (int)v;
			break;
		case 'I':
			if (parse_num("--invalid", optarg, 0, 1, &s.invalid) < 0)
				return 2;
			break;
		case 'z': s.time_zone = optarg; break;
		case 'w':
			if (parse_num("--weekend", optarg, 0.01, 10, &s.weekend) < 0)
				return 2;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "voca simulate: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (tz_clock_init(&s.clock, s.time_zone, err, sizeof(err)) < 0) {
		fprintf(stderr, "voca simulate: --time-zone: %s\n", err + strlen("time_zone: "));
		return 2;
	}
	s.ninj += s.ncampaigns;
	rng_seed(&s.rng, s.seed);
	snprintf(s.publisher, sizeof(s.publisher), "sim-%llu", (unsigned long long)s.seed);
	s.out = jsonl_create(outpath, err, sizeof(err));
	if (s.out == NULL) {
		fprintf(stderr, "voca simulate: %s\n", err);
		return 1;
	}
	build_world(&s);
	plan_injections(&s);
	rc = run(&s);
	rc |= jsonl_finish(s.out);
	if (rc)
		fprintf(stderr, "voca simulate: writing %s failed\n", outpath);
	if (!rc && truth)
		rc = write_truth(&s, truth);
	if (!rc)
		fprintf(stderr,
		        "voca simulate: %llu events (+%llu duplicates, %llu revisions, %llu "
		        "malformed), %d SKUs, %d days, %d incidents injected\n",
		        (unsigned long long)s.events, (unsigned long long)s.duplicates,
		        (unsigned long long)s.revisions,
		        (unsigned long long)(s.invalid_n[0] + s.invalid_n[1] + s.invalid_n[2] +
		                             s.invalid_n[3] + s.invalid_n[4] + s.invalid_n[5]),
		        s.nskus, s.days, s.ninj);
	if (!rc)
		print_injections(&s, stderr);
	free(s.skus);
	free(s.sku_cum);
	free(s.inj);
	return rc ? 1 : 0;
}
