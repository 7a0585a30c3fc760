/*
 * backtest.c: `voca backtest` (see backtest.h).
 *
 * The same decoder and the same engine as the daemon, fed from files in
 * event time. Events are deduplicated the way the store does it: the first
 * (event_id, revision) counts; repeats and lower revisions do not; a higher
 * revision goes to engine_revision (threshold rules count each report once;
 * volume rules have counted it already). Incidents print as they open and
 * resolve (text), or all at the end with their explanations (--json).
 *
 * Decoding is most of the work, so it runs on threads of its own: the main
 * thread reads lines and deals them out in chunks of CHUNK_LINES, in turn,
 * to the decoders (one per core but one, at most MAX_DECODERS: the reader
 * and the engine's thread take about a core between them); each hands its
 * chunk's events, copied out of its parse arena, to the engine's thread as
 * one unit of its own queue; the engine's thread takes a unit from each
 * decoder in the same turn, so it sees the events in file order, dedupes
 * them and runs the rules. The output does not depend on how many decoders
 * ran.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include <voca/engine.h>
#include <voca/event.h>
#include <voca/rule.h>
#include <voca/suppress.h>
#include <voca/xalloc.h>

#include "backtest.h"
#include "clock.h"
#include "config.h"
#include "evqueue.h"
#include "jsonl.h"

/* event_id hash -> highest revision seen: 16 bytes an event, one cache line
 * touched per lookup. */
struct seen {
	struct seen_slot {
		uint64_t hash; /* 0: empty */
		int64_t rev;
	} * slot;
	size_t n, cap;
};

#define MAX_DECODERS 4
#define CHUNK_LINES  256

/* A decoder's thread: lines in (events carrying only raw), events out. */
struct decoder {
	struct evqueue *in, *out;
	struct decode_limits limits; /* the configuration's, as the daemon's ingest */
	uint64_t invalid;
	uint64_t invalid_by[REJECT_CODES];
	/* The first line each reason rejected, and why: lines are numbered over
	 * all the feeds, so the earliest of the decoders' is the file's first. */
	int64_t line, example_line[REJECT_CODES];
	char example[REJECT_CODES][sizeof(((struct event_error *)0)->msg)];
	pthread_t thread;
};

struct bt {
	struct config cfg;
	struct decoder dec[MAX_DECODERS];
	int ndec;
	struct engine *engine;
	struct seen seen;
	struct seen reviewed; /* reports in the review queue: each counted once */
	int json, quiet;
	cJSON *incidents; /* --json: in order of opening */
	/* --json: incident id -> its element of incidents. Not id - 1: a
	 * roll-up opens inside the firing of the member that completes it,
	 * so it is told (and appended) before that member, whose id is lower. */
	cJSON **by_id;
	size_t nby_id;
	uint64_t lines, invalid, duplicates, revisions, counted, review;
	uint64_t invalid_by[REJECT_CODES];
	const struct decoder *example[REJECT_CODES]; /* the one that met the reason first */
	cJSON *review_examples; /* --json: the first few items of the review queue */
	uint64_t opened[64], resolved[64], reopened[64], realerts[64], verified[64]; /* per rule */
};

static uint64_t hash64(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h ? h : 1;
}

/* Makes room for n more events, so that slots found now stay put. */
static void seen_reserve(struct seen *s, size_t n)
{
	if ((s->n + n) * 10 <= s->cap * 7)
		return;
	struct seen g = {.n = s->n, .cap = s->cap ? s->cap : 1 << 16};

	while ((s->n + n) * 10 > g.cap * 7)
		g.cap *= 2;
	g.slot = xcalloc(g.cap, sizeof(*g.slot));
	for (size_t j = 0; j < s->cap; j++) {
		size_t i;

		if (!s->slot[j].hash)
			continue;
		for (i = s->slot[j].hash & (g.cap - 1); g.slot[i].hash; i = (i + 1) & (g.cap - 1))
			;
		g.slot[i] = s->slot[j];
	}
	free(s->slot);
	*s = g;
}

/* After seen_reserve: 1 if the event is new, 0 for a repeat or stale, 2 for a
 * higher revision. */
static int seen_put(struct seen *s, uint64_t h, int64_t rev)
{
	size_t i;

	for (i = h & (s->cap - 1); s->slot[i].hash; i = (i + 1) & (s->cap - 1)) {
		if (s->slot[i].hash == h) {
			if (rev <= s->slot[i].rev)
				return 0;
			s->slot[i].rev = rev;
			return 2;
		}
	}
	s->slot[i].hash = h;
	s->slot[i].rev = rev;
	s->n++;
	return 1;
}

static int rule_index(const struct bt *b, const char *name)
{
	for (size_t i = 0; i < b->cfg.rules.n && i < 64; i++)
		if (((const struct rule_common *)b->cfg.rules.v[i].data)->name == name)
			return (int)i;
	return 63;
}

static cJSON *incident_json(const struct incident *inc)
{
	cJSON *o = cJSON_CreateObject();
	char t[32];

	cJSON_AddNumberToObject(o, "id", (double)inc->id);
	cJSON_AddStringToObject(o, "rule", inc->rule);
	cJSON_AddStringToObject(o, "kind", inc->kind);
	cJSON_AddNumberToObject(o, "tier", inc->tier);
	cJSON_AddStringToObject(o, "key", inc->key);
	rfc3339_format(inc->opened_ms, t, sizeof(t));
	cJSON_AddStringToObject(o, "opened", t);
	cJSON_AddNullToObject(o, "resolved");
	cJSON_AddArrayToObject(o, "reopened"); /* when, as a regression, it opened again */
	cJSON_AddNullToObject(o, "verified");
	cJSON_AddStringToObject(o, "summary", inc->summary);
	cJSON_AddItemToObject(o, "why", cJSON_Duplicate(inc->why, 1));
	cJSON_AddNumberToObject(o, "firings", (double)inc->firings);
	cJSON_AddNumberToObject(o, "realerts", inc->realerts);
	cJSON_AddNumberToObject(o, "reopens", inc->reopens);
	/* When it alerted: its opening, reopenings and re-alerts that were not
	 * muted (by a roll-up, a silence, inhibition, the budget). */
	cJSON *n = cJSON_AddArrayToObject(o, "notified");

	if (inc->notify)
		cJSON_AddItemToArray(n, cJSON_CreateString(t));
	/* Of those, the updates that told a new episode inside the open incident
	 * (spike: fired on its own again after a clear spell). */
	cJSON_AddArrayToObject(o, "again");
	if (inc->suppressed[0])
		cJSON_AddStringToObject(o, "suppressed", inc->suppressed);
	else
		cJSON_AddNullToObject(o, "suppressed");
	return o;
}

static void on_incident(void *arg, const struct incident *inc, enum incident_change ch)
{
	struct bt *b = arg;
	int r = rule_index(b, inc->rule);
	char t[32];

	if (ch == INCIDENT_OPENED)
		b->opened[r]++;
	else if (ch == INCIDENT_RESOLVED)
		b->resolved[r]++;
	else if (ch == INCIDENT_REOPENED)
		b->reopened[r]++;
	else if (ch == INCIDENT_VERIFIED)
		b->verified[r]++;
	else if (inc->notify)
		b->realerts[r]++;
	if (b->json) {
		if (ch == INCIDENT_OPENED) {
			cJSON *o = incident_json(inc);

			if (inc->id >= b->nby_id) {
				size_t n = b->nby_id ? b->nby_id : 64;

				while (n <= inc->id)
					n *= 2;
				b->by_id = xrealloc(b->by_id, n * sizeof(*b->by_id));
				memset(b->by_id + b->nby_id, 0,
				       (n - b->nby_id) * sizeof(*b->by_id));
				b->nby_id = n;
			}
			b->by_id[inc->id] = o;
			cJSON_AddItemToArray(b->incidents, o);
			return;
		}
		cJSON *o = inc->id < b->nby_id ? b->by_id[inc->id] : NULL;

		if (o == NULL)
			return; /* (cannot be: every incident is opened first) */

		if (ch != INCIDENT_VERIFIED) /* (a verification carries no firings) */
			cJSON_ReplaceItemInObject(o, "firings",
			                          cJSON_CreateNumber((double)inc->firings));
		if ((ch == INCIDENT_REOPENED || ch == INCIDENT_UPDATED) && inc->notify) {
			rfc3339_format(inc->updated_ms, t, sizeof(t));
			cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(o, "notified"),
			                     cJSON_CreateString(t));
			if (ch == INCIDENT_UPDATED &&
			    cJSON_GetObjectItemCaseSensitive(inc->why, "again_after_clear_buckets"))
				cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(o, "again"),
				                     cJSON_CreateString(t));
		}
		if (ch == INCIDENT_RESOLVED) {
			rfc3339_format(inc->resolved_ms, t, sizeof(t));
			cJSON_ReplaceItemInObject(o, "resolved", cJSON_CreateString(t));
		} else if (ch == INCIDENT_REOPENED) {
			rfc3339_format(inc->updated_ms, t, sizeof(t));
			cJSON_ReplaceItemInObject(o, "resolved", cJSON_CreateNull());
			cJSON_ReplaceItemInObject(o, "reopens", cJSON_CreateNumber(inc->reopens));
			cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(o, "reopened"),
			                     cJSON_CreateString(t));
		} else if (ch == INCIDENT_VERIFIED) {
			rfc3339_format(inc->updated_ms, t, sizeof(t));
			cJSON_ReplaceItemInObject(o, "verified", cJSON_CreateString(t));
		} else if (inc->notify) {
			cJSON_ReplaceItemInObject(o, "realerts", cJSON_CreateNumber(inc->realerts));
		}
		return;
	}
	if (b->quiet || ch == INCIDENT_VERIFIED ||
	    (ch == INCIDENT_UPDATED && !inc->notify && !inc->suppressed[0]))
		return;
	if (ch == INCIDENT_RESOLVED) {
		rfc3339_format(inc->resolved_ms, t, sizeof(t));
		printf("%.16s  resolved #%-4llu after %llu firing%s\n", t,
		       (unsigned long long)inc->id, (unsigned long long)inc->firings,
		       inc->firings == 1 ? "" : "s");
		return;
	}
	rfc3339_format(ch == INCIDENT_OPENED ? inc->opened_ms : inc->updated_ms, t, sizeof(t));
	printf("%.16s  %-8s #%-4llu tier %d  %-20s %s\n", t,
	       ch == INCIDENT_OPENED     ? "opened"
	       : ch == INCIDENT_REOPENED ? "reopened"
	                                 : "re-alert",
	       (unsigned long long)inc->id, inc->tier, inc->rule, inc->summary);
	if (inc->suppressed[0])
		printf("                  (not notified: %s)\n", inc->suppressed);
	if (inc->muted_by == SUPPRESSED_KNOWN_ISSUE) {
		const struct known_issue *k = known_issue_find(&b->cfg.known_issues, inc->rule,
		                                               inc->kind, inc->tier, inc->key);

		if (k && k->receiver && inc->tier < 3)
			printf("                  (a comment on %s through %s instead)\n",
			       k->ticket, k->receiver);
	}
}

static void on_review(void *arg, const struct event *ev, const char *reason)
{
	struct bt *b = arg;

	if (reason == NULL) /* re-scored confident: counted as queued all the same */
		return;

	/* A higher revision of a report queued already: the queue keeps one row. */
	seen_reserve(&b->reviewed, 1);
	if (seen_put(&b->reviewed, hash64(ev->event_id), 0) != 1)
		return;
	b->review++;
	if (b->review_examples && cJSON_GetArraySize(b->review_examples) < 20) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "event_id", ev->event_id);
		cJSON_AddStringToObject(o, "reason", reason);
		cJSON_AddItemToArray(b->review_examples, o);
	}
}

/* The engine's thread: a unit from each decoder in turn, until they are done. */
static void *engine_loop(void *arg)
{
	struct bt *b = arg;

	pthread_setname_np(pthread_self(), "voca-engine");
	for (int k = 0;; k = (k + 1) % b->ndec) {
		struct evqueue *q = b->dec[k].out;
		int end = 0, closed = 0;

		while (!end) {
			struct evbatch *x = evqueue_next(q, -1, &closed);
			uint64_t h[EVBATCH_EVENTS];

			/* Closed with no unit: the reader dealt no chunk here, nor after. */
			if (x == NULL)
				return NULL;
			/* The batch's lookups are cache misses: start them all first. */
			seen_reserve(&b->seen, x->n);
			for (size_t i = 0; i < x->n; i++) {
				h[i] = hash64(x->ev[i].event_id);
				__builtin_prefetch(&b->seen.slot[h[i] & (b->seen.cap - 1)], 1);
			}
			for (size_t i = 0; i < x->n; i++) {
				const struct event *ev = &x->ev[i];

				switch (seen_put(&b->seen, h[i], ev->revision)) {
				case 0: b->duplicates++; continue;
				case 2:
					b->revisions++;
					engine_revision(b->engine, ev);
					continue;
				default: break;
				}
				b->counted++;
				engine_event(b->engine, ev);
			}
			end = x->unit_end;
			evqueue_done(q, x);
		}
	}
}

static int on_event(void *arg, const struct event *ev, const struct event_error *err,
                    const char *raw, size_t len)
{
	struct decoder *d = arg;

	(void)raw;
	(void)len;
	if (ev == NULL) {
		d->invalid++;
		if (d->invalid_by[err->code]++ == 0) {
			d->example_line[err->code] = d->line;
			snprintf(d->example[err->code], sizeof(d->example[0]), "%s", err->msg);
		}
		return 0;
	}
	evqueue_add(d->out, ev, 0);
	evqueue_release(d->out, 1);
	return 0;
}

/* A decoder's thread: each chunk of lines in becomes a unit of events out. */
static void *decode_loop(void *arg)
{
	struct decoder *d = arg;
	int closed = 0;

	pthread_setname_np(pthread_self(), "voca-decode");
	while (!closed) {
		struct evbatch *x = evqueue_next(d->in, -1, &closed);

		if (x == NULL)
			continue;
		for (size_t i = 0; i < x->n; i++) {
			d->line = x->tag[i];
			event_decode(x->ev[i].raw, x->ev[i].raw_len, &d->limits, on_event, d);
		}
		if (x->unit_end)
			evqueue_release_unit(d->out);
		evqueue_done(d->in, x);
	}
	evqueue_close(d->out);
	xalloc_arena_release();
	return NULL;
}

/* Reads the feeds and deals their lines out to the decoders. Returns 0 or 1. */
static int read_feeds(struct bt *b, char **files, int nfiles)
{
	int k = 0, in_chunk = 0, rc = 0;
	char err[512];

	for (int i = 0; i < nfiles && rc == 0; i++) {
		struct jsonl *j = jsonl_open(files[i], err, sizeof(err));
		const char *line;
		long n;

		if (j == NULL) {
			fprintf(stderr, "voca backtest: %s\n", err);
			rc = 1;
			break;
		}
		while ((n = jsonl_next(j, &line, err, sizeof(err))) >= 0) {
			struct event ev = {.raw = line, .raw_len = (size_t)n};

			if (n == 0)
				continue;
			evqueue_add(b->dec[k].in, &ev, (int64_t)++b->lines);
			if (++in_chunk == CHUNK_LINES) {
				evqueue_release_unit(b->dec[k].in);
				k = (k + 1) % b->ndec;
				in_chunk = 0;
			}
		}
		if (n == -2) {
			fprintf(stderr, "voca backtest: %s: %s\n", files[i], err);
			rc = 1;
		}
		jsonl_close(j);
	}
	if (in_chunk)
		evqueue_release_unit(b->dec[k].in);
	for (int d = 0; d < b->ndec; d++)
		evqueue_close(b->dec[d].in);
	return rc;
}

static void usage(FILE *f)
{
	fputs("usage: voca backtest -c FILE [--json] [--quiet] [--decoders N] [--now TIME] "
	      "FEED...\n"
	      "\n"
	      "Runs the configured rules over JSON Lines feeds (plain or gzip, in time order)\n"
	      "with no delivery, and prints the incidents they would open, with their\n"
	      "explanations, and counts per rule and tier.\n"
	      "\n"
	      "  -c, --config FILE   the configuration with the rules\n"
	      "      --json          print JSON: the incidents with their explanations\n"
	      "  -q, --quiet         print only the counts\n"
	      "      --decoders N    threads that decode (default: one per core but one, 1 to 4);\n"
	      "                      the output is the same for any N\n"
	      "      --now TIME      judge ts ahead of ingest.max_future against TIME (RFC 3339)\n"
	      "                      instead of this machine's clock; 'none' turns it off (a\n"
	      "                      feed simulated with a --start in the future)\n",
	      f);
}

static void print_counts(const struct bt *b, double secs)
{
	const struct engine_stats *st = engine_stats(b->engine);

	printf("\nbacktest: %llu lines, %llu events counted (%llu invalid, %llu repeats, %llu "
	       "higher revisions, %llu late) in %.2f s (%.0f events/s)\n",
	       (unsigned long long)b->lines, (unsigned long long)b->counted,
	       (unsigned long long)b->invalid, (unsigned long long)b->duplicates,
	       (unsigned long long)b->revisions, (unsigned long long)st->late, secs,
	       secs > 0 ? (double)b->lines / secs : 0.0);
	for (int c = 0; c < REJECT_CODES; c++)
		if (b->invalid_by[c])
			printf("  invalid: %llu %s, first at line %lld: %s\n",
			       (unsigned long long)b->invalid_by[c],
			       reject_code_name((enum reject_code)c),
			       (long long)b->example[c]->example_line[c],
			       b->example[c]->example[c]);
	if (st->ungrouped || st->capped)
		printf("  left out: %llu events without a rule's group_by field, %llu of keys over "
		       "engine.max_keys (%lld a rule)\n",
		       (unsigned long long)st->ungrouped, (unsigned long long)st->capped,
		       (long long)b->cfg.engine.max_keys);
	printf("  keys: %llu kept at the end, %llu forgotten after engine.forget_after of "
	       "quiet\n",
	       (unsigned long long)st->keys, (unsigned long long)st->forgotten);
	printf("  review queue: %llu events under confidence %.2f or flagged needs_review\n",
	       (unsigned long long)b->review, b->cfg.engine.review_confidence);
	printf("  muted notifications: %llu (known issues, silences, time windows, inhibition, "
	       "budget, roll-ups)\n",
	       (unsigned long long)st->suppressed);
	for (size_t i = 0; i < b->cfg.rules.n && i < 64; i++) {
		const struct rule_common *c = b->cfg.rules.v[i].data;

		printf("  %-24s %-10s tier %lld  %5llu opened, %5llu reopened, %5llu re-alerts, %5llu "
		       "resolved, %5llu verified\n",
		       c->name, rule_kinds[b->cfg.rules.v[i].variant]->name, (long long)c->tier,
		       (unsigned long long)b->opened[i], (unsigned long long)b->reopened[i],
		       (unsigned long long)b->realerts[i], (unsigned long long)b->resolved[i],
		       (unsigned long long)b->verified[i]);
	}
	for (int tier = 1; tier <= 3; tier++) {
		unsigned long long n = 0;

		for (size_t i = 0; i < b->cfg.rules.n && i < 64; i++)
			if (((const struct rule_common *)b->cfg.rules.v[i].data)->tier == tier)
				n += b->opened[i];
		printf("  tier %d: %llu incidents\n", tier, n);
	}
}

static cJSON *counts_json(const struct bt *b)
{
	cJSON *o = cJSON_CreateObject(), *rules = cJSON_AddObjectToObject(o, "by_rule");

	cJSON_AddNumberToObject(o, "lines", (double)b->lines);
	cJSON_AddNumberToObject(o, "events", (double)b->counted);
	cJSON_AddNumberToObject(o, "invalid", (double)b->invalid);
	cJSON *why = cJSON_AddObjectToObject(o, "invalid_by_reason");

	for (int c = 0; c < REJECT_CODES; c++)
		if (b->invalid_by[c])
			cJSON_AddNumberToObject(why, reject_code_name((enum reject_code)c),
			                        (double)b->invalid_by[c]);
	cJSON_AddNumberToObject(o, "repeats", (double)b->duplicates);
	cJSON_AddNumberToObject(o, "revisions", (double)b->revisions);
	cJSON_AddNumberToObject(o, "late", (double)engine_stats(b->engine)->late);
	cJSON_AddNumberToObject(o, "ungrouped", (double)engine_stats(b->engine)->ungrouped);
	cJSON_AddNumberToObject(o, "capped", (double)engine_stats(b->engine)->capped);
	cJSON_AddNumberToObject(o, "review", (double)b->review);
	cJSON_AddNumberToObject(o, "keys", (double)engine_stats(b->engine)->keys);
	cJSON_AddNumberToObject(o, "forgotten", (double)engine_stats(b->engine)->forgotten);
	cJSON_AddNumberToObject(o, "suppressed", (double)engine_stats(b->engine)->suppressed);
	for (size_t i = 0; i < b->cfg.rules.n && i < 64; i++) {
		const struct rule_common *c = b->cfg.rules.v[i].data;
		cJSON *r = cJSON_AddObjectToObject(rules, c->name);

		cJSON_AddStringToObject(r, "kind", rule_kinds[b->cfg.rules.v[i].variant]->name);
		cJSON_AddNumberToObject(r, "tier", (double)c->tier);
		cJSON_AddNumberToObject(r, "opened", (double)b->opened[i]);
		cJSON_AddNumberToObject(r, "resolved", (double)b->resolved[i]);
		cJSON_AddNumberToObject(r, "reopened", (double)b->reopened[i]);
		cJSON_AddNumberToObject(r, "verified", (double)b->verified[i]);
		cJSON_AddNumberToObject(r, "realerts", (double)b->realerts[i]);
	}
	return o;
}

int backtest_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"json", no_argument, NULL, 'j'},
	        {"quiet", no_argument, NULL, 'q'},
	        {"decoders", required_argument, NULL, 'd'},
	        {"now", required_argument, NULL, 'n'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct bt b = {0};
	const char *file = NULL;
	char err[512];
	int c, rc = 0;
	int64_t t0, now_ms = clock_wall_ms();
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	char *end;

	/* The reader and the engine's thread take about one core between them. */
	b.ndec = cores < 2 ? 1 : cores - 1 > MAX_DECODERS ? MAX_DECODERS : (int)cores - 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': file = optarg; break;
		case 'j': b.json = 1; break;
		case 'q': b.quiet = 1; break;
		case 'd':
			b.ndec = (int)strtol(optarg, &end, 10);
			if (*end || b.ndec < 1 || b.ndec > MAX_DECODERS) {
				fprintf(stderr,
				        "voca backtest: --decoders takes 1 to %d, not '%s'\n",
				        MAX_DECODERS, optarg);
				return 2;
			}
			break;
		case 'n':
			if (strcmp(optarg, "none") == 0) {
				now_ms = 0; /* the decoder's "no clock": no future check */
			} else if (rfc3339_parse(optarg, &now_ms) < 0) {
				fprintf(stderr,
				        "voca backtest: --now takes an RFC 3339 time or 'none', not "
				        "'%s'\n",
				        optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (file == NULL || optind >= argc) {
		fprintf(stderr, "voca backtest: needs -c FILE and at least one FEED\n");
		return 2;
	}
	if (config_load(file, &b.cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "voca backtest: %s\n", err);
		return 1;
	}
	if (b.cfg.rules.n == 0) {
		fprintf(stderr, "voca backtest: %s has no rules\n", file);
		config_free(&b.cfg);
		return 1;
	}
	b.engine = engine_new(&b.cfg.rules, b.cfg.engine.lateness_ms, on_incident, &b);
	engine_max_keys(b.engine, (size_t)b.cfg.engine.max_keys);
	engine_forget_after(b.engine, b.cfg.engine.forget_after_ms);
	engine_review(b.engine, b.cfg.engine.review_confidence, b.cfg.engine.review_counts_volume,
	              on_review);
	struct suppress_lists lists = {&b.cfg.silences, &b.cfg.time_windows, &b.cfg.known_issues};

	engine_suppress(b.engine, &lists, (int)b.cfg.engine.budget_per_hour);
	b.incidents = cJSON_CreateArray();
	b.review_examples = cJSON_CreateArray();
	pthread_t engine_thread;

	t0 = clock_mono_ns();
	for (int d = 0; d < b.ndec; d++) {
		b.dec[d].in = evqueue_new(3);
		b.dec[d].limits = config_decode_limits(&b.cfg);
		/* "Ahead of the clock" as the daemon judges it: by the clock now, or --now. */
		b.dec[d].limits.now_ms = now_ms;
		b.dec[d].out = evqueue_new(3);
		if (!engine_reads_raw(b.engine))
			evqueue_drop_raw(b.dec[d].out);
		if (pthread_create(&b.dec[d].thread, NULL, decode_loop, &b.dec[d]) != 0) {
			evqueue_free(b.dec[d].in);
			evqueue_free(b.dec[d].out);
			b.ndec = d; /* as many as could start */
			break;
		}
	}
	int engine_started =
	        b.ndec > 0 && pthread_create(&engine_thread, NULL, engine_loop, &b) == 0;

	if (engine_started) {
		rc = read_feeds(&b, argv + optind, argc - optind);
	} else {
		fprintf(stderr, "voca backtest: cannot start a thread\n");
		rc = 1;
		for (int d = 0; d < b.ndec; d++)
			evqueue_close(b.dec[d].in); /* the decoders stop */
	}
	for (int d = 0; d < b.ndec; d++) {
		pthread_join(b.dec[d].thread, NULL);
		b.invalid += b.dec[d].invalid;
		for (int why = 0; why < REJECT_CODES; why++) {
			const struct decoder *first = b.example[why];

			if (b.dec[d].invalid_by[why] &&
			    (first == NULL ||
			     b.dec[d].example_line[why] < first->example_line[why]))
				b.example[why] = &b.dec[d];
			b.invalid_by[why] += b.dec[d].invalid_by[why];
		}
	}
	if (engine_started)
		pthread_join(engine_thread, NULL);
	engine_finish(b.engine);
	double secs = (double)(clock_mono_ns() - t0) / 1e9;

	if (rc == 0 && b.json) {
		cJSON *out = counts_json(&b);
		char *s;

		cJSON_AddItemToObject(out, "incidents", b.incidents);
		b.incidents = NULL;
		cJSON_AddItemToObject(out, "review_examples", b.review_examples);
		b.review_examples = NULL;
		s = cJSON_Print(out);
		puts(s);
		free(s);
		cJSON_Delete(out);
	} else if (rc == 0) {
		print_counts(&b, secs);
	}
	cJSON_Delete(b.incidents);
	cJSON_Delete(b.review_examples);
	engine_free(b.engine);
	for (int d = 0; d < b.ndec; d++) {
		evqueue_free(b.dec[d].in);
		evqueue_free(b.dec[d].out);
	}
	free(b.by_id);
	free(b.seen.slot);
	free(b.reviewed.slot);
	config_free(&b.cfg);
	return rc;
}
