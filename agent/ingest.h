/*
 * ingest.h: receive scored events over ZeroMQ and store them.
 *
 * Owns the socket (SUB connecting to publishers, or PULL bound for PUSH
 * senders), decodes each message, records verdicts and rejections in the
 * store's open transaction, tracks publisher sequence numbers, and commits
 * in groups: when batch_max operations are pending or the oldest has waited
 * batch_ms. The caller's loop polls ingest_socket() and calls ingest_drain().
 */
#ifndef VOCA_INGEST_H
#define VOCA_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include <voca/event.h>

#include "config.h"
#include "store.h"

struct ingest;

/* What one commit made durable; seqs are -1 when no event carried one. */
struct ingest_commit {
	size_t ops;    /* rows written: events, rejections, gaps, incidents */
	size_t events; /* inputs handled: events and rejections */
	int64_t first_seq, last_seq;
	int64_t last_rowid; /* of the last event stored so far */
	int64_t at_ns;      /* monotonic time just after COMMIT returned */
};

typedef void (*ingest_commit_fn)(void *arg, const struct ingest_commit *c);

/*
 * Creates the socket in zctx per cfg and starts receiving into st (borrowed;
 * it must outlive the ingest). Returns NULL with err filled (bad endpoint,
 * address in use).
 */
struct ingest *ingest_new(void *zctx, const struct config *cfg, struct store *st, char *err,
                          size_t errlen);
void ingest_free(struct ingest *in);

/* The ZeroMQ socket, for zmq_poll. */
void *ingest_socket(const struct ingest *in);

/*
 * Applies a reloaded configuration: endpoints and topics are changed in
 * place (no message already queued is lost); limits take effect at once; a
 * changed mode replaces the socket. Returns 0, or -1 with err (the old
 * settings stay).
 */
int ingest_reconfigure(struct ingest *in, const struct config *cfg, char *err, size_t errlen);

/*
 * Handles up to max queued messages without blocking, committing whenever a
 * batch is full or due. Returns how many were handled, or -1 if the store
 * failed (the error was logged: the caller should stop).
 */
int ingest_drain(struct ingest *in, int max);

/* Commits pending work now. Returns 0, or -1 if the store failed. */
int ingest_flush(struct ingest *in);

/* Milliseconds until the open batch is due, or -1 when nothing is pending. */
long ingest_timeout_ms(const struct ingest *in);

/*
 * Where new events go besides the store (the rules): event() is called for
 * every new event with its rowid, and for every higher revision with minus
 * its arrival number (store_last_revision_seq), not for duplicates or stale
 * revisions, inside the open transaction; committed() after each commit,
 * when those are durable.
 */
struct ingest_sink {
	void (*event)(void *arg, const struct event *ev, int64_t tag);
	void (*committed)(void *arg);
	void *arg;
};

void ingest_set_sink(struct ingest *in, const struct ingest_sink *sink);

/* Calls fn after every commit (metrics, the benchmark). */
void ingest_on_commit(struct ingest *in, ingest_commit_fn fn, void *arg);

#endif
