/*
 * rulerun.c: the rules engine on its own thread (see rulerun.h).
 *
 * The thread holds the store's write lock only to write: writers take turns
 * (store_writer_enter), so a transaction of this thread's kept open while
 * it runs events would stall the ingest's next commit for that long. Review
 * rows are therefore gathered in memory and written in one short
 * transaction whenever the backlog is empty (and at least every 1 MiB);
 * incident changes, which are rare and carry deliveries, are written as
 * they happen and committed at the end of their batch.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <voca/buf.h>
#include <voca/engine.h>
#include <voca/log.h>
#include <voca/suppress.h>
#include <voca/xalloc.h>

#include "clock.h"
#include "evqueue.h"
#include "rulerun.h"

/* Released batches that may wait: 2,048 events, ~15 ms of a saturated ingest. */
#define MAX_READY 8
/* Buffered review rows are written once they reach this many bytes. */
#define REVIEWS_FLUSH (1u << 20)
/* SQLite page cache of this thread's connection: it reads little. */
#define CACHE_BYTES (2 << 20)

struct rulerun {
	const struct config *cfg;
	struct store *st; /* this thread's connection */
	struct outbox *ob;
	struct engine *engine;
	struct evqueue *q;
	struct suppress_lists lists;
	struct decode_limits limits;
	pthread_t thread;
	int started;
	pthread_mutex_t cfg_mu;
	atomic_int failed;
	int failed_fd;      /* an eventfd, readable once failed is set */
	int64_t fed_rowid;  /* the last event the engine has seen */
	int64_t fed_rev;    /* the last higher revision it has seen (its seq) */
	int64_t replay_tag; /* of the stored event being replayed */
	int replayed_revisions;
	size_t saved_records; /* by the checkpoint in progress */
	int64_t checkpoint_ns, last_checkpoint_ns, last_tick_ns;
	struct buf reviews; /* rows not yet written: ts (8 bytes), event id, NUL, reason, NUL */
};

/* Sets failed, and wakes the daemon's poll to notice it. */
static void set_failed(struct rulerun *r)
{
	uint64_t one = 1;

	atomic_store(&r->failed, 1);
	if (r->failed_fd >= 0 && write(r->failed_fd, &one, sizeof(one)) < 0)
		log_error("rules: cannot wake the daemon: %m");
}

static void fail(struct rulerun *r, const char *what)
{
	log_error("rules: %s: %s", what, store_error(r->st));
	set_failed(r);
}

static void on_incident(void *arg, const struct incident *inc, enum incident_change ch)
{
	static const char *const what[] = {"opened", "updated", "resolved", "reopened"};
	struct rulerun *r = arg;
	int64_t change_id = 0;

	if (atomic_load(&r->failed))
		return;
	if (store_incident(r->st, inc, ch, &change_id) < 0) {
		fail(r, "cannot record an incident change");
		return;
	}
	/* In the same transaction: the change's deliveries (a replay finds them made). */
	if (r->ob && change_id > 0 &&
	    outbox_enqueue(r->ob, r->st, inc, ch, change_id, clock_wall_ms()) < 0) {
		fail(r, "cannot queue an incident's deliveries");
		return;
	}
	if (ch != INCIDENT_UPDATED || inc->notify)
		log_info("incident %llu %s: tier %d %s: %s%s%s", (unsigned long long)inc->id,
		         ch == INCIDENT_UPDATED ? "re-alert" : what[ch], inc->tier, inc->rule,
		         inc->summary, inc->suppressed[0] ? " (suppressed: " : "",
		         inc->suppressed[0] ? inc->suppressed : "");
}

static void on_review(void *arg, const struct event *ev, const char *reason)
{
	struct rulerun *r = arg;

	/* Written at 1 MiB, so the 64 MiB cap is never met; if it were, say so and stop
	 * rather than drop rows (a restart replays them from the checkpoint). */
	if (buf_add(&r->reviews, &ev->ts_ms, sizeof(ev->ts_ms)) < 0 ||
	    buf_add(&r->reviews, ev->event_id, strlen(ev->event_id) + 1) < 0 ||
	    buf_add(&r->reviews, reason, strlen(reason) + 1) < 0) {
		log_error("rules: the review queue's buffer is full; stopping");
		set_failed(r);
	}
}

static int write_reviews(struct rulerun *r)
{
	const char *p = r->reviews.data, *end = p + r->reviews.len;

	while (p < end) {
		int64_t ts;
		const char *id, *reason;

		memcpy(&ts, p, sizeof(ts));
		id = p + sizeof(ts);
		reason = id + strlen(id) + 1;
		p = reason + strlen(reason) + 1;
		if (store_review(r->st, id, ts, reason) < 0) {
			buf_reset(&r->reviews);
			return -1;
		}
	}
	buf_reset(&r->reviews);
	return 0;
}

static int save_rule_state(void *arg, const char *rule, const char *key, const void *blob,
                           size_t len)
{
	struct rulerun *r = arg;

	r->saved_records++;
	return store_rule_state(r->st, rule, key, blob, len);
}

/*
 * Writes what the engine decided and commits it; with checkpoint (or when
 * one is due) the engine's state and the rowid it covers go in the same
 * transaction.
 */
static void settle(struct rulerun *r, int checkpoint)
{
	int64_t t0 = 0;

	if (atomic_load(&r->failed))
		return;
	/* The checkpoint first: engine_save sorts its keys before its first
	 * write, which takes the write lock (the reviews' would take it first). */
	if (checkpoint || clock_mono_ns() - r->last_checkpoint_ns >= r->checkpoint_ns) {
		t0 = r->last_checkpoint_ns = clock_mono_ns();
		r->saved_records = 0;
		if (engine_save(r->engine, save_rule_state, r) < 0 ||
		    store_meta_set(r->st, "rules_checkpoint", r->fed_rowid) < 0 ||
		    store_meta_set(r->st, "rules_checkpoint_revision", r->fed_rev) < 0) {
			fail(r, "checkpoint failed");
			return;
		}
	}
	if (r->reviews.len && write_reviews(r) < 0) {
		fail(r, "cannot queue events for review");
		return;
	}
	if (store_commit(r->st) < 0) {
		fail(r, "commit failed");
		return;
	}
	if (t0) {
		/* The ingest's commits wait while it is written: say so when it is long. */
		double ms = (double)(clock_mono_ns() - t0) / 1e6;

		if (ms >= 250)
			log_info("rules: checkpoint of %zu records took %.0f ms", r->saved_records,
			         ms);
		else
			log_debug("rules: checkpoint of %zu records took %.0f ms", r->saved_records,
			          ms);
	}
}

/* Moves a live stream's clock to now less the allowed lateness. */
static void tick(struct rulerun *r)
{
	int64_t now = clock_wall_ms(), max_ts = engine_max_ts(r->engine);

	r->last_tick_ns = clock_mono_ns();
	/* Live streams only: a replay of old history keeps event time. */
	if (max_ts == INT64_MIN || now - max_ts > 86400000LL)
		return;
	engine_flush(r->engine, now - r->cfg->engine.lateness_ms);
}

/* An event (tag: its rowid) or a higher revision (tag: minus its seq). */
static void feed(struct rulerun *r, const struct event *ev, int64_t tag)
{
	if (tag < 0) {
		engine_revision(r->engine, ev);
		r->fed_rev = -tag;
	} else {
		engine_event(r->engine, ev);
		r->fed_rowid = tag;
	}
}

static void run_batch(struct rulerun *r, const struct evbatch *b)
{
	for (size_t i = 0; i < b->n; i++)
		feed(r, &b->ev[i], b->tag[i]);
}

static long until_tick_ms(const struct rulerun *r)
{
	int64_t left = r->last_tick_ns + 1000000000LL - clock_mono_ns();

	return left <= 0 ? 0 : (long)(left / 1000000 + 1);
}

static void *loop(void *arg)
{
	struct rulerun *r = arg;
	int closed = 0;

	pthread_setname_np(pthread_self(), "voca-rules");
	for (;;) {
		struct evbatch *b = evqueue_next(r->q, 0, &closed);

		if (b == NULL) {
			/* Caught up: write what waited, then sleep until work or the next tick. */
			pthread_mutex_lock(&r->cfg_mu);
			settle(r, 0);
			pthread_mutex_unlock(&r->cfg_mu);
			if (closed)
				break;
			b = evqueue_next(r->q, until_tick_ms(r), &closed);
		}
		pthread_mutex_lock(&r->cfg_mu);
		if (b && !atomic_load(&r->failed))
			run_batch(r, b);
		if (clock_mono_ns() - r->last_tick_ns >= 1000000000LL && !atomic_load(&r->failed))
			tick(r);
		/* An incident change holds the write lock since it was recorded: end it now. */
		if (store_pending(r->st) || r->reviews.len >= REVIEWS_FLUSH ||
		    clock_mono_ns() - r->last_checkpoint_ns >= r->checkpoint_ns)
			settle(r, 0);
		pthread_mutex_unlock(&r->cfg_mu);
		if (b)
			evqueue_done(r->q, b);
	}
	pthread_mutex_lock(&r->cfg_mu);
	settle(r, 1);
	pthread_mutex_unlock(&r->cfg_mu);
	xalloc_arena_release(); /* the evidence builder decoded events on this thread */
	return NULL;
}

/* ---- the ingest's side ---- */

static void sink_event(void *arg, const struct event *ev, int64_t rowid)
{
	struct rulerun *r = arg;

	evqueue_add(r->q, ev, rowid);
}

static void sink_committed(void *arg)
{
	struct rulerun *r = arg;

	evqueue_release(r->q, 0);
}

void rulerun_sink(struct rulerun *r, struct ingest_sink *out)
{
	out->event = sink_event;
	out->committed = sink_committed;
	out->arg = r;
}

/* ---- start and stop ---- */

static int restore_one(void *arg, const char *rule, const char *key, const void *blob, size_t len)
{
	return engine_restore(arg, rule, key, blob, len);
}

static int replay_event(void *arg, const struct event *ev, const struct event_error *err,
                        const char *raw, size_t len)
{
	struct rulerun *r = arg;

	(void)err;
	(void)raw;
	(void)len;
	if (ev)
		feed(r, ev, r->replay_tag);
	return 0;
}

static int replay_one(void *arg, int64_t tag, const char *body, size_t len)
{
	struct rulerun *r = arg;

	r->replay_tag = tag;
	r->replayed_revisions += tag < 0;
	event_decode(body, len, &r->limits, replay_event, r);
	if (r->reviews.len >= REVIEWS_FLUSH && write_reviews(r) < 0)
		return -1;
	return atomic_load(&r->failed) ? -1 : 0;
}

struct rulerun *rulerun_new(const struct config *cfg, struct store *primary, struct outbox *ob,
                            char *err, size_t errlen)
{
	struct rulerun *r = xcalloc(1, sizeof(*r));
	int n;

	r->cfg = cfg;
	r->ob = ob;
	pthread_mutex_init(&r->cfg_mu, NULL);
	r->failed_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->failed_fd < 0) {
		snprintf(err, errlen, "rules: eventfd: %s", strerror(errno));
		goto fail;
	}
	buf_init(&r->reviews, (size_t)64 << 20);
	r->limits = config_decode_limits(cfg); /* what the ingest accepted replays */
	r->checkpoint_ns = cfg->engine.checkpoint_ms * 1000000;
	r->last_checkpoint_ns = r->last_tick_ns = clock_mono_ns();
	r->st = store_open_peer(primary, CACHE_BYTES, err, errlen);
	if (r->st == NULL)
		goto fail;
	r->q = evqueue_new(MAX_READY);
	r->engine = engine_new(&cfg->rules, cfg->engine.lateness_ms, on_incident, r);
	engine_review(r->engine, cfg->engine.review_confidence, cfg->engine.review_counts_volume,
	              on_review);
	if (!engine_reads_raw(r->engine))
		evqueue_drop_raw(r->q); /* the rules thread's copy of each event: strings only */
	r->lists = (struct suppress_lists){&cfg->silences, &cfg->time_windows, &cfg->known_issues};
	engine_suppress(r->engine, &r->lists, (int)cfg->engine.budget_per_hour);
	n = store_rule_state_each(r->st, restore_one, r->engine);
	log_info("rules: %zu rules, %zu silences, %zu time windows; restored %d saved records",
	         cfg->rules.n, cfg->silences.n, cfg->time_windows.n, n < 0 ? 0 : n);
	r->fed_rowid = store_meta_get(r->st, "rules_checkpoint", 0);
	r->fed_rev = store_meta_get(r->st, "rules_checkpoint_revision", 0);
	n = store_events_since(r->st, r->fed_rowid, r->fed_rev, replay_one, r);
	if (n < 0 || atomic_load(&r->failed)) {
		snprintf(err, errlen, "rules: replay: %s", store_error(r->st));
		goto fail;
	}
	/* Commit before the delivery workers start: the replay's read spanned its writes. */
	settle(r, n > 0);
	if (atomic_load(&r->failed)) {
		snprintf(err, errlen, "rules: %s", store_error(r->st));
		goto fail;
	}
	if (n > 0)
		log_info("rules: replayed %d events and %d higher revisions stored after the last "
		         "checkpoint",
		         n - r->replayed_revisions, r->replayed_revisions);
	return r;
fail:
	rulerun_free(r);
	return NULL;
}

void rulerun_on_deliveries(struct rulerun *r, void (*fn)(void *arg), void *arg)
{
	store_on_deliveries(r->st, fn, arg);
}

int rulerun_start(struct rulerun *r, char *err, size_t errlen)
{
	if (pthread_create(&r->thread, NULL, loop, r) != 0) {
		snprintf(err, errlen, "rules: cannot start a thread");
		return -1;
	}
	r->started = 1;
	return 0;
}

void rulerun_lock(struct rulerun *r)
{
	pthread_mutex_lock(&r->cfg_mu);
}

void rulerun_unlock(struct rulerun *r)
{
	pthread_mutex_unlock(&r->cfg_mu);
}

int rulerun_failed(const struct rulerun *r)
{
	return atomic_load(&r->failed);
}

int rulerun_failed_fd(const struct rulerun *r)
{
	return r->failed_fd;
}

int rulerun_stop(struct rulerun *r)
{
	if (r == NULL)
		return 0;
	/* Only what the ingest released (committed) runs: nothing else is durable. */
	if (r->started) {
		evqueue_close(r->q);
		pthread_join(r->thread, NULL);
		r->started = 0;
	}
	return atomic_load(&r->failed) ? -1 : 0;
}

void rulerun_free(struct rulerun *r)
{
	if (r == NULL)
		return;
	rulerun_stop(r);
	engine_free(r->engine);
	store_close(r->st);
	evqueue_free(r->q);
	buf_free(&r->reviews);
	pthread_mutex_destroy(&r->cfg_mu);
	if (r->failed_fd >= 0)
		close(r->failed_fd);
	free(r);
}
