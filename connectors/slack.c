/*
 * slack.c: Slack, by incoming webhook or by bot token (CONTRACTS.md §5).
 *
 * webhook: one POST of {text, blocks}; success is 200 with the body "ok".
 * Webhooks cannot thread or carry files, so every notification is a message.
 *
 * bot: chat.postMessage to the channel. The first message of an incident
 * is the thread parent (its ts is kept in the ticket ledger); updates and
 * the resolution are replies in that thread. After the parent, the
 * evidence pack is attached as a file in the thread through the v2 upload
 * flow: files.getUploadURLExternal -> POST the bytes -> files.completeUploadExternal.
 * The Web API answers 200 even for errors: "ok" decides.
 *
 * Block Kit limits are kept by construction: header <= 150 chars, section
 * text <= 3000, at most 10 fields of <= 2000, far fewer than 50 blocks.
 * Customer text is escaped (esc_slack): no <!channel>, no links, no @here.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <voca/connector.h>
#include <voca/render.h>
#include <voca/xalloc.h>

enum { MODE_WEBHOOK = 0, MODE_BOT = 1 };
enum { STEP_POST = 0, STEP_UPLOAD_URL = 1, STEP_UPLOAD = 2, STEP_COMPLETE = 3 };

static const char *const modes[] = {"webhook", "bot", NULL};

static const struct conf_key keys[] = {
        RECEIVER_COMMON_KEYS("10s", "1s"),
        CONF_KEY("mode", CONF_ENUM, offsetof(struct receiver, mode), "webhook", 0, 0, modes,
                 "webhook (incoming webhook URL) or bot (chat.postMessage with a bot token)"),
        CONF_KEY("webhook_url", CONF_SECRET, offsetof(struct receiver, secret_url), NULL, 0, 0,
                 NULL, "webhook: the hook URL, a secret (whoever has it can post)"),
        CONF_KEY("url", CONF_STR, offsetof(struct receiver, url), NULL, 0, 0, NULL,
                 "bot: the API base (default https://slack.com/api)"),
        CONF_KEY("token", CONF_SECRET, offsetof(struct receiver, token), NULL, 0, 0, NULL,
                 "bot: the xoxb- token, as ${env:NAME} or ${file:PATH}"),
        CONF_KEY("channel", CONF_STR, offsetof(struct receiver, channel), NULL, 0, 0, NULL,
                 "bot: the channel id (C..., G...)"),
        CONF_END,
};

static int check(struct receiver *r, char *err, size_t errlen)
{
	if (r->mode == MODE_BOT) {
		if (r->url == NULL)
			r->url = xstrdup("https://slack.com/api");
		if (r->token.value == NULL || r->channel == NULL) {
			snprintf(err, errlen, "mode bot needs token and channel");
			return -1;
		}
		if (strspn(r->channel, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") !=
		            strlen(r->channel) ||
		    !strchr("CGD", r->channel[0])) {
			snprintf(err, errlen, "channel: a conversation id such as C0123456789");
			return -1;
		}
	}
	if (r->mode == MODE_WEBHOOK && (r->secret_url.value == NULL || r->url)) {
		snprintf(err, errlen, "mode webhook takes webhook_url (a secret), not url");
		return -1;
	}
	return receiver_check_url(receiver_url(r), err, errlen);
}

static cJSON *text_obj(const char *type, const char *text)
{
	cJSON *t = cJSON_CreateObject();

	cJSON_AddStringToObject(t, "type", type);
	cJSON_AddStringToObject(t, "text", text);
	return t;
}

static void add_section(cJSON *blocks, const char *mrkdwn)
{
	cJSON *b = cJSON_CreateObject();

	cJSON_AddItemToArray(blocks, b);
	cJSON_AddStringToObject(b, "type", "section");
	cJSON_AddItemToObject(b, "text", text_obj("mrkdwn", mrkdwn));
}

static void add_field(cJSON *fields, const char *title, const char *value)
{
	struct buf f;

	buf_init(&f, 4096);
	buf_addf(&f, "*%s*\n", title);
	text_append_cut(&f, value, 1900);
	cJSON_AddItemToArray(fields, text_obj("mrkdwn", buf_str(&f)));
	buf_free(&f);
}

/* Slack mentions from the owner: <@U...> for users, <!subteam^S...> for groups. */
static void mentions(const struct delivery *d, struct buf *out)
{
	if (d->owner == NULL || (d->action != ACTION_OPEN && d->action != ACTION_REOPEN))
		return;
	for (size_t i = 0; i < d->owner->slack_mentions.n; i++) {
		const char *id = d->owner->slack_mentions.v[i];

		if (strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != strlen(id))
			continue; /* only ids: never markup from configuration either */
		buf_addf(out, id[0] == 'S' ? "<!subteam^%s> " : "<@%s> ", id);
	}
}

/* The message: {text, blocks} (plus channel/thread for the bot). */
static cJSON *message(const struct delivery *d)
{
	cJSON *msg = cJSON_CreateObject(), *blocks, *b, *fields, *ex;
	struct buf s, t;
	int n = 0;

	buf_init(&s, 1 << 20);
	buf_init(&t, 1 << 20);
	buf_addf(&t, "%s: ", render_chat_verb(d));
	render_headline(d->pack, &t, 300);
	cJSON_AddStringToObject(msg, "text", buf_str(&t));
	blocks = cJSON_AddArrayToObject(msg, "blocks");
	b = cJSON_CreateObject();
	cJSON_AddItemToArray(blocks, b);
	cJSON_AddStringToObject(b, "type", "header");
	buf_reset(&s);
	text_append_cut(&s, buf_str(&t), 150);
	cJSON_AddItemToObject(b, "text", text_obj("plain_text", buf_str(&s)));

	buf_reset(&s);
	mentions(d, &s);
	if (d->action == ACTION_ALERT) {
		buf_addf(&s, "*Delivery to %s failed for good:* ",
		         pack_str(d->pack, "delivery_failure.receiver", "?"));
		esc_slack(&s, pack_str(d->pack, "delivery_failure.reason", ""));
		buf_adds(&s, " (voca deadletters --requeue re-sends it)\n");
	}
	esc_slack(&s, pack_str(d->pack, "incident.summary", ""));
	buf_reset(&t);
	text_append_cut(&t, buf_str(&s), 2900);
	add_section(blocks, buf_str(&t));

	b = cJSON_CreateObject();
	cJSON_AddItemToArray(blocks, b);
	cJSON_AddStringToObject(b, "type", "section");
	fields = cJSON_AddArrayToObject(b, "fields");
	buf_reset(&s);
	render_what_changed(d->pack, &s);
	add_field(fields, "What changed", buf_str(&s));
	buf_reset(&s);
	buf_addf(&s, "tier %d, worst severity %s", (int)pack_num(d->pack, "incident.tier", 0),
	         pack_str(d->pack, "why_it_matters.severity", "?"));
	if (pack_num(d->pack, "why_it_matters.rate", 0) > 0)
		buf_addf(&s, ", %.1fx expected", pack_num(d->pack, "why_it_matters.rate", 0));
	add_field(fields, "Why it matters", buf_str(&s));
	buf_reset(&s);
	buf_adds(&s, d->owner ? d->owner->name : "no owner routed");
	if (pack_str(d->pack, "who.suggested_action", NULL)) {
		buf_adds(&s, "; next: ");
		esc_slack(&s, pack_str(d->pack, "who.suggested_action", ""));
	}
	add_field(fields, "Who should act", buf_str(&s));
	buf_reset(&s);
	render_sparkline(d->pack, &s);
	add_field(fields, "Trend (24 buckets)", s.len ? buf_str(&s) : "no data");

	cJSON_ArrayForEach(ex, pack_get(d->pack, "examples"))
	{
		if (n++ == 3)
			break;
		buf_reset(&s);
		buf_addf(&s, "*%s*", pack_str(ex, "severity", ""));
		if (pack_num(ex, "rating", 0) > 0)
			buf_addf(&s, " · %d\xe2\x98\x85", (int)pack_num(ex, "rating", 0));
		buf_addf(&s, " · %s", pack_str(ex, "time", ""));
		if (pack_num(ex, "similar", 0) > 0)
			buf_addf(&s, " · +%d similar", (int)pack_num(ex, "similar", 0));
		buf_adds(&s, "\n>");
		buf_reset(&t);
		esc_slack(&t, pack_str(ex, "text", pack_str(ex, "summary", "")));
		/* a quote is one paragraph: its line breaks would end the quote */
		for (size_t i = 0; i < t.len; i++)
			if (t.data[i] == '\n')
				t.data[i] = ' ';
		text_append_cut(&s, buf_str(&t), 700);
		add_section(blocks, buf_str(&s));
	}
	b = cJSON_CreateObject();
	cJSON_AddItemToArray(blocks, b);
	cJSON_AddStringToObject(b, "type", "context");
	buf_reset(&s);
	buf_addf(&s, "incident %d · %s · config %s · model %s/%s · %s",
	         (int)pack_num(d->pack, "incident.id", 0), pack_str(d->pack, "incident.dedupe", ""),
	         pack_str(d->pack, "lineage.config", ""), pack_str(d->pack, "lineage.model", ""),
	         pack_str(d->pack, "lineage.prompt_version", ""),
	         pack_str(d->pack, "incident.at", ""));
	cJSON *els = cJSON_AddArrayToObject(b, "elements");

	cJSON_AddItemToArray(els, text_obj("mrkdwn", buf_str(&s)));
	buf_free(&s);
	buf_free(&t);
	return msg;
}

static char *evidence_file(const struct delivery *d)
{
	return cJSON_Print(d->pack);
}

static enum render_result render(const struct delivery *d, struct http_req *req, struct verdict *v)
{
	const char *base = receiver_url(d->rcv);
	cJSON *msg;
	char *body;

	(void)v;
	req->method = "POST";
	if (d->rcv->mode == MODE_WEBHOOK || d->step == STEP_POST) {
		msg = message(d);
		if (d->rcv->mode == MODE_BOT) {
			cJSON_AddStringToObject(msg, "channel", d->rcv->channel);
			cJSON_AddBoolToObject(msg, "unfurl_links", 0);
			if (d->remote_key[0])
				cJSON_AddStringToObject(msg, "thread_ts", d->remote_key);
			buf_addf(&req->url, "%s/chat.postMessage", base);
			req->auth = AUTH_BEARER;
			req->content_type = "application/json; charset=utf-8";
		} else {
			buf_adds(&req->url, base);
			req->content_type = "application/json";
		}
		body = cJSON_PrintUnformatted(msg);
		cJSON_Delete(msg);
		buf_adds(&req->body, body);
		cJSON_free(body);
		req->sends_message = 1;
		return RENDER_REQUEST;
	}
	req->auth = AUTH_BEARER;
	switch (d->step) {
	case STEP_UPLOAD_URL:
		body = evidence_file(d);
		buf_addf(&req->url, "%s/files.getUploadURLExternal", base);
		buf_addf(&req->body, "filename=voca-incident-%lld-evidence.json&length=%zu",
		         (long long)d->incident_id, strlen(body));
		req->content_type = "application/x-www-form-urlencoded";
		cJSON_free(body);
		return RENDER_REQUEST;
	case STEP_UPLOAD: {
		size_t n = strcspn(d->aux, "\t");

		body = evidence_file(d);
		buf_add(&req->url, d->aux, n);
		buf_adds(&req->body, body);
		cJSON_free(body);
		req->content_type = "application/octet-stream";
		req->auth = AUTH_NONE; /* the URL is the credential */
		return RENDER_REQUEST;
	}
	default: {
		cJSON *files = cJSON_CreateObject(), *arr, *f;
		const char *tab = strchr(d->aux, '\t');
		char title[96];

		arr = cJSON_AddArrayToObject(files, "files");
		f = cJSON_CreateObject();
		cJSON_AddItemToArray(arr, f);
		cJSON_AddStringToObject(f, "id", tab ? tab + 1 : "");
		snprintf(title, sizeof(title), "Evidence for incident %lld",
		         (long long)d->incident_id);
		cJSON_AddStringToObject(f, "title", title);
		cJSON_AddStringToObject(files, "channel_id", d->rcv->channel);
		if (d->remote_key[0])
			cJSON_AddStringToObject(files, "thread_ts", d->remote_key);
		body = cJSON_PrintUnformatted(files);
		cJSON_Delete(files);
		buf_addf(&req->url, "%s/files.completeUploadExternal", base);
		buf_adds(&req->body, body);
		cJSON_free(body);
		req->content_type = "application/json; charset=utf-8";
		return RENDER_REQUEST;
	}
	}
}

/* Web API errors worth another try; the rest need a person. */
static int transient(const char *error)
{
	static const char *const retry[] = {"ratelimited",     "rate_limited",
	                                    "fatal_error",     "internal_error",
	                                    "request_timeout", "service_unavailable"};

	for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++)
		if (strcmp(error, retry[i]) == 0)
			return 1;
	return 0;
}

static void classify(struct delivery *d, const struct http_resp *resp, struct verdict *v)
{
	cJSON *j;
	const cJSON *ok, *err;

	if (verdict_http(resp, v))
		return;
	if (d->rcv->mode == MODE_WEBHOOK) {
		if (resp->len == 2 && memcmp(resp->body, "ok", 2) == 0)
			verdict_set(v, VERDICT_DONE, 0, "posted");
		else
			verdict_set(v, VERDICT_FAIL, 0,
			            "webhook answered 200 without \"ok\": %.80s", resp->body);
		return;
	}
	if (d->step == STEP_UPLOAD) {
		verdict_set(v, VERDICT_NEXT, STEP_COMPLETE, "uploaded");
		return;
	}
	j = cJSON_ParseWithLength(resp->body, resp->len);
	ok = cJSON_GetObjectItemCaseSensitive(j, "ok");
	err = cJSON_GetObjectItemCaseSensitive(j, "error");
	if (!cJSON_IsBool(ok)) {
		verdict_set(v, VERDICT_RETRY, d->step, "Slack answered something not JSON: %.60s",
		            resp->body);
	} else if (!cJSON_IsTrue(ok)) {
		const char *e = cJSON_IsString(err) ? err->valuestring : "unknown";

		verdict_set(v, transient(e) ? VERDICT_RETRY : VERDICT_FAIL, d->step,
		            "Slack error %s", e);
	} else if (d->step == STEP_POST) {
		const char *ts = pack_str(j, "ts", NULL), *ch = pack_str(j, "channel", NULL);

		if (ts == NULL) {
			verdict_set(v, VERDICT_RETRY, d->step,
			            "chat.postMessage answered without ts");
		} else if (d->remote_key[0] == '\0') {
			/* the thread parent: later notifications reply to it */
			snprintf(d->remote_key, sizeof(d->remote_key), "%s", ts);
			snprintf(d->remote_id, sizeof(d->remote_id), "%s", ch ? ch : "");
			if (d->action == ACTION_OPEN || d->action == ACTION_REOPEN)
				verdict_set(v, VERDICT_NEXT, STEP_UPLOAD_URL, "posted ts=%s", ts);
			else
				verdict_set(v, VERDICT_DONE, 0, "posted ts=%s", ts);
		} else {
			verdict_set(v, VERDICT_DONE, 0, "replied in thread %s", d->remote_key);
		}
	} else if (d->step == STEP_UPLOAD_URL) {
		const char *url = pack_str(j, "upload_url", NULL),
		           *id = pack_str(j, "file_id", NULL);
		char why[128];

		if (url == NULL || id == NULL)
			verdict_set(v, VERDICT_RETRY, d->step,
			            "no upload_url/file_id in the answer");
		else if (receiver_check_url(url, why, sizeof(why)) < 0 ||
		         strlen(url) + strlen(id) + 2 > sizeof(d->aux))
			verdict_set(v, VERDICT_FAIL, d->step, "unusable upload_url: %s", why);
		else {
			snprintf(d->aux, sizeof(d->aux), "%.400s\t%.100s", url, id);
			verdict_set(v, VERDICT_NEXT, STEP_UPLOAD, "file %s", id);
		}
	} else {
		verdict_set(v, VERDICT_DONE, 0, "evidence attached to thread %s", d->remote_key);
	}
	cJSON_Delete(j);
}

const struct connector connector_slack = {
        .kind = "slack",
        .keys = keys,
        .check = check,
        .render = render,
        .classify = classify,
};
