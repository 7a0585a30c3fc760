/*
 * outbox.c: routing a change into delivery rows (see outbox.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/connector.h>
#include <voca/log.h>
#include <voca/redact.h>
#include <voca/render.h>
#include <voca/route.h>
#include <voca/suppress.h>
#include <voca/rule.h>
#include <voca/xalloc.h>

#include "clock.h"
#include "evidence.h"
#include "outbox.h"

struct outbox {
	const struct config *cfg;
	struct redactor *red;
};

struct outbox *outbox_new(const struct config *cfg, char *err, size_t errlen)
{
	struct outbox *ob = xcalloc(1, sizeof(*ob));

	ob->cfg = cfg;
	ob->red = redactor_new(&cfg->redaction.patterns, err, errlen);
	if (ob->red == NULL) {
		free(ob);
		return NULL;
	}
	return ob;
}

void outbox_free(struct outbox *ob)
{
	if (ob == NULL)
		return;
	redactor_free(ob->red);
	free(ob);
}

struct fields {
	const struct incident *inc;
	const char *change;
	const cJSON *pack;
};

/* rule, kind, tier, change, a group-key field, or the examples' dominant value. */
static int field(void *arg, const char *name, char *out, size_t outlen)
{
	const struct fields *f = arg;

	if (strcmp(name, "rule") == 0)
		return snprintf(out, outlen, "%s", f->inc->rule), 1;
	if (strcmp(name, "kind") == 0)
		return snprintf(out, outlen, "%s", f->inc->kind), 1;
	if (strcmp(name, "tier") == 0)
		return snprintf(out, outlen, "%d", f->inc->tier), 1;
	if (strcmp(name, "change") == 0)
		return snprintf(out, outlen, "%s", f->change), 1;
	return key_field(f->inc->key, name, out, outlen) ||
	       evidence_dominant(f->pack, name, out, outlen);
}

/* Indexed by the changes that may notify (a verified incident never does). */
static const char *const change_names[] = {"opened", "updated", "resolved", "reopened"};
static const enum delivery_action actions[] = {ACTION_OPEN, ACTION_UPDATE, ACTION_RESOLVE,
                                               ACTION_REOPEN};

/* The evidence pack of change ch of inc: built once, shared by its deliveries. */
static cJSON *build_pack(struct outbox *ob, struct store *st, const struct incident *inc,
                         enum incident_change ch)
{
	int64_t t0 = clock_mono_ns();
	cJSON *pack = evidence_build(st, ob->red, config_rule(ob->cfg, inc->rule), inc, ch,
	                             ob->cfg->version);

	log_debug("outbox: evidence for incident %llu built in %.2f ms (%d matching events)",
	          (unsigned long long)inc->id, (double)(clock_mono_ns() - t0) / 1e6,
	          (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(
	                  cJSON_GetObjectItemCaseSensitive(pack, "why_it_matters"), "events")));
	return pack;
}

static int store_pack(struct store *st, int64_t change_id, const struct incident *inc,
                      const cJSON *pack)
{
	char *text = cJSON_PrintUnformatted(pack);
	int rc = store_evidence(st, change_id, (int64_t)inc->id,
	                        pack_str(pack, "incident.dedupe", ""), text);

	cJSON_free(text);
	return rc;
}

/*
 * A change of an incident a known issue covers, that would otherwise have
 * notified: one comment on the known issue's ticket (DESIGN.md section 5),
 * through its receiver. No route, no chat, no ticket of its own.
 */
static int enqueue_known(struct outbox *ob, struct store *st, const struct incident *inc,
                         enum incident_change ch, int64_t change_id, const struct known_issue *k,
                         int64_t now_ms)
{
	cJSON *pack = build_pack(ob, st, inc, ch), *o;
	int rc;

	o = cJSON_AddObjectToObject(pack, "known_issue");
	cJSON_AddStringToObject(o, "ticket", k->ticket);
	cJSON_AddStringToObject(o, "receiver", k->receiver);
	if (k->comment)
		cJSON_AddStringToObject(o, "comment", k->comment);
	rc = store_pack(st, change_id, inc, pack);
	if (rc == 0)
		rc = store_delivery(st, change_id, (int64_t)inc->id, k->receiver, NULL,
		                    action_name(ACTION_KNOWN), k->ticket, now_ms);
	cJSON_Delete(pack);
	return rc < 0 ? -1 : 1;
}

/* The known issue with a ticket receiver that covers inc, or NULL. */
static const struct known_issue *known_for(const struct config *cfg, const struct incident *inc)
{
	const struct known_issue *k =
	        known_issue_find(&cfg->known_issues, inc->rule, inc->kind, inc->tier, inc->key);

	return k && k->receiver ? k : NULL;
}

int outbox_enqueue(struct outbox *ob, struct store *st, const struct incident *inc,
                   enum incident_change ch, int64_t change_id, int64_t now_ms)
{
	const struct config *cfg = ob->cfg;
	const struct known_issue *k;
	struct route_target to[32];
	struct fields f = {inc, NULL, NULL};
	size_t n;
	cJSON *pack, *owners;
	int rc = 0;

	/* Tier 3 (digest only) is recorded, not delivered. */
	if (change_id <= 0 || inc->tier >= 3 || ch == INCIDENT_VERIFIED ||
	    (cfg->routes.n == 0 && cfg->known_issues.n == 0))
		return 0;
	if (!inc->notify) { /* muted: only a known issue's ticket hears of it */
		k = inc->muted_by == SUPPRESSED_KNOWN_ISSUE ? known_for(cfg, inc) : NULL;
		return k ? enqueue_known(ob, st, inc, ch, change_id, k, now_ms) : 0;
	}
	/* Opened while a silence or time window muted it: the first update that
	 * notifies once that has ended is the team's first word of it, so it
	 * goes out as the opening (a ticket, the owner's mention, the evidence);
	 * and so does a reopening (a regression of something nobody heard of);
	 * its resolution, if nothing was ever said, is not news (but is to the
	 * ticket of a known issue that covered it). */
	if (ch == INCIDENT_UPDATED || ch == INCIDENT_RESOLVED || ch == INCIDENT_REOPENED) {
		int announced = store_incident_announced(st, (int64_t)inc->id, change_id);

		if (announced < 0)
			return -1;
		if (!announced && ch == INCIDENT_RESOLVED) {
			k = known_for(cfg, inc);
			return k ? enqueue_known(ob, st, inc, ch, change_id, k, now_ms) : 0;
		}
		if (!announced)
			ch = INCIDENT_OPENED;
	}
	if (cfg->routes.n == 0)
		return 0;
	/* The tickets' key hashes the first opening. The engine carries it across
	 * reopenings, except for an incident that resolved under a voca older than
	 * that (its state has no such time): the store's row has it. */
	struct incident first;

	if (ch == INCIDENT_REOPENED) {
		int64_t opened = store_incident_opened(st, (int64_t)inc->id);

		if (opened > 0 && opened != inc->opened_ms) {
			first = *inc;
			first.opened_ms = opened;
			inc = &first;
			f.inc = inc;
		}
	}
	f.change = change_names[ch];
	pack = build_pack(ob, st, inc, ch);
	f.pack = pack;
	n = route_walk(&cfg->routes, field, &f, to, sizeof(to) / sizeof(to[0]));
	if (n == 0) {
		log_warn("outbox: incident %llu (%s %s): no route matches; nobody is told",
		         (unsigned long long)inc->id, inc->rule, inc->key);
		cJSON_Delete(pack);
		return 0;
	}
	owners = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(pack, "who"),
	                                          "owners");
	for (size_t i = 0; i < n; i++) {
		if (to[i].owner < 0)
			continue;
		const char *name = ((struct owner *)cfg->owners.v[to[i].owner].data)->name;
		const cJSON *o;
		int seen = 0;

		cJSON_ArrayForEach(o, owners) seen |= strcmp(o->valuestring, name) == 0;
		if (!seen)
			cJSON_AddItemToArray(owners, cJSON_CreateString(name));
	}
	if (store_pack(st, change_id, inc, pack) < 0)
		rc = -1;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const struct receiver *r = cfg->receivers.v[to[i].receiver].data;
		const char *owner =
		        to[i].owner >= 0 ? ((struct owner *)cfg->owners.v[to[i].owner].data)->name
		                         : NULL;

		if (store_delivery(st, change_id, (int64_t)inc->id, r->name, owner,
		                   action_name(actions[ch]), NULL, now_ms) < 0)
			rc = -1;
	}
	cJSON_Delete(pack);
	return rc < 0 ? -1 : (int)n;
}
