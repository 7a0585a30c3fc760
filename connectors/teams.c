/*
 * teams.c: Microsoft Teams through a Workflows (Power Automate) webhook
 * (CONTRACTS.md §6): {"type":"message","attachments":[Adaptive Card 1.4]}.
 *
 * The trigger answers 202 and posts later, so a bad card fails silently on
 * Microsoft's side: the card is built only from elements and properties
 * the adaptivecards library accepts (tests/conformance checks it), with
 * Action.OpenUrl only, and kept under 28 KB by dropping examples first.
 * Owner mentions use <at>Name</at> with msteams.entities; customer text is
 * escaped (esc_teams) so it cannot mention anyone or break the markdown.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <voca/connector.h>
#include <voca/render.h>

#define TEAMS_MAX_BYTES (27 * 1024) /* Teams refuses about 28 KB; keep a margin */

static const struct conf_key keys[] = {
        RECEIVER_COMMON_KEYS("10s", "250ms"),
        CONF_KEY("url", CONF_SECRET, offsetof(struct receiver, secret_url), NULL, 0, 0, NULL,
                 "the workflow's HTTP trigger URL, a secret (its sig parameter signs it)"),
        CONF_KEY("token", CONF_SECRET, offsetof(struct receiver, token), NULL, 0, 0, NULL,
                 "optional Entra ID bearer token, when the flow is limited to a tenant"),
        CONF_END,
};

static int check(struct receiver *r, char *err, size_t errlen)
{
	return receiver_check_url(receiver_url(r), err, errlen);
}

static cJSON *text_block(cJSON *body, const char *text)
{
	cJSON *t = cJSON_CreateObject();

	cJSON_AddItemToArray(body, t);
	cJSON_AddStringToObject(t, "type", "TextBlock");
	cJSON_AddStringToObject(t, "text", *text ? text : " ");
	cJSON_AddBoolToObject(t, "wrap", 1);
	return t;
}

static void fact(cJSON *facts, const char *title, const char *value)
{
	cJSON *f = cJSON_CreateObject();

	cJSON_AddItemToArray(facts, f);
	cJSON_AddStringToObject(f, "title", title);
	cJSON_AddStringToObject(f, "value", *value ? value : "-");
}

/* The whole message with at most nex examples. */
static cJSON *card(const struct delivery *d, int nex)
{
	cJSON *msg = cJSON_CreateObject(), *att, *a, *c, *body, *t, *facts, *ex, *actions;
	struct buf s, e;
	int n = 0;

	buf_init(&s, 1 << 20);
	buf_init(&e, 1 << 20);
	cJSON_AddStringToObject(msg, "type", "message");
	att = cJSON_AddArrayToObject(msg, "attachments");
	a = cJSON_CreateObject();
	cJSON_AddItemToArray(att, a);
	cJSON_AddStringToObject(a, "contentType", "application/vnd.microsoft.card.adaptive");
	cJSON_AddNullToObject(a, "contentUrl");
	c = cJSON_AddObjectToObject(a, "content");
	cJSON_AddStringToObject(c, "$schema", "http://adaptivecards.io/schemas/adaptive-card.json");
	cJSON_AddStringToObject(c, "type", "AdaptiveCard");
	cJSON_AddStringToObject(c, "version", "1.4");
	body = cJSON_AddArrayToObject(c, "body");

	buf_addf(&s, "%s: ", render_chat_verb(d));
	render_headline(d->pack, &s, 200);
	t = text_block(body, buf_str(&s));
	cJSON_AddStringToObject(t, "weight", "Bolder");
	cJSON_AddStringToObject(t, "size", "Medium");
	cJSON_AddStringToObject(t, "color", d->action == ACTION_RESOLVE ? "Good" : "Attention");

	buf_reset(&s);
	buf_reset(&e);
	if (d->action == ACTION_ALERT) {
		buf_addf(&e, "**Delivery to %s failed for good:** ",
		         pack_str(d->pack, "delivery_failure.receiver", "?"));
		esc_teams(&e, pack_str(d->pack, "delivery_failure.reason", ""));
		buf_adds(&e, " (voca deadletters --requeue re-sends it). ");
	}
	esc_teams(&e, pack_str(d->pack, "incident.summary", ""));
	text_append_cut(&s, buf_str(&e), 1000);
	text_block(body, buf_str(&s));

	facts = cJSON_CreateObject();
	cJSON_AddItemToArray(body, facts);
	cJSON_AddStringToObject(facts, "type", "FactSet");
	cJSON *fl = cJSON_AddArrayToObject(facts, "facts");

	buf_reset(&s);
	render_what_changed(d->pack, &s);
	buf_reset(&e);
	esc_teams(&e, buf_str(&s));
	fact(fl, "What changed", buf_str(&e));
	buf_reset(&s);
	buf_addf(&s, "tier %d, worst severity %s", (int)pack_num(d->pack, "incident.tier", 0),
	         pack_str(d->pack, "why_it_matters.severity", "?"));
	fact(fl, "Why it matters", buf_str(&s));
	buf_reset(&e);
	if (pack_str(d->pack, "who.suggested_action", NULL))
		esc_teams(&e, pack_str(d->pack, "who.suggested_action", ""));
	fact(fl, "Next", buf_str(&e));
	buf_reset(&s);
	render_sparkline(d->pack, &s);
	fact(fl, "Trend (24 buckets)", buf_str(&s));

	/* Who should act, with the owner's mentions. */
	buf_reset(&s);
	buf_addf(&s, "Owner: %s", d->owner ? d->owner->name : "no owner routed");
	if (d->owner && d->owner->teams_mentions.n &&
	    (d->action == ACTION_OPEN || d->action == ACTION_REOPEN)) {
		cJSON *msteams = cJSON_AddObjectToObject(c, "msteams");
		cJSON *ents = cJSON_AddArrayToObject(msteams, "entities");

		cJSON_AddStringToObject(msteams, "width", "Full");
		for (size_t i = 0; i < d->owner->teams_mentions.n; i++) {
			const char *m = d->owner->teams_mentions.v[i], *bar = strchr(m, '|');
			char id[128], name[128], tag[160];
			cJSON *ent, *who;

			if (bar == NULL)
				continue;
			snprintf(id, sizeof(id), "%.*s", (int)(bar - m), m);
			snprintf(name, sizeof(name), "%s", bar + 1);
			snprintf(tag, sizeof(tag), "<at>%s</at>", name);
			buf_addf(&s, " %s", tag);
			ent = cJSON_CreateObject();
			cJSON_AddItemToArray(ents, ent);
			cJSON_AddStringToObject(ent, "type", "mention");
			cJSON_AddStringToObject(ent, "text", tag);
			who = cJSON_AddObjectToObject(ent, "mentioned");
			cJSON_AddStringToObject(who, "id", id);
			cJSON_AddStringToObject(who, "name", name);
		}
	} else {
		cJSON_AddStringToObject(cJSON_AddObjectToObject(c, "msteams"), "width", "Full");
	}
	text_block(body, buf_str(&s));

	actions = cJSON_AddArrayToObject(c, "actions");
	cJSON_ArrayForEach(ex, pack_get(d->pack, "examples"))
	{
		const char *url = pack_str(ex, "url", NULL);

		if (n >= nex)
			break;
		buf_reset(&s);
		buf_addf(&s, "**%s**", pack_str(ex, "severity", ""));
		if (pack_num(ex, "rating", 0) > 0)
			buf_addf(&s, ", rating %d", (int)pack_num(ex, "rating", 0));
		buf_addf(&s, ", %s", pack_str(ex, "time", ""));
		if (pack_num(ex, "similar", 0) > 0)
			buf_addf(&s, " (+%d similar)", (int)pack_num(ex, "similar", 0));
		buf_adds(&s, ": ");
		buf_reset(&e);
		esc_teams(&e, pack_str(ex, "text", pack_str(ex, "summary", "")));
		text_append_cut(&s, buf_str(&e), 700);
		t = text_block(body, buf_str(&s));
		cJSON_AddBoolToObject(t, "separator", 1);
		if (url && n < 3 && strncmp(url, "https://", 8) == 0) {
			cJSON *act = cJSON_CreateObject();
			char title[32];

			cJSON_AddItemToArray(actions, act);
			cJSON_AddStringToObject(act, "type", "Action.OpenUrl");
			snprintf(title, sizeof(title), "Example %d", n + 1);
			cJSON_AddStringToObject(act, "title", title);
			cJSON_AddStringToObject(act, "url", url);
		}
		n++;
	}
	buf_reset(&s);
	buf_addf(&s, "incident %d · %s · config %s · model %s/%s",
	         (int)pack_num(d->pack, "incident.id", 0), pack_str(d->pack, "incident.dedupe", ""),
	         pack_str(d->pack, "lineage.config", ""), pack_str(d->pack, "lineage.model", ""),
	         pack_str(d->pack, "lineage.prompt_version", ""));
	t = text_block(body, buf_str(&s));
	cJSON_AddStringToObject(t, "size", "Small");
	cJSON_AddBoolToObject(t, "isSubtle", 1);
	if (cJSON_GetArraySize(actions) == 0)
		cJSON_DeleteItemFromObjectCaseSensitive(c, "actions");
	buf_free(&s);
	buf_free(&e);
	return msg;
}

static enum render_result render(const struct delivery *d, struct http_req *req, struct verdict *v)
{
	char *body = NULL;

	for (int nex = 5; nex >= 0; nex--) {
		cJSON *msg = card(d, nex);

		cJSON_free(body);
		body = cJSON_PrintUnformatted(msg);
		cJSON_Delete(msg);
		if (strlen(body) <= TEAMS_MAX_BYTES)
			break;
	}
	if (strlen(body) > TEAMS_MAX_BYTES) {
		cJSON_free(body);
		verdict_set(v, VERDICT_FAIL, 0, "the card is over %d bytes even without examples",
		            TEAMS_MAX_BYTES);
		return RENDER_FAIL;
	}
	req->method = "POST";
	buf_adds(&req->url, receiver_url(d->rcv));
	buf_adds(&req->body, body);
	cJSON_free(body);
	req->content_type = "application/json";
	req->auth = d->rcv->token.value ? AUTH_BEARER : AUTH_NONE;
	req->sends_message = 1;
	return RENDER_REQUEST;
}

static void classify(struct delivery *d, const struct http_resp *resp, struct verdict *v)
{
	(void)d;
	if (verdict_http(resp, v))
		return;
	/* The retired connectors answered 200 with an error text instead of a status. */
	if (resp->len && strstr(resp->body, "\"error\"") != NULL)
		verdict_set(v, VERDICT_FAIL, 0, "HTTP %ld with an error body: %.100s", resp->status,
		            resp->body);
	else
		verdict_set(v, VERDICT_DONE, 0, "HTTP %ld (accepted)", resp->status);
}

const struct connector connector_teams = {
        .kind = "teams",
        .keys = keys,
        .check = check,
        .render = render,
        .classify = classify,
};
