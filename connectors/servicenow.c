/*
 * servicenow.c: ServiceNow incidents through the Table and Attachment APIs
 * (CONTRACTS.md §4).
 *
 * One ServiceNow incident per voca incident, found again by correlation_id
 * = voca-<hash>. Steps, each one request:
 *
 *   FIND    GET the table by correlation_id (the ledger's sys_id skips it)
 *   CREATE  POST the incident                           -> ATTACH
 *   NOTE    PATCH a work note (+ state on resolve/reopen) -> ATTACH or done
 *   ATTACH  POST /attachment/file: the evidence pack    -> done
 *
 * A known issue's record (its number given) is found by number and gets a
 * work note only: no create, no state change, no attachment.
 *
 * An instance ignores an unknown field in a query and returns rows matching
 * the rest, so a found row counts only if its correlation_id is ours. A
 * closed (7) or canceled (8) record is history: a new notification opens a
 * new incident. A hibernating developer instance answers 200 with HTML:
 * retried, never taken as created.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/connector.h>
#include <voca/render.h>

enum { FIND = 0, CREATE = 1, NOTE = 2, ATTACH = 3 };

#define OFF(m) offsetof(struct receiver, m)

static const struct conf_key keys[] = {
        RECEIVER_COMMON_KEYS("30s", "0s"),
        CONF_KEY("url", CONF_STR, OFF(url), NULL, 0, 0, NULL,
                 "the instance: https://example.service-now.com"),
        CONF_KEY("user", CONF_SECRET, OFF(user), NULL, 0, 0, NULL, "Basic auth user"),
        CONF_KEY("password", CONF_SECRET, OFF(token), NULL, 0, 0, NULL, "Basic auth password"),
        CONF_KEY("table", CONF_STR, OFF(table), "incident", 0, 0, NULL, "the table"),
        CONF_KEY("assignment_group", CONF_STR, OFF(assignment_group), NULL, 0, 0, NULL,
                 "assignment_group (an owner's servicenow_group overrides it)"),
        CONF_KEY("category", CONF_STR, OFF(category), NULL, 0, 0, NULL,
                 "category (an owner's servicenow_category overrides it)"),
        CONF_KEY("close_code", CONF_STR, OFF(close_code), "Solution provided", 0, 0, NULL,
                 "close_code when voca resolves (instance-specific values)"),
        CONF_KEY("search_lag", CONF_DURATION, OFF(search_lag_ms), "30s", 0, 3600000, NULL,
                 "how long an interrupted create waits before it is tried again"),
        CONF_END,
};

static int check(struct receiver *r, char *err, size_t errlen)
{
	if (receiver_check_url(r->url, err, errlen) < 0)
		return -1;
	if (r->user.value == NULL || r->token.value == NULL) {
		snprintf(err, errlen, "needs user and password");
		return -1;
	}
	if (strspn(r->table, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(r->table)) {
		snprintf(err, errlen, "table: a table name such as incident");
		return -1;
	}
	return 0;
}

static enum render_result render(const struct delivery *d, struct http_req *req, struct verdict *v)
{
	const char *base = d->rcv->url, *table = d->rcv->table;
	cJSON *o;
	char *body;
	struct buf s;

	req->auth = AUTH_BASIC;
	http_req_header(req, "Accept: application/json");
	buf_init(&s, 1 << 20);
	switch (d->step) {
	case FIND:
		if (d->remote_id[0]) {
			buf_free(&s); /* the ledger knows it */
			verdict_set(v, VERDICT_NEXT, NOTE, "incident %s", d->remote_key);
			return RENDER_SKIP;
		}
		req->method = "GET";
		if (d->action == ACTION_KNOWN) { /* the known issue's record, by its number */
			buf_addf(&req->url,
			         "%s/api/now/table/%s?sysparm_query=number%%3D%s"
			         "&sysparm_fields=sys_id%%2Cnumber%%2Cstate&sysparm_limit=5"
			         "&sysparm_exclude_reference_link=true&sysparm_no_count=true",
			         base, table, d->remote_key);
			break;
		}
		buf_addf(
		        &req->url,
		        "%s/api/now/table/%s?sysparm_query=correlation_id%%3D%s%%5EORDERBYDESCsys_"
		        "created_on&sysparm_fields=sys_id%%2Cnumber%%2Cstate%%2Ccorrelation_id"
		        "&sysparm_limit=5&sysparm_exclude_reference_link=true&sysparm_no_count=true",
		        base, table, d->dedupe);
		break;
	case CREATE: {
		const char *group = d->owner && d->owner->servicenow_group
		                            ? d->owner->servicenow_group
		                            : d->rcv->assignment_group;
		const char *cat = d->owner && d->owner->servicenow_category
		                          ? d->owner->servicenow_category
		                          : d->rcv->category;
		int tier = (int)pack_num(d->pack, "incident.tier", 2);

		o = cJSON_CreateObject();
		render_headline(d->pack, &s, 160);
		cJSON_AddStringToObject(o, "short_description", buf_str(&s));
		buf_reset(&s);
		render_text(d->pack, &s, NULL);
		{
			struct buf cut;

			buf_init(&cut, 8192);
			text_append_cut(&cut, buf_str(&s), 3900);
			cJSON_AddStringToObject(o, "description", buf_str(&cut));
			buf_free(&cut);
		}
		cJSON_AddStringToObject(o, "urgency", tier <= 1 ? "1" : "2");
		cJSON_AddStringToObject(o, "impact", tier <= 1 ? "2" : "3");
		if (cat)
			cJSON_AddStringToObject(o, "category", cat);
		if (group)
			cJSON_AddStringToObject(o, "assignment_group", group);
		cJSON_AddStringToObject(o, "correlation_id", d->dedupe);
		cJSON_AddStringToObject(o, "correlation_display", "voca");
		buf_reset(&s);
		render_note(d, &s);
		cJSON_AddStringToObject(o, "work_notes", buf_str(&s));
		req->method = "POST";
		buf_addf(&req->url, "%s/api/now/table/%s?sysparm_exclude_reference_link=true", base,
		         table);
		req->creates = 1;
		goto json;
	}
	case NOTE:
		o = cJSON_CreateObject();
		render_note(d, &s);
		cJSON_AddStringToObject(o, "work_notes", buf_str(&s));
		if (d->action == ACTION_RESOLVE) {
			cJSON_AddStringToObject(o, "state", "6");
			cJSON_AddStringToObject(o, "close_code", d->rcv->close_code);
			cJSON_AddStringToObject(o, "close_notes", buf_str(&s));
		} else if (d->action == ACTION_KNOWN) {
			/* someone else's record: a note only, its state is theirs */
		} else if (d->action == ACTION_REOPEN || strcmp(d->aux, "6") == 0) {
			cJSON_AddStringToObject(o, "state",
			                        "2"); /* resolved, firing again: reopen */
		}
		req->method = "PATCH";
		buf_addf(&req->url, "%s/api/now/table/%s/%s?sysparm_exclude_reference_link=true",
		         base, table, d->remote_id);
		req->sends_message = 1;
		goto json;
	default:
		body = cJSON_Print(d->pack);
		req->method = "POST";
		buf_addf(&req->url,
		         "%s/api/now/attachment/file?table_name=%s&table_sys_id=%s"
		         "&file_name=voca-incident-%lld-evidence.json",
		         base, table, d->remote_id, (long long)d->incident_id);
		buf_adds(&req->body, body);
		cJSON_free(body);
		req->content_type = "application/json";
		req->sends_message = 1;
		break;
	}
	buf_free(&s);
	return RENDER_REQUEST;
json:
	body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	buf_adds(&req->body, body);
	cJSON_free(body);
	req->content_type = "application/json";
	buf_free(&s);
	return RENDER_REQUEST;
}

/* FIND for a known issue: its record by number; never a create. */
static void classify_find_known(struct delivery *d, const cJSON *rows, struct verdict *v)
{
	const cJSON *r;

	cJSON_ArrayForEach(r, rows)
	{
		const char *state = pack_str(r, "state", "");

		if (strcmp(pack_str(r, "number", ""), d->remote_key) != 0)
			continue;
		if (strcmp(state, "7") == 0 || strcmp(state, "8") == 0) {
			verdict_set(v, VERDICT_FAIL, 0,
			            "known issue %s is closed (state %s): update known_issues",
			            d->remote_key, state);
			return;
		}
		snprintf(d->remote_id, sizeof(d->remote_id), "%s", pack_str(r, "sys_id", ""));
		snprintf(d->aux, sizeof(d->aux), "%s", state);
		verdict_set(v, VERDICT_NEXT, NOTE, "known issue %s (state %s)", d->remote_key,
		            state);
		return;
	}
	verdict_set(v, VERDICT_FAIL, 0, "known issue %s: no such record in %s", d->remote_key,
	            d->rcv->table);
}

static void classify_find(struct delivery *d, const cJSON *j, struct verdict *v)
{
	const cJSON *rows = cJSON_GetObjectItemCaseSensitive(j, "result"), *r;

	if (!cJSON_IsArray(rows)) {
		verdict_set(v, VERDICT_RETRY, FIND, "query answered without a result list");
		return;
	}
	if (d->action == ACTION_KNOWN) {
		classify_find_known(d, rows, v);
		return;
	}
	cJSON_ArrayForEach(r, rows)
	{
		const char *state = pack_str(r, "state", "");

		/* the instance ignores a query field it does not know: check it ourselves */
		if (strcmp(pack_str(r, "correlation_id", ""), d->dedupe) != 0)
			continue;
		if (strcmp(state, "7") == 0 || strcmp(state, "8") == 0)
			continue; /* closed or canceled: history */
		snprintf(d->remote_id, sizeof(d->remote_id), "%s", pack_str(r, "sys_id", ""));
		snprintf(d->remote_key, sizeof(d->remote_key), "%s", pack_str(r, "number", ""));
		snprintf(d->aux, sizeof(d->aux), "%s", state);
		if (d->action == ACTION_OPEN)
			verdict_set(v, VERDICT_NEXT, ATTACH, "%s exists (state %s)", d->remote_key,
			            state);
		else
			verdict_set(v, VERDICT_NEXT, NOTE, "found %s (state %s)", d->remote_key,
			            state);
		return;
	}
	if (d->create_tried_ms && d->now_ms < d->create_tried_ms + d->rcv->search_lag_ms) {
		verdict_set(v, VERDICT_RETRY, FIND,
		            "an interrupted create may not be visible yet; looking again");
		v->retry_after_ms = d->create_tried_ms + d->rcv->search_lag_ms - d->now_ms;
		return;
	}
	if (d->action == ACTION_RESOLVE)
		verdict_set(v, VERDICT_DONE, 0, "no open incident to resolve");
	else
		verdict_set(v, VERDICT_NEXT, CREATE, "no incident yet");
}

static void classify(struct delivery *d, const struct http_resp *resp, struct verdict *v)
{
	cJSON *j;
	const cJSON *res;

	/* v1 of the API answers an empty query with 404 */
	if (d->step == FIND && resp->status == 404 && strstr(resp->body, "No Record found")) {
		cJSON *empty = cJSON_Parse("{\"result\":[]}");

		classify_find(d, empty, v);
		cJSON_Delete(empty);
		return;
	}
	if (verdict_http(resp, v)) {
		v->step = d->step;
		return;
	}
	j = cJSON_ParseWithLength(resp->body, resp->len);
	res = cJSON_GetObjectItemCaseSensitive(j, "result");
	if (j == NULL || res == NULL) {
		/* a hibernating developer instance answers 200 with an HTML page */
		verdict_set(v, VERDICT_RETRY, d->step,
		            "HTTP %ld without a JSON result (instance hibernating?): %.60s",
		            resp->status, resp->body);
		cJSON_Delete(j);
		return;
	}
	switch (d->step) {
	case FIND: classify_find(d, j, v); break;
	case CREATE:
		if (resp->status != 201 || !pack_str(res, "sys_id", NULL)) {
			verdict_set(v, VERDICT_RETRY, FIND, "create answered %ld without a sys_id",
			            resp->status);
			break;
		}
		snprintf(d->remote_id, sizeof(d->remote_id), "%s", pack_str(res, "sys_id", ""));
		snprintf(d->remote_key, sizeof(d->remote_key), "%s", pack_str(res, "number", ""));
		verdict_set(v, VERDICT_NEXT, ATTACH, "created %s", d->remote_key);
		break;
	case NOTE:
		if (d->action == ACTION_KNOWN)
			verdict_set(v, VERDICT_DONE, 0, "noted on known issue %s", d->remote_key);
		else if (d->action == ACTION_RESOLVE)
			verdict_set(v, VERDICT_DONE, 0, "resolved %s", d->remote_key);
		else
			verdict_set(v, VERDICT_NEXT, ATTACH, "noted on %s", d->remote_key);
		break;
	default: verdict_set(v, VERDICT_DONE, 0, "evidence attached to %s", d->remote_key); break;
	}
	cJSON_Delete(j);
}

const struct connector connector_servicenow = {
        .kind = "servicenow",
        .tickets = 1,
        .comments = 1,
        .keys = keys,
        .check = check,
        .render = render,
        .classify = classify,
};
