/*
 * buf.c: capped growable buffers (see buf.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/buf.h>
#include <voca/xalloc.h>

void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	b->max = max;
}

void buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b, b->max);
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

static int grow(struct buf *b, size_t need)
{
	size_t want;

	if (need > b->max) {
		buf_free(b);
		return -1;
	}
	if (need + 1 <= b->alloc)
		return 0;
	want = b->alloc ? b->alloc : 64;
	while (want < need + 1)
		want *= 2;
	if (want > b->max + 1)
		want = b->max + 1;
	b->data = xrealloc(b->data, want);
	b->alloc = want;
	return 0;
}

int buf_add(struct buf *b, const void *p, size_t n)
{
	if (n > b->max - b->len || grow(b, b->len + n) < 0) {
		buf_free(b);
		return -1;
	}
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

int buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n > b->max - b->len || grow(b, b->len + (size_t)n) < 0) {
		buf_free(b);
		return -1;
	}
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

const char *buf_str(const struct buf *b)
{
	return b->data ? b->data : "";
}
