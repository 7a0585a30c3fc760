/*
 * rulerun.c: the rules engine on its own thread (see rulerun.h).
 *
 * The thread holds the store's write lock only to write: writers take turns
 * (store_writer_enter), so a transaction of this thread's kept open while
 * it runs events would stall the ingest's next commit for that long. Review
 * rows are therefore gathered in memory and written in one short
 * transaction whenever the backlog is empty (and at least every 1 MiB);
 * incident changes, which are rare and carry deliveries, are written as
 * they happen and committed at the end of their batch. The engine's state
 * goes to a file of its own (rulestate.h), so a checkpoint holds no lock
 * the ingest needs, and when this thread falls behind, the queue lets
 * events go and read_back() takes them from the store.
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
#include "rulestate.h"

/* Released batches that may wait: 2,048 events, ~15 ms of a saturated ingest. */
#define MAX_READY 8
/* Buffered review rows are written once they reach this many bytes. */
#define REVIEWS_FLUSH (1u << 20)
/* SQLite page cache of each of this thread's connections (the store's, the
 * state file's): they read only what they write and what they read back. */
#define CACHE_BYTES (2 << 20)
/* Events read back from the store in one turn, when the queue let them go. */
#define READ_BACK_EVENTS 2048

/* What the rules leave out, each kind a counter in the store (voca stats). */
enum { LEFT_LATE, LEFT_UNGROUPED, LEFT_CAPPED, LEFT_KINDS };
static const char *const left_counter[LEFT_KINDS] = {"rules_late", "rules_ungrouped",
                                                     "rules_capped"};

struct rulerun {
	const struct config *cfg;
	struct store *st;     /* this thread's connection */
	struct rulestate *rs; /* the engine's state, in a file of its own */
	struct outbox *ob;
	struct engine *engine;
	struct evqueue *q;
	struct suppress_lists lists;
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
	struct buf back;    /* events read back: tag (8 bytes), length (8), body */
	size_t back_n;      /* how many */
	int64_t behind_ns;  /* when the queue first let events go (0: it has not) */
	/* What the rules left out (left_out()): as last written to the store's
	 * counters, and as last logged, when. */
	uint64_t left_written[LEFT_KINDS], left_logged[LEFT_KINDS];
	uint64_t forgotten_written; /* engine_stats' forgotten as last counted */
	uint64_t retired_logged;    /* engine_stats' retired as last logged */
	int64_t left_out_logged_ns;
	int64_t silences_seen_ms; /* wall time up to which silence ends were announced */
	size_t read_back;         /* events read back since */
	void (*on_idle)(void *arg, int64_t fed_rowid);
	void *on_idle_arg;
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
	static const char *const what[] = {"opened", "updated", "resolved", "reopened", "verified"};
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

/* Buffered in order: 'q' queues a report, 'c' takes one off (reason NULL: re-scored confident). */
static void on_review(void *arg, const struct event *ev, const char *reason)
{
	struct rulerun *r = arg;
	char op = reason ? 'q' : 'c', note[96];

	if (reason == NULL) {
		snprintf(note, sizeof(note), "re-scored: confidence %.2f, not flagged needs_review",
		         ev->confidence);
		reason = note;
	}
	/* Written at 1 MiB, so the 64 MiB cap is never met; if it were, say so and stop
	 * rather than drop rows (a restart replays them from the checkpoint). */
	if (buf_add(&r->reviews, &op, 1) < 0 ||
	    buf_add(&r->reviews, &ev->ts_ms, sizeof(ev->ts_ms)) < 0 ||
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
		char op = *p++;

		memcpy(&ts, p, sizeof(ts));
		id = p + sizeof(ts);
		reason = id + strlen(id) + 1;
		p = reason + strlen(reason) + 1;
		if ((op == 'q' ? store_review(r->st, id, ts, reason)
		               : store_review_clear(r->st, id, clock_wall_ms(), reason)) < 0) {
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
	return rulestate_put(r->rs, rule, key, blob, len);
}

/*
 * The engine's state and the position it covers, in the state file. What
 * the store holds up to that position is on disk first (see rulestate.h).
 * The ingest goes on meanwhile: this is another file, and the queue lets
 * go what arrives.
 */
static int checkpoint_now(struct rulerun *r)
{
	if (store_rules_position(r->st, r->fed_rowid, r->fed_rev) < 0) {
		fail(r, "checkpoint failed");
		return -1;
	}
	r->saved_records = 0;
	if (engine_save(r->engine, save_rule_state, r) < 0 ||
	    rulestate_set_position(r->rs, r->fed_rowid, r->fed_rev) < 0 ||
	    rulestate_commit(r->rs) < 0) {
		log_error("rules: checkpoint failed: %s", rulestate_error(r->rs));
		set_failed(r);
		return -1;
	}
	if (engine_stats(r->engine)->retired > r->retired_logged) {
		log_info("rules: deleted the saved state of %llu rules not configured for "
		         "engine.forget_after (%lld d)",
		         (unsigned long long)(engine_stats(r->engine)->retired - r->retired_logged),
		         (long long)(r->cfg->engine.forget_after_ms / 86400000));
		r->retired_logged = engine_stats(r->engine)->retired;
	}
	return 0;
}

/*
 * Events the rules left out: too late for a bucketed rule (behind the
 * newest event time by more than engine.lateness, so the buckets they
 * belong to are closed), or without a rule's group_by field. Nothing is
 * left out in silence: the totals go to the store's counters (voca stats),
 * set rather than added, since the engine's own totals are exact across a
 * replay; the log says so at most once a minute.
 */
static void left_out(const struct engine *e, uint64_t n[LEFT_KINDS])
{
	const struct engine_stats *es = engine_stats(e);

	n[LEFT_LATE] = es->late;
	n[LEFT_UNGROUPED] = es->ungrouped;
	n[LEFT_CAPPED] = es->capped;
}

/* Keys forgotten (engine.forget_after): counted (voca stats) and logged per pass. */
static int note_forgotten(struct rulerun *r)
{
	uint64_t n = engine_stats(r->engine)->forgotten;

	if (n == r->forgotten_written)
		return 0;
	if (store_set_counter(r->st, "rules_forgotten", (int64_t)n) < 0)
		return -1;
	if (n > r->forgotten_written)
		log_info("rules: forgot %llu keys quiet for engine.forget_after (%lld d) or more; "
		         "back, they start over (%llu in all)",
		         (unsigned long long)(n - r->forgotten_written),
		         (long long)(r->cfg->engine.forget_after_ms / 86400000),
		         (unsigned long long)n);
	r->forgotten_written = n;
	return 0;
}

static int note_left_out(struct rulerun *r)
{
	uint64_t n[LEFT_KINDS];
	int64_t now = clock_mono_ns();

	if (note_forgotten(r) < 0)
		return -1;
	left_out(r->engine, n);
	if (memcmp(n, r->left_written, sizeof(n)) == 0)
		return 0;
	for (int i = 0; i < LEFT_KINDS; i++)
		if (store_set_counter(r->st, left_counter[i], (int64_t)n[i]) < 0)
			return -1;
	memcpy(r->left_written, n, sizeof(n));
	if (r->left_out_logged_ns && now - r->left_out_logged_ns < 60000000000LL)
		return 0;
	for (int i = 0; i < LEFT_KINDS; i++) {
		char why[192];

		if (n[i] <= r->left_logged[i])
			continue;
		if (i == LEFT_LATE)
			snprintf(
			        why, sizeof(why),
			        "came more than engine.lateness (%lld s) behind the newest event "
			        "time; the spike, rate_shift and flatline rules did not count them",
			        (long long)(r->cfg->engine.lateness_ms / 1000));
		else if (i == LEFT_UNGROUPED)
			snprintf(why, sizeof(why),
			         "matched a rule but lack a field of its group_by; not counted");
		else
			snprintf(
			        why, sizeof(why),
			        "had a new key for a rule already keeping engine.max_keys (%lld) keys "
			        "(is a group_by finer than meant?); not counted",
			        (long long)r->cfg->engine.max_keys);
		log_warn("rules: %llu events %s (%llu in all: voca stats)",
		         (unsigned long long)(n[i] - r->left_logged[i]), why,
		         (unsigned long long)n[i]);
	}
	memcpy(r->left_logged, n, sizeof(n));
	r->left_out_logged_ns = now;
	return 0;
}

/*
 * Writes what the engine decided and commits it; with checkpoint (or when
 * one is due) the engine's state and the position it covers follow.
 */
static void settle(struct rulerun *r, int checkpoint)
{
	int64_t t0 = 0;

	if (atomic_load(&r->failed))
		return;
	if (r->reviews.len && write_reviews(r) < 0) {
		fail(r, "cannot queue events for review");
		return;
	}
	if (note_left_out(r) < 0) {
		fail(r, "cannot count the events the rules left out");
		return;
	}
	if (store_commit(r->st) < 0) {
		fail(r, "commit failed");
		return;
	}
	if (checkpoint || clock_mono_ns() - r->last_checkpoint_ns >= r->checkpoint_ns) {
		t0 = r->last_checkpoint_ns = clock_mono_ns();
		if (checkpoint_now(r) < 0)
			return;
	}
	if (t0) {
		/* The rules wait while it is written (not the ingest): say so when it is long. */
		double ms = (double)(clock_mono_ns() - t0) / 1e6;

		if (ms >= 250)
			log_info("rules: checkpoint of %zu records took %.0f ms", r->saved_records,
			         ms);
		else
			log_debug("rules: checkpoint of %zu records took %.0f ms", r->saved_records,
			          ms);
	}
}

/* Says when a silence ends (wall time): what it muted notifies again. */
static void announce_silence_ends(struct rulerun *r, int64_t now)
{
	for (size_t i = 0; i < r->cfg->silences.n; i++) {
		const struct silence *s = r->cfg->silences.v[i].data;

		if (s->end_ms > r->silences_seen_ms && s->end_ms <= now)
			log_info("silence %zu by %s ended (%s): what it muted notifies again, its "
			         "open incidents at their next firing",
			         i, s->author, s->comment);
	}
	r->silences_seen_ms = now;
}

/* Moves a live stream's clock to now less the allowed lateness. */
static void tick(struct rulerun *r)
{
	int64_t now = clock_wall_ms(), max_ts = engine_max_ts(r->engine);

	r->last_tick_ns = clock_mono_ns();
	announce_silence_ends(r, now);
	/* Live streams only: a replay of old history keeps event time. */
	if (max_ts == INT64_MIN || now - max_ts > 86400000LL)
		return;
	engine_flush(r->engine, now - r->cfg->engine.lateness_ms);
}

/*
 * An event (tag: its rowid) or a higher revision (tag: minus its seq). One
 * the engine has seen is skipped: after a read back from the store, the
 * queue may hand over events the read found committed already.
 */
static void feed(struct rulerun *r, const struct event *ev, int64_t tag)
{
	if (tag < 0 ? -tag <= r->fed_rev : tag <= r->fed_rowid)
		return;
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

/*
 * Runs an event (or higher revision) read from the store, at a restart's
 * replay or a read back. It was accepted once, so it is decoded with the
 * loosest limits (the ingest's may have been tightened since); one that
 * still does not decode (a stricter decoder since an upgrade) is passed
 * with a warning, or a read back would read it again for ever.
 */
static void run_stored(struct rulerun *r, int64_t tag, const char *body, size_t len)
{
	int64_t *at = tag > 0 ? &r->fed_rowid : &r->fed_rev, want = tag > 0 ? tag : -tag;

	r->replay_tag = tag;
	event_decode(body, len, &decode_limits_stored, replay_event, r);
	if (*at < want) {
		log_warn("rules: a stored event (%s %lld) does not decode; passed",
		         tag > 0 ? "rowid" : "revision", (long long)want);
		*at = want;
	}
}

/* Copies a stored event for read_back: up to READ_BACK_EVENTS or 4 MiB a turn. */
static int collect(void *arg, int64_t tag, const char *body, size_t len)
{
	struct rulerun *r = arg;
	uint64_t n = len;

	if (buf_add(&r->back, &tag, sizeof(tag)) < 0 || buf_add(&r->back, &n, sizeof(n)) < 0 ||
	    buf_add(&r->back, body, len) < 0)
		return -1;
	return ++r->back_n >= READ_BACK_EVENTS || r->back.len >= (4u << 20) ? 1 : 0;
}

/*
 * The queue let events go rather than stall the ingest (the engine was
 * busy: a checkpoint, a burst): they are in the store, so read them back, a
 * turn at a time, and take batches from the queue again once nothing is
 * left behind. The read ends before the events run, so this connection
 * never turns a read into a write while the ingest commits.
 */
static void read_back(struct rulerun *r)
{
	int64_t rowid, seq;
	size_t n = 0;

	if (r->behind_ns == 0)
		r->behind_ns = clock_mono_ns();
	/* What was let go before this read began is committed: the read sees it. */
	evqueue_spilled(r->q, &rowid, &seq);
	buf_reset(&r->back);
	r->back_n = 0;
	if (store_events_since(r->st, r->fed_rowid, r->fed_rev, collect, r) < 0) {
		fail(r, "cannot read back events");
		return;
	}
	for (const char *p = r->back.data, *end = p + r->back.len; p < end; n++) {
		uint64_t len;
		int64_t tag;

		memcpy(&tag, p, sizeof(tag));
		memcpy(&len, p + 8, sizeof(len));
		run_stored(r, tag, p + 16, (size_t)len);
		p += 16 + len;
	}
	r->read_back += n;
	if (n)
		return;
	/* Nothing after the engine's position: all that was let go has run. */
	if (rowid > r->fed_rowid)
		r->fed_rowid = rowid;
	if (seq > r->fed_rev)
		r->fed_rev = seq;
	if (evqueue_resume(r->q, r->fed_rowid, r->fed_rev)) {
		double s = (double)(clock_mono_ns() - r->behind_ns) / 1e9;

		if (s >= 1)
			log_info(
			        "rules: fell behind the ingest; read %zu events back from the store "
			        "in %.1f s",
			        r->read_back, s);
		else
			log_debug("rules: fell behind the ingest; read %zu events back from the "
			          "store in %.3f s",
			          r->read_back, s);
		r->behind_ns = 0;
		r->read_back = 0;
	}
}

static long until_tick_ms(const struct rulerun *r)
{
	int64_t left = r->last_tick_ns + 1000000000LL - clock_mono_ns();

	return left <= 0 ? 0 : (long)(left / 1000000 + 1);
}

/* The queue let events go and has none ready before them. */
static int behind_ingest(struct rulerun *r)
{
	int64_t rowid, seq;

	if (!evqueue_spilled(r->q, &rowid, &seq))
		return 0;
	if (!atomic_load(&r->failed))
		return 1;
	/* Failed: nothing more runs (the next start replays it); take batches
	 * again, so that the wait for them blocks rather than spins. */
	evqueue_resume(r->q, INT64_MAX, INT64_MAX);
	return 0;
}

static void *loop(void *arg)
{
	struct rulerun *r = arg;
	int closed = 0;

	pthread_setname_np(pthread_self(), "voca-rules");
	for (;;) {
		struct evbatch *b = evqueue_next(r->q, 0, &closed);
		int behind = b == NULL && behind_ingest(r);

		if (b == NULL && !behind) {
			/* Caught up: write what waited, then sleep until work or the next tick. */
			pthread_mutex_lock(&r->cfg_mu);
			settle(r, 0);
			pthread_mutex_unlock(&r->cfg_mu);
			if (r->on_idle)
				r->on_idle(r->on_idle_arg, r->fed_rowid);
			if (closed)
				break;
			b = evqueue_next(r->q, until_tick_ms(r), &closed);
			behind = b == NULL && behind_ingest(r);
		}
		pthread_mutex_lock(&r->cfg_mu);
		if (b && !atomic_load(&r->failed))
			run_batch(r, b);
		else if (behind)
			read_back(r);
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

static void log_restore_note(void *arg, const char *rule, const char *note)
{
	(void)arg;
	log_warn("rules: rule '%s': %s", rule, note);
}

static int replay_one(void *arg, int64_t tag, const char *body, size_t len)
{
	struct rulerun *r = arg;

	r->replayed_revisions += tag < 0;
	run_stored(r, tag, body, len);
	if (r->reviews.len >= REVIEWS_FLUSH && write_reviews(r) < 0)
		return -1;
	return atomic_load(&r->failed) ? -1 : 0;
}

/*
 * Restores the engine's state and the position it covers: from the state
 * file; else from the store, where earlier versions kept it (*moved: the
 * first checkpoint moves it); else from nothing at position 0, so that
 * every stored event replays. Returns the records restored, or -1.
 */
static int restore(struct rulerun *r, const char *path, int *moved, char *err, size_t errlen)
{
	int64_t rowid, rev, in_store = store_meta_get(r->st, "rules_checkpoint", 0);
	int n, has = rulestate_position(r->rs, &rowid, &rev);

	*moved = 0;
	if (has > 0 && rowid > in_store) {
		/* The store lost commits the state covers (it syncs first: a disk that
		 * lied?). Replaying from the state's position would skip the rowids the
		 * store hands out again; replaying everything is exact. */
		log_error("rules: %s covers events up to rowid %lld, the store only %lld: starting "
		          "the rules over from every stored event",
		          path, (long long)rowid, (long long)in_store);
		if (rulestate_clear(r->rs) < 0)
			has = -1;
		else
			has = 0;
	}
	if (has < 0) {
		snprintf(err, errlen, "rules: %s: %s", path, rulestate_error(r->rs));
		return -1;
	}
	if (has) {
		n = rulestate_each(r->rs, restore_one, r->engine);
		r->fed_rowid = rowid;
		r->fed_rev = rev;
	} else {
		n = store_rule_state_each(r->st, restore_one, r->engine);
		if (n > 0) {
			*moved = 1;
			r->fed_rowid = in_store;
			r->fed_rev = store_meta_get(r->st, "rules_checkpoint_revision", 0);
		}
	}
	if (n < 0) {
		snprintf(err, errlen, "rules: cannot restore the saved state: %s",
		         has ? rulestate_error(r->rs) : store_error(r->st));
		return -1;
	}
	return n;
}

/* Open incidents of the store the engine does not hold open, and why. */
struct orphans {
	struct rulerun *r;
	struct orphan {
		int64_t id;
		char why[96];
	} * v;
	size_t n, cap;
};

static int find_orphan(void *arg, int64_t id, const char *rule, const char *key)
{
	struct orphans *o = arg;

	if (engine_is_open(o->r->engine, (uint64_t)id))
		return 0;
	if (o->n == o->cap) {
		o->cap = o->cap ? o->cap * 2 : 16;
		o->v = xrealloc(o->v, o->cap * sizeof(*o->v));
	}
	struct orphan *x = &o->v[o->n++];

	x->id = id;
	snprintf(x->why, sizeof(x->why), "closed at a restart: %s",
	         config_rule(o->r->cfg, rule) ? "the rules' state no longer holds it"
	                                      : "its rule is no longer configured");
	log_warn("rules: incident %lld (%s %s) was open; %s; nobody notified", (long long)id, rule,
	         key, x->why);
	return 0;
}

/*
 * After the restore and the replay, an incident the store has open and the
 * engine does not would stay open for ever, nothing left to resolve it: its
 * rule was removed or renamed (or its state lost with the events it came
 * from). It is closed as resolved, saying why; its receivers are not told
 * (if the problem is still there, the rules as configured now open their
 * own).
 */
static int close_orphans(struct rulerun *r)
{
	struct orphans o = {.r = r};
	int rc = store_open_incidents(r->st, find_orphan, &o);

	for (size_t i = 0; rc >= 0 && i < o.n; i++)
		rc = store_close_incident(r->st, o.v[i].id, o.v[i].why);
	if (rc >= 0 && o.n)
		rc = store_commit(r->st);
	free(o.v);
	return rc < 0 ? -1 : 0;
}

struct rulerun *rulerun_new(const struct config *cfg, struct store *primary, struct outbox *ob,
                            char *err, size_t errlen)
{
	struct rulerun *r = xcalloc(1, sizeof(*r));
	char path[4096];
	int n, moved;

	r->cfg = cfg;
	r->ob = ob;
	pthread_mutex_init(&r->cfg_mu, NULL);
	r->failed_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->failed_fd < 0) {
		snprintf(err, errlen, "rules: eventfd: %s", strerror(errno));
		goto fail;
	}
	buf_init(&r->reviews, (size_t)64 << 20);
	buf_init(&r->back, (size_t)64 << 20);
	r->checkpoint_ns = cfg->engine.checkpoint_ms * 1000000;
	r->last_checkpoint_ns = r->last_tick_ns = clock_mono_ns();
	r->silences_seen_ms = clock_wall_ms(); /* ends before the start are not news */
	r->st = store_open_peer(primary, CACHE_BYTES, err, errlen);
	if (r->st == NULL)
		goto fail;
	if (config_rules_path(cfg, path, sizeof(path)) < 0) {
		snprintf(err, errlen, "rules: store.rules_path: too long");
		goto fail;
	}
	r->rs = rulestate_open(path, CACHE_BYTES, err, errlen);
	if (r->rs == NULL)
		goto fail;
	r->q = evqueue_new(MAX_READY);
	evqueue_spill(r->q); /* the ingest never waits for the rules: they read back */
	r->engine = engine_new(&cfg->rules, cfg->engine.lateness_ms, on_incident, r);
	engine_max_keys(r->engine, (size_t)cfg->engine.max_keys);
	engine_forget_after(r->engine, cfg->engine.forget_after_ms);
	engine_review(r->engine, cfg->engine.review_confidence, cfg->engine.review_counts_volume,
	              on_review);
	if (!engine_reads_raw(r->engine))
		evqueue_drop_raw(r->q); /* the rules thread's copy of each event: strings only */
	r->lists = (struct suppress_lists){&cfg->silences, &cfg->time_windows, &cfg->known_issues};
	engine_suppress(r->engine, &r->lists, (int)cfg->engine.budget_per_hour);
	n = restore(r, path, &moved, err, errlen);
	if (n < 0)
		goto fail;
	/* Logged before the restart: the log says only what is new. */
	left_out(r->engine, r->left_logged);
	r->forgotten_written = engine_stats(r->engine)->forgotten;
	engine_restore_notes(r->engine, log_restore_note, NULL);
	log_info("rules: %zu rules, %zu silences, %zu time windows; restored %d saved records%s%s",
	         cfg->rules.n, cfg->silences.n, cfg->time_windows.n, n, moved ? " from " : "",
	         moved ? cfg->store.path : "");
	n = store_events_since(r->st, r->fed_rowid, r->fed_rev, replay_one, r);
	if (n < 0 || atomic_load(&r->failed)) {
		snprintf(err, errlen, "rules: replay: %s", store_error(r->st));
		goto fail;
	}
	if (moved)
		engine_save_everything(r->engine);
	/* Commit before the delivery workers start: the replay's read spanned its writes. */
	settle(r, n > 0 || moved);
	if (atomic_load(&r->failed)) {
		snprintf(err, errlen, "rules: %s", store_error(r->st));
		goto fail;
	}
	if (close_orphans(r) < 0) {
		snprintf(err, errlen, "rules: %s", store_error(r->st));
		goto fail;
	}
	/* In the state file now: the store's copy goes (also when a crash came
	 * between the move's checkpoint and this). */
	if (store_drop_rule_state(r->st) < 0) {
		snprintf(err, errlen, "rules: %s", store_error(r->st));
		goto fail;
	}
	if (moved)
		log_info("rules: moved the saved state from %s to %s", cfg->store.path, path);
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

void rulerun_on_idle(struct rulerun *r, void (*fn)(void *arg, int64_t fed_rowid), void *arg)
{
	r->on_idle = fn;
	r->on_idle_arg = arg;
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
	rulestate_close(r->rs);
	store_close(r->st);
	evqueue_free(r->q);
	buf_free(&r->reviews);
	buf_free(&r->back);
	pthread_mutex_destroy(&r->cfg_mu);
	if (r->failed_fd >= 0)
		close(r->failed_fd);
	free(r);
}
