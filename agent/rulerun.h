/*
 * rulerun.h: the rules engine on its own thread, behind the ingest.
 *
 * The ingest hands over each new event with its rowid (rulerun_sink) and
 * releases them when they commit, so the rules only ever see durable events.
 * The ingest never waits for the rules: when a bounded backlog is full (a
 * checkpoint, a burst of incidents), the queue lets events go and this
 * thread reads them back from the store in order, then takes the queue's
 * batches again (evqueue_spill). This thread
 * runs them through the engine in commit order and records what the engine
 * decides through its own connection to the store: incident changes with
 * their deliveries (outbox.h) and the review queue. Every second it moves a
 * live stream's clock; every engine.checkpoint it saves the engine's state
 * with the rowid of the last event that state includes.
 *
 * Nothing is lost in a crash: a restart restores the saved state and
 * replays the events stored after its rowid (rulerun_new), and incident
 * changes are idempotent, so a change recorded before the crash and made
 * again by the replay is recorded once.
 */
#ifndef VOCA_RULERUN_H
#define VOCA_RULERUN_H

#include "config.h"
#include "ingest.h"
#include "outbox.h"
#include "store.h"

struct rulerun;

/*
 * Builds the engine for cfg's rules (there must be some), restores its
 * saved state and replays the events stored since, on a connection of its
 * own to primary's file. ob (NULL: no deliveries) and cfg are borrowed.
 * Returns NULL with err filled.
 */
struct rulerun *rulerun_new(const struct config *cfg, struct store *primary, struct outbox *ob,
                            char *err, size_t errlen);

/* Calls fn after a commit of this thread's that queued deliveries. */
void rulerun_on_deliveries(struct rulerun *r, void (*fn)(void *arg), void *arg);

/*
 * Calls fn on the rules' thread each time it has run every event handed
 * over (it is about to wait), with the rowid of the last (for benchmarks).
 */
void rulerun_on_idle(struct rulerun *r, void (*fn)(void *arg, int64_t fed_rowid), void *arg);

/* Starts the thread. Returns 0, or -1 with err filled. */
int rulerun_start(struct rulerun *r, char *err, size_t errlen);

/* What the ingest calls: see ingest_set_sink. */
void rulerun_sink(struct rulerun *r, struct ingest_sink *out);

/*
 * The configuration is the daemon's; it holds this while it changes cfg
 * (a reload), and the rules' thread holds it while it reads it.
 */
void rulerun_lock(struct rulerun *r);
void rulerun_unlock(struct rulerun *r);

/* Non-zero once the thread has failed to write the store (it was logged). */
int rulerun_failed(const struct rulerun *r);

/* A descriptor that becomes readable when the thread fails, to poll on. */
int rulerun_failed_fd(const struct rulerun *r);

/*
 * Runs what was released, checkpoints and stops the thread. Returns 0, or
 * -1 if the thread failed. The caller flushes the ingest first.
 */
int rulerun_stop(struct rulerun *r);

void rulerun_free(struct rulerun *r);

#endif
