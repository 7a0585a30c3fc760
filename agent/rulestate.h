/*
 * rulestate.h: the rules' saved state, in a SQLite file of its own.
 *
 * A checkpoint writes hundreds of thousands of records at high rates; in
 * the store's file it held the one write lock for up to a second while the
 * ingest's commits waited. In a file of its own it has its own lock, and
 * only the rules' thread writes it. The file holds every (rule, key)
 * record of engine_save and the position the state covers (the last event
 * rowid and revision arrival run), committed together.
 *
 * The store's file must never be behind this one: the rules' thread has
 * the store's commits flushed to disk (store_rules_position) before it
 * commits a checkpoint here. A lost or deleted file is not fatal: the rules start from
 * nothing and replay every stored event.
 */
#ifndef VOCA_RULESTATE_H
#define VOCA_RULESTATE_H

#include <stddef.h>
#include <stdint.h>

struct rulestate;

/* Opens (creating if needed) the file at path. Returns NULL with err filled. */
struct rulestate *rulestate_open(const char *path, int64_t cache_bytes, char *err, size_t errlen);

/* Commits what is pending, then closes. NULL is a no-op. */
void rulestate_close(struct rulestate *rs);

/*
 * One record (upsert; blob NULL: deleted; key NULL: all the rule's deleted), in
 * the open transaction (the first write opens one).
 */
int rulestate_put(struct rulestate *rs, const char *rule, const char *key, const void *blob,
                  size_t len);

/* Calls fn for every record, in (rule, key) order. Returns how many, or -1. */
int rulestate_each(struct rulestate *rs,
                   int (*fn)(void *arg, const char *rule, const char *key, const void *blob,
                             size_t len),
                   void *arg);

/*
 * Read-only, beside a running daemon (voca check): calls fn for each
 * configured-or-not rule's shape record (rule "", key: the rule's name)
 * with the number of records the rule has. Returns 0, or -1 with err
 * filled; a file that does not exist is 0 with no call.
 */
int rulestate_each_shape(const char *path,
                         void (*fn)(void *arg, const char *rule, const void *blob, size_t len,
                                    int64_t records),
                         void *arg, char *err, size_t errlen);

/* The position the records cover, in the open transaction. */
int rulestate_set_position(struct rulestate *rs, int64_t rowid, int64_t revision_seq);

/* Returns 1 with the saved position, 0 when none was ever saved, -1 on error. */
int rulestate_position(struct rulestate *rs, int64_t *rowid, int64_t *revision_seq);

/* Deletes every record and the position, and commits. */
int rulestate_clear(struct rulestate *rs);

/* Commits the open transaction, if any. */
int rulestate_commit(struct rulestate *rs);

/* The last error, for the layer that logs. */
const char *rulestate_error(const struct rulestate *rs);

#endif
