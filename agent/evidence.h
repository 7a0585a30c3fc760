/*
 * evidence.h: the evidence pack, built once per notification and shared by
 * every receiver (its fields are documented in <voca/render.h>).
 *
 * Built in the transaction that records the incident change, from the
 * incident, its rule and the stored events: the rule's explanation, the
 * key's matching events in the last 24 buckets (the trend, and the example
 * candidates, ranked by severity x confidence x recency with near-duplicate
 * texts collapsed), the owners, the lineage. Every customer text is redacted
 * here, once, before anything can leave.
 */
#ifndef VOCA_EVIDENCE_H
#define VOCA_EVIDENCE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include <voca/engine.h>
#include <voca/redact.h>
#include <voca/rule.h>

#include "store.h"

#define EVIDENCE_EXAMPLES 5     /* examples kept */
#define EVIDENCE_BUCKETS  24    /* trend length */
#define EVIDENCE_TEXT_MAX 600   /* bytes of a customer text kept (after redaction) */
#define EVIDENCE_SCAN_MAX 20000 /* stored events read for one pack */

/* The idempotency key of an incident: "voca-" and 16 hex digits, stable across replays. */
void evidence_dedupe(const struct incident *inc, char out[32]);

/*
 * Builds the pack for a change of inc (rule may be NULL if the rule is gone
 * from the configuration). config_version names the configuration. Returns
 * the pack (cJSON_Delete it); never NULL.
 */
cJSON *evidence_build(struct store *st, const struct redactor *red, const struct rule_common *rule,
                      const struct incident *inc, enum incident_change ch,
                      const char *config_version);

/*
 * The value most examples share for an event field (category, region,
 * source, ...), for routing on fields the group key lacks. 1 if found.
 */
int evidence_dominant(const cJSON *pack, const char *field, char *out, size_t outlen);

#endif
