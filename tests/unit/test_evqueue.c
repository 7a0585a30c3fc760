/*
 * test_evqueue.c: the handoff of events between the ingest (or the
 * backtest's reader) and the rules' thread: only released events cross, in
 * order, with their strings, and a producer held back by a slow consumer
 * loses nothing; a queue that spills lets go instead of holding the
 * producer, and says what it let go.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <voca/event.h>
#include <voca/xalloc.h>

#include "evqueue.h"

static struct event make(char *id, size_t idlen, int64_t n, const char *raw, size_t raw_len)
{
	struct event ev = {0};

	snprintf(id, idlen, "ev-%lld", (long long)n);
	ev.event_id = id;
	ev.ts_ms = 1000 * n;
	ev.raw = raw;
	ev.raw_len = raw_len;
	return ev;
}

static void add(struct evqueue *q, int64_t n)
{
	char id[32];
	char raw[64];
	int len = snprintf(raw, sizeof(raw), "{\"event_id\":\"ev-%lld\"}", (long long)n);
	struct event ev = make(id, sizeof(id), n, raw, (size_t)len);

	evqueue_add(q, &ev, n);
	/* The copy must not point at the producer's buffers: scribble on them. */
	memset(id, 'x', sizeof(id) - 1);
	memset(raw, 'x', sizeof(raw) - 1);
}

/* Takes every ready batch and checks it continues the sequence from *next. */
static size_t take_all(struct evqueue *q, int64_t *next)
{
	struct evbatch *b;
	int closed;
	size_t got = 0;

	while ((b = evqueue_next(q, 0, &closed)) != NULL) {
		for (size_t i = 0; i < b->n; i++) {
			char want[32];

			snprintf(want, sizeof(want), "ev-%lld", (long long)*next);
			assert_int_equal(b->tag[i], *next);
			assert_string_equal(b->ev[i].event_id, want);
			assert_int_equal(b->ev[i].ts_ms, 1000 * *next);
			assert_non_null(strstr(b->ev[i].raw, want));
			(*next)++;
			got++;
		}
		evqueue_done(q, b);
	}
	return got;
}

static void test_only_released_events_cross(void **state)
{
	struct evqueue *q = evqueue_new(8);
	int64_t next = 1;
	int closed = -1;

	(void)state;
	for (int64_t n = 1; n <= 300; n++)
		add(q, n);
	/* Added, not released (not yet committed): the consumer sees nothing. */
	assert_null(evqueue_next(q, 0, &closed));
	assert_int_equal(closed, 0);
	evqueue_release(q, 0);
	assert_int_equal(take_all(q, &next), 300);
	/* A streaming producer releases full batches only; the open one stays. */
	for (int64_t n = 301; n <= 301 + EVBATCH_EVENTS; n++) {
		add(q, n);
		evqueue_release(q, 1);
	}
	assert_int_equal(take_all(q, &next), EVBATCH_EVENTS);
	evqueue_release(q, 0);
	assert_int_equal(take_all(q, &next), 1);
	evqueue_close(q);
	assert_null(evqueue_next(q, -1, &closed));
	assert_int_equal(closed, 1);
	evqueue_free(q);
}

static void test_an_event_larger_than_a_batch_crosses_whole(void **state)
{
	struct evqueue *q = evqueue_new(2);
	size_t big = (size_t)3 << 20;
	char *raw = xmalloc(big + 1);
	char id[32];
	struct evbatch *b;
	int closed;

	(void)state;
	memset(raw, 'r', big);
	raw[big] = '\0';
	add(q, 1);
	struct event ev = make(id, sizeof(id), 2, raw, big);

	evqueue_add(q, &ev, 2);
	add(q, 3);
	evqueue_release(q, 0);
	b = evqueue_next(q, 0, &closed);
	assert_non_null(b);
	assert_int_equal(b->n, 1);
	assert_int_equal(b->tag[0], 1);
	evqueue_done(q, b);
	b = evqueue_next(q, 0, &closed);
	assert_non_null(b);
	assert_int_equal(b->tag[0], 2);
	assert_int_equal(b->ev[0].raw_len, big);
	assert_int_equal(strlen(b->ev[0].raw), big);
	assert_string_equal(b->ev[0].event_id, "ev-2");
	evqueue_done(q, b);
	b = evqueue_next(q, 0, &closed);
	assert_non_null(b);
	assert_int_equal(b->tag[0], 3);
	evqueue_done(q, b);
	evqueue_free(q);
	free(raw);
}

/* Takes one unit: its batches up to the one marked unit_end. */
static size_t take_unit(struct evqueue *q, int64_t *next)
{
	size_t got = 0;
	int end = 0, closed;

	while (!end) {
		struct evbatch *b = evqueue_next(q, 0, &closed);

		assert_non_null(b);
		for (size_t i = 0; i < b->n; i++)
			assert_int_equal(b->tag[i], (*next)++);
		got += b->n;
		end = b->unit_end;
		evqueue_done(q, b);
	}
	return got;
}

static void test_units_end_where_the_producer_said(void **state)
{
	struct evqueue *q = evqueue_new(16);
	int64_t next = 1;
	int closed;

	(void)state;
	/* A unit over several batches, an empty one, a short one. */
	for (int64_t n = 1; n <= 2 * EVBATCH_EVENTS + 5; n++)
		add(q, n);
	evqueue_release_unit(q);
	evqueue_release_unit(q);
	add(q, next + 2 * EVBATCH_EVENTS + 5);
	evqueue_release_unit(q);
	assert_int_equal(take_unit(q, &next), 2 * EVBATCH_EVENTS + 5);
	assert_int_equal(take_unit(q, &next), 0);
	assert_int_equal(take_unit(q, &next), 1);
	assert_null(evqueue_next(q, 0, &closed));
	/* A unit that ends on a full batch: the mark is on that batch or an empty
	 * one after it, never lost. */
	for (int64_t n = 0; n < EVBATCH_EVENTS; n++)
		add(q, next + n);
	evqueue_release_unit(q);
	assert_int_equal(take_unit(q, &next), EVBATCH_EVENTS);
	/* A reused batch comes back unmarked. */
	add(q, next);
	evqueue_release(q, 0);
	struct evbatch *b = evqueue_next(q, 0, &closed);

	assert_non_null(b);
	assert_int_equal(b->unit_end, 0);
	evqueue_done(q, b);
	evqueue_free(q);
}

#define PRODUCED (40 * EVBATCH_EVENTS + 17)

static void *produce(void *arg)
{
	struct evqueue *q = arg;

	/* Released in uneven commits, as the ingest does; release() blocks when ahead. */
	for (int64_t n = 1; n <= PRODUCED; n++) {
		add(q, n);
		if (n % 700 == 0)
			evqueue_release(q, 0);
	}
	evqueue_release(q, 0);
	evqueue_close(q);
	return NULL;
}

static void test_a_held_back_producer_loses_nothing(void **state)
{
	struct evqueue *q = evqueue_new(1);
	pthread_t t;
	int64_t next = 1;
	int closed = 0;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, produce, q), 0);
	while (!closed) {
		struct evbatch *b = evqueue_next(q, -1, &closed);

		if (b == NULL)
			continue;
		for (size_t i = 0; i < b->n; i++)
			assert_int_equal(b->tag[i], next++);
		evqueue_done(q, b);
	}
	pthread_join(t, NULL);
	assert_int_equal(next - 1, PRODUCED);
	evqueue_free(q);
}

/* A revision's tag: minus its arrival number. */
static void add_revision(struct evqueue *q, int64_t seq)
{
	char id[32];
	struct event ev = make(id, sizeof(id), seq, "", 0);

	evqueue_add(q, &ev, -seq);
}

static void test_a_spilling_queue_lets_go_and_says_what(void **state)
{
	struct evqueue *q = evqueue_new(2);
	int64_t next = 1, rowid = -1, seq = -1;
	int closed;

	(void)state;
	evqueue_spill(q);
	/* Two releases fill it; a waiting queue would block on the third. */
	for (int64_t n = 1; n <= 3 * EVBATCH_EVENTS; n++) {
		add(q, n);
		if (n % EVBATCH_EVENTS == 0)
			evqueue_release(q, 0);
	}
	add(q, 3 * EVBATCH_EVENTS + 1);
	add_revision(q, 7);
	evqueue_release(q, 0);                                 /* the queue is full: let go */
	assert_int_equal(evqueue_spilled(q, &rowid, &seq), 0); /* the ready ones come first */
	assert_int_equal(take_all(q, &next), 2 * EVBATCH_EVENTS);
	assert_int_equal(evqueue_spilled(q, &rowid, &seq), 1);
	assert_int_equal(rowid, 3 * EVBATCH_EVENTS + 1);
	assert_int_equal(seq, 7);
	/* Once spilling, every release is let go (in order: none jumps ahead). */
	add(q, 3 * EVBATCH_EVENTS + 2);
	evqueue_release(q, 0);
	assert_null(evqueue_next(q, 0, &closed));
	assert_int_equal(closed, 0);
	/* Read back short of what was let go: not resumed. */
	assert_int_equal(evqueue_resume(q, 3 * EVBATCH_EVENTS + 1, 7), 0);
	assert_int_equal(evqueue_resume(q, 3 * EVBATCH_EVENTS + 2, 6), 0);
	assert_int_equal(evqueue_resume(q, 3 * EVBATCH_EVENTS + 2, 7), 1);
	assert_int_equal(evqueue_spilled(q, &rowid, &seq), 0);
	/* Resumed: batches cross again. */
	next = 3 * EVBATCH_EVENTS + 3;
	add(q, next);
	evqueue_release(q, 0);
	assert_int_equal(take_all(q, &next), 1);
	evqueue_free(q);
}

static void test_a_waiting_consumer_wakes_when_the_queue_spills(void **state)
{
	struct evqueue *q = evqueue_new(1);
	int64_t rowid, seq;
	int closed;

	(void)state;
	evqueue_spill(q);
	add(q, 1);
	evqueue_release(q, 0);
	add(q, 2);
	evqueue_release(q, 0); /* full: let go */
	struct evbatch *b = evqueue_next(q, -1, &closed);

	assert_non_null(b);
	evqueue_done(q, b);
	/* Nothing ready, but something let go: no wait (a -1 timeout would hang). */
	assert_null(evqueue_next(q, -1, &closed));
	assert_int_equal(closed, 0);
	assert_int_equal(evqueue_spilled(q, &rowid, &seq), 1);
	assert_int_equal(rowid, 2);
	assert_int_equal(seq, 0);
	evqueue_free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_only_released_events_cross),
	        cmocka_unit_test(test_an_event_larger_than_a_batch_crosses_whole),
	        cmocka_unit_test(test_a_held_back_producer_loses_nothing),
	        cmocka_unit_test(test_units_end_where_the_producer_said),
	        cmocka_unit_test(test_a_spilling_queue_lets_go_and_says_what),
	        cmocka_unit_test(test_a_waiting_consumer_wakes_when_the_queue_spills),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
