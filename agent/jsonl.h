/*
 * jsonl.h: read JSON Lines files, plain or gzip (zlib reads both), and write
 * them, gzip when the name ends in .gz.
 */
#ifndef VOCA_JSONL_H
#define VOCA_JSONL_H

#include <stddef.h>

struct jsonl;

/* Opens path ("-" is stdin) for reading. NULL with err filled on failure. */
struct jsonl *jsonl_open(const char *path, char *err, size_t errlen);

/*
 * Reads the next line without its newline. Returns its length (0 for a blank
 * line), -1 at the end, -2 on a read error or a line over 64 MiB (err set).
 * *line is not NUL-terminated and is valid until the next call.
 */
long jsonl_next(struct jsonl *j, const char **line, char *err, size_t errlen);

/* 1-based number of the line last returned. */
size_t jsonl_lineno(const struct jsonl *j);
void jsonl_close(struct jsonl *j);

struct jsonl_out;

struct jsonl_out *jsonl_create(const char *path, char *err, size_t errlen);
/* Writes s and a newline. Returns 0 or -1. */
int jsonl_write(struct jsonl_out *o, const char *s, size_t len);
/* Returns 0, or -1 if anything failed to reach the file. */
int jsonl_finish(struct jsonl_out *o);

#endif
