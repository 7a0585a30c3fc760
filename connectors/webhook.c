/*
 * webhook.c: the evidence pack as JSON to any HTTPS endpoint, signed.
 *
 * POST url with {"type":"voca.incident","action":..,"delivery":..,"pack":{..}}.
 * Headers: X-Voca-Delivery (the same on every retry: the receiver's
 * idempotency key), X-Voca-Timestamp (Unix seconds) and, with a secret,
 * X-Voca-Signature: sha256=HEX(HMAC-SHA256(secret, timestamp + "." + body)),
 * the scheme of Stripe and Slack: a receiver checks the signature and
 * rejects old timestamps (replay). Any 2xx is success.
 */
#include <stddef.h>
#include <string.h>

#include <voca/connector.h>
#include <voca/hmac.h>

static const struct conf_key keys[] = {
        RECEIVER_COMMON_KEYS("10s", "0s"),
        CONF_KEY("url", CONF_STR, offsetof(struct receiver, url), NULL, 0, 0, NULL,
                 "the endpoint (https; http only to loopback)"),
        CONF_KEY("secret", CONF_SECRET, offsetof(struct receiver, token), NULL, 0, 0, NULL,
                 "HMAC-SHA256 key for X-Voca-Signature, as ${env:NAME} or ${file:PATH}"),
        CONF_END,
};

static int check(struct receiver *r, char *err, size_t errlen)
{
	return receiver_check_url(r->url, err, errlen);
}

static enum render_result render(const struct delivery *d, struct http_req *req, struct verdict *v)
{
	cJSON *msg = cJSON_CreateObject();
	char *body;
	char ts[32];

	(void)v;
	cJSON_AddStringToObject(msg, "type", "voca.incident");
	cJSON_AddStringToObject(msg, "action", action_name(d->action));
	cJSON_AddNumberToObject(msg, "delivery", (double)d->id);
	cJSON_AddItemToObject(msg, "pack", cJSON_Duplicate(d->pack, 1));
	body = cJSON_PrintUnformatted(msg);
	cJSON_Delete(msg);
	req->method = "POST";
	buf_adds(&req->url, d->rcv->url);
	buf_adds(&req->body, body);
	cJSON_free(body);
	req->content_type = "application/json";
	req->sends_message = 1;
	snprintf(ts, sizeof(ts), "%lld", (long long)(d->now_ms / 1000));
	http_req_header(req, "X-Voca-Delivery: %lld", (long long)d->id);
	http_req_header(req, "X-Voca-Timestamp: %s", ts);
	if (d->rcv->token.value) {
		struct buf signed_text;
		char hex[65];

		buf_init(&signed_text, req->body.len + 64);
		buf_addf(&signed_text, "%s.", ts);
		buf_add(&signed_text, req->body.data, req->body.len);
		hmac_sha256_hex(d->rcv->token.value, strlen(d->rcv->token.value), signed_text.data,
		                signed_text.len, hex);
		buf_free(&signed_text);
		http_req_header(req, "X-Voca-Signature: sha256=%s", hex);
	}
	return RENDER_REQUEST;
}

static void classify(struct delivery *d, const struct http_resp *resp, struct verdict *v)
{
	(void)d;
	if (!verdict_http(resp, v))
		verdict_set(v, VERDICT_DONE, 0, "HTTP %ld", resp->status);
}

const struct connector connector_webhook = {
        .kind = "webhook",
        .keys = keys,
        .check = check,
        .render = render,
        .classify = classify,
};
