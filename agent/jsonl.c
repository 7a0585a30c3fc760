/*
 * jsonl.c: JSON Lines in and out (see jsonl.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include <voca/buf.h>
#include <voca/xalloc.h>

#include "jsonl.h"

#define LINE_MAX_BYTES (64L * 1024 * 1024)

struct jsonl {
	gzFile gz;
	struct buf line;
	size_t lineno;
};

struct jsonl *jsonl_open(const char *path, char *err, size_t errlen)
{
	struct jsonl *j = xcalloc(1, sizeof(*j));

	j->gz = strcmp(path, "-") == 0 ? gzdopen(dup(STDIN_FILENO), "rb") : gzopen(path, "rb");
	if (j->gz == NULL) {
		snprintf(err, errlen, "%s: cannot open: %s", path,
		         errno ? strerror(errno) : "out of memory");
		free(j);
		return NULL;
	}
	gzbuffer(j->gz, 256 * 1024);
	buf_init(&j->line, LINE_MAX_BYTES);
	return j;
}

long jsonl_next(struct jsonl *j, const char **line, char *err, size_t errlen)
{
	char chunk[65536];

	buf_reset(&j->line);
	for (;;) {
		size_t n;

		if (gzgets(j->gz, chunk, sizeof(chunk)) == NULL) {
			int code;
			const char *msg = gzerror(j->gz, &code);

			if (code != Z_OK && code != Z_BUF_ERROR) {
				snprintf(err, errlen, "read error: %s", msg);
				return -2;
			}
			if (j->line.len == 0)
				return -1; /* end of file */
			break;             /* last line without a newline */
		}
		n = strlen(chunk);
		if (buf_add(&j->line, chunk, n) < 0) {
			snprintf(err, errlen, "line %zu is longer than %ld bytes", j->lineno + 1,
			         LINE_MAX_BYTES);
			return -2;
		}
		if (n && chunk[n - 1] == '\n')
			break;
	}
	j->lineno++;
	while (j->line.len &&
	       (j->line.data[j->line.len - 1] == '\n' || j->line.data[j->line.len - 1] == '\r'))
		j->line.data[--j->line.len] = '\0';
	*line = buf_str(&j->line);
	return (long)j->line.len;
}

size_t jsonl_lineno(const struct jsonl *j)
{
	return j->lineno;
}

void jsonl_close(struct jsonl *j)
{
	if (j == NULL)
		return;
	gzclose(j->gz);
	buf_free(&j->line);
	free(j);
}

struct jsonl_out {
	FILE *plain;
	gzFile gz;
	int failed;
};

struct jsonl_out *jsonl_create(const char *path, char *err, size_t errlen)
{
	struct jsonl_out *o = xcalloc(1, sizeof(*o));
	size_t n = strlen(path);

	if (strcmp(path, "-") == 0) {
		o->plain = stdout;
	} else if (n > 3 && strcmp(path + n - 3, ".gz") == 0) {
		o->gz = gzopen(path, "wb6");
	} else {
		o->plain = fopen(path, "w");
	}
	if (o->plain == NULL && o->gz == NULL) {
		snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
		free(o);
		return NULL;
	}
	return o;
}

int jsonl_write(struct jsonl_out *o, const char *s, size_t len)
{
	if (o->gz) {
		if (gzwrite(o->gz, s, (unsigned)len) != (int)len || gzputc(o->gz, '\n') != '\n')
			o->failed = 1;
	} else if (fwrite(s, 1, len, o->plain) != len || fputc('\n', o->plain) == EOF) {
		o->failed = 1;
	}
	return o->failed ? -1 : 0;
}

int jsonl_finish(struct jsonl_out *o)
{
	int failed = o->failed;

	if (o->gz)
		failed |= gzclose(o->gz) != Z_OK;
	else if (o->plain == stdout)
		failed |= fflush(stdout) != 0;
	else
		failed |= fclose(o->plain) != 0;
	free(o);
	return failed ? -1 : 0;
}
