/*
 * fuzz_classify.c: libFuzzer harness for what receivers answer.
 *
 * Response bodies come from the network: whatever a Jira, ServiceNow, Slack
 * or Teams endpoint (or something pretending to be one) answers, every
 * connector's classify must give a verdict without crashing or misbehaving
 * under ASan/UBSan, keep the remote ids NUL-terminated within their arrays,
 * and never move to a step that does not exist. The first bytes pick the
 * connector, mode, action, step and status; the rest is the body.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <voca/connector.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = {200, 201, 202, 204, 400, 404, 429, 500, 503, 0};
	static const char *const kinds[] = {"jira",  "servicenow", "slack",
	                                    "teams", "webhook",    "console"};
	struct receiver rcv = {0};
	struct delivery d = {0};
	struct http_resp resp = {0};
	struct verdict v = {.retry_after_ms = -1};
	const struct connector *c;
	char *body;

	if (size < 4)
		return 0;
	c = connector_find(kinds[data[0] % 6]);
	rcv.name = "f";
	rcv.mode = data[1] & 1;
	rcv.url = "https://example.com";
	rcv.channel = "C1";
	rcv.resolve_transition = "Done";
	rcv.reopen_transition = "Reopen";
	rcv.search_lag_ms = 1000;
	d.rcv = &rcv;
	d.action = (enum delivery_action)(data[1] >> 1 & 3);
	d.step = data[2] % 6;
	d.dedupe = "voca-0011223344556677";
	d.now_ms = 1000;
	d.create_tried_ms = data[1] & 8 ? 500 : 0;
	if (data[1] & 16)
		memcpy(d.remote_key, "OPS-1", 6);
	body = malloc(size - 4 + 1);
	memcpy(body, data + 4, size - 4);
	body[size - 4] = '\0';
	resp.status = statuses[data[3] % 10];
	resp.body = body;
	resp.len = size - 4;
	resp.retry_after_ms = -1;
	c->classify(&d, &resp, &v);
	if ((unsigned)v.kind > VERDICT_FAIL || v.step < 0 || v.step > 8 ||
	    memchr(d.remote_key, 0, sizeof(d.remote_key)) == NULL ||
	    memchr(d.remote_id, 0, sizeof(d.remote_id)) == NULL ||
	    memchr(d.aux, 0, sizeof(d.aux)) == NULL ||
	    memchr(v.reason, 0, sizeof(v.reason)) == NULL)
		abort();
	free(body);
	return 0;
}
