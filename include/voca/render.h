/*
 * render.h: helpers the connectors share to turn an evidence pack into
 * text: field access, the headline, a sparkline, and escaping per target.
 *
 * The evidence pack (built once per notification by agent/evidence.c, the
 * same for every receiver, already redacted) is a JSON object:
 *
 *   incident        id, rule, kind, tier, key, change, summary, opened,
 *                   updated, firings, dedupe
 *   what_changed    the rule's explanation (observed, expected, test, p, guards)
 *   why_it_matters  tier, severity (worst among the examples), skus, rate
 *                   (observed / expected), events (in the trend window)
 *   who             owners (route owners), suggested_owner, suggested_action
 *   examples        [{id, time, rating, severity, confidence, summary, text, url}]
 *                   ranked by severity x confidence x recency, near-duplicates
 *                   collapsed
 *   trend           bucket, start, counts[], expected (per bucket or null)
 *   lineage         rule, config, model, model_version, prompt_version,
 *                   taxonomy_version
 *   redacted        emails, phones, cards, patterns (how many were replaced)
 *
 * All functions are pure; strings returned through struct buf are the
 * caller's to free.
 */
#ifndef VOCA_RENDER_H
#define VOCA_RENDER_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include <voca/buf.h>

/* The string at a dotted path ("incident.rule"), or dflt. */
const char *pack_str(const cJSON *pack, const char *path, const char *dflt);
/* The number at a dotted path, or dflt. */
double pack_num(const cJSON *pack, const char *path, double dflt);
const cJSON *pack_get(const cJSON *pack, const char *path);

/* Is the change an update that tells a new episode inside the open incident
 * (what_changed.again_after_clear_buckets: fired again after a clear spell)?
 * It "fired again after a clear spell"; it is not "still firing". */
int pack_again(const cJSON *pack);

/* A chat message's title word for the delivery's action: "New", "Still
 * firing", "Resolved", "Back again", "New episode" (pack_again), or "NOT
 * DELIVERED". */
struct delivery;
const char *render_chat_verb(const struct delivery *d);

/* "[voca] tier 1 · severe-defects · sku=SKU-1 opened", at most max bytes (UTF-8 safe). */
void render_headline(const cJSON *pack, struct buf *out, size_t max);

/* The trend as block characters, one per bucket ("▁▂▅█"); "" without counts. */
void render_sparkline(const cJSON *pack, struct buf *out);

/* The trend as CSV: "bucket_start,count,expected\n..." (the ticket attachment). */
void render_trend_csv(const cJSON *pack, struct buf *out);

/*
 * The whole pack as plain text for people (console, ServiceNow, e-mail):
 * headline, summary, what changed, why it matters, who should act, the
 * examples, the trend and the lineage. esc (may be NULL) escapes customer
 * text for the target's markup.
 */
void render_text(const cJSON *pack, struct buf *out, void (*esc)(struct buf *, const char *));

/*
 * The one-paragraph note a ticket gets on each later change (a Jira comment,
 * a ServiceNow work note): "voca: incident 7 is still firing at ... (firings:
 * 9). <summary>". For ACTION_KNOWN it says which incident of which rule and
 * key changed and how, since the ticket is not the incident's own.
 */
void render_note(const struct delivery *d, struct buf *out);

/* One line per explanation field worth showing: "test: ...; observed 18 vs expected 2.2". */
void render_what_changed(const cJSON *pack, struct buf *out);

/* Appends s, cut to at most max bytes on a character boundary ("…" when cut). */
void text_append_cut(struct buf *out, const char *s, size_t max);

/* Slack mrkdwn: & < > escaped (no <!channel>, no links), @here/@channel defused. */
void esc_slack(struct buf *out, const char *s);
/* Jira wiki markup (Data Center): markup characters escaped with a backslash. */
void esc_jira_wiki(struct buf *out, const char *s);
/* Teams (Adaptive Card markdown): markup characters escaped, <at> tags defused. */
void esc_teams(struct buf *out, const char *s);

#endif
