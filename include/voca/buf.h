/*
 * buf.h: a growable byte buffer with a hard cap (curl's dynbuf idea).
 *
 * A buffer never grows past the cap given to buf_init(): an append that would
 * exceed it fails, frees the contents and leaves the buffer empty, so a caller
 * cannot carry on with a silently truncated value. The contents are always
 * NUL-terminated (the terminator is not counted in len).
 */
#ifndef VOCA_BUF_H
#define VOCA_BUF_H

#include <stddef.h>

struct buf {
	char *data; /* NULL until the first append */
	size_t len;
	size_t alloc;
	size_t max; /* largest len allowed */
};

void buf_init(struct buf *b, size_t max);
/* Returns 0, or -1 (contents freed) when the cap would be exceeded. */
int buf_add(struct buf *b, const void *p, size_t n);
int buf_adds(struct buf *b, const char *s);
int buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties the buffer but keeps its memory for reuse. */
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* The contents as a C string ("" when empty). Valid until the next call. */
const char *buf_str(const struct buf *b);

#endif
