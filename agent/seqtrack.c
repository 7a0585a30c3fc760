/*
 * seqtrack.c: per-publisher sequence positions (see seqtrack.h).
 *
 * Publishers are few (one per upstream job), so a small array searched
 * linearly, with the last hit checked first, beats a hash table here.
 */
#include <stdlib.h>
#include <string.h>

#include <voca/xalloc.h>

#include "seqtrack.h"

struct pub {
	char *name;
	int64_t last_seq;
	int64_t seen_ms;
	int dirty;
};

struct seqtrack {
	struct pub *v;
	size_t n, alloc;
	size_t hint;
};

struct seqtrack *seqtrack_new(void)
{
	return xcalloc(1, sizeof(struct seqtrack));
}

void seqtrack_free(struct seqtrack *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].name);
	free(t->v);
	free(t);
}

static struct pub *find(struct seqtrack *t, const char *name)
{
	if (t->hint < t->n && strcmp(t->v[t->hint].name, name) == 0)
		return &t->v[t->hint];
	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->v[i].name, name) == 0) {
			t->hint = i;
			return &t->v[i];
		}
	}
	return NULL;
}

static struct pub *add(struct seqtrack *t, const char *name)
{
	if (t->n == t->alloc) {
		t->alloc = t->alloc ? t->alloc * 2 : 8;
		t->v = xrealloc(t->v, t->alloc * sizeof(*t->v));
	}
	t->v[t->n] = (struct pub){.name = xstrdup(name)};
	t->hint = t->n;
	return &t->v[t->n++];
}

void seqtrack_set(struct seqtrack *t, const char *publisher, int64_t last_seq, int64_t seen_ms)
{
	struct pub *p = find(t, publisher);

	if (p == NULL)
		p = add(t, publisher);
	p->last_seq = last_seq;
	p->seen_ms = seen_ms;
}

enum seq_verdict seqtrack_observe(struct seqtrack *t, const char *publisher, int64_t seq,
                                  int64_t now_ms, int64_t *expected)
{
	struct pub *p = find(t, publisher);
	enum seq_verdict v;

	if (p == NULL) {
		p = add(t, publisher);
		p->last_seq = seq;
		v = SEQ_FIRST;
	} else if (seq == p->last_seq + 1) {
		p->last_seq = seq;
		v = SEQ_NEXT;
	} else if (seq > p->last_seq + 1) {
		*expected = p->last_seq + 1;
		p->last_seq = seq;
		v = SEQ_GAP;
	} else if (seq == 0 && p->last_seq > 0) {
		p->last_seq = 0;
		v = SEQ_RESET;
	} else {
		v = SEQ_REPLAY;
	}
	p->seen_ms = now_ms;
	p->dirty = 1;
	return v;
}

int seqtrack_flush(struct seqtrack *t,
                   int (*fn)(void *arg, const char *publisher, int64_t last_seq, int64_t seen_ms),
                   void *arg)
{
	for (size_t i = 0; i < t->n; i++) {
		struct pub *p = &t->v[i];

		if (!p->dirty)
			continue;
		if (fn(arg, p->name, p->last_seq, p->seen_ms) < 0)
			return -1;
		p->dirty = 0;
	}
	return 0;
}
