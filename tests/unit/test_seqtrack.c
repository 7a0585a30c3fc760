/*
 * test_seqtrack.c: publisher sequence tracking: next, gap, restart, replay,
 * several publishers, restored positions, and flushing only what changed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "seqtrack.h"

static void test_verdicts(void **state)
{
	struct seqtrack *t = seqtrack_new();
	int64_t expected = -1;

	(void)state;
	assert_int_equal(seqtrack_observe(t, "a", 5, 0, &expected), SEQ_FIRST);
	assert_int_equal(seqtrack_observe(t, "a", 6, 0, &expected), SEQ_NEXT);
	assert_int_equal(seqtrack_observe(t, "a", 10, 0, &expected), SEQ_GAP);
	assert_int_equal(expected, 7);
	assert_int_equal(seqtrack_observe(t, "a", 11, 0, &expected), SEQ_NEXT);
	assert_int_equal(seqtrack_observe(t, "a", 8, 0, &expected), SEQ_REPLAY);
	assert_int_equal(seqtrack_observe(t, "a", 11, 0, &expected), SEQ_REPLAY);
	assert_int_equal(seqtrack_observe(t, "a", 12, 0, &expected), SEQ_NEXT);
	assert_int_equal(seqtrack_observe(t, "a", 0, 0, &expected), SEQ_RESET);
	assert_int_equal(seqtrack_observe(t, "a", 1, 0, &expected), SEQ_NEXT);
	/* Another publisher has its own numbering. */
	assert_int_equal(seqtrack_observe(t, "b", 0, 0, &expected), SEQ_FIRST);
	assert_int_equal(seqtrack_observe(t, "b", 1, 0, &expected), SEQ_NEXT);
	assert_int_equal(seqtrack_observe(t, "a", 2, 0, &expected), SEQ_NEXT);
	seqtrack_free(t);
}

static void test_restored_position(void **state)
{
	struct seqtrack *t = seqtrack_new();
	int64_t expected = -1;

	(void)state;
	seqtrack_set(t, "a", 100, 0);
	assert_int_equal(seqtrack_observe(t, "a", 103, 0, &expected), SEQ_GAP);
	assert_int_equal(expected, 101);
	seqtrack_free(t);
}

static int count_flushed(void *arg, const char *publisher, int64_t last_seq, int64_t seen_ms)
{
	(void)publisher;
	(void)last_seq;
	(void)seen_ms;
	(*(int *)arg)++;
	return 0;
}

static void test_flush_only_dirty(void **state)
{
	struct seqtrack *t = seqtrack_new();
	int64_t expected;
	int n = 0;

	(void)state;
	for (int i = 0; i < 20; i++) {
		char name[16];

		snprintf(name, sizeof(name), "p%d", i);
		seqtrack_observe(t, name, 0, 0, &expected);
	}
	assert_int_equal(seqtrack_flush(t, count_flushed, &n), 0);
	assert_int_equal(n, 20);
	n = 0;
	seqtrack_observe(t, "p7", 1, 0, &expected);
	assert_int_equal(seqtrack_flush(t, count_flushed, &n), 0);
	assert_int_equal(n, 1);
	seqtrack_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_verdicts),
	        cmocka_unit_test(test_restored_position),
	        cmocka_unit_test(test_flush_only_dirty),
	};

	return cmocka_run_group_tests_name("seqtrack", tests, NULL, NULL);
}
