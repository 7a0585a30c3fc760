/*
 * main.c: the voca command line. Each subcommand is a row in a static
 * table (OpenSMTPD's registry habit) with its one-line help.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/engine.h>
#include <voca/log.h>
#include <voca/xalloc.h>

#include "backtest.h"
#include "config.h"
#include "daemon.h"
#include "delivery.h"
#include "incidents.h"
#include "publish.h"
#include "rulestate.h"
#include "simulate.h"
#include "stats.h"
#include "version.h"

static int run_main(int argc, char **argv);
static int check_main(int argc, char **argv);
static int help_main(int argc, char **argv);
static int version_main(int argc, char **argv);
static int deadletters_main(int argc, char **argv);

struct command {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *help;
};

static const struct command commands[] = {
        {"run", run_main, "run the agent: receive, validate and store scored feedback"},
        {"check", check_main, "validate a configuration file and print a summary"},
        {"publish", publish_main, "send a JSON Lines file (plain or gzip) to a ZeroMQ endpoint"},
        {"simulate", simulate_main, "write a realistic feedback stream with injected incidents"},
        {"backtest", backtest_main, "run the rules over a feed file: what would fire and why"},
        {"stats", stats_main, "show what is stored, quarantined and why, and sequence gaps"},
        {"incidents", incidents_main, "list incidents, what muted them and where they went"},
        {"review", review_main, "list the reports held for a person to review, and why"},
        {"deadletters", deadletters_main, "list deliveries that failed for good; re-queue them"},
        {"help", help_main, "show this help"},
        {"version", version_main, "print the version"},
        {NULL, NULL, NULL},
};

static void usage(FILE *f)
{
	fputs("usage: voca COMMAND [options]   (voca COMMAND --help for each)\n\n", f);
	for (const struct command *c = commands; c->name; c++)
		fprintf(f, "  %-10s %s\n", c->name, c->help);
}

static int help_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	usage(stdout);
	return 0;
}

static int version_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("voca %s\n", VOCA_VERSION);
	return 0;
}

static int config_opt(int argc, char **argv, const char *cmd, const char *help, const char **file)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	int c;

	*file = NULL;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': *file = optarg; break;
		case 'h': fputs(help, stdout); return 1;
		default: fputs(help, stderr); return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "voca %s: unexpected argument '%s'\n", cmd, argv[optind]);
		return -1;
	}
	return 0;
}

static int run_main(int argc, char **argv)
{
	static const char help[] =
	        "usage: voca run [-c FILE]\n"
	        "\n"
	        "Runs the agent in the foreground, logging to stderr. Without -c it runs on\n"
	        "its built-in configuration, packaging/voca.example.yaml compiled in: subscribe\n"
	        "to tcp://127.0.0.1:7600, store in ./voca.db, and run the example rules.\n"
	        "SIGHUP reloads the configuration (a bad one is reported and the running one\n"
	        "kept); SIGTERM or SIGINT commits what is pending and exits 0.\n"
	        "\n"
	        "  -c, --config FILE   the YAML configuration (see voca.example.yaml)\n";
	struct daemon_opts opts = {0};
	int r = config_opt(argc, argv, "run", help, &opts.config_file);

	if (r != 0)
		return r > 0 ? 0 : 2;
	return daemon_run(&opts);
}

static void print_warning(void *arg, const char *line)
{
	fprintf(stderr, "%s: warning: %s\n", (const char *)arg, line);
}

struct shape_check {
	struct engine *e;
	const char *file;
};

static void check_shape(void *arg, const char *rule, const void *blob, size_t len, int64_t records)
{
	const struct shape_check *c = arg;
	char changed[160], line[4400];
	int r = engine_shape_changed(c->e, rule, blob, len, changed, sizeof(changed));

	if (r > 0)
		snprintf(line, sizeof(line),
		         "rule '%s': its %lld saved records were learned under other settings "
		         "(%s changed): at the next start its baselines start over",
		         rule, (long long)records, changed[0] ? changed : "kind");
	else if (r < 0 && records > 0)
		snprintf(line, sizeof(line),
		         "rule '%s' is not configured: its %lld saved records are kept for "
		         "engine.forget_after after it was last configured, then deleted",
		         rule, (long long)records);
	else
		return;
	print_warning((void *)c->file, line);
}

/*
 * What the saved rules' state says of this configuration: the rules that
 * would start over at the next start (state learned under other settings)
 * and those no longer configured. Read-only, beside a running daemon; no
 * state file, nothing to say.
 */
static void check_rule_state(const struct config *cfg, const char *file)
{
	char path[4096], err[4400];
	struct shape_check c = {engine_new(&cfg->rules, cfg->engine.lateness_ms, NULL, NULL), file};

	if (config_rules_path(cfg, path, sizeof(path)) == 0 &&
	    rulestate_each_shape(path, check_shape, &c, err, sizeof(err)) < 0)
		print_warning((void *)file, err);
	engine_free(c.e);
}

static int check_main(int argc, char **argv)
{
	static const char help[] =
	        "usage: voca check -c FILE\n"
	        "\n"
	        "Validates a configuration and prints every setting in force.\n"
	        "Errors name the file, the line and the key. Exit 0 when valid;\n"
	        "what is valid but probably not meant is a warning on stderr, and so\n"
	        "is what the next start would do to the rules' saved state: a rule\n"
	        "whose state was learned under other settings starts over.\n";
	struct config cfg;
	const char *file;
	char err[512];
	int r = config_opt(argc, argv, "check", help, &file);

	if (r != 0)
		return r > 0 ? 0 : 2;
	if (file == NULL) {
		fprintf(stderr, "voca check: needs -c FILE\n");
		return 2;
	}
	if (config_load(file, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "voca check: %s\n", err);
		return 1;
	}
	printf("%s: OK\n", file);
	config_warnings(&cfg, print_warning, (void *)file);
	check_rule_state(&cfg, file);
	config_print(&cfg, stdout);
	config_free(&cfg);
	return 0;
}

static int deadletters_main(int argc, char **argv)
{
	static const char help[] =
	        "usage: voca deadletters [-c FILE] [-d DB] [--requeue ID|all]\n"
	        "\n"
	        "Lists the deliveries that failed permanently (or ran out of time), with\n"
	        "the reason of their last attempt. --requeue puts one (or all) back in the\n"
	        "outbox: a running voca picks them up within a second, resuming at the\n"
	        "step that failed.\n"
	        "\n"
	        "  -c, --config FILE   the configuration (for store.path)\n"
	        "  -d, --db FILE       the store, overriding store.path\n"
	        "      --requeue ID    re-queue dead delivery ID, or all of them\n";
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"db", required_argument, NULL, 'd'},
	        {"requeue", required_argument, NULL, 'r'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *file = NULL, *db = NULL, *requeue = NULL;
	struct config cfg;
	char err[512];
	int64_t id = 0;
	int c, n;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:d:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': file = optarg; break;
		case 'd': db = optarg; break;
		case 'r': requeue = optarg; break;
		case 'h': fputs(help, stdout); return 0;
		default: fputs(help, stderr); return 2;
		}
	}
	if (requeue && strcmp(requeue, "all") != 0) {
		char *end;

		id = strtoll(requeue, &end, 10);
		if (*end || id <= 0) {
			fprintf(stderr, "voca deadletters: --requeue takes an id or 'all'\n");
			return 2;
		}
	}
	if (config_load(file, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "voca deadletters: %s\n", err);
		return 1;
	}
	n = delivery_deadletters(db ? db : cfg.store.path, requeue != NULL, id, err, sizeof(err));
	config_free(&cfg);
	if (n < 0) {
		fprintf(stderr, "voca deadletters: %s\n", err);
		return 1;
	}
	if (requeue && id && n == 0) {
		fprintf(stderr, "voca deadletters: no dead delivery %lld\n", (long long)id);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	xalloc_install_cjson();
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return help_main(argc, argv);
	if (strcmp(argv[1], "--version") == 0)
		return version_main(argc, argv);
	for (const struct command *c = commands; c->name; c++)
		if (strcmp(argv[1], c->name) == 0)
			return c->main(argc - 1, argv + 1);
	fprintf(stderr, "voca: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
