/*
 * config.c: voca's configuration keys (see config.h).
 *
 * The defaults make `voca run` with no file a working daemon: subscribe to a
 * publisher on loopback and store into ./voca.db. Limits are generous for
 * real traffic and small enough that one bad peer cannot exhaust memory.
 */
#include <stddef.h>
#include <stdlib.h>

#include <stdio.h>
#include <string.h>

#include <voca/connector.h>
#include <voca/redact.h>
#include <voca/route.h>
#include <voca/rule.h>
#include <voca/suppress.h>
#include <voca/tz.h>
#include <voca/buf.h>
#include <voca/xalloc.h>

#include "config.h"

static const char *const modes[] = {"sub", "pull", NULL};
static const char *const levels[] = {"error", "warn", "info", "debug", NULL};

#define OFF(m) offsetof(struct config, m)

static int zone_check(const char *name, char *err, size_t errlen)
{
	return tz_get(name, err, errlen) ? 0 : -1;
}

const struct conf_key config_keys[] = {
        CONF_KEY("ingest.mode", CONF_ENUM, OFF(ingest.mode), "sub", 0, 0, modes,
                 "sub: connect to PUB endpoints; pull: bind a PULL socket for PUSH senders"),
        CONF_KEY("ingest.endpoints", CONF_STRLIST, OFF(ingest.endpoints), "tcp://127.0.0.1:7600", 0,
                 0, NULL, "ZeroMQ endpoints: connected in sub mode, bound in pull mode"),
        CONF_KEY("ingest.topics", CONF_STRLIST, OFF(ingest.topics), NULL, 0, 0, NULL,
                 "sub mode: topic prefixes to subscribe to; none means every message"),
        CONF_KEY(
                "ingest.rcvhwm", CONF_INT, OFF(ingest.rcvhwm), "10000", 1, 10000000, NULL,
                "messages ZeroMQ may queue per connection before it drops (SUB) or pushes back (PULL)"),
        CONF_KEY("ingest.max_message_bytes", CONF_SIZE, OFF(ingest.max_message_bytes), "1MiB", 1024,
                 DECODE_MAX_FRAME_BYTES, NULL,
                 "larger frames are quarantined; over 8x this, ZeroMQ drops the connection"),
        CONF_KEY("ingest.max_array_events", CONF_INT, OFF(ingest.max_array_events), "10000", 1,
                 DECODE_MAX_ARRAY_EVENTS, NULL, "most events one frame may carry as a JSON array"),
        CONF_KEY("ingest.max_depth", CONF_INT, OFF(ingest.max_depth), "32", 4, DECODE_MAX_DEPTH,
                 NULL, "deepest nesting of objects and arrays in one event"),
        CONF_KEY("ingest.max_future", CONF_DURATION, OFF(ingest.max_future_ms), "5m", 0,
                 30LL * 86400000, NULL,
                 "events whose ts is further ahead of this machine's clock are quarantined"),
        CONF_KEY("store.path", CONF_STR, OFF(store.path), "voca.db", 0, 0, NULL,
                 "the SQLite file (WAL mode); relative paths are from the working directory"),
        CONF_KEY("store.rules_path", CONF_STR, OFF(store.rules_path), NULL, 0, 0, NULL,
                 "the rules' state file (WAL mode); unset: store.path with .db replaced by "
                 ".rules.db (voca.db: voca.rules.db)"),
        CONF_KEY("store.batch_max", CONF_INT, OFF(store.batch_max), "2000", 1, 1000000, NULL,
                 "group commit: most events in one transaction"),
        CONF_KEY("store.batch_ms", CONF_DURATION, OFF(store.batch_ms), "5ms", 1, 10000, NULL,
                 "group commit: longest an event waits for its transaction to commit"),
        CONF_KEY("store.quarantine_raw_max", CONF_SIZE, OFF(store.quarantine_raw_max), "16KiB", 0,
                 16 * 1024 * 1024, NULL, "bytes of a rejected input kept in the quarantine table"),
        CONF_KEY("store.cache_size", CONF_SIZE, OFF(store.cache_size), "16MiB", 1024 * 1024,
                 4LL * 1024 * 1024 * 1024, NULL, "SQLite page cache"),
        CONF_KEY("log.level", CONF_ENUM, OFF(log.level), "info", 0, 0, levels,
                 "error, warn, info or debug"),
        CONF_KEY("engine.lateness", CONF_DURATION, OFF(engine.lateness_ms), "5m", 0, 86400000, NULL,
                 "how late (behind the newest event time) an event may arrive and still count"),
        CONF_KEY("engine.review_confidence", CONF_DOUBLE, OFF(engine.review_confidence), "0.6", 0,
                 1, NULL, "events under this confidence (or needs_review) go to the review queue"),
        CONF_KEY("engine.review_counts_volume", CONF_BOOL, OFF(engine.review_counts_volume), "true",
                 0, 0, NULL, "whether events under review still count toward volume"),
        CONF_KEY("engine.budget_per_hour", CONF_INT, OFF(engine.budget_per_hour), "30", 0, 1024,
                 NULL,
                 "most tier-1/2 notifications an hour; more are demoted to the digest (0: no "
                 "limit)"),
        CONF_KEY("engine.max_keys", CONF_INT, OFF(engine.max_keys), "1000000", 1000, 100000000,
                 NULL,
                 "group keys one rule keeps at most; events of further keys are not counted "
                 "(and are shown: voca stats)"),
        CONF_KEY("engine.forget_after", CONF_DURATION, OFF(engine.forget_after_ms), "90d", 0,
                 3650LL * 86400000, NULL,
                 "a key quiet this long (no open or watched incident) is forgotten: its memory "
                 "reused, its record deleted; back, it starts over (0: never)"),
        CONF_KEY("engine.checkpoint", CONF_DURATION, OFF(engine.checkpoint_ms), "60s", 0, 86400000,
                 NULL,
                 "how often the rules' state is saved; after a crash the events since are "
                 "replayed"),
        CONF_KEY("delivery.deadletter_receivers", CONF_STRLIST, OFF(delivery.deadletter_receivers),
                 NULL, 0, 0, NULL,
                 "chat receivers (slack, teams, webhook, console) told when a delivery to "
                 "another receiver fails for good"),
        CONF_KEY("redaction.patterns", CONF_STRLIST, OFF(redaction.patterns), NULL, 0, 0, NULL,
                 "extra POSIX extended regexes replaced by [redacted] in text that leaves"),
        {.path = "time_zone",
         .type = CONF_STR,
         .offset = OFF(time_zone),
         .def = "UTC",
         .check = zone_check,
         .doc = "the business's IANA time zone: the hours and weekdays of the rules' seasons "
                "(spike, flatline) and of time windows, unless one names its own"},
        {.path = "rules",
         .type = CONF_LIST,
         .offset = OFF(rules),
         .variants = rule_variants,
         .doc = "the rules: a list of mappings, each with a kind (threshold, spike, rate_shift, flatline, new_topic)"},
        {.path = "silences",
         .type = CONF_LIST,
         .offset = OFF(silences),
         .variants = silence_variants,
         .doc = "silences: matchers, start, end, author, comment"},
        {.path = "known_issues",
         .type = CONF_LIST,
         .offset = OFF(known_issues),
         .variants = known_issue_variants,
         .doc = "matchers linked to an existing ticket: matching incidents are not news"},
        {.path = "time_windows",
         .type = CONF_LIST,
         .offset = OFF(time_windows),
         .variants = time_window_variants,
         .doc = "recurring windows that mute notifications: weekdays, times, months, zone"},
        {.path = "receivers",
         .type = CONF_LIST,
         .offset = OFF(receivers),
         .variants = connector_variants,
         .doc = "where deliveries go: each with a kind (console, webhook, slack, teams, jira, servicenow)"},
        {.path = "owners",
         .type = CONF_LIST,
         .offset = OFF(owners),
         .variants = owner_variants,
         .doc = "owner teams: name, chat mentions, ticket targets"},
        {.path = "routes",
         .type = CONF_LIST,
         .offset = OFF(routes),
         .variants = route_variants,
         .doc = "the routing map: matchers, owner, receivers, continue; first match wins"},
        CONF_END,
};

/* Compiles redaction patterns, silences and time windows, naming the
 * item's line on error, so that voca check catches them. */
static int check_compiled(const char *file, struct config *cfg, char *err, size_t errlen)
{
	char why[256];
	struct redactor *r = redactor_new(&cfg->redaction.patterns, why, sizeof(why));

	/* Redaction patterns compile now, so a bad one fails voca check. */
	if (r == NULL) {
		snprintf(err, errlen, "%s: redaction.patterns: %s", file, why);
		return -1;
	}
	redactor_free(r);

	for (size_t i = 0; i < cfg->silences.n; i++) {
		if (silence_check(cfg->silences.v[i].data, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%d: silences[%zu]: %s", file,
			         cfg->silences.v[i].line, i, why);
			return -1;
		}
	}
	for (size_t i = 0; i < cfg->known_issues.n; i++) {
		if (known_issue_check(cfg->known_issues.v[i].data, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%d: known_issues[%zu]: %s", file,
			         cfg->known_issues.v[i].line, i, why);
			return -1;
		}
	}
	for (size_t i = 0; i < cfg->time_windows.n; i++) {
		struct time_window *w = cfg->time_windows.v[i].data;

		/* A window without a zone of its own keeps the business's. */
		conf_inherit(time_window_variants()[0].keys, w, "time_zone", cfg->time_zone);
		if (time_window_check(w, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%d: time_windows[%zu]: %s", file,
			         cfg->time_windows.v[i].line, i, why);
			return -1;
		}
	}
	return 0;
}

/* The rules' state file is not the store (each has its own schema). */
static int check_store(const char *file, struct config *cfg, char *err, size_t errlen)
{
	char rules[4096];

	if (config_rules_path(cfg, rules, sizeof(rules)) < 0) {
		snprintf(err, errlen, "%s: store.rules_path: too long", file);
		return -1;
	}
	if (strcmp(rules, cfg->store.path) == 0) {
		snprintf(err, errlen, "%s: store.rules_path: must not be store.path (%s)", file,
		         cfg->store.path);
		return -1;
	}
	return 0;
}

/* Receivers (by their connector), owners and routes; names unique. */
static int check_delivery(const char *file, struct config *cfg, char *err, size_t errlen)
{
	char why[256];

	for (size_t i = 0; i < cfg->receivers.n; i++) {
		struct receiver *r = cfg->receivers.v[i].data;

		r->kind = cfg->receivers.v[i].variant;
		if (r->name == NULL)
			snprintf(why, sizeof(why), "name: needed");
		else if (connectors[r->kind]->check(r, why, sizeof(why)) == 0)
			why[0] = '\0';
		for (size_t j = 0; why[0] == '\0' && j < i; j++)
			if (strcmp(((struct receiver *)cfg->receivers.v[j].data)->name, r->name) ==
			    0)
				snprintf(why, sizeof(why),
				         "the name '%s' is taken by receivers[%zu]", r->name, j);
		if (why[0]) {
			snprintf(err, errlen, "%s:%d: receivers[%zu]: %s", file,
			         cfg->receivers.v[i].line, i, why);
			return -1;
		}
	}
	for (size_t i = 0; i < cfg->owners.n; i++) {
		const struct owner *o = cfg->owners.v[i].data;

		why[0] = '\0';
		if (o->name == NULL)
			snprintf(why, sizeof(why), "name: needed");
		for (size_t j = 0; why[0] == '\0' && j < i; j++)
			if (strcmp(((struct owner *)cfg->owners.v[j].data)->name, o->name) == 0)
				snprintf(why, sizeof(why), "the name '%s' is taken by owners[%zu]",
				         o->name, j);
		for (size_t j = 0; why[0] == '\0' && j < o->slack_mentions.n; j++)
			if (strspn(o->slack_mentions.v[j],
			           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") !=
			    strlen(o->slack_mentions.v[j]))
				snprintf(
				        why, sizeof(why),
				        "slack_mentions: '%s' is not a user (U...) or group (S...) id",
				        o->slack_mentions.v[j]);
		for (size_t j = 0; why[0] == '\0' && j < o->teams_mentions.n; j++)
			if (strchr(o->teams_mentions.v[j], '|') == NULL ||
			    strpbrk(o->teams_mentions.v[j], "<>"))
				snprintf(why, sizeof(why),
				         "teams_mentions: '%s' is not 'id|Display Name'",
				         o->teams_mentions.v[j]);
		if (why[0]) {
			snprintf(err, errlen, "%s:%d: owners[%zu]: %s", file, cfg->owners.v[i].line,
			         i, why);
			return -1;
		}
	}
	for (size_t i = 0; i < cfg->delivery.deadletter_receivers.n; i++) {
		const char *name = cfg->delivery.deadletter_receivers.v[i];
		const struct receiver *r = config_receiver(cfg, name);

		if (r == NULL || connectors[r->kind]->tickets) {
			snprintf(
			        err, errlen,
			        "%s: delivery.deadletter_receivers: '%s' is not a configured chat, "
			        "webhook or console receiver",
			        file, name);
			return -1;
		}
	}
	for (size_t i = 0; i < cfg->known_issues.n; i++) {
		const struct known_issue *k = cfg->known_issues.v[i].data;
		const struct receiver *r = config_receiver(cfg, k->receiver);

		if (k->receiver && (r == NULL || !connectors[r->kind]->comments)) {
			snprintf(
			        err, errlen,
			        "%s:%d: known_issues[%zu]: receiver: '%s' is not a configured jira or "
			        "servicenow receiver",
			        file, cfg->known_issues.v[i].line, i, k->receiver);
			return -1;
		}
	}
	for (size_t i = 0; i < cfg->routes.n; i++) {
		if (route_check(cfg->routes.v[i].data, &cfg->owners, &cfg->receivers, why,
		                sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%d: routes[%zu]: %s", file, cfg->routes.v[i].line,
			         i, why);
			return -1;
		}
	}
	return 0;
}

/* "cfg-" and FNV-1a of the configuration's text. */
static void set_version(struct config *cfg, const char *text, size_t len)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)text[i]) * 1099511628211ULL;
	snprintf(cfg->version, sizeof(cfg->version), "cfg-%012llx",
	         (unsigned long long)(h & 0xffffffffffffULL));
}

static void version_of_file(struct config *cfg, const char *file)
{
	FILE *f = fopen(file, "rb");
	char chunk[8192];
	size_t n;
	struct buf all;

	buf_init(&all, 64 << 20);
	while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_add(&all, chunk, n);
	if (f)
		fclose(f);
	set_version(cfg, all.data ? all.data : "", all.len);
	buf_free(&all);
}

/* Runs each rule kind's own checks; names must be unique. */
static int check_rules(const char *file, struct config *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < cfg->rules.n; i++) {
		const struct conf_item *it = &cfg->rules.v[i];
		const struct rule_kind *kind = rule_kinds[it->variant];
		struct rule_common *c = it->data;
		char why[256];

		/* A kind with seasons (spike, flatline) keeps the business's zone
		 * unless the rule names its own. */
		conf_inherit(kind->keys, it->data, "time_zone", cfg->time_zone);
		if (kind->check(it->data, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%d: rules[%zu] (%s): %s", file, it->line, i,
			         c->name ? c->name : kind->name, why);
			return -1;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(((struct rule_common *)cfg->rules.v[j].data)->name, c->name) ==
			    0) {
				snprintf(
				        err, errlen,
				        "%s:%d: rules[%zu]: the name '%s' is taken by rules[%zu] (line %d)",
				        file, it->line, i, c->name, j, cfg->rules.v[j].line);
				return -1;
			}
		}
	}
	return 0;
}

int config_load(const char *file, struct config *cfg, char *err, size_t errlen)
{
	*cfg = (struct config){0};
	if (file == NULL) {
		/* The example configuration, compiled in: documented defaults and rules. */
		if (config_load_text("(built-in voca.example.yaml)", config_builtin, cfg, err,
		                     errlen) < 0)
			return -1;
		free(cfg->file);
		cfg->file = NULL;
		return 0;
	}
	if (conf_load(file, NULL, config_keys, cfg, err, errlen) < 0)
		return -1;
	if (check_store(file, cfg, err, errlen) < 0 || check_rules(file, cfg, err, errlen) < 0 ||
	    check_compiled(file, cfg, err, errlen) < 0 ||
	    check_delivery(file, cfg, err, errlen) < 0) {
		conf_free(config_keys, cfg);
		return -1;
	}
	cfg->file = xstrdup(file);
	version_of_file(cfg, file);
	return 0;
}

int config_load_text(const char *name, const char *yaml, struct config *cfg, char *err,
                     size_t errlen)
{
	*cfg = (struct config){0};
	if (conf_load(name, yaml, config_keys, cfg, err, errlen) < 0)
		return -1;
	if (check_store(name, cfg, err, errlen) < 0 || check_rules(name, cfg, err, errlen) < 0 ||
	    check_compiled(name, cfg, err, errlen) < 0 ||
	    check_delivery(name, cfg, err, errlen) < 0) {
		conf_free(config_keys, cfg);
		return -1;
	}
	cfg->file = xstrdup(name);
	set_version(cfg, yaml, strlen(yaml));
	return 0;
}

struct decode_limits config_decode_limits(const struct config *cfg)
{
	return (struct decode_limits){
	        .max_frame_bytes = (size_t)cfg->ingest.max_message_bytes,
	        .max_depth = (int)cfg->ingest.max_depth,
	        .max_array_events = (size_t)cfg->ingest.max_array_events,
	        .max_future_ms = cfg->ingest.max_future_ms,
	};
}

const struct rule_common *config_rule(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->rules.n; i++) {
		const struct rule_common *c = cfg->rules.v[i].data;

		if (strcmp(c->name, name) == 0)
			return c;
	}
	return NULL;
}

const struct receiver *config_receiver(const struct config *cfg, const char *name)
{
	for (size_t i = 0; name && i < cfg->receivers.n; i++) {
		const struct receiver *r = cfg->receivers.v[i].data;

		if (strcmp(r->name, name) == 0)
			return r;
	}
	return NULL;
}

int config_rules_path(const struct config *cfg, char *out, size_t len)
{
	const char *p = cfg->store.path;
	size_t n = strlen(p);
	int w;

	if (cfg->store.rules_path && cfg->store.rules_path[0])
		w = snprintf(out, len, "%s", cfg->store.rules_path);
	else if (n >= 3 && strcmp(p + n - 3, ".db") == 0)
		w = snprintf(out, len, "%.*s.rules.db", (int)(n - 3), p);
	else
		w = snprintf(out, len, "%s.rules", p);
	return w < 0 || (size_t)w >= len ? -1 : 0;
}

void config_free(struct config *cfg)
{
	conf_free(config_keys, cfg);
	free(cfg->file);
	cfg->file = NULL;
}

/* Is receiver name given work by a route, a known issue or the dead letters? */
static int receiver_used(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->routes.n; i++) {
		const struct route *r = cfg->routes.v[i].data;

		for (size_t j = 0; j < r->receivers.n; j++)
			if (strcmp(r->receivers.v[j], name) == 0)
				return 1;
	}
	for (size_t i = 0; i < cfg->known_issues.n; i++) {
		const struct known_issue *k = cfg->known_issues.v[i].data;

		if (k->receiver && strcmp(k->receiver, name) == 0)
			return 1;
	}
	for (size_t i = 0; i < cfg->delivery.deadletter_receivers.n; i++)
		if (strcmp(cfg->delivery.deadletter_receivers.v[i], name) == 0)
			return 1;
	return 0;
}

int config_warnings(const struct config *cfg, void (*warn)(void *arg, const char *line), void *arg)
{
	char line[512];
	int n = 0;

	if (cfg->rules.n && cfg->ingest.max_future_ms > cfg->engine.lateness_ms) {
		snprintf(
		        line, sizeof(line),
		        "ingest.max_future (%llds) is more than engine.lateness (%llds): an event "
		        "dated that far ahead moves the rules' watermark past the present, and the "
		        "bucketed rules leave on-time events out as late; keep it at most "
		        "engine.lateness",
		        (long long)(cfg->ingest.max_future_ms / 1000),
		        (long long)(cfg->engine.lateness_ms / 1000));
		warn(arg, line), n++;
	}
	for (size_t i = 0; i < cfg->receivers.n; i++) {
		const struct receiver *r = cfg->receivers.v[i].data;

		if (receiver_used(cfg, r->name))
			continue;
		snprintf(line, sizeof(line),
		         "receivers[%zu] (%.64s): no route, known issue or "
		         "delivery.deadletter_receivers names it: nothing is sent to it",
		         i, r->name);
		warn(arg, line), n++;
	}
	return n;
}

void config_print(const struct config *cfg, FILE *out)
{
	conf_print(config_keys, cfg, out);
}
