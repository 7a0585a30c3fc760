/*
 * evqueue.c: batches of decoded events between two threads (see evqueue.h).
 *
 * Three lists of batches: free (to reuse), staged (full, the producer's, not
 * yet released) and ready (released, FIFO). Only free and ready are shared,
 * under one mutex; the producer's open batch and staged list are its own.
 */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include <voca/xalloc.h>

#include "evqueue.h"

/* Room for a batch's strings; an event larger than that gets a batch to itself. */
#define BATCH_BYTES (512u << 10)

struct batch {
	struct evbatch pub;
	struct batch *next;
	size_t used, cap;
	char *bytes;
};

struct evqueue {
	pthread_mutex_t mu;
	pthread_cond_t ready_cv, space_cv;
	struct batch *free_list;
	struct batch *ready_head, *ready_tail;
	size_t nready, max_ready;
	int closed;
	int drop_raw;                       /* hand events over without their raw JSON */
	int can_spill;                      /* let batches go rather than wait (evqueue_spill) */
	int spilling;                       /* batches were let go; the consumer has not resumed */
	int64_t spilled_rowid, spilled_seq; /* the largest tags let go */
	/* The producer's own. */
	struct batch *cur;
	struct batch *staged_head, *staged_tail;
};

static struct batch *of(struct evbatch *b)
{
	return (struct batch *)((char *)b - offsetof(struct batch, pub));
}

struct evqueue *evqueue_new(size_t max_ready)
{
	struct evqueue *q = xcalloc(1, sizeof(*q));
	pthread_condattr_t ca;

	pthread_mutex_init(&q->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->ready_cv, &ca);
	pthread_cond_init(&q->space_cv, &ca);
	pthread_condattr_destroy(&ca);
	q->max_ready = max_ready ? max_ready : 1;
	return q;
}

static void free_chain(struct batch *b)
{
	while (b) {
		struct batch *next = b->next;

		free(b->bytes);
		free(b);
		b = next;
	}
}

void evqueue_free(struct evqueue *q)
{
	if (q == NULL)
		return;
	free_chain(q->free_list);
	free_chain(q->ready_head);
	free_chain(q->staged_head);
	free_chain(q->cur);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->ready_cv);
	pthread_cond_destroy(&q->space_cv);
	free(q);
}

static struct batch *take_free(struct evqueue *q)
{
	struct batch *b;

	pthread_mutex_lock(&q->mu);
	b = q->free_list;
	if (b)
		q->free_list = b->next;
	pthread_mutex_unlock(&q->mu);
	if (b == NULL) {
		b = xcalloc(1, sizeof(*b));
		b->cap = BATCH_BYTES;
		b->bytes = xmalloc(b->cap);
	}
	b->next = NULL;
	b->pub.n = 0;
	b->pub.unit_end = 0;
	b->used = 0;
	return b;
}

static void stage(struct evqueue *q, struct batch *b)
{
	if (q->staged_tail)
		q->staged_tail->next = b;
	else
		q->staged_head = b;
	q->staged_tail = b;
}

void evqueue_add(struct evqueue *q, const struct event *ev, int64_t tag)
{
	struct event_plan plan;
	size_t need = event_copy_plan(ev, !q->drop_raw, &plan);
	struct batch *b = q->cur;

	if (b && (b->pub.n == EVBATCH_EVENTS || b->used + need > b->cap)) {
		stage(q, b);
		b = NULL;
	}
	if (b == NULL) {
		b = q->cur = take_free(q);
		if (need > b->cap) {
			free(b->bytes);
			b->cap = need;
			b->bytes = xmalloc(need);
		}
	}
	b->pub.tag[b->pub.n] = tag;
	b->used += event_copy_planned(ev, &b->pub.ev[b->pub.n++], b->bytes + b->used, !q->drop_raw,
	                              &plan);
}

void evqueue_drop_raw(struct evqueue *q)
{
	q->drop_raw = 1;
}

void evqueue_spill(struct evqueue *q)
{
	q->can_spill = 1;
}

/* Under q->mu: lets the chain head..tail go, noting its largest tags. */
static void let_go(struct evqueue *q, struct batch *head, struct batch *tail)
{
	for (struct batch *b = head; b; b = b->next)
		for (size_t i = 0; i < b->pub.n; i++) {
			int64_t t = b->pub.tag[i];

			if (t > 0 && t > q->spilled_rowid)
				q->spilled_rowid = t;
			else if (t < 0 && -t > q->spilled_seq)
				q->spilled_seq = -t;
		}
	tail->next = q->free_list;
	q->free_list = head;
	q->spilling = 1;
	pthread_cond_signal(&q->ready_cv); /* a waiting consumer reads them back now */
}

/* Hands over the staged batches, and the open one if take_cur (even empty). */
static void release(struct evqueue *q, int take_cur)
{
	struct batch *head = q->staged_head, *tail = q->staged_tail;
	size_t n = 0;

	if (take_cur && q->cur) {
		if (tail)
			tail->next = q->cur;
		else
			head = q->cur;
		tail = q->cur;
		q->cur = NULL;
	}
	if (head == NULL)
		return;
	for (struct batch *b = head; b; b = b->next)
		n++;
	q->staged_head = q->staged_tail = NULL;
	pthread_mutex_lock(&q->mu);
	if (q->can_spill && (q->spilling || q->nready >= q->max_ready)) {
		let_go(q, head, tail);
		pthread_mutex_unlock(&q->mu);
		return;
	}
	while (q->nready >= q->max_ready)
		pthread_cond_wait(&q->space_cv, &q->mu);
	if (q->ready_tail)
		q->ready_tail->next = head;
	else
		q->ready_head = head;
	q->ready_tail = tail;
	q->nready += n;
	pthread_cond_signal(&q->ready_cv);
	pthread_mutex_unlock(&q->mu);
}

void evqueue_release(struct evqueue *q, int full_only)
{
	release(q, !full_only && q->cur && q->cur->pub.n);
}

void evqueue_release_unit(struct evqueue *q)
{
	if (q->cur == NULL)
		q->cur = take_free(q);
	q->cur->pub.unit_end = 1;
	release(q, 1);
}

void evqueue_close(struct evqueue *q)
{
	pthread_mutex_lock(&q->mu);
	q->closed = 1;
	pthread_cond_signal(&q->ready_cv);
	pthread_mutex_unlock(&q->mu);
}

struct evbatch *evqueue_next(struct evqueue *q, long timeout_ms, int *closed)
{
	struct timespec until;
	struct batch *b = NULL;

	if (timeout_ms >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (timeout_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&q->mu);
	while (q->nready == 0 && !q->closed && !q->spilling) {
		if (timeout_ms < 0)
			pthread_cond_wait(&q->ready_cv, &q->mu);
		else if (pthread_cond_timedwait(&q->ready_cv, &q->mu, &until) != 0)
			break;
	}
	if (q->nready) {
		b = q->ready_head;
		q->ready_head = b->next;
		if (q->ready_head == NULL)
			q->ready_tail = NULL;
		q->nready--;
		b->next = NULL;
		pthread_cond_signal(&q->space_cv);
	}
	*closed = b == NULL && q->closed;
	pthread_mutex_unlock(&q->mu);
	return b ? &b->pub : NULL;
}

int evqueue_spilled(struct evqueue *q, int64_t *rowid, int64_t *seq)
{
	int spilled;

	pthread_mutex_lock(&q->mu);
	/* Ready batches were released before any let go: they come first. */
	spilled = q->spilling && q->nready == 0;
	*rowid = q->spilled_rowid;
	*seq = q->spilled_seq;
	pthread_mutex_unlock(&q->mu);
	return spilled;
}

int evqueue_resume(struct evqueue *q, int64_t rowid, int64_t seq)
{
	int resumed;

	pthread_mutex_lock(&q->mu);
	resumed = q->spilled_rowid <= rowid && q->spilled_seq <= seq;
	if (resumed)
		q->spilling = 0;
	pthread_mutex_unlock(&q->mu);
	return resumed;
}

void evqueue_done(struct evqueue *q, struct evbatch *pub)
{
	struct batch *b = of(pub);

	/* An outsized batch goes back to the usual size rather than keep its memory. */
	if (b->cap > BATCH_BYTES) {
		free(b->bytes);
		b->cap = BATCH_BYTES;
		b->bytes = xmalloc(b->cap);
	}
	pthread_mutex_lock(&q->mu);
	b->next = q->free_list;
	q->free_list = b;
	pthread_mutex_unlock(&q->mu);
}
