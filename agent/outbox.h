/*
 * outbox.h: the transactional outbox's writing side.
 *
 * For each new incident change that notifies, in the same transaction that
 * records the change: route it (route.h), build its evidence pack once
 * (evidence.h) and queue one delivery per receiver. A crash before the
 * commit loses both the change and its deliveries, and the replay of the
 * events since the rules' checkpoint makes them again; after the commit,
 * the delivery workers (delivery.h) own them. Nothing here does I/O beyond
 * the store.
 */
#ifndef VOCA_OUTBOX_H
#define VOCA_OUTBOX_H

#include <stdint.h>

#include <voca/engine.h>

#include "config.h"
#include "store.h"

struct outbox;

/* cfg must outlive the outbox. NULL with err if the redaction patterns do not compile. */
struct outbox *outbox_new(const struct config *cfg, char *err, size_t errlen);
void outbox_free(struct outbox *ob);

/*
 * Queues the deliveries of change change_id (from store_incident) of inc.
 * Returns how many were queued (0: muted, tier 3, or no route), or -1 on a
 * store error (store_error says which).
 */
int outbox_enqueue(struct outbox *ob, struct store *st, const struct incident *inc,
                   enum incident_change ch, int64_t change_id, int64_t now_ms);

#endif
