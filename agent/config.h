/*
 * config.h: voca's configuration, loaded from YAML through conf.h.
 *
 * Every key is a row in config_keys (config.c) with its default and a line
 * of documentation; packaging/voca.example.yaml documents each of them and a
 * unit test keeps the two in step.
 */
#ifndef VOCA_CONFIG_H
#define VOCA_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include <voca/conf.h>
#include <voca/event.h>

enum ingest_mode {
	INGEST_SUB = 0,  /* connect to publishers' PUB sockets */
	INGEST_PULL = 1, /* bind a PULL socket that PUSH senders connect to */
};

struct config {
	char *file;       /* NULL when running on the built-in configuration */
	char version[24]; /* "cfg-" and a hash of the text: the lineage of what voca sends */
	struct {
		int mode;
		struct conf_list endpoints;
		struct conf_list topics;
		int64_t rcvhwm;
		int64_t max_message_bytes;
		int64_t max_array_events;
		int64_t max_depth;
		int64_t max_future_ms;
	} ingest;
	struct {
		char *path;
		char *rules_path; /* "": derived from path (config_rules_path) */
		int64_t batch_max;
		int64_t batch_ms;
		int64_t quarantine_raw_max;
		int64_t cache_size;
	} store;
	struct {
		int level;
	} log;
	struct {
		int64_t lateness_ms;
		double review_confidence;
		int review_counts_volume;
		int64_t checkpoint_ms;
		int64_t budget_per_hour;
		int64_t max_keys;
		int64_t forget_after_ms;
	} engine;
	struct {
		struct conf_list patterns;
	} redaction;
	struct {
		struct conf_list deadletter_receivers; /* told when a delivery fails for good */
	} delivery;
	char *time_zone;                /* the business's: rules' and time windows' default */
	struct conf_items rules;        /* items of rule_variants(), checked */
	struct conf_items silences;     /* struct silence, checked */
	struct conf_items time_windows; /* struct time_window, checked */
	struct conf_items known_issues; /* struct known_issue, checked */
	struct conf_items receivers;    /* struct receiver (connector.h), checked */
	struct conf_items owners;       /* struct owner (connector.h) */
	struct conf_items routes;       /* struct route (route.h), checked */
};

extern const struct conf_key config_keys[];

/* The built-in configuration: packaging/voca.example.yaml, compiled in. */
extern const char config_builtin[];

/*
 * Loads file into cfg, or the built-in configuration (the example) when file is NULL. Returns 0,
 * or -1 with "FILE:LINE: KEY: problem" in err and nothing to free.
 */
int config_load(const char *file, struct config *cfg, char *err, size_t errlen);
/* The same from YAML text, named name in messages (tests). */
int config_load_text(const char *name, const char *yaml, struct config *cfg, char *err,
                     size_t errlen);
void config_free(struct config *cfg);

struct rule_common;

/* The configured rule of that name, or NULL. */
const struct rule_common *config_rule(const struct config *cfg, const char *name);

struct receiver;

/* The configured receiver of that name, or NULL. */
const struct receiver *config_receiver(const struct config *cfg, const char *name);

/* The decoder's limits as configured under ingest: (max_message_bytes, max_depth, ...). */
struct decode_limits config_decode_limits(const struct config *cfg);
void config_print(const struct config *cfg, FILE *out);

/*
 * What is valid but probably not meant: a receiver nothing sends to, an
 * ingest.max_future that would make on-time events late. Calls warn once per finding with a line
 * naming the key; returns how many. voca check prints them; the daemon logs them.
 */
int config_warnings(const struct config *cfg, void (*warn)(void *arg, const char *line), void *arg);

/*
 * The rules' state file: store.rules_path, or store.path with a final
 * ".db" replaced by ".rules.db" (or ".rules" appended). Returns -1 if it
 * does not fit in len.
 */
int config_rules_path(const struct config *cfg, char *out, size_t len);

#endif
