/*
 * seqtrack.h: per-publisher sequence tracking, for making loss visible.
 *
 * PUB/SUB drops messages by design (slow joiners, full queues, reconnects).
 * Each publisher numbers its events; a jump forward is a gap. Pure: no I/O,
 * the caller persists positions (seqtrack_flush) and records gaps.
 */
#ifndef VOCA_SEQTRACK_H
#define VOCA_SEQTRACK_H

#include <stdint.h>

enum seq_verdict {
	SEQ_FIRST = 0, /* publisher not seen before: nothing to compare with */
	SEQ_NEXT,      /* the expected number */
	SEQ_GAP,       /* numbers were skipped: *expected says where the gap starts */
	SEQ_RESET,     /* 0 after a higher number: the publisher restarted */
	SEQ_REPLAY,    /* a number at or below the last one: a re-send or a replay */
};

struct seqtrack;

struct seqtrack *seqtrack_new(void);
void seqtrack_free(struct seqtrack *t);

/* Restores a saved position (from the store, at start-up). */
void seqtrack_set(struct seqtrack *t, const char *publisher, int64_t last_seq, int64_t seen_ms);

/* Notes that publisher sent seq. *expected is set for SEQ_GAP. */
enum seq_verdict seqtrack_observe(struct seqtrack *t, const char *publisher, int64_t seq,
                                  int64_t now_ms, int64_t *expected);

/* Calls fn for every publisher whose position changed since the last flush. */
int seqtrack_flush(struct seqtrack *t,
                   int (*fn)(void *arg, const char *publisher, int64_t last_seq, int64_t seen_ms),
                   void *arg);

#endif
