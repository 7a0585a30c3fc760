/*
 * test_jsonl.c: the JSON Lines reader behind `voca backtest` and `voca
 * publish`: every line comes back whole, without its line end, wherever it
 * falls in the reader's window (across a refill, longer than the window),
 * from a plain file or gzip; a cut gzip stream and an over-long line are
 * errors, never a short read taken for the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include <voca/xalloc.h>

#include "jsonl.h"

static char dir[] = "/tmp/voca-test-jsonl-XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *data, size_t len, int gz)
{
	if (gz) {
		gzFile f = gzopen(path, "wb");

		assert_non_null(f);
		assert_int_equal(gzwrite(f, data, (unsigned)len), (int)len);
		assert_int_equal(gzclose(f), Z_OK);
	} else {
		FILE *f = fopen(path, "wb");

		assert_non_null(f);
		assert_int_equal(fwrite(data, 1, len, f), len);
		assert_int_equal(fclose(f), 0);
	}
}

/* Lines of every length around the 1 MiB window, one of 3 MiB, CRLF, blanks. */
static void check_lines(int gz)
{
	static const size_t lens[] = {0, 1, 700, 1048575, 1048576, 1048577, 3 * 1048576, 5, 0, 9};
	size_t total = 0, at = 0;
	char path[128], err[256];
	const char *line;
	long n;

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		total += lens[i] + 2;
	char *data = xmalloc(total);

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		memset(data + at, 'a' + (int)i, lens[i]);
		at += lens[i];
		if (i % 2)
			data[at++] = '\r';
		if (i + 1 < sizeof(lens) / sizeof(lens[0]))
			data[at++] = '\n'; /* the last line has no newline */
	}
	snprintf(path, sizeof(path), "%s/lines%s", dir, gz ? ".gz" : "");
	write_file(path, data, at, gz);

	struct jsonl *j = jsonl_open(path, err, sizeof(err));

	assert_non_null(j);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		n = jsonl_next(j, &line, err, sizeof(err));
		assert_int_equal(n, (long)lens[i]);
		for (size_t k = 0; k < lens[i]; k++)
			if (line[k] != 'a' + (int)i)
				fail_msg("line %zu byte %zu: %c", i + 1, k, line[k]);
		assert_int_equal(jsonl_lineno(j), i + 1);
	}
	assert_int_equal(jsonl_next(j, &line, err, sizeof(err)), -1);
	assert_int_equal(jsonl_next(j, &line, err, sizeof(err)), -1);
	jsonl_close(j);
	free(data);
}

static void test_lines_come_back_whole_plain(void **state)
{
	(void)state;
	check_lines(0);
}

static void test_lines_come_back_whole_gzip(void **state)
{
	(void)state;
	check_lines(1);
}

static void test_an_empty_file_has_no_lines(void **state)
{
	char path[128], err[256];
	const char *line;

	(void)state;
	snprintf(path, sizeof(path), "%s/empty", dir);
	write_file(path, "", 0, 0);
	struct jsonl *j = jsonl_open(path, err, sizeof(err));

	assert_non_null(j);
	assert_int_equal(jsonl_next(j, &line, err, sizeof(err)), -1);
	jsonl_close(j);
	assert_null(jsonl_open("/nonexistent/feed.jsonl", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/feed.jsonl: cannot open"));
}

/* A gzip file cut in the middle: the lines before, then an error, not an end. */
static void test_a_cut_gzip_stream_is_an_error(void **state)
{
	char path[128], err[256] = "";
	const char *line;
	size_t len = 4 * 1048576;
	char *data = xmalloc(len);
	FILE *f;
	long size, n;
	int lines = 0;

	(void)state;
	for (size_t i = 0; i < len; i++)
		data[i] = (i % 100 == 99) ? '\n' : (char)('a' + (i * 7919) % 26);
	snprintf(path, sizeof(path), "%s/cut.gz", dir);
	write_file(path, data, len, 1);
	f = fopen(path, "r+b");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	assert_int_equal(ftruncate(fileno(f), size / 2), 0);
	fclose(f);

	struct jsonl *j = jsonl_open(path, err, sizeof(err));

	assert_non_null(j);
	while ((n = jsonl_next(j, &line, err, sizeof(err))) >= 0) {
		assert_int_equal(n, 99);
		lines++;
	}
	assert_int_equal(n, -2);
	assert_non_null(strstr(err, "read error"));
	assert_true(lines > 0 && lines < (int)(len / 100));
	jsonl_close(j);
	free(data);
}

/* A line over the 64 MiB cap is an error naming it. */
static void test_a_line_over_the_cap_is_an_error(void **state)
{
	char path[128], err[256] = "";
	const char *line;
	size_t len = 64 * 1048576 + 10;
	char *data = xmalloc(len + 8);

	(void)state;
	memcpy(data, "ok\n", 3);
	memset(data + 3, 'x', len);
	snprintf(path, sizeof(path), "%s/long", dir);
	write_file(path, data, len + 3, 0);
	free(data);
	struct jsonl *j = jsonl_open(path, err, sizeof(err));

	assert_non_null(j);
	assert_int_equal(jsonl_next(j, &line, err, sizeof(err)), 2);
	assert_int_equal(jsonl_next(j, &line, err, sizeof(err)), -2);
	assert_string_equal(err, "line 2 is longer than 67108864 bytes");
	jsonl_close(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_lines_come_back_whole_plain),
	        cmocka_unit_test(test_lines_come_back_whole_gzip),
	        cmocka_unit_test(test_an_empty_file_has_no_lines),
	        cmocka_unit_test(test_a_cut_gzip_stream_is_an_error),
	        cmocka_unit_test(test_a_line_over_the_cap_is_an_error),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
