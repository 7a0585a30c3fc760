/*
 * evqueue.h: decoded events handed from one thread to another, in order.
 *
 * The producer copies events (with their strings, out of the decoder's
 * arena) into batches; release() makes what it has added visible to the
 * consumer, which takes whole batches in order and gives each back when it
 * is done with it. Batches are reused, so a steady stream allocates nothing.
 *
 * Backpressure: release() waits while more than max_ready released batches
 * are still waiting for the consumer, so the consumer's lag is bounded.
 * Unless the queue spills (evqueue_spill): then release() never waits, and
 * what finds the queue full is let go, for a consumer that can read it back
 * from where the producer keeps it (the daemon's store).
 * Batches added but not released stay with the producer (the daemon
 * releases at each commit, so the rules only ever see durable events).
 *
 * One producer thread, one consumer thread. Several queues read in turn, a
 * unit from each, keep an order across several producers (the backtest's
 * decoders).
 */
#ifndef VOCA_EVQUEUE_H
#define VOCA_EVQUEUE_H

#include <stddef.h>
#include <stdint.h>

#include <voca/event.h>

#define EVBATCH_EVENTS 256

struct evbatch {
	size_t n;
	int unit_end; /* the last batch of a unit (evqueue_release_unit) */
	struct event ev[EVBATCH_EVENTS];
	int64_t tag[EVBATCH_EVENTS]; /* the producer's number for each event (a rowid) */
};

struct evqueue;

/* max_ready: released batches that may wait before release() blocks (at least 1). */
struct evqueue *evqueue_new(size_t max_ready);
void evqueue_free(struct evqueue *q);

/* Producer: copies ev (its strings too) into the open batch. */
void evqueue_add(struct evqueue *q, const struct event *ev, int64_t tag);

/*
 * Before the first add: events are handed over without their raw JSON (raw
 * "", raw_len 0), for a consumer that never reads it: an event's raw text
 * is most of its bytes.
 */
void evqueue_drop_raw(struct evqueue *q);

/*
 * Before the first add: release() lets batches go instead of waiting while
 * max_ready are ready, from then until the consumer resumes (below).
 * Events are let go in whole releases, in order: once one is let go, every
 * later one is, until evqueue_resume.
 */
void evqueue_spill(struct evqueue *q);

/*
 * Producer: hands over every batch added so far, waiting first while too
 * many are ready already. full_only releases only the batches that are full
 * (a streaming producer calls it after each add; it is cheap when none is).
 */
void evqueue_release(struct evqueue *q, int full_only);

/*
 * Producer: releases everything added as one unit, its last batch marked
 * unit_end (an empty batch when nothing was added), so that a consumer
 * reading several queues in turn knows where each unit ends.
 */
void evqueue_release_unit(struct evqueue *q);

/* Producer: no more batches. The consumer gets what was released, then NULL. */
void evqueue_close(struct evqueue *q);

/*
 * Consumer: the next released batch, waiting at most timeout_ms (-1: for
 * ever). Returns NULL on timeout, or once closed and empty (*closed set).
 */
struct evbatch *evqueue_next(struct evqueue *q, long timeout_ms, int *closed);

/*
 * Consumer: non-zero once batches have been let go (evqueue_spill) and no
 * ready batch is left before them; evqueue_next then returns NULL at once.
 * *rowid and *seq: the largest positive tag and the largest minus a
 * negative tag let go so far (0 when none).
 */
int evqueue_spilled(struct evqueue *q, int64_t *rowid, int64_t *seq);

/*
 * Consumer: having read back everything let go up to rowid and seq (both
 * tag sequences increase), takes batches from the queue again. Returns 0
 * when more was let go since (read on), 1 when resumed. Batches released
 * afterwards may hold events the consumer has read back already: it skips
 * tags it has passed.
 */
int evqueue_resume(struct evqueue *q, int64_t rowid, int64_t seq);

/* Consumer: gives a batch back for reuse. */
void evqueue_done(struct evqueue *q, struct evbatch *b);

#endif
