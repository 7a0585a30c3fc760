/*
 * daemon.c: the agent's loop (see daemon.h).
 *
 * One thread (the rules and the deliveries have their own). zmq_poll waits
 * on the ingest socket, a self-pipe written by the signal handlers and the
 * rules' thread's failure eventfd; its timeout is the time until the open
 * batch is due (Redis's ae.c habit: the loop sleeps exactly until the next
 * deadline, and an idle daemon does not wake at all).
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include <voca/connector.h>
#include <voca/log.h>
#include <voca/suppress.h>

#include "clock.h"
#include "config.h"
#include "daemon.h"
#include "delivery.h"
#include "ingest.h"
#include "outbox.h"
#include "rulerun.h"
#include "store.h"

#define STOP_DRAIN_NS (2 * 1000000000LL)

static int sigpipe[2] = {-1, -1};

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char c = (unsigned char)sig;

	if (write(sigpipe[1], &c, 1) < 0) {
		/* The pipe is full: a signal is pending already. */
	}
	errno = saved;
}

static int install_signals(void)
{
	struct sigaction sa;

	if (pipe(sigpipe) < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		fcntl(sigpipe[i], F_SETFL, O_NONBLOCK);
		fcntl(sigpipe[i], F_SETFD, FD_CLOEXEC);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static void close_signals(void)
{
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	for (int i = 0; i < 2; i++) {
		if (sigpipe[i] >= 0)
			close(sigpipe[i]);
		sigpipe[i] = -1;
	}
}

static void kick(void *pool)
{
	delivery_kick(pool);
}

static void log_warning(void *arg, const char *line)
{
	log_warn("voca: %s: %s", (const char *)arg, line);
}

static void describe(const struct config *cfg)
{
	char eps[512] = "";

	for (size_t i = 0; i < cfg->ingest.endpoints.n; i++) {
		strncat(eps, i ? "," : "", sizeof(eps) - strlen(eps) - 1);
		strncat(eps, cfg->ingest.endpoints.v[i], sizeof(eps) - strlen(eps) - 1);
	}
	log_info("voca: config=%s mode=%s endpoints=%s store=%s batch=%lld/%lldms",
	         cfg->file ? cfg->file : "(built-in: voca.example.yaml)",
	         cfg->ingest.mode == INGEST_PULL ? "pull (bind)" : "sub (connect)", eps,
	         cfg->store.path, (long long)cfg->store.batch_max, (long long)cfg->store.batch_ms);
	config_warnings(cfg, log_warning, (void *)(cfg->file ? cfg->file : "built-in"));
}

static void reload(struct config *cfg, struct ingest *in, struct rulerun *rules)
{
	struct config next;
	char err[512];

	if (cfg->file == NULL) {
		log_info("voca: SIGHUP: running on the built-in configuration, nothing to reload");
		return;
	}
	if (config_load(cfg->file, &next, err, sizeof(err)) < 0) {
		log_error("voca: reload failed, keeping the running configuration: %s", err);
		return;
	}
	if (strcmp(next.store.path, cfg->store.path) != 0)
		log_warn("voca: store.path changed to %s: takes effect after a restart; still "
		         "writing %s",
		         next.store.path, cfg->store.path);
	if (ingest_reconfigure(in, &next, err, sizeof(err)) < 0) {
		log_error("voca: reload failed, keeping the running configuration: %s", err);
		config_free(&next);
		return;
	}
	/* Keep the paths the store and the rules' state were opened with until a restart. */
	char *path = next.store.path, *rules_path = next.store.rules_path;

	next.store.path = cfg->store.path;
	cfg->store.path = path;
	if (strcmp(rules_path ? rules_path : "",
	           cfg->store.rules_path ? cfg->store.rules_path : ""))
		log_warn("voca: store.rules_path changed: takes effect after a restart");
	next.store.rules_path = cfg->store.rules_path;
	cfg->store.rules_path = rules_path;
	/* The engine runs on the rules it started with (their state is theirs). */
	if (cfg->rules.n || next.rules.n || cfg->receivers.n || next.receivers.n)
		log_warn(
		        "voca: rules, receivers, owners and routes are read at start: restart voca "
		        "to apply changes to them");
	/* What the engine and the delivery workers hold stays theirs; silences,
	 * time windows and known issues are only read, so the new ones apply. */
	struct conf_items *mine[] = {&cfg->rules, &cfg->receivers, &cfg->owners, &cfg->routes};
	struct conf_items *theirs[] = {&next.rules, &next.receivers, &next.owners, &next.routes};

	if (rules)
		rulerun_lock(rules); /* its thread reads cfg */
	for (size_t i = 0; i < sizeof(mine) / sizeof(mine[0]); i++) {
		struct conf_items t = *mine[i];

		*mine[i] = *theirs[i];
		*theirs[i] = t;
	}
	memcpy(next.version, cfg->version, sizeof(next.version));
	next.engine = cfg->engine;
	config_free(cfg);
	*cfg = next;
	if (rules) {
		rulerun_unlock(rules);
		log_info("voca: now muting by %zu silences, %zu time windows and %zu known issues",
		         cfg->silences.n, cfg->time_windows.n, cfg->known_issues.n);
	}
	/* Receivers run as they started: a known issue may name one the reload
	 * added, or one that runs as a kind that cannot comment until then. */
	for (size_t i = 0; i < cfg->known_issues.n; i++) {
		const struct known_issue *k = cfg->known_issues.v[i].data;
		const struct receiver *r = config_receiver(cfg, k->receiver);

		if (k->receiver && r == NULL)
			log_warn(
			        "voca: known_issues[%zu]: receiver '%s' starts at the next restart; "
			        "its comments on %s wait until then",
			        i, k->receiver, k->ticket);
		else if (k->receiver && !connectors[r->kind]->comments)
			log_warn("voca: known_issues[%zu]: receiver '%s' runs as %s until the next "
			         "restart; its comments on %s are dead letters until then",
			         i, k->receiver, connectors[r->kind]->kind, k->ticket);
	}
	log_set_level((enum log_level)cfg->log.level);
	log_info("voca: configuration reloaded from %s", cfg->file);
	describe(cfg);
}

int daemon_run(const struct daemon_opts *opts)
{
	struct config cfg;
	struct store *st = NULL;
	struct ingest *in = NULL;
	struct rulerun *rules = NULL;
	struct outbox *outbox = NULL;
	struct delivery_pool *pool = NULL;
	void *zctx = NULL;
	char err[512];
	int status = 1, running = 1;

	if (config_load(opts->config_file, &cfg, err, sizeof(err)) < 0) {
		log_error("%s", err);
		return 1;
	}
	log_set_level((enum log_level)cfg.log.level);
	/*
	 * Every message allocates and frees the same few kilobytes. Left to
	 * itself glibc gives the top of the heap back after each batch and
	 * page-faults it in again on the next (a third of the CPU in a
	 * profile); a fixed threshold keeps a few MB resident instead.
	 */
	mallopt(M_TRIM_THRESHOLD, 32 << 20);
	mallopt(M_TOP_PAD, 4 << 20);
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	/*
	 * With that threshold each arena may keep 32 MB free, and every thread
	 * that allocates gets an arena of its own (ZeroMQ's I/O thread, the
	 * rules', the checkpointer's, the delivery workers'): peak RSS at
	 * 100,000 keys ranged 98-113 MB over runs. Two arenas, the ingest's and
	 * one shared, gave 96-97 MB.
	 */
	mallopt(M_ARENA_MAX, 2);
	st = store_open(cfg.store.path, cfg.store.cache_size, err, sizeof(err));
	if (st == NULL) {
		log_error("store: %s", err);
		goto out;
	}
	zctx = zmq_ctx_new();
	in = ingest_new(zctx, &cfg, st, err, sizeof(err));
	if (in == NULL) {
		log_error("%s", err);
		goto out;
	}
	if (opts->on_commit)
		ingest_on_commit(in, opts->on_commit, opts->on_commit_arg);
	if (cfg.receivers.n && (outbox = outbox_new(&cfg, err, sizeof(err))) == NULL) {
		log_error("delivery: %s", err);
		goto out;
	}
	if (cfg.rules.n) {
		struct ingest_sink sink;

		rules = rulerun_new(&cfg, st, outbox, err, sizeof(err));
		if (rules == NULL) {
			log_error("%s", err);
			goto out;
		}
		rulerun_sink(rules, &sink);
		ingest_set_sink(in, &sink);
		if (opts->on_rules_idle)
			rulerun_on_idle(rules, opts->on_rules_idle, opts->on_rules_idle_arg);
	}
	if (outbox) {
		pool = delivery_start(&cfg, st, cfg.store.path, err, sizeof(err));
		if (pool == NULL) {
			log_error("delivery: %s", err);
			goto out;
		}
		if (rules)
			rulerun_on_deliveries(rules, kick, pool);
		log_info("delivery: %zu receivers, %zu routes, %zu owners", cfg.receivers.n,
		         cfg.routes.n, cfg.owners.n);
	}
	if (rules && rulerun_start(rules, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	if (install_signals() < 0) {
		log_error("voca: signal pipe: %s", strerror(errno));
		goto out;
	}
	describe(&cfg);
	log_info("voca: running (store schema %d); SIGHUP reloads, SIGTERM stops",
	         store_schema_version(st));
	while (running) {
		zmq_pollitem_t items[3] = {
		        {.socket = ingest_socket(in), .events = ZMQ_POLLIN},
		        {.fd = sigpipe[0], .events = ZMQ_POLLIN},
		        {.fd = rules ? rulerun_failed_fd(rules) : -1, .events = ZMQ_POLLIN},
		};
		int rc = zmq_poll(items, rules ? 3 : 2, ingest_timeout_ms(in));

		if (rc < 0 && zmq_errno() != EINTR) {
			log_error("voca: poll: %s", zmq_strerror(zmq_errno()));
			goto out;
		}
		if (rc > 0 && (items[0].revents & ZMQ_POLLIN) && ingest_drain(in, 4096) < 0)
			goto out;
		if (ingest_timeout_ms(in) == 0 && ingest_flush(in) < 0)
			goto out;
		if (rules && rulerun_failed(rules))
			goto out;
		if (rc > 0 && (items[1].revents & ZMQ_POLLIN)) {
			unsigned char sig;

			while (read(sigpipe[0], &sig, 1) == 1) {
				if (sig == SIGHUP) {
					reload(&cfg, in, rules);
				} else {
					log_info("voca: %s: committing and stopping",
					         sig == SIGINT ? "SIGINT" : "SIGTERM");
					running = 0;
				}
			}
		}
	}
	/* Take what ZeroMQ has already queued before committing, for at most
	 * STOP_DRAIN_NS: a publisher that keeps sending must not delay a stop. */
	for (int64_t until = clock_mono_ns() + STOP_DRAIN_NS; clock_mono_ns() < until;) {
		int n = ingest_drain(in, 4096);

		if (n < 0)
			goto out;
		if (n < 4096)
			break;
	}
	if (ingest_flush(in) < 0 || rulerun_stop(rules) < 0)
		goto out;
	status = 0;
out:
	ingest_free(in);
	rulerun_free(rules); /* stops the thread if it still runs */
	delivery_stop(pool);
	outbox_free(outbox);
	if (zctx)
		zmq_ctx_term(zctx);
	store_close(st);
	close_signals();
	config_free(&cfg);
	if (status == 0)
		log_info("voca: stopped cleanly");
	return status;
}
