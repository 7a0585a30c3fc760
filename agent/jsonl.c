/*
 * jsonl.c: JSON Lines in and out (see jsonl.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include <voca/xalloc.h>

#include "jsonl.h"

#define LINE_MAX_BYTES (64L * 1024 * 1024)
#define WINDOW_BYTES   (1024 * 1024)

/*
 * Lines are found with memchr in a window refilled by gzread: a line is
 * handed out where it lies, not copied (for a plain file zlib reads straight
 * into the window). A line longer than the window grows it, up to the cap.
 */
struct jsonl {
	gzFile gz;
	char *win;
	size_t cap;  /* of win */
	size_t pos;  /* the next line starts here */
	size_t fill; /* bytes of win read */
	int eof;
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
	j->cap = WINDOW_BYTES;
	j->win = xmalloc(j->cap);
	return j;
}

/* Moves the unread bytes to the window's start and reads more. 0, or -2 (err set). */
static int refill(struct jsonl *j, char *err, size_t errlen)
{
	int n, code;

	if (j->pos > 0) {
		memmove(j->win, j->win + j->pos, j->fill - j->pos);
		j->fill -= j->pos;
		j->pos = 0;
	}
	if (j->fill == j->cap) {
		if (j->cap > (size_t)LINE_MAX_BYTES) {
			snprintf(err, errlen, "line %zu is longer than %ld bytes", j->lineno + 1,
			         LINE_MAX_BYTES);
			return -2;
		}
		j->cap *= 2;
		j->win = xrealloc(j->win, j->cap);
	}
	n = gzread(j->gz, j->win + j->fill, (unsigned)(j->cap - j->fill));
	if (n < 0) {
		const char *msg = gzerror(j->gz, &code);

		snprintf(err, errlen, "read error: %s", msg);
		return -2;
	}
	if (n == 0) {
		/* A gzip stream cut short reads as an end, with Z_BUF_ERROR kept
		 * ("unexpected end of file"): a cut feed is not a shorter one. */
		const char *msg = gzerror(j->gz, &code);

		if (code != Z_OK) {
			snprintf(err, errlen, "read error: %s", msg);
			return -2;
		}
		j->eof = 1;
	}
	j->fill += (size_t)n;
	return 0;
}

long jsonl_next(struct jsonl *j, const char **line, char *err, size_t errlen)
{
	size_t scanned = 0; /* of the bytes after pos, known to hold no newline */
	char *nl;

	for (;;) {
		nl = memchr(j->win + j->pos + scanned, '\n', j->fill - j->pos - scanned);
		if (nl || j->eof)
			break;
		scanned = j->fill - j->pos; /* still right after refill moves the bytes */
		if (refill(j, err, errlen) < 0)
			return -2;
	}
	size_t start = j->pos, end;

	if (nl) {
		end = (size_t)(nl - j->win);
		j->pos = end + 1;
	} else {
		if (j->pos == j->fill)
			return -1; /* end of file */
		end = j->fill;     /* last line without a newline */
		j->pos = j->fill;
	}
	if (end - start > (size_t)LINE_MAX_BYTES) {
		snprintf(err, errlen, "line %zu is longer than %ld bytes", j->lineno + 1,
		         LINE_MAX_BYTES);
		return -2;
	}
	j->lineno++;
	while (end > start && (j->win[end - 1] == '\r' || j->win[end - 1] == '\n'))
		end--;
	*line = j->win + start;
	return (long)(end - start);
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
	free(j->win);
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
