/*
 * test_connectors.c: the connectors' render and classify, data-driven and
 * with no network: each case is a delivery (receiver, action, step, remote
 * ids), what the rendered request must contain, a canned response, and the
 * verdict (kind, next step, remote ids) it must give.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <voca/connector.h>
#include <voca/hmac.h>
#include <voca/render.h>

static const char pack_json[] =
        "{\"version\":1,\"incident\":{\"id\":7,\"rule\":\"defects\",\"kind\":\"threshold\","
        "\"tier\":1,\"key\":\"sku=SKU-1\",\"change\":\"opened\",\"summary\":\"3 defects <!here>\","
        "\"at\":\"2026-03-01T10:00:00.000Z\",\"firings\":1,\"dedupe\":\"voca-00112233aabbccdd\"},"
        "\"what_changed\":{\"observed\":3,\"expected\":0.1,\"test\":\"count\",\"p_value\":0.001},"
        "\"why_it_matters\":{\"tier\":1,\"severity\":\"high\",\"rate\":30,\"events\":3},"
        "\"who\":{\"owners\":[\"quality\"],\"suggested_action\":\"Pull the batch\"},"
        "\"examples\":[{\"id\":\"e1\",\"time\":\"2026-03-01T09:00:00.000Z\",\"rating\":1,"
        "\"severity\":\"high\",\"confidence\":0.9,\"summary\":\"broken\",\"text\":\"It broke "
        "*again* @channel\",\"url\":\"https://shop.example.com/r/1\",\"similar\":2}],"
        "\"trend\":{\"bucket_ms\":3600000,\"counts\":[0,1,3],\"starts\":[\"a\",\"b\",\"c\"],"
        "\"expected\":[null,null,null]},\"lineage\":{\"rule\":\"defects\",\"config\":\"cfg-1\","
        "\"model\":\"m\",\"model_version\":\"1\",\"prompt_version\":\"p\","
        "\"taxonomy_version\":\"t\"}}";

struct rcv_setup {
	const char *kind;
	int mode;
	const char *url;
	const char *channel;
};

struct want {
	const char *method;      /* NULL: the step renders no request (a skip) */
	const char *url_has;     /* substring of the URL */
	const char *body_has[4]; /* substrings of the body */
	const char *body_lacks[2];
	const char *header_has; /* substring of some header line */
};

struct canned {
	long status;
	const char *body;
	int64_t retry_after_ms;
};

struct expect {
	enum verdict_kind kind;
	int step;
	const char *remote_key;
	const char *reason_has;
	int64_t retry_after_ms; /* checked when >= 0 */
};

struct conn_case {
	const char *name;
	struct rcv_setup rcv;
	enum delivery_action action;
	int step;
	const char *remote_key, *remote_id, *aux;
	int64_t create_tried_ms;
	struct want want;
	struct canned resp;
	struct expect expect;
};

enum { J_FIND, J_CREATE, J_COMMENT, J_ATTACH, J_TRANSITIONS, J_TRANSITION };
enum { S_FIND, S_CREATE, S_NOTE, S_ATTACH };

static const struct conn_case cases[] = {
        {"jira cloud: find asks /search/jql by the label",
         {"jira", 0, "https://x.atlassian.net", NULL},
         ACTION_OPEN,
         J_FIND,
         "",
         "",
         "",
         0,
         {"POST",
          "/rest/api/3/search/jql",
          {"labels = \\\"voca-00112233aabbccdd\\\"", "\"maxResults\":2"},
          {NULL},
          "Accept: application/json"},
         {200, "{\"isLast\":true,\"issues\":[]}", -1},
         {VERDICT_NEXT, J_CREATE, "", "no ticket yet", -1}},
        {"jira cloud: found by the label, an open attaches the evidence only",
         {"jira", 0, "https://x.atlassian.net", NULL},
         ACTION_OPEN,
         J_FIND,
         "",
         "",
         "",
         0,
         {"POST", "/search/jql", {NULL}, {NULL}, NULL},
         {200,
          "{\"issues\":[{\"id\":\"10001\",\"key\":\"OPS-1\",\"fields\":{\"labels\":[\"voca\","
          "\"voca-00112233aabbccdd\"]}}]}",
          -1},
         {VERDICT_NEXT, J_ATTACH, "OPS-1", "exists", -1}},
        {"jira: a search hit without our label is not ours",
         {"jira", 0, "https://x.atlassian.net", NULL},
         ACTION_UPDATE,
         J_FIND,
         "",
         "",
         "",
         0,
         {"POST", "/search/jql", {NULL}, {NULL}, NULL},
         {200, "{\"issues\":[{\"id\":\"1\",\"key\":\"OPS-9\",\"fields\":{\"labels\":[\"x\"]}}]}",
          -1},
         {VERDICT_NEXT, J_CREATE, "", "no ticket yet", -1}},
        {"jira: after an interrupted create, not found waits out the search lag",
         {"jira", 0, "https://x.atlassian.net", NULL},
         ACTION_OPEN,
         J_FIND,
         "",
         "",
         "",
         1000000 - 2000,
         {"POST", "/search/jql", {NULL}, {NULL}, NULL},
         {200, "{\"issues\":[]}", -1},
         {VERDICT_RETRY, J_FIND, "", "interrupted create", 10000}},
        {"jira: the ledger's key skips the search",
         {"jira", 0, "https://x.atlassian.net", NULL},
         ACTION_UPDATE,
         J_FIND,
         "OPS-4",
         "10004",
         "",
         0,
         {NULL, NULL, {NULL}, {NULL}, NULL},
         {0, NULL, -1},
         {VERDICT_NEXT, J_COMMENT, "OPS-4", "ticket OPS-4", -1}},
        {"jira cloud: create sends ADF, labels and the project",
         {"jira", 0, "https://x.atlassian.net", NULL},
         ACTION_OPEN,
         J_CREATE,
         "",
         "",
         "",
         0,
         {"POST",
          "/rest/api/3/issue",
          {"\"type\":\"doc\"", "\"project\":{\"key\":\"OPS\"}", "voca-00112233aabbccdd",
           "\"codeBlock\""},
          {"\"text\":\"\""},
          NULL},
         {201, "{\"id\":\"10000\",\"key\":\"OPS-1\",\"self\":\"x\"}", -1},
         {VERDICT_NEXT, J_ATTACH, "OPS-1", "created OPS-1", -1}},
        {"jira: a 400 on create is permanent, with Jira's words",
         {"jira", 0, "https://x.atlassian.net", NULL},
         ACTION_OPEN,
         J_CREATE,
         "",
         "",
         "",
         0,
         {"POST", "/issue", {NULL}, {NULL}, NULL},
         {400, "{\"errorMessages\":[],\"errors\":{\"labels\":\"contains spaces\"}}", -1},
         {VERDICT_FAIL, J_CREATE, "", "HTTP 400", -1}},
        {"jira datacenter: create sends wiki markup as a string to v2",
         {"jira", 1, "https://jira.example.com/jira", NULL},
         ACTION_OPEN,
         J_CREATE,
         "",
         "",
         "",
         0,
         {"POST",
          "/jira/rest/api/2/issue",
          {"\"description\":\"", "\\\\*again\\\\*"},
          {"\"type\":\"doc\""},
          NULL},
         {201, "{\"id\":\"1\",\"key\":\"OPS-2\"}", -1},
         {VERDICT_NEXT, J_ATTACH, "OPS-2", "created", -1}},
        {"jira: 429 is retried after Retry-After",
         {"jira", 0, "https://x.atlassian.net", NULL},
         ACTION_UPDATE,
         J_COMMENT,
         "OPS-1",
         "1",
         "",
         0,
         {"POST", "/issue/OPS-1/comment", {"\"body\":{\"type\":\"doc\""}, {NULL}, NULL},
         {429, "", 7000},
         {VERDICT_RETRY, J_COMMENT, "OPS-1", "HTTP 429", 7000}},
        {"jira: the attachment is multipart with the XSRF header",
         {"jira", 0, "https://x.atlassian.net", NULL},
         ACTION_OPEN,
         J_ATTACH,
         "OPS-1",
         "1",
         "",
         0,
         {"POST",
          "/issue/OPS-1/attachments",
          {"\"dedupe\""},
          {NULL},
          "X-Atlassian-Token: no-check"},
         {200, "[{\"id\":\"1\"}]", -1},
         {VERDICT_DONE, 0, "OPS-1", "attached", -1}},
        {"jira: resolve picks the configured transition by name",
         {"jira", 0, "https://x.atlassian.net", NULL},
         ACTION_RESOLVE,
         J_TRANSITIONS,
         "OPS-1",
         "1",
         "",
         0,
         {"GET", "/issue/OPS-1/transitions", {NULL}, {NULL}, NULL},
         {200,
          "{\"transitions\":[{\"id\":\"11\",\"name\":\"Start\"},{\"id\":\"31\",\"name\":\"done\"}]}",
          -1},
         {VERDICT_NEXT, J_TRANSITION, "OPS-1", "= 31", -1}},
        {"jira: no such transition from here leaves the ticket, says so",
         {"jira", 0, "https://x.atlassian.net", NULL},
         ACTION_RESOLVE,
         J_TRANSITIONS,
         "OPS-1",
         "1",
         "",
         0,
         {"GET", "/transitions", {NULL}, {NULL}, NULL},
         {200, "{\"transitions\":[{\"id\":\"41\",\"name\":\"Reopen\"}]}", -1},
         {VERDICT_DONE, 0, "OPS-1", "available: Reopen", -1}},
        {"servicenow: find by correlation_id",
         {"servicenow", 0, "https://x.service-now.com", NULL},
         ACTION_OPEN,
         S_FIND,
         "",
         "",
         "",
         0,
         {"GET", "correlation_id%3Dvoca-00112233aabbccdd", {NULL}, {NULL}, NULL},
         {200, "{\"result\":[]}", -1},
         {VERDICT_NEXT, S_CREATE, "", "no incident yet", -1}},
        {"servicenow: a row with another correlation_id is not ours (ignored query field)",
         {"servicenow", 0, "https://x.service-now.com", NULL},
         ACTION_OPEN,
         S_FIND,
         "",
         "",
         "",
         0,
         {"GET", "/api/now/table/incident", {NULL}, {NULL}, NULL},
         {200, "{\"result\":[{\"sys_id\":\"a\",\"number\":\"INC1\",\"correlation_id\":\"zz\"}]}",
          -1},
         {VERDICT_NEXT, S_CREATE, "", "no incident yet", -1}},
        {"servicenow: v1 answers an empty query with 404",
         {"servicenow", 0, "https://x.service-now.com", NULL},
         ACTION_UPDATE,
         S_FIND,
         "",
         "",
         "",
         0,
         {"GET", "sysparm_query", {NULL}, {NULL}, NULL},
         {404, "{\"error\":{\"message\":\"No Record found\"},\"status\":\"failure\"}", -1},
         {VERDICT_NEXT, S_CREATE, "", "no incident yet", -1}},
        {"servicenow: a hibernating instance's 200 HTML is retried, not taken as created",
         {"servicenow", 0, "https://x.service-now.com", NULL},
         ACTION_OPEN,
         S_CREATE,
         "",
         "",
         "",
         0,
         {"POST",
          "/api/now/table/incident",
          {"\"correlation_id\":\"voca-00112233aabbccdd\""},
          {NULL},
          NULL},
         {200, "<html>hibernating</html>", -1},
         {VERDICT_RETRY, S_CREATE, "", "hibernating", -1}},
        {"servicenow: resolve sends state 6 with close code and notes",
         {"servicenow", 0, "https://x.service-now.com", NULL},
         ACTION_RESOLVE,
         S_NOTE,
         "INC1",
         "0123456789abcdef0123456789abcdef",
         "",
         0,
         {"PATCH",
          "/incident/0123456789abcdef0123456789abcdef",
          {"\"state\":\"6\"", "\"close_code\":\"Solution provided\"", "\"close_notes\""},
          {NULL},
          NULL},
         {200, "{\"result\":{\"state\":\"6\"}}", -1},
         {VERDICT_DONE, 0, "INC1", "resolved", -1}},
        {"slack webhook: 200 ok is done; mentions and markup defused",
         {"slack", 0, "https://hooks.slack.com/services/T/B/X", NULL},
         ACTION_OPEN,
         0,
         "",
         "",
         "",
         0,
         {"POST",
          "hooks.slack.com",
          {"&lt;!here&gt;", "@\xe2\x80\x8b"
                            "channel"},
          {"<!here>"},
          NULL},
         {200, "ok", -1},
         {VERDICT_DONE, 0, "", "posted", -1}},
        {"slack webhook: a 200 that is not ok is not success",
         {"slack", 0, "https://hooks.slack.com/services/T/B/X", NULL},
         ACTION_OPEN,
         0,
         "",
         "",
         "",
         0,
         {"POST", "hooks", {NULL}, {NULL}, NULL},
         {200, "<html>", -1},
         {VERDICT_FAIL, 0, "", "without \"ok\"", -1}},
        {"slack bot: the first post is the thread parent, then the file",
         {"slack", 1, "https://slack.com/api", "C0123"},
         ACTION_OPEN,
         0,
         "",
         "",
         "",
         0,
         {"POST",
          "/chat.postMessage",
          {"\"channel\":\"C0123\""},
          {"thread_ts"},
          "Content-Type: application/json; charset=utf-8"},
         {200, "{\"ok\":true,\"channel\":\"C0123\",\"ts\":\"1.000001\"}", -1},
         {VERDICT_NEXT, 1, "1.000001", "posted", -1}},
        {"slack bot: an update replies in the thread",
         {"slack", 1, "https://slack.com/api", "C0123"},
         ACTION_UPDATE,
         0,
         "1.000001",
         "C0123",
         "",
         0,
         {"POST", "/chat.postMessage", {"\"thread_ts\":\"1.000001\""}, {NULL}, NULL},
         {200, "{\"ok\":true,\"channel\":\"C0123\",\"ts\":\"1.000009\"}", -1},
         {VERDICT_DONE, 0, "1.000001", "replied", -1}},
        {"slack bot: ok:false ratelimited in a 200 is retried",
         {"slack", 1, "https://slack.com/api", "C0123"},
         ACTION_OPEN,
         0,
         "",
         "",
         "",
         0,
         {"POST", "/chat.postMessage", {NULL}, {NULL}, NULL},
         {200, "{\"ok\":false,\"error\":\"ratelimited\"}", -1},
         {VERDICT_RETRY, 0, "", "ratelimited", -1}},
        {"slack bot: channel_not_found needs a person",
         {"slack", 1, "https://slack.com/api", "C0123"},
         ACTION_OPEN,
         0,
         "",
         "",
         "",
         0,
         {"POST", "/chat.postMessage", {NULL}, {NULL}, NULL},
         {200, "{\"ok\":false,\"error\":\"channel_not_found\"}", -1},
         {VERDICT_FAIL, 0, "", "channel_not_found", -1}},
        {"slack bot: v2 upload, step 1 asks for a URL with the exact length",
         {"slack", 1, "https://slack.com/api", "C0123"},
         ACTION_OPEN,
         1,
         "1.000001",
         "C0123",
         "",
         0,
         {"POST",
          "/files.getUploadURLExternal",
          {"filename=voca-incident-7-evidence.json", "&length="},
          {NULL},
          NULL},
         {200, "{\"ok\":true,\"upload_url\":\"https://files.slack.com/u/1\",\"file_id\":\"F1\"}",
          -1},
         {VERDICT_NEXT, 2, "1.000001", "file F1", -1}},
        {"slack bot: an upload URL that is not https is refused",
         {"slack", 1, "https://slack.com/api", "C0123"},
         ACTION_OPEN,
         1,
         "1.000001",
         "C0123",
         "",
         0,
         {"POST", "/files.getUploadURLExternal", {NULL}, {NULL}, NULL},
         {200, "{\"ok\":true,\"upload_url\":\"http://evil.example/u\",\"file_id\":\"F1\"}", -1},
         {VERDICT_FAIL, 1, "1.000001", "unusable upload_url", -1}},
        {"slack bot: complete shares the file in the thread",
         {"slack", 1, "https://slack.com/api", "C0123"},
         ACTION_OPEN,
         3,
         "1.000001",
         "C0123",
         "https://files.slack.com/u/1\tF1",
         0,
         {"POST",
          "/files.completeUploadExternal",
          {"\"id\":\"F1\"", "\"channel_id\":\"C0123\"", "\"thread_ts\":\"1.000001\""},
          {NULL},
          NULL},
         {200, "{\"ok\":true,\"files\":[{\"id\":\"F1\"}]}", -1},
         {VERDICT_DONE, 0, "1.000001", "attached", -1}},
        {"teams: an Adaptive Card with the owner's mention; 202 is success",
         {"teams", 0, "https://prod.logic.azure.com/workflows/1/triggers/manual/paths/invoke",
          NULL},
         ACTION_OPEN,
         0,
         "",
         "",
         "",
         0,
         {"POST",
          "logic.azure.com",
          {"\"type\":\"message\"", "application/vnd.microsoft.card.adaptive", "\"version\":\"1.4\"",
           "\"type\":\"mention\""},
          {"Action.Submit", "@channel"},
          NULL},
         {202, "", -1},
         {VERDICT_DONE, 0, "", "accepted", -1}},
        {"teams: 5xx is retried",
         {"teams", 0, "https://prod.logic.azure.com/workflows/1/triggers/manual/paths/invoke",
          NULL},
         ACTION_OPEN,
         0,
         "",
         "",
         "",
         0,
         {"POST", "logic", {NULL}, {NULL}, NULL},
         {502, "bad gateway", -1},
         {VERDICT_RETRY, 0, "", "HTTP 502", -1}},
        {"teams: a 200 with an error body is a failure",
         {"teams", 0, "https://prod.logic.azure.com/workflows/1/triggers/manual/paths/invoke",
          NULL},
         ACTION_OPEN,
         0,
         "",
         "",
         "",
         0,
         {"POST", "logic", {NULL}, {NULL}, NULL},
         {200, "{\"error\":{\"code\":\"x\"}}", -1},
         {VERDICT_FAIL, 0, "", "error body", -1}},
        {"jira: a known issue's ticket is given: no search",
         {"jira", 0, "https://x.atlassian.net", NULL},
         ACTION_KNOWN,
         J_FIND,
         "PROD-12",
         "",
         "",
         0,
         {NULL, NULL, {NULL}, {NULL}, NULL},
         {0, NULL, -1},
         {VERDICT_NEXT, J_COMMENT, "PROD-12", "ticket PROD-12", -1}},
        {"jira: a known issue's comment names the incident and ends the delivery",
         {"jira", 0, "https://x.atlassian.net", NULL},
         ACTION_KNOWN,
         J_COMMENT,
         "PROD-12",
         "",
         "",
         0,
         {"POST",
          "/rest/api/3/issue/PROD-12/comment",
          {"incident 7 (defects, sku=SKU-1) fired at", "matches this known issue", "It broke"},
          {NULL},
          NULL},
         {201, "{\"id\":\"1\"}", -1},
         {VERDICT_DONE, 0, "PROD-12", "known issue PROD-12", -1}},
        {"jira: a known issue's ticket that is gone is a dead letter",
         {"jira", 0, "https://x.atlassian.net", NULL},
         ACTION_KNOWN,
         J_COMMENT,
         "PROD-99",
         "",
         "",
         0,
         {"POST", "/issue/PROD-99/comment", {NULL}, {NULL}, NULL},
         {404, "{\"errorMessages\":[\"Issue does not exist\"]}", -1},
         {VERDICT_FAIL, J_COMMENT, "PROD-99", "HTTP 404", -1}},
        {"servicenow: a known issue's record is found by its number",
         {"servicenow", 0, "https://x.service-now.com", NULL},
         ACTION_KNOWN,
         S_FIND,
         "INC0001234",
         "",
         "",
         0,
         {"GET", "sysparm_query=number%3DINC0001234&", {NULL}, {NULL}, NULL},
         {200,
          "{\"result\":[{\"sys_id\":\"abc\",\"number\":\"INC0001234\",\"state\":"
          "\"6\"}]}",
          -1},
         {VERDICT_NEXT, S_NOTE, "INC0001234", "known issue INC0001234 (state 6)", -1}},
        {"servicenow: a closed known issue is a dead letter, never a new record",
         {"servicenow", 0, "https://x.service-now.com", NULL},
         ACTION_KNOWN,
         S_FIND,
         "INC0001234",
         "",
         "",
         0,
         {"GET", "number%3DINC0001234", {NULL}, {NULL}, NULL},
         {200,
          "{\"result\":[{\"sys_id\":\"abc\",\"number\":\"INC0001234\",\"state\":"
          "\"7\"}]}",
          -1},
         {VERDICT_FAIL, 0, "INC0001234", "is closed (state 7)", -1}},
        {"servicenow: a known issue that is not there is a dead letter",
         {"servicenow", 0, "https://x.service-now.com", NULL},
         ACTION_KNOWN,
         S_FIND,
         "INC0001234",
         "",
         "",
         0,
         {"GET", "number%3DINC0001234", {NULL}, {NULL}, NULL},
         {200, "{\"result\":[]}", -1},
         {VERDICT_FAIL, 0, "INC0001234", "no such record", -1}},
        {"servicenow: a known issue's note leaves its (resolved) state alone",
         {"servicenow", 0, "https://x.service-now.com", NULL},
         ACTION_KNOWN,
         S_NOTE,
         "INC0001234",
         "abc",
         "6",
         0,
         {"PATCH",
          "/api/now/table/incident/abc",
          {"\"work_notes\":\"voca: incident 7 (defects"},
          {"\"state\""},
          NULL},
         {200, "{\"result\":{\"sys_id\":\"abc\"}}", -1},
         {VERDICT_DONE, 0, "INC0001234", "noted on known issue", -1}},
        {"transport failure: no response is retried",
         {"webhook", 0, "https://hooks.example.com/v", NULL},
         ACTION_OPEN,
         0,
         "",
         "",
         "",
         0,
         {"POST",
          "hooks.example.com",
          {"\"type\":\"voca.incident\""},
          {NULL},
          "X-Voca-Delivery: 1"},
         {0, "", -1},
         {VERDICT_RETRY, 0, "", "no response", -1}},
};

static char *dup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void run_case(const struct conn_case *c)
{
	const struct connector *conn = connector_find(c->rcv.kind);
	struct receiver rcv = {0};
	struct owner owner = {0};
	char *teams_m = "29:abc|Boss";
	struct delivery d = {0};
	struct http_req req;
	struct verdict v = {.retry_after_ms = -1};
	cJSON *pack = cJSON_Parse(pack_json);
	char err[256];

	assert_non_null(conn);
	assert_non_null(pack);
	rcv.name = "r";
	rcv.kind = 0;
	rcv.mode = c->rcv.mode;
	/* URLs that are credentials (Teams, Slack hooks) come as secrets. */
	if (strcmp(c->rcv.kind, "teams") == 0 ||
	    (strcmp(c->rcv.kind, "slack") == 0 && c->rcv.mode == 0))
		rcv.secret_url.value = dup(c->rcv.url);
	else
		rcv.url = dup(c->rcv.url);
	rcv.channel = dup(c->rcv.channel);
	rcv.user.value = "u";
	rcv.token.value = "secret-token";
	rcv.project = "OPS";
	rcv.issue_type = "Task";
	rcv.resolve_transition = "Done";
	rcv.reopen_transition = "Reopen";
	rcv.table = "incident";
	rcv.close_code = "Solution provided";
	rcv.search_lag_ms = 90000;
	assert_int_equal(conn->check(&rcv, err, sizeof(err)), 0);
	owner.name = "quality";
	owner.teams_mentions.v = &teams_m;
	owner.teams_mentions.n = 1;
	d.id = 1;
	d.incident_id = 7;
	d.action = c->action;
	d.step = c->step;
	snprintf(d.remote_key, sizeof(d.remote_key), "%s", c->remote_key);
	snprintf(d.remote_id, sizeof(d.remote_id), "%s", c->remote_id);
	snprintf(d.aux, sizeof(d.aux), "%s", c->aux);
	d.create_tried_ms = c->create_tried_ms;
	d.now_ms = 1000000;
	d.dedupe = "voca-00112233aabbccdd";
	d.pack = pack;
	d.rcv = &rcv;
	d.owner = &owner;

	http_req_init(&req);
	enum render_result rr = conn->render(&d, &req, &v);

	if (c->want.method == NULL) {
		assert_int_equal(rr, RENDER_SKIP);
	} else {
		const char *body = buf_str(&req.body);

		assert_int_equal(rr, RENDER_REQUEST);
		assert_string_equal(req.method, c->want.method);
		if (strstr(buf_str(&req.url), c->want.url_has) == NULL)
			fail_msg("%s: url %s lacks %s", c->name, buf_str(&req.url),
			         c->want.url_has);
		for (int i = 0; i < 4 && c->want.body_has[i]; i++)
			if (strstr(body, c->want.body_has[i]) == NULL)
				fail_msg("%s: body lacks %s:\n%.2000s", c->name,
				         c->want.body_has[i], body);
		for (int i = 0; i < 2 && c->want.body_lacks[i]; i++)
			if (strstr(body, c->want.body_lacks[i]) != NULL)
				fail_msg("%s: body has %s", c->name, c->want.body_lacks[i]);
		if (c->want.header_has) {
			int found = 0;
			char ct[160];

			snprintf(ct, sizeof(ct), "Content-Type: %s",
			         req.content_type ? req.content_type : "");
			found = strstr(ct, c->want.header_has) != NULL;
			for (int i = 0; i < req.nheaders; i++)
				found |= strstr(req.headers[i], c->want.header_has) != NULL;
			if (!found)
				fail_msg("%s: no header %s", c->name, c->want.header_has);
		}
		assert_null(strstr(body, "secret-token")); /* auth goes by libcurl, not the body */
		struct http_resp resp = {.status = c->resp.status,
		                         .body = c->resp.body,
		                         .len = strlen(c->resp.body),
		                         .retry_after_ms = c->resp.retry_after_ms};

		if (resp.status == 0)
			snprintf(resp.err, sizeof(resp.err), "Connection refused");
		conn->classify(&d, &resp, &v);
	}
	if (v.kind != c->expect.kind || strstr(v.reason, c->expect.reason_has) == NULL)
		fail_msg("%s: verdict %d (%s), wanted %d with '%s'", c->name, v.kind, v.reason,
		         c->expect.kind, c->expect.reason_has);
	if (v.kind == VERDICT_NEXT || v.kind == VERDICT_RETRY)
		assert_int_equal(v.step, c->expect.step);
	assert_string_equal(d.remote_key, c->expect.remote_key);
	if (c->expect.retry_after_ms >= 0)
		assert_int_equal(v.retry_after_ms, c->expect.retry_after_ms);
	http_req_free(&req);
	cJSON_Delete(pack);
	free(rcv.url);
	free(rcv.secret_url.value);
	free(rcv.channel);
}

static void test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("case: %s\n", cases[i].name);
		run_case(&cases[i]);
	}
}

/* The webhook's signature is HMAC-SHA256(secret, timestamp "." body), as a receiver checks it. */
static void test_webhook_signature(void **state)
{
	const struct connector *conn = connector_find("webhook");
	struct receiver rcv = {.name = "h", .url = "https://h.example.com/x"};
	struct delivery d = {.id = 42, .now_ms = 1767225600123, .action = ACTION_OPEN};
	struct http_req req;
	struct verdict v;
	struct buf msg;
	char hex[65], want[128];
	int found = 0;

	(void)state;
	rcv.token.value = "k3y";
	d.rcv = &rcv;
	d.pack = cJSON_Parse(pack_json);
	http_req_init(&req);
	assert_int_equal(conn->render(&d, &req, &v), RENDER_REQUEST);
	buf_init(&msg, 1 << 20);
	buf_addf(&msg, "1767225600.%s", buf_str(&req.body));
	hmac_sha256_hex("k3y", 3, msg.data, msg.len, hex);
	snprintf(want, sizeof(want), "X-Voca-Signature: sha256=%s", hex);
	for (int i = 0; i < req.nheaders; i++)
		found |= strcmp(req.headers[i], want) == 0;
	assert_true(found);
	/* RFC 4231 test case 2: the primitive itself */
	hmac_sha256_hex("Jefe", 4, "what do ya want for nothing?", 28, hex);
	assert_string_equal(hex,
	                    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	buf_free(&msg);
	http_req_free(&req);
	cJSON_Delete((cJSON *)d.pack);
}

static void test_urls_and_escaping(void **state)
{
	char err[128];
	struct buf b;

	(void)state;
	assert_int_equal(receiver_check_url("https://x.example.com", err, sizeof(err)), 0);
	assert_int_equal(receiver_check_url("http://127.0.0.1:8080/x", err, sizeof(err)), 0);
	assert_int_equal(receiver_check_url("http://x.example.com", err, sizeof(err)), -1);
	assert_int_equal(receiver_check_url("http://127.0.0.1.evil.com/", err, sizeof(err)), -1);
	assert_int_equal(receiver_check_url("https://x\r\nHost: y", err, sizeof(err)), -1);
	buf_init(&b, 4096);
	esc_slack(&b, "<!channel> & <https://x|click> @Here");
	assert_string_equal(buf_str(&b),
	                    "&lt;!channel&gt; &amp; &lt;https://x|click&gt; @\xe2\x80\x8bHere");
	buf_reset(&b);
	esc_teams(&b, "<at>Boss</at> *x*");
	assert_null(strstr(buf_str(&b), "<at>"));
	buf_reset(&b);
	esc_jira_wiki(&b, "{noformat}[x|http://e]");
	assert_string_equal(buf_str(&b), "\\{noformat\\}\\[x\\|http://e\\]");
	buf_reset(&b);
	text_append_cut(&b, "h\xc3\xa9llo", 4); /* never splits the é */
	assert_string_equal(buf_str(&b), "h\xe2\x80\xa6");
	buf_free(&b);
}

/*
 * A new episode inside an open incident (spike fired again after a clear
 * spell) says so everywhere it is told, not "still firing": in the
 * ticket's note, the headline and the chat's title.
 */
static void test_a_new_episode_says_firing_again(void **state)
{
	static const char *const chats[] = {"slack", "teams"};
	cJSON *pack =
	        cJSON_Parse("{\"incident\": {\"tier\": 2, \"rule\": \"spike\", \"key\": "
	                    "\"sku=A\", \"change\": \"updated\", \"at\": "
	                    "\"2026-03-03T10:00:00Z\", \"firings\": 9, \"summary\": \"21 "
	                    "events\"}, \"what_changed\": {\"again_after_clear_buckets\": 6}}");
	struct delivery d = {.incident_id = 1, .action = ACTION_UPDATE, .pack = pack};
	struct buf b;

	(void)state;
	buf_init(&b, 1024);
	render_note(&d, &b);
	assert_non_null(strstr(buf_str(&b), "voca: incident 1 fired again after a clear spell at "
	                                    "2026-03-03T10:00:00Z (firings: 9). 21 events"));
	buf_reset(&b);
	render_headline(pack, &b, 300);
	assert_string_equal(buf_str(&b),
	                    "[voca] tier 2 spike: sku=A fired again after a clear spell");
	for (size_t i = 0; i < 2; i++) {
		const struct connector *conn = connector_find(chats[i]);
		struct receiver rcv = {.name = "c"};
		struct http_req req;
		struct verdict v;

		rcv.url = rcv.secret_url.value = "https://hooks.example.com/x";
		d.rcv = &rcv;
		http_req_init(&req);
		assert_int_equal(conn->render(&d, &req, &v), RENDER_REQUEST);
		assert_non_null(strstr(buf_str(&req.body),
		                       "New episode: [voca] tier 2 spike: sku=A "
		                       "fired again after a clear spell"));
		assert_null(strstr(buf_str(&req.body), "Still firing"));
		http_req_free(&req);
	}
	buf_free(&b);
	cJSON_Delete(pack);
}

/* A regression says how long it stayed away, in the ticket's note and the chat's headline. */
static void test_a_reopening_says_how_long_it_was_resolved(void **state)
{
	cJSON *pack = cJSON_Parse("{\"incident\": {\"tier\": 1, \"rule\": \"defects\", \"key\": "
	                          "\"sku=A\", \"change\": \"reopened\", \"at\": "
	                          "\"2026-03-03T10:00:00Z\", \"firings\": 1, \"summary\": \"3 "
	                          "reports\"}, \"what_changed\": {\"hours_since_resolved\": 47}}");
	struct delivery d = {.incident_id = 1, .action = ACTION_REOPEN, .pack = pack};
	struct buf b;

	(void)state;
	buf_init(&b, 1024);
	render_note(&d, &b);
	assert_non_null(strstr(buf_str(&b), "fired again at 2026-03-03T10:00:00Z, 47 h after it "
	                                    "resolved (firings: 1)"));
	buf_reset(&b);
	render_headline(pack, &b, 300);
	assert_string_equal(buf_str(&b),
	                    "[voca] tier 1 defects: sku=A reopened 47 h after it resolved");
	/* Not a reopening: no such words. */
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(pack, "incident"), "change",
	                          cJSON_CreateString("updated"));
	d.action = ACTION_UPDATE;
	buf_reset(&b);
	render_note(&d, &b);
	assert_null(strstr(buf_str(&b), "after it resolved"));
	assert_non_null(strstr(buf_str(&b), "is still firing"));
	buf_free(&b);
	cJSON_Delete(pack);
}

/* What changed says from when to when the evidence is, and leaves it out when the window is not
 * there. */
static void test_what_changed_names_the_window(void **state)
{
	cJSON *pack = cJSON_Parse("{\"what_changed\": {\"observed\": 22, \"expected\": 8.4, "
	                          "\"window\": {\"start\": \"2018-11-28T23:11:00.000Z\", "
	                          "\"end\": \"2018-12-05T22:50:53.538Z\"}, \"test\": \"Bernoulli "
	                          "CUSUM (slow drift)\", \"p_value\": 3e-07, \"guards\": "
	                          "{\"cusum\": \"8.14>8 ok\"}}}");
	struct buf b;

	(void)state;
	buf_init(&b, 256);
	render_what_changed(pack, &b);
	assert_string_equal(buf_str(&b), "observed 22 vs expected 8.4 from 2018-11-28T23:11 to "
	                                 "2018-12-05T22:50, test: Bernoulli CUSUM (slow drift), "
	                                 "p = 3e-07, cusum 8.14>8 ok");
	cJSON_DeleteItemFromObject(cJSON_GetObjectItem(pack, "what_changed"), "window");
	buf_reset(&b);
	render_what_changed(pack, &b);
	assert_null(strstr(buf_str(&b), " from "));
	buf_free(&b);
	cJSON_Delete(pack);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_cases),
	        cmocka_unit_test(test_webhook_signature),
	        cmocka_unit_test(test_urls_and_escaping),
	        cmocka_unit_test(test_a_reopening_says_how_long_it_was_resolved),
	        cmocka_unit_test(test_a_new_episode_says_firing_again),
	        cmocka_unit_test(test_what_changed_names_the_window),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
