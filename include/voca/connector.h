/*
 * connector.h: what a delivery target is, for the outbox that drives it.
 *
 * A connector (connectors/<kind>.c) is one exported const struct listed in
 * connectors[] (connectors/registry.c). It brings the configuration keys of
 * its receivers and two pure functions, split as STYLE.md asks:
 *
 *   render:   delivery (evidence pack, step, remote ids) -> one HTTP request
 *   classify: the response to that request -> verdict (next step, done,
 *             retry, permanent failure) and the remote ids it revealed
 *
 * The agent sends (libcurl: TLS verification on, timeouts, a capped response,
 * no redirects) and records each verdict in one transaction with the step and
 * the remote ids, so a multi-step delivery (find -> create or comment ->
 * attach) resumes where it stopped after a crash. Connectors never read a
 * clock (now_ms is given), never log and never touch storage.
 */
#ifndef VOCA_CONNECTOR_H
#define VOCA_CONNECTOR_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include <voca/buf.h>
#include <voca/conf.h>

/* What a delivery tells its receiver. Stored as text (action_name): never renumber. */
enum delivery_action {
	ACTION_OPEN = 0,    /* a new incident */
	ACTION_UPDATE = 1,  /* a re-alert of an open incident */
	ACTION_RESOLVE = 2, /* the condition cleared */
	ACTION_REOPEN = 3,  /* fired again soon after resolving: same incident */
	ACTION_ALERT = 4,   /* another delivery of the incident failed for good (chat kinds) */
	ACTION_KNOWN = 5,   /* a known issue's incident changed: comment on its existing ticket
	                     * (remote_key, given), never create, never transition */
};

const char *action_name(enum delivery_action a);
int action_parse(const char *s); /* -1 if unknown */

/*
 * A receiver's configuration: one struct for every kind; each connector's key
 * table fills the fields it uses (documented in packaging/voca.example.yaml).
 */
struct receiver {
	char *name;
	char *url;                 /* base URL (Jira, ServiceNow, Slack API, a generic webhook) */
	struct secret secret_url;  /* a URL that is itself the credential (Teams, Slack hooks) */
	int mode;                  /* per kind: jira cloud|datacenter, slack webhook|bot */
	struct secret user, token; /* user + token/password, a bot token, an HMAC key */
	char *channel;             /* Slack bot: the channel id (C..., G...) */
	/* tickets */
	char *project, *issue_type, *priority;
	struct conf_list components, labels, fields; /* fields: "customfield_10050=value" */
	char *resolve_transition, *reopen_transition;
	char *table, *assignment_group, *category, *close_code;
	/* transport */
	int64_t timeout_ms;
	int64_t min_interval_ms; /* rate limit: at most one request per this long */
	int64_t max_age_ms;      /* a delivery older than this is dead-lettered */
	int64_t search_lag_ms;   /* how long a tracker's search may hide a new ticket */
	int64_t max_response;    /* bytes of a response kept; more is an error */
	char *ca_file;           /* extra CA bundle (TLS verification is never off) */
	/* set by the agent after loading */
	int kind; /* index into connectors[] */
};

/* The rows every receiver has, to start each connector's key table with. */
#define RECEIVER_COMMON_KEYS(timeout_def, interval_def)                                             \
	CONF_KEY("name", CONF_STR, offsetof(struct receiver, name), NULL, 0, 0, NULL,               \
	         "unique name, used by routes"),                                                    \
	        CONF_KEY("timeout", CONF_DURATION, offsetof(struct receiver, timeout_ms),           \
	                 timeout_def, 100, 300000, NULL, "longest one request may take"),           \
	        CONF_KEY("min_interval", CONF_DURATION,                                             \
	                 offsetof(struct receiver, min_interval_ms), interval_def, 0, 3600000,      \
	                 NULL, "rate limit: at least this long between two requests"),              \
	        CONF_KEY(                                                                           \
	                "max_age", CONF_DURATION, offsetof(struct receiver, max_age_ms), "24h",     \
	                60000, 30LL * 86400000, NULL,                                               \
	                "a delivery still failing this long after it was queued is dead-lettered"), \
	        CONF_KEY("max_response", CONF_SIZE, offsetof(struct receiver, max_response),        \
	                 "1MiB", 1024, 64 << 20, NULL, "larger responses are an error"),            \
	        CONF_KEY("ca_file", CONF_STR, offsetof(struct receiver, ca_file), NULL, 0, 0,       \
	                 NULL, "extra CA bundle to trust (verification is never turned off)")

/* An owner team: who acts, and where its tickets and mentions go. */
struct owner {
	char *name;
	struct conf_list slack_mentions; /* user ids U..., group ids S... */
	struct conf_list teams_mentions; /* "id|Display Name" (Entra object id or UPN) */
	char *jira_project;
	struct conf_list jira_components;
	char *servicenow_group, *servicenow_category;
	char *email;
};

/* One delivery as the connector sees it: borrowed, valid for the call. */
struct delivery {
	int64_t id, incident_id;
	enum delivery_action action;
	int step;                /* connector-defined; 0 = the first */
	char remote_id[64];      /* ticket id / sys_id / message channel */
	char remote_key[64];     /* ticket key / incident number / message ts */
	char aux[512];           /* scratch between steps (an upload URL and file id) */
	int64_t create_tried_ms; /* a create was sent and its answer never recorded */
	int attempts;            /* of the current step */
	int64_t now_ms;          /* wall clock, given */
	const char *dedupe;      /* "voca-<16 hex>": the idempotency key */
	const cJSON *pack;       /* the evidence pack (evidence.h in agent/) */
	const struct receiver *rcv;
	const struct owner *owner; /* NULL when the route names none */
};

enum http_auth {
	AUTH_NONE = 0,
	AUTH_BASIC,  /* rcv->user : rcv->token */
	AUTH_BEARER, /* rcv->token */
};

#define HTTP_MAX_HEADERS 8

/* A request a connector renders. Owned by the caller; http_req_free() releases it. */
struct http_req {
	const char *method; /* "GET", "POST", "PUT", "PATCH" */
	struct buf url;
	struct buf body;
	const char *content_type; /* of body; NULL when there is none */
	char *headers[HTTP_MAX_HEADERS];
	int nheaders;
	enum http_auth auth;
	/* multipart/form-data with one file part (body holds the file's bytes) */
	const char *part_name, *file_type;
	char file_name[96];
	int creates; /* creates a ticket: FIND must precede any retry (crash guard) */
	/* A retry after a lost answer may show it twice (a chat message, a
	 * comment, a work note, an attachment): marked in flight, logged if resent. */
	int sends_message;
};

void http_req_init(struct http_req *r);
void http_req_free(struct http_req *r);
int http_req_header(struct http_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct http_resp {
	long status;      /* 0: no response (err says why) */
	const char *body; /* NUL-terminated */
	size_t len;
	int64_t retry_after_ms; /* from Retry-After (seconds or a date); -1 when absent */
	char err[256];          /* transport failure */
};

/* Outcomes, stored: never renumber. */
enum verdict_kind {
	VERDICT_NEXT = 0,  /* this step is done; go on with step */
	VERDICT_DONE = 1,  /* the delivery is complete */
	VERDICT_RETRY = 2, /* try this step again later (after retry_after_ms if >= 0) */
	VERDICT_FAIL = 3,  /* permanent: dead letter with reason */
};

struct verdict {
	enum verdict_kind kind;
	int step;               /* VERDICT_NEXT: the next step */
	int64_t retry_after_ms; /* VERDICT_RETRY: -1 = the agent's backoff */
	char reason[256];       /* one line for the log and the dead letter */
};

enum render_result {
	RENDER_REQUEST = 0, /* req is filled: send it */
	RENDER_SKIP = 1,    /* nothing to send for this step: v says what next */
	RENDER_FAIL = 2,    /* cannot render (bad configuration): v says why */
};

struct connector {
	const char *kind;
	int tickets;                 /* files tickets (a dead-letter announcement cannot go here) */
	int comments;                /* can comment on an existing ticket by key (known issues) */
	const struct conf_key *keys; /* the receiver's key table (struct receiver) */
	/* Checks a loaded receiver. Returns 0, or -1 with err. */
	int (*check)(struct receiver *r, char *err, size_t errlen);
	/* The request for d's step; or a skip or failure with v filled. */
	enum render_result (*render)(const struct delivery *d, struct http_req *req,
	                             struct verdict *v);
	/*
	 * The verdict on resp, the answer to the request render gave for d's
	 * step. May write the remote ids and aux of d (the agent stores them).
	 */
	void (*classify)(struct delivery *d, const struct http_resp *resp, struct verdict *v);
};

/*
 * A receiver URL must be https, or plain http to a loopback address only
 * (the tests' fakes): customer data never crosses a network in clear.
 * Returns 0, or -1 with err.
 */
int receiver_check_url(const char *url, char *err, size_t errlen);

/* The URL requests go to: the secret one when the kind has it, else url. */
const char *receiver_url(const struct receiver *r);

/* NULL-terminated; connector_variants() gives the same kinds in the same order for conf. */
extern const struct connector *const connectors[];
const struct conf_variant *connector_variants(void);
const struct connector *connector_find(const char *kind);

/*
 * The verdict every connector gives for what is not its own business:
 * transport errors, 408, 429 and 5xx are retried (429/503 after Retry-After),
 * 401/403 and other 4xx are permanent with the status and the start of the
 * body as the reason. Returns 1 if it decided, 0 for a 2xx the connector must
 * read itself.
 */
int verdict_http(const struct http_resp *resp, struct verdict *v);

void verdict_set(struct verdict *v, enum verdict_kind kind, int step, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

#endif
