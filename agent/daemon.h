/*
 * daemon.h: `voca run`, the long-running agent.
 *
 * Loads the configuration, opens the store, receives until SIGTERM or
 * SIGINT (then commits what is pending and exits 0), and reloads on SIGHUP
 * (a configuration that does not load is reported and the running one kept).
 * On stop it first takes what ZeroMQ has already queued (for up to 2 s).
 */
#ifndef VOCA_DAEMON_H
#define VOCA_DAEMON_H

#include "ingest.h"

struct daemon_opts {
	const char *config_file;    /* NULL: the built-in configuration */
	ingest_commit_fn on_commit; /* optional: called after every commit */
	void *on_commit_arg;
	/* optional: the rules' thread has run every event up to rowid (rulerun_on_idle) */
	void (*on_rules_idle)(void *arg, int64_t fed_rowid);
	void *on_rules_idle_arg;
};

/* Runs until asked to stop. Returns the process exit status. */
int daemon_run(const struct daemon_opts *opts);

#endif
