/*
 * delivery.h: the outbox's workers.
 *
 * One thread per receiver, each with its own SQLite connection and libcurl
 * handle, so a slow Jira never delays Slack. A worker takes its receiver's
 * next due delivery (oldest first, and never ahead of an earlier pending
 * one for the same incident), performs one step (connector.h: render, send,
 * classify) and records the verdict, the step and the remote ids in one
 * transaction; no HTTP call ever happens inside a transaction. Before a
 * request that creates a ticket or posts a message, the attempt itself is
 * committed, so after a crash a create resumes with a FIND (no duplicate
 * ticket) and a possibly repeated chat message is logged.
 *
 * Retries: exponential backoff from 1 s doubling to 10 min, with jitter,
 * never sooner than Retry-After; after the receiver's max_age a delivery is
 * dead-lettered with its last reason. `voca deadletters` lists and re-queues.
 */
#ifndef VOCA_DELIVERY_H
#define VOCA_DELIVERY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

struct delivery_pool;

/*
 * Starts one worker per configured receiver on the store at db_path (st,
 * the daemon's connection to it, lends its writers' turns: workers and the
 * ingest take turns to write). cfg and st must outlive the pool. NULL
 * (nothing started) with err on failure.
 */
struct delivery_pool *delivery_start(const struct config *cfg, struct store *st,
                                     const char *db_path, char *err, size_t errlen);

/* New deliveries were committed: wake the workers. */
void delivery_kick(struct delivery_pool *p);

/* Stops the workers (a request in flight is abandoned, as after a crash) and frees the pool. */
void delivery_stop(struct delivery_pool *p);

/* The backoff before retry n (1-based), without jitter: 1 s doubling to 10 min. */
int64_t delivery_backoff_ms(int attempt);

/* `voca deadletters`: lists dead deliveries, or re-queues one id (or all with id 0). */
int delivery_deadletters(const char *db_path, int requeue, int64_t id, char *err, size_t errlen);

#endif
