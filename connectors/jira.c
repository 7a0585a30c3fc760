/*
 * jira.c: Jira Cloud (REST v3, descriptions and comments in ADF) and Jira
 * Data Center (REST v2, wiki-markup strings), CONTRACTS.md §2-3.
 *
 * One ticket per incident, found again by the label voca-<hash> (labels
 * match exactly in JQL; summaries do not). Steps, each one request:
 *
 *   FIND         search by label (the ledger's key skips it)
 *   CREATE       POST /issue                       -> ATTACH
 *   COMMENT      re-occurrence, resolution, reopen -> ATTACH or TRANSITIONS;
 *                a known issue's ticket (given)    -> done
 *   ATTACH       the evidence pack as a JSON file  -> done
 *   TRANSITIONS  GET the transitions, pick the configured one by name
 *   TRANSITION   POST it                           -> done
 *
 * CREATE is always preceded by FIND. Search is eventually consistent: if a
 * create was sent and its answer lost (a crash), FIND keeps looking for
 * search_lag before creating again, so the lost answer cannot become a
 * second ticket.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <voca/connector.h>
#include <voca/render.h>
#include <voca/xalloc.h>

enum { MODE_CLOUD = 0, MODE_DC = 1 };
enum { FIND = 0, CREATE = 1, COMMENT = 2, ATTACH = 3, TRANSITIONS = 4, TRANSITION = 5 };

static const char *const modes[] = {"cloud", "datacenter", NULL};

#define OFF(m) offsetof(struct receiver, m)

static const struct conf_key keys[] = {
        RECEIVER_COMMON_KEYS("30s", "0s"),
        CONF_KEY("mode", CONF_ENUM, OFF(mode), "cloud", 0, 0, modes,
                 "cloud (REST v3, ADF) or datacenter (REST v2, wiki markup)"),
        CONF_KEY("url", CONF_STR, OFF(url), NULL, 0, 0, NULL,
                 "the site: https://example.atlassian.net, or the Data Center base URL"),
        CONF_KEY("user", CONF_SECRET, OFF(user), NULL, 0, 0, NULL,
                 "cloud: the account's e-mail address (Basic auth with the token)"),
        CONF_KEY("token", CONF_SECRET, OFF(token), NULL, 0, 0, NULL,
                 "cloud: API token; datacenter: personal access token (Bearer)"),
        CONF_KEY("project", CONF_STR, OFF(project), NULL, 0, 0, NULL,
                 "project key (an owner's jira_project overrides it)"),
        CONF_KEY("issue_type", CONF_STR, OFF(issue_type), "Task", 0, 0, NULL, "issue type name"),
        CONF_KEY("priority", CONF_STR, OFF(priority), NULL, 0, 0, NULL,
                 "priority name for tier-1 tickets (none: the project's default)"),
        CONF_KEY("components", CONF_STRLIST, OFF(components), NULL, 0, 0, NULL,
                 "component names (an owner's jira_components override them)"),
        CONF_KEY("labels", CONF_STRLIST, OFF(labels), NULL, 0, 0, NULL,
                 "extra labels (no spaces); voca and voca-<hash> are always set"),
        CONF_KEY("fields", CONF_STRLIST, OFF(fields), NULL, 0, 0, NULL,
                 "extra text fields as 'customfield_10050=value'"),
        CONF_KEY("resolve_transition", CONF_STR, OFF(resolve_transition), "Done", 0, 0, NULL,
                 "the transition applied when the incident resolves"),
        CONF_KEY("reopen_transition", CONF_STR, OFF(reopen_transition), "Reopen", 0, 0, NULL,
                 "the transition applied when a resolved incident fires again"),
        CONF_KEY("search_lag", CONF_DURATION, OFF(search_lag_ms), "90s", 0, 3600000, NULL,
                 "how long search may miss a new ticket; an interrupted create waits this long"),
        CONF_END,
};

static int check(struct receiver *r, char *err, size_t errlen)
{
	if (receiver_check_url(r->url, err, errlen) < 0)
		return -1;
	if (r->token.value == NULL || (r->mode == MODE_CLOUD && r->user.value == NULL)) {
		snprintf(err, errlen, "needs token%s", r->mode == MODE_CLOUD ? " and user" : "");
		return -1;
	}
	if (r->project == NULL) {
		snprintf(err, errlen, "project: needed");
		return -1;
	}
	for (size_t i = 0; i < r->labels.n; i++)
		if (strpbrk(r->labels.v[i], " \t") || strlen(r->labels.v[i]) > 255) {
			snprintf(err, errlen, "labels: '%s': no spaces, at most 255 characters",
			         r->labels.v[i]);
			return -1;
		}
	for (size_t i = 0; i < r->fields.n; i++)
		if (strncmp(r->fields.v[i], "customfield_", 12) || !strchr(r->fields.v[i], '=')) {
			snprintf(err, errlen, "fields: '%s': expected customfield_N=value",
			         r->fields.v[i]);
			return -1;
		}
	return 0;
}

static const char *api(const struct delivery *d)
{
	return d->rcv->mode == MODE_CLOUD ? "/rest/api/3" : "/rest/api/2";
}

static const char *project(const struct delivery *d)
{
	return d->owner && d->owner->jira_project ? d->owner->jira_project : d->rcv->project;
}

/* ---- ADF (Cloud) ---- */

static void adf_text(cJSON *content, const char *text, const char *mark, const char *href)
{
	cJSON *t;

	if (text == NULL || *text == '\0')
		return; /* ADF forbids empty text nodes */
	t = cJSON_CreateObject();
	cJSON_AddItemToArray(content, t);
	cJSON_AddStringToObject(t, "type", "text");
	cJSON_AddStringToObject(t, "text", text);
	if (mark) {
		cJSON *marks = cJSON_AddArrayToObject(t, "marks"), *m = cJSON_CreateObject();

		cJSON_AddItemToArray(marks, m);
		cJSON_AddStringToObject(m, "type", mark);
		if (href)
			cJSON_AddStringToObject(cJSON_AddObjectToObject(m, "attrs"), "href", href);
	}
}

static cJSON *adf_node(cJSON *content, const char *type)
{
	cJSON *n = cJSON_CreateObject();

	cJSON_AddItemToArray(content, n);
	cJSON_AddStringToObject(n, "type", type);
	return cJSON_AddArrayToObject(n, "content");
}

static void adf_heading(cJSON *content, const char *text)
{
	cJSON *h = cJSON_CreateObject();

	cJSON_AddItemToArray(content, h);
	cJSON_AddStringToObject(h, "type", "heading");
	cJSON_AddNumberToObject(cJSON_AddObjectToObject(h, "attrs"), "level", 3);
	adf_text(cJSON_AddArrayToObject(h, "content"), text, NULL, NULL);
}

static void adf_paragraph(cJSON *content, const char *text)
{
	adf_text(adf_node(content, "paragraph"), text && *text ? text : "-", NULL, NULL);
}

static void adf_examples(cJSON *content, const cJSON *pack, int max)
{
	const cJSON *ex;
	cJSON *list;
	struct buf s;
	int n = 0;

	if (cJSON_GetArraySize(pack_get(pack, "examples")) == 0 || max == 0) {
		adf_paragraph(content, "no example events in the trend window");
		return;
	}
	list = adf_node(content, "bulletList");
	buf_init(&s, 1 << 16);
	cJSON_ArrayForEach(ex, pack_get(pack, "examples"))
	{
		cJSON *p;

		if (n++ == max)
			break;
		p = adf_node(adf_node(list, "listItem"), "paragraph");
		buf_reset(&s);
		buf_addf(&s, "%s, %s", pack_str(ex, "severity", ""), pack_str(ex, "time", ""));
		if (pack_num(ex, "rating", 0) > 0)
			buf_addf(&s, ", rating %d", (int)pack_num(ex, "rating", 0));
		if (pack_num(ex, "similar", 0) > 0)
			buf_addf(&s, ", +%d similar", (int)pack_num(ex, "similar", 0));
		buf_adds(&s, ": ");
		adf_text(p, buf_str(&s), "strong", NULL);
		adf_text(p, pack_str(ex, "text", pack_str(ex, "summary", "")), NULL, NULL);
		if (pack_str(ex, "url", NULL)) {
			adf_text(p, " ", NULL, NULL);
			adf_text(p, pack_str(ex, "id", "link"), "link", pack_str(ex, "url", NULL));
		}
	}
	buf_free(&s);
}

static cJSON *adf_description(const cJSON *pack, const struct delivery *d, int max_examples)
{
	cJSON *doc = cJSON_CreateObject(), *c;
	struct buf s;

	buf_init(&s, 1 << 16);
	cJSON_AddStringToObject(doc, "type", "doc");
	cJSON_AddNumberToObject(doc, "version", 1);
	c = cJSON_AddArrayToObject(doc, "content");
	adf_paragraph(c, pack_str(pack, "incident.summary", ""));
	adf_heading(c, "What changed");
	render_what_changed(pack, &s);
	adf_paragraph(c, buf_str(&s));
	adf_heading(c, "Why it matters");
	buf_reset(&s);
	buf_addf(&s, "Tier %d; worst severity %s; %d matching events in the last 24 buckets",
	         (int)pack_num(pack, "incident.tier", 0),
	         pack_str(pack, "why_it_matters.severity", "?"),
	         (int)pack_num(pack, "why_it_matters.events", 0));
	if (pack_num(pack, "why_it_matters.rate", 0) > 0)
		buf_addf(&s, "; %.1fx the expected rate", pack_num(pack, "why_it_matters.rate", 0));
	adf_paragraph(c, buf_str(&s));
	adf_heading(c, "Who should act");
	buf_reset(&s);
	buf_addf(&s, "Owner: %s", d->owner ? d->owner->name : "no owner routed");
	if (pack_str(pack, "who.suggested_action", NULL))
		buf_addf(&s, ". Suggested next step: %s",
		         pack_str(pack, "who.suggested_action", ""));
	adf_paragraph(c, buf_str(&s));
	adf_heading(c, "Examples (personal data redacted)");
	adf_examples(c, pack, max_examples);
	adf_heading(c, "Trend");
	buf_reset(&s);
	render_sparkline(pack, &s);
	buf_adds(&s, "\n");
	render_trend_csv(pack, &s);
	{
		cJSON *cb = cJSON_CreateObject();

		cJSON_AddItemToArray(c, cb);
		cJSON_AddStringToObject(cb, "type", "codeBlock");
		cJSON_AddStringToObject(cJSON_AddObjectToObject(cb, "attrs"), "language", "text");
		adf_text(cJSON_AddArrayToObject(cb, "content"), buf_str(&s), NULL, NULL);
	}
	adf_heading(c, "Lineage");
	buf_reset(&s);
	buf_addf(&s,
	         "rule %s; config %s; model %s %s; prompt %s; taxonomy %s; idempotency label %s",
	         pack_str(pack, "lineage.rule", ""), pack_str(pack, "lineage.config", ""),
	         pack_str(pack, "lineage.model", ""), pack_str(pack, "lineage.model_version", ""),
	         pack_str(pack, "lineage.prompt_version", ""),
	         pack_str(pack, "lineage.taxonomy_version", ""), d->dedupe);
	adf_paragraph(c, buf_str(&s));
	buf_free(&s);
	return doc;
}

/* ---- the requests ---- */

static cJSON *comment_body(const struct delivery *d)
{
	struct buf s;
	cJSON *out;

	buf_init(&s, 1 << 16);
	render_note(d, &s);
	if (d->rcv->mode == MODE_CLOUD) {
		out = cJSON_CreateObject();
		cJSON_AddStringToObject(out, "type", "doc");
		cJSON_AddNumberToObject(out, "version", 1);
		cJSON *c = cJSON_AddArrayToObject(out, "content");

		adf_paragraph(c, buf_str(&s));
		if (d->action != ACTION_RESOLVE &&
		    strcmp(pack_str(d->pack, "incident.change", ""), "resolved") != 0)
			adf_examples(c, d->pack, 3);
	} else {
		struct buf w;

		buf_init(&w, 1 << 16);
		esc_jira_wiki(&w, buf_str(&s));
		out = cJSON_CreateString(buf_str(&w));
		buf_free(&w);
	}
	buf_free(&s);
	return out;
}

static char *wiki_description(const struct delivery *d)
{
	struct buf s;
	char *out;

	buf_init(&s, 1 << 20);
	render_text(d->pack, &s, esc_jira_wiki);
	buf_addf(&s, "\nidempotency label: %s\n", d->dedupe);
	out = xstrdup(buf_str(&s));
	buf_free(&s);
	return out;
}

static void create_body(const struct delivery *d, struct buf *out)
{
	char *json = NULL;

	/* The description must stay under 32767 characters: fewer examples until it does. */
	for (int nex = 5; nex >= 0; nex--) {
		cJSON *root = cJSON_CreateObject(), *f = cJSON_AddObjectToObject(root, "fields");
		cJSON *labels, *comps;
		const struct conf_list *cl = d->owner && d->owner->jira_components.n
		                                     ? &d->owner->jira_components
		                                     : &d->rcv->components;
		struct buf sum;

		cJSON_AddStringToObject(cJSON_AddObjectToObject(f, "project"), "key", project(d));
		cJSON_AddStringToObject(cJSON_AddObjectToObject(f, "issuetype"), "name",
		                        d->rcv->issue_type);
		buf_init(&sum, 4096);
		render_headline(d->pack, &sum, 255);
		cJSON_AddStringToObject(f, "summary", buf_str(&sum));
		buf_free(&sum);
		labels = cJSON_AddArrayToObject(f, "labels");
		cJSON_AddItemToArray(labels, cJSON_CreateString("voca"));
		cJSON_AddItemToArray(labels, cJSON_CreateString(d->dedupe));
		for (size_t i = 0; i < d->rcv->labels.n; i++)
			cJSON_AddItemToArray(labels, cJSON_CreateString(d->rcv->labels.v[i]));
		if (cl->n) {
			comps = cJSON_AddArrayToObject(f, "components");
			for (size_t i = 0; i < cl->n; i++) {
				cJSON *c = cJSON_CreateObject();

				cJSON_AddItemToArray(comps, c);
				cJSON_AddStringToObject(c, "name", cl->v[i]);
			}
		}
		if (d->rcv->priority && pack_num(d->pack, "incident.tier", 2) <= 1)
			cJSON_AddStringToObject(cJSON_AddObjectToObject(f, "priority"), "name",
			                        d->rcv->priority);
		for (size_t i = 0; i < d->rcv->fields.n; i++) {
			const char *eq = strchr(d->rcv->fields.v[i], '=');
			char name[64];

			snprintf(name, sizeof(name), "%.*s", (int)(eq - d->rcv->fields.v[i]),
			         d->rcv->fields.v[i]);
			cJSON_AddStringToObject(f, name, eq + 1);
		}
		if (d->rcv->mode == MODE_CLOUD) {
			cJSON_AddItemToObject(f, "description", adf_description(d->pack, d, nex));
		} else {
			char *w = wiki_description(d);

			cJSON_AddStringToObject(f, "description", w);
			free(w);
		}
		cJSON_free(json);
		json = cJSON_PrintUnformatted(root);
		cJSON_Delete(root);
		if (strlen(json) < 30000)
			break;
	}
	buf_adds(out, json);
	cJSON_free(json);
}

/* Where FIND leads, given whether it found the ticket. */
static void after_find(const struct delivery *d, int found, struct verdict *v)
{
	if (found && d->action == ACTION_OPEN)
		/* ours (an interrupted create) or another agent's: it needs the evidence only */
		verdict_set(v, VERDICT_NEXT, ATTACH, "ticket %s exists", d->remote_key);
	else if (found)
		verdict_set(v, VERDICT_NEXT, COMMENT, "ticket %s", d->remote_key);
	else if (d->action == ACTION_KNOWN) /* never create in someone else's stead */
		verdict_set(v, VERDICT_FAIL, 0, "the known issue's ticket is not known");
	else if (d->action == ACTION_RESOLVE)
		verdict_set(v, VERDICT_DONE, 0, "no ticket to resolve");
	else
		verdict_set(v, VERDICT_NEXT, CREATE, "no ticket yet");
}

static enum render_result render(const struct delivery *d, struct http_req *req, struct verdict *v)
{
	const char *base = d->rcv->url;

	req->auth = d->rcv->mode == MODE_CLOUD ? AUTH_BASIC : AUTH_BEARER;
	http_req_header(req, "Accept: application/json");
	switch (d->step) {
	case FIND: {
		cJSON *q;
		char jql[512], *body;

		if (d->remote_key[0]) { /* the ledger knows the ticket: search may lag */
			after_find(d, 1, v);
			return RENDER_SKIP;
		}
		snprintf(jql, sizeof(jql),
		         "project = \"%s\" AND labels = \"%s\" ORDER BY created DESC", project(d),
		         d->dedupe);
		q = cJSON_CreateObject();
		cJSON_AddStringToObject(q, "jql", jql);
		if (d->rcv->mode == MODE_DC)
			cJSON_AddNumberToObject(q, "startAt", 0);
		cJSON_AddNumberToObject(q, "maxResults", 2);
		cJSON *fields = cJSON_AddArrayToObject(q, "fields");

		cJSON_AddItemToArray(fields, cJSON_CreateString("status"));
		cJSON_AddItemToArray(fields, cJSON_CreateString("labels"));
		body = cJSON_PrintUnformatted(q);
		cJSON_Delete(q);
		req->method = "POST";
		buf_addf(&req->url, "%s%s/%s", base, api(d),
		         d->rcv->mode == MODE_CLOUD ? "search/jql" : "search");
		buf_adds(&req->body, body);
		cJSON_free(body);
		req->content_type = "application/json";
		return RENDER_REQUEST;
	}
	case CREATE:
		req->method = "POST";
		buf_addf(&req->url, "%s%s/issue", base, api(d));
		create_body(d, &req->body);
		req->content_type = "application/json";
		req->creates = 1;
		return RENDER_REQUEST;
	case COMMENT: {
		cJSON *c = cJSON_CreateObject();
		char *body;

		cJSON_AddItemToObject(c, "body", comment_body(d));
		body = cJSON_PrintUnformatted(c);
		cJSON_Delete(c);
		req->method = "POST";
		buf_addf(&req->url, "%s%s/issue/%s/comment", base, api(d), d->remote_key);
		buf_adds(&req->body, body);
		cJSON_free(body);
		req->content_type = "application/json";
		req->sends_message = 1;
		return RENDER_REQUEST;
	}
	case ATTACH: {
		char *body = cJSON_Print(d->pack);

		req->method = "POST";
		buf_addf(&req->url, "%s%s/issue/%s/attachments", base, api(d), d->remote_key);
		buf_adds(&req->body, body);
		cJSON_free(body);
		http_req_header(req, "X-Atlassian-Token: no-check");
		req->part_name = "file";
		snprintf(req->file_name, sizeof(req->file_name), "voca-incident-%lld-evidence.json",
		         (long long)d->incident_id);
		req->file_type = "application/json";
		req->sends_message = 1;
		return RENDER_REQUEST;
	}
	case TRANSITIONS:
		req->method = "GET";
		buf_addf(&req->url, "%s%s/issue/%s/transitions", base, api(d), d->remote_key);
		return RENDER_REQUEST;
	default:
		req->method = "POST";
		buf_addf(&req->url, "%s%s/issue/%s/transitions", base, api(d), d->remote_key);
		buf_addf(&req->body, "{\"transition\":{\"id\":\"%s\"}}", d->aux);
		req->content_type = "application/json";
		return RENDER_REQUEST;
	}
}

static void classify_find(struct delivery *d, const cJSON *j, struct verdict *v)
{
	const cJSON *issues = cJSON_GetObjectItemCaseSensitive(j, "issues"), *it;

	if (!cJSON_IsArray(issues)) {
		verdict_set(v, VERDICT_RETRY, FIND, "search answered without an issues list");
		return;
	}
	cJSON_ArrayForEach(it, issues)
	{
		const cJSON *labels = pack_get(it, "fields.labels"), *l;
		int has = labels == NULL; /* not asked back: trust the JQL */

		cJSON_ArrayForEach(l, labels) has |=
		        cJSON_IsString(l) && strcmp(l->valuestring, d->dedupe) == 0;
		if (!has || !pack_str(it, "key", NULL))
			continue;
		snprintf(d->remote_key, sizeof(d->remote_key), "%s", pack_str(it, "key", ""));
		snprintf(d->remote_id, sizeof(d->remote_id), "%s", pack_str(it, "id", ""));
		after_find(d, 1, v);
		return;
	}
	if (d->create_tried_ms && d->now_ms < d->create_tried_ms + d->rcv->search_lag_ms) {
		/* Our own create may be in flight in Jira's index: do not make a second. */
		verdict_set(v, VERDICT_RETRY, FIND,
		            "an interrupted create may not be searchable yet; looking again");
		v->retry_after_ms = d->create_tried_ms + d->rcv->search_lag_ms - d->now_ms;
		if (v->retry_after_ms > 10000)
			v->retry_after_ms = 10000;
		return;
	}
	after_find(d, 0, v);
}

static void classify_transitions(struct delivery *d, const cJSON *j, struct verdict *v)
{
	const char *want =
	        d->action == ACTION_REOPEN ? d->rcv->reopen_transition : d->rcv->resolve_transition;
	const cJSON *t;
	char seen[160] = "";

	cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(j, "transitions"))
	{
		const char *name = pack_str(t, "name", ""), *id = pack_str(t, "id", NULL);

		if (strcasecmp(name, want) == 0 && id) {
			snprintf(d->aux, sizeof(d->aux), "%s", id);
			verdict_set(v, VERDICT_NEXT, TRANSITION, "transition %s = %s", want, id);
			return;
		}
		if (strlen(seen) + strlen(name) + 3 < sizeof(seen)) {
			strncat(seen, seen[0] ? ", " : "", sizeof(seen) - strlen(seen) - 1);
			strncat(seen, name, sizeof(seen) - strlen(seen) - 1);
		}
	}
	/* Someone moved the ticket already (or the workflow has no such step): leave it. */
	verdict_set(v, VERDICT_DONE, 0, "%s: no transition '%s' from its status (available: %s)",
	            d->remote_key, want, seen[0] ? seen : "none");
}

static void classify(struct delivery *d, const struct http_resp *resp, struct verdict *v)
{
	cJSON *j;

	if (verdict_http(resp, v)) {
		v->step = d->step;
		return;
	}
	if (d->step == TRANSITION) {
		verdict_set(v, VERDICT_DONE, 0, "%s transitioned", d->remote_key);
		return;
	}
	j = cJSON_ParseWithLength(resp->body, resp->len);
	if (j == NULL) {
		verdict_set(v, VERDICT_RETRY, d->step,
		            "HTTP %ld with a body that is not JSON: %.60s", resp->status,
		            resp->body);
		return;
	}
	switch (d->step) {
	case FIND: classify_find(d, j, v); break;
	case CREATE: {
		const char *key = pack_str(j, "key", NULL), *id = pack_str(j, "id", NULL);

		if (key == NULL) {
			verdict_set(v, VERDICT_RETRY, FIND, "create answered without a key");
			break;
		}
		snprintf(d->remote_key, sizeof(d->remote_key), "%s", key);
		snprintf(d->remote_id, sizeof(d->remote_id), "%s", id ? id : "");
		verdict_set(v, VERDICT_NEXT, ATTACH, "created %s", key);
		break;
	}
	case COMMENT:
		if (d->action ==
		    ACTION_KNOWN) /* someone else's ticket: no attachment, no transition */
			verdict_set(v, VERDICT_DONE, 0, "commented on known issue %s",
			            d->remote_key);
		else if (d->action == ACTION_RESOLVE || d->action == ACTION_REOPEN)
			verdict_set(v, VERDICT_NEXT, TRANSITIONS, "commented on %s", d->remote_key);
		else
			verdict_set(v, VERDICT_NEXT, ATTACH, "commented on %s", d->remote_key);
		break;
	case ATTACH:
		if (cJSON_IsArray(j))
			verdict_set(v, VERDICT_DONE, 0, "evidence attached to %s", d->remote_key);
		else
			verdict_set(v, VERDICT_RETRY, ATTACH, "attachment answer is not a list");
		break;
	default: classify_transitions(d, j, v); break;
	}
	cJSON_Delete(j);
}

const struct connector connector_jira = {
        .kind = "jira",
        .tickets = 1,
        .comments = 1,
        .keys = keys,
        .check = check,
        .render = render,
        .classify = classify,
};
