/*
 * backtest.c: `voca backtest` (see backtest.h).
 *
 * The same decoder and the same engine as the daemon, fed from files in
 * event time. Events are deduplicated the way the store does it: the first
 * (event_id, revision) counts; repeats and lower revisions do not; a higher
 * revision is reported but not re-counted (the engine cannot yet take an
 * event back). Incidents print as they open and resolve (text), or all at
 * the end with their explanations (--json).
 *
 * Two threads, one per core: the main thread reads and decodes (a little
 * over half the work) and hands the events over in batches, copied out of
 * the parse arena, to the engine's thread, which dedupes them and runs the
 * rules in file order.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* event_id hash -> highest revision seen: 16 bytes an event. */
struct seen {
	uint64_t *hash;
	int64_t *rev;
	size_t n, cap;
};

struct bt {
	struct config cfg;
	struct evqueue *q;
	struct engine *engine;
	struct seen seen;
	int json, quiet;
	cJSON *incidents; /* --json: by incident id order */
	uint64_t lines, invalid, duplicates, revisions, counted, review;
	cJSON *review_examples; /* --json: the first few items of the review queue */
	uint64_t opened[64], resolved[64], reopened[64], realerts[64]; /* per rule index */
};

static uint64_t hash64(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h ? h : 1;
}

/* Returns 1 if the event is new, 0 for a repeat or stale, 2 for a higher revision. */
static int seen_put(struct seen *s, const char *id, int64_t rev)
{
	uint64_t h = hash64(id);
	size_t i;

	if ((s->n + 1) * 10 > s->cap * 7) {
		struct seen g = {.cap = s->cap ? s->cap * 2 : 1 << 16};

		g.hash = xcalloc(g.cap, sizeof(*g.hash));
		g.rev = xcalloc(g.cap, sizeof(*g.rev));
		for (size_t j = 0; j < s->cap; j++) {
			if (!s->hash[j])
				continue;
			for (i = s->hash[j] & (g.cap - 1); g.hash[i]; i = (i + 1) & (g.cap - 1))
				;
			g.hash[i] = s->hash[j];
			g.rev[i] = s->rev[j];
		}
		g.n = s->n;
		free(s->hash);
		free(s->rev);
		*s = g;
	}
	for (i = h & (s->cap - 1); s->hash[i]; i = (i + 1) & (s->cap - 1)) {
		if (s->hash[i] == h) {
			if (rev <= s->rev[i])
				return 0;
			s->rev[i] = rev;
			return 2;
		}
	}
	s->hash[i] = h;
	s->rev[i] = rev;
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
	cJSON_AddStringToObject(o, "summary", inc->summary);
	cJSON_AddItemToObject(o, "why", cJSON_Duplicate(inc->why, 1));
	cJSON_AddNumberToObject(o, "firings", (double)inc->firings);
	cJSON_AddNumberToObject(o, "realerts", inc->realerts);
	cJSON_AddNumberToObject(o, "reopens", inc->reopens);
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
	else if (inc->notify)
		b->realerts[r]++;
	if (b->json) {
		if (ch == INCIDENT_OPENED) {
			cJSON_AddItemToArray(b->incidents, incident_json(inc));
			return;
		}
		/* Incidents are appended in id order: id n is element n - 1. */
		cJSON *o = cJSON_GetArrayItem(b->incidents, (int)inc->id - 1);

		cJSON_ReplaceItemInObject(o, "firings", cJSON_CreateNumber((double)inc->firings));
		if (ch == INCIDENT_RESOLVED) {
			rfc3339_format(inc->resolved_ms, t, sizeof(t));
			cJSON_ReplaceItemInObject(o, "resolved", cJSON_CreateString(t));
		} else if (ch == INCIDENT_REOPENED) {
			cJSON_ReplaceItemInObject(o, "resolved", cJSON_CreateNull());
			cJSON_ReplaceItemInObject(o, "reopens", cJSON_CreateNumber(inc->reopens));
		} else if (inc->notify) {
			cJSON_ReplaceItemInObject(o, "realerts", cJSON_CreateNumber(inc->realerts));
		}
		return;
	}
	if (b->quiet || (ch == INCIDENT_UPDATED && !inc->notify && !inc->suppressed[0]))
		return;
	if (ch == INCIDENT_RESOLVED) {
		rfc3339_format(inc->resolved_ms, t, sizeof(t));
		printf("%.16s  resolved #%-4llu after %llu firing%s\n", t,
		       (unsigned long long)inc->id, (unsigned long long)inc->firings,
		       inc->firings == 1 ? "" : "s");
		return;
	}
	rfc3339_format(ch == INCIDENT_UPDATED ? inc->updated_ms : inc->opened_ms, t, sizeof(t));
	printf("%.16s  %-8s #%-4llu tier %d  %-20s %s\n", t,
	       ch == INCIDENT_OPENED     ? "opened"
	       : ch == INCIDENT_REOPENED ? "reopened"
	                                 : "re-alert",
	       (unsigned long long)inc->id, inc->tier, inc->rule, inc->summary);
	if (inc->suppressed[0])
		printf("                  (not notified: suppressed by %s)\n", inc->suppressed);
}

static void on_review(void *arg, const struct event *ev, const char *reason)
{
	struct bt *b = arg;

	b->review++;
	if (b->review_examples && cJSON_GetArraySize(b->review_examples) < 20) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "event_id", ev->event_id);
		cJSON_AddStringToObject(o, "reason", reason);
		cJSON_AddItemToArray(b->review_examples, o);
	}
}

/* The engine's thread: runs the batches in order until the reader is done. */
static void *engine_loop(void *arg)
{
	struct bt *b = arg;
	struct evbatch *x;
	int closed = 0;

	pthread_setname_np(pthread_self(), "voca-engine");
	while (!closed) {
		if ((x = evqueue_next(b->q, -1, &closed)) == NULL)
			continue;
		for (size_t i = 0; i < x->n; i++) {
			const struct event *ev = &x->ev[i];

			switch (seen_put(&b->seen, ev->event_id, ev->revision)) {
			case 0: b->duplicates++; continue;
			case 2: b->revisions++; continue;
			default: break;
			}
			b->counted++;
			engine_event(b->engine, ev);
		}
		evqueue_done(b->q, x);
	}
	return NULL;
}

static int on_event(void *arg, const struct event *ev, const struct event_error *err,
                    const char *raw, size_t len)
{
	struct bt *b = arg;

	(void)err;
	(void)raw;
	(void)len;
	if (ev == NULL) {
		b->invalid++;
		return 0;
	}
	evqueue_add(b->q, ev, 0);
	evqueue_release(b->q, 1);
	return 0;
}

static void usage(FILE *f)
{
	fputs("usage: voca backtest -c FILE [--json] [--quiet] FEED...\n"
	      "\n"
	      "Runs the configured rules over JSON Lines feeds (plain or gzip, in time order)\n"
	      "with no delivery, and prints the incidents they would open, with their\n"
	      "explanations, and counts per rule and tier.\n"
	      "\n"
	      "  -c, --config FILE   the configuration with the rules\n"
	      "      --json          print JSON: the incidents with their explanations\n"
	      "  -q, --quiet         print only the counts\n",
	      f);
}

static void print_counts(const struct bt *b, double secs)
{
	const struct engine_stats *st = engine_stats(b->engine);

	printf("\nbacktest: %llu lines, %llu events counted (%llu invalid, %llu repeats, %llu "
	       "higher revisions not re-counted, %llu late) in %.2f s (%.0f events/s)\n",
	       (unsigned long long)b->lines, (unsigned long long)b->counted,
	       (unsigned long long)b->invalid, (unsigned long long)b->duplicates,
	       (unsigned long long)b->revisions, (unsigned long long)st->late, secs,
	       secs > 0 ? (double)b->lines / secs : 0.0);
	printf("  review queue: %llu events under confidence %.2f or flagged needs_review\n",
	       (unsigned long long)b->review, b->cfg.engine.review_confidence);
	printf("  muted notifications: %llu (known issues, silences, time windows, inhibition, "
	       "budget)\n",
	       (unsigned long long)st->suppressed);
	for (size_t i = 0; i < b->cfg.rules.n && i < 64; i++) {
		const struct rule_common *c = b->cfg.rules.v[i].data;

		printf("  %-24s %-10s tier %lld  %5llu opened, %5llu reopened, %5llu re-alerts, %5llu "
		       "resolved\n",
		       c->name, rule_kinds[b->cfg.rules.v[i].variant]->name, (long long)c->tier,
		       (unsigned long long)b->opened[i], (unsigned long long)b->reopened[i],
		       (unsigned long long)b->realerts[i], (unsigned long long)b->resolved[i]);
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
	cJSON_AddNumberToObject(o, "repeats", (double)b->duplicates);
	cJSON_AddNumberToObject(o, "late", (double)engine_stats(b->engine)->late);
	cJSON_AddNumberToObject(o, "review", (double)b->review);
	cJSON_AddNumberToObject(o, "suppressed", (double)engine_stats(b->engine)->suppressed);
	for (size_t i = 0; i < b->cfg.rules.n && i < 64; i++) {
		const struct rule_common *c = b->cfg.rules.v[i].data;
		cJSON *r = cJSON_AddObjectToObject(rules, c->name);

		cJSON_AddStringToObject(r, "kind", rule_kinds[b->cfg.rules.v[i].variant]->name);
		cJSON_AddNumberToObject(r, "tier", (double)c->tier);
		cJSON_AddNumberToObject(r, "opened", (double)b->opened[i]);
		cJSON_AddNumberToObject(r, "resolved", (double)b->resolved[i]);
		cJSON_AddNumberToObject(r, "reopened", (double)b->reopened[i]);
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
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct bt b = {0};
	const char *file = NULL;
	char err[512];
	int c, rc = 0;
	int64_t t0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': file = optarg; break;
		case 'j': b.json = 1; break;
		case 'q': b.quiet = 1; break;
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
	engine_review(b.engine, b.cfg.engine.review_confidence, b.cfg.engine.review_counts_volume,
	              on_review);
	struct suppress_lists lists = {&b.cfg.silences, &b.cfg.time_windows, &b.cfg.known_issues};

	engine_suppress(b.engine, &lists, (int)b.cfg.engine.budget_per_hour);
	b.incidents = cJSON_CreateArray();
	b.review_examples = cJSON_CreateArray();
	b.q = evqueue_new(3);
	pthread_t engine_thread;

	t0 = clock_mono_ns();
	if (pthread_create(&engine_thread, NULL, engine_loop, &b) != 0) {
		fprintf(stderr, "voca backtest: cannot start a thread\n");
		return 1;
	}
	for (int i = optind; i < argc && rc == 0; i++) {
		struct jsonl *j = jsonl_open(argv[i], err, sizeof(err));
		const char *line;
		long n;

		if (j == NULL) {
			fprintf(stderr, "voca backtest: %s\n", err);
			rc = 1;
			break;
		}
		while ((n = jsonl_next(j, &line, err, sizeof(err))) >= 0) {
			if (n == 0)
				continue;
			b.lines++;
			event_decode(line, (size_t)n, NULL, on_event, &b);
		}
		if (n == -2) {
			fprintf(stderr, "voca backtest: %s: %s\n", argv[i], err);
			rc = 1;
		}
		jsonl_close(j);
	}
	evqueue_release(b.q, 0);
	evqueue_close(b.q);
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
	evqueue_free(b.q);
	free(b.seen.hash);
	free(b.seen.rev);
	config_free(&b.cfg);
	return rc;
}
