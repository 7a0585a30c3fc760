/*
 * test_conf.c: configuration loading. Every error names file:line and the
 * key; unknown keys are refused with a suggestion; secrets come only from
 * the environment or a file; the example configuration documents and loads
 * every key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <voca/conf.h>
#include "config.h"
#include <voca/connector.h>
#include <voca/route.h>
#include <voca/rule.h>

#define EXAMPLE "../../packaging/voca.example.yaml"

static void expect_error(const char *yaml, const char *want)
{
	struct config cfg;
	char err[512];

	if (conf_load("t.yaml", yaml, config_keys, &cfg, err, sizeof(err)) == 0) {
		conf_free(config_keys, &cfg);
		fail_msg("accepted:\n%s", yaml);
	}
	if (strstr(err, want) == NULL)
		fail_msg("error '%s' does not contain '%s'", err, want);
}

static void test_errors_name_file_line_and_key(void **state)
{
	(void)state;
	expect_error("ingest:\n  mode: sub\n  rcvhwm: lots\n",
	             "t.yaml:3: ingest.rcvhwm: expected an integer from 1 to 10000000, got 'lots'");
	expect_error("ingest:\n  rcvhwm: 0\n", "t.yaml:2: ingest.rcvhwm: expected an integer");
	expect_error("ingest:\n  mode: push\n",
	             "t.yaml:2: ingest.mode: expected one of sub, pull, got 'push'");
	expect_error("store:\n  batch_ms: 5\n", "t.yaml:2: store.batch_ms: expected a duration");
	expect_error("store:\n  batch_ms: 1h\n", "store.batch_ms: expected a duration from 1ms");
	expect_error("ingest:\n  max_message_bytes: huge\n",
	             "t.yaml:2: ingest.max_message_bytes: expected a size");
	expect_error("ingest:\n  endpoints:\n    - {a: b}\n",
	             "t.yaml:3: ingest.endpoints: list items must be strings");
	expect_error("ingest:\n  mode: [sub]\n", "t.yaml:2: ingest.mode: expected a single value");
	expect_error("ingest: 5\n", "t.yaml:1: ingest: expected a section");
	expect_error("- a\n- b\n", "t.yaml:1: the top level must be a mapping");
	expect_error("store:\n  path: a\n  path: b\n", "t.yaml:3: store.path: set twice");
	expect_error("store:\n  path: a\nstore:\n  batch_max: 3\n",
	             "t.yaml:3: store: section appears twice");
	expect_error("ingest:\n  mode: sub\n   bad indent: x\n", "t.yaml:3: YAML syntax error");
	expect_error("store:\n  path: \"\"\n", "t.yaml:2: store.path: needs a value");
}

static void test_unknown_keys(void **state)
{
	(void)state;
	expect_error("ingest:\n  rcvhmw: 5\n",
	             "t.yaml:2: ingest.rcvhmw: unknown key (did you mean 'ingest.rcvhwm'?)");
	expect_error("\nstorage:\n  path: x\n", "t.yaml:2: storage: unknown key");
	expect_error("ingest:\n  zzzzzz: 1\n", "t.yaml:2: ingest.zzzzzz: unknown key");
}

static void test_values_and_defaults(void **state)
{
	struct config cfg;
	char err[512];

	(void)state;
	assert_int_equal(conf_load("t.yaml",
	                           "ingest:\n  mode: pull\n  endpoints: tcp://*:9\n"
	                           "  max_message_bytes: 64KiB\nstore:\n  batch_ms: 2s\n"
	                           "log:\n  level: debug\n",
	                           config_keys, &cfg, err, sizeof(err)),
	                 0);
	assert_int_equal(cfg.ingest.mode, INGEST_PULL);
	assert_int_equal(cfg.ingest.endpoints.n, 1);
	assert_string_equal(cfg.ingest.endpoints.v[0], "tcp://*:9");
	assert_int_equal(cfg.ingest.max_message_bytes, 65536);
	assert_int_equal(cfg.store.batch_ms, 2000);
	assert_int_equal(cfg.log.level, 3);
	/* Untouched keys keep their defaults. */
	assert_string_equal(cfg.store.path, "voca.db");
	assert_int_equal(cfg.store.batch_max, 2000);
	assert_int_equal(cfg.ingest.topics.n, 0);
	conf_free(config_keys, &cfg);
	/* An empty file is all defaults. */
	assert_int_equal(conf_load("t.yaml", "", config_keys, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.ingest.endpoints.n, 1);
	assert_string_equal(cfg.ingest.endpoints.v[0], "tcp://127.0.0.1:7600");
	conf_free(config_keys, &cfg);
}

/* The rules' state file: beside the store by default, never the store. */
static void test_rules_state_path(void **state)
{
	static const struct {
		const char *yaml, *want;
	} cases[] = {
	        {"", "voca.rules.db"},
	        {"store:\n  path: /var/lib/voca/voca.db\n", "/var/lib/voca/voca.rules.db"},
	        {"store:\n  path: state\n", "state.rules"},
	        {"store:\n  path: a.db\n  rules_path: /x/r.db\n", "/x/r.db"},
	};
	struct config cfg;
	char err[512], path[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(config_load_text("t.yaml", cases[i].yaml, &cfg, err, sizeof(err)),
		                 0);
		assert_int_equal(config_rules_path(&cfg, path, sizeof(path)), 0);
		assert_string_equal(path, cases[i].want);
		config_free(&cfg);
	}
	assert_int_equal(config_load_text("t.yaml", "store:\n  path: a.db\n  rules_path: a.db\n",
	                                  &cfg, err, sizeof(err)),
	                 -1);
	assert_string_equal(err, "t.yaml: store.rules_path: must not be store.path (a.db)");
}

static void test_durations_and_sizes(void **state)
{
	int64_t v;

	(void)state;
	assert_int_equal(conf_parse_duration("5ms", &v), 0);
	assert_int_equal(v, 5);
	assert_int_equal(conf_parse_duration("7d", &v), 0);
	assert_int_equal(v, 7 * 86400000LL);
	assert_int_equal(conf_parse_duration("2w", &v), 0);
	assert_int_equal(v, 14 * 86400000LL);
	assert_int_equal(conf_parse_duration("0", &v), 0);
	assert_int_equal(conf_parse_duration("5", &v), -1); /* a unit is required */
	assert_int_equal(conf_parse_duration("-1s", &v), -1);
	assert_int_equal(conf_parse_duration("1y", &v), -1);
	assert_int_equal(conf_parse_size("1MiB", &v), 0);
	assert_int_equal(v, 1048576);
	assert_int_equal(conf_parse_size("10MB", &v), 0);
	assert_int_equal(v, 10000000);
	assert_int_equal(conf_parse_size("512", &v), 0);
	assert_int_equal(v, 512);
	assert_int_equal(conf_parse_size("99999999999GiB", &v), -1); /* overflow */
}

/* voca check prints a duration in the largest unit it is whole in, as one would write it. */
struct four_durations {
	int64_t a, b, c, d;
};

static void test_durations_print_as_written(void **state)
{
	static const struct conf_key keys[] = {
	        CONF_KEY("a", CONF_DURATION, offsetof(struct four_durations, a), NULL, 0, 0, NULL,
	                 ""),
	        CONF_KEY("b", CONF_DURATION, offsetof(struct four_durations, b), NULL, 0, 0, NULL,
	                 ""),
	        CONF_KEY("c", CONF_DURATION, offsetof(struct four_durations, c), NULL, 0, 0, NULL,
	                 ""),
	        CONF_KEY("d", CONF_DURATION, offsetof(struct four_durations, d), NULL, 0, 0, NULL,
	                 ""),
	        CONF_END};
	struct four_durations v = {90 * 86400000LL, 300000, 1500, 0};
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	(void)state;
	conf_print(keys, &v, f);
	fclose(f);
	assert_non_null(strstr(text, " 90d\n"));
	assert_non_null(strstr(text, " 5m\n"));
	assert_non_null(strstr(text, " 1500ms\n"));
	assert_non_null(strstr(text, " 0ms\n"));
	free(text);
}

/* A table with a secret, as later sections (tokens, passwords) will have. */
struct secret_cfg {
	struct secret token;
};

static const struct conf_key secret_keys[] = {
        CONF_KEY("api.token", CONF_SECRET, offsetof(struct secret_cfg, token), NULL, 0, 0, NULL,
                 "token"),
        CONF_END,
};

static void test_secrets(void **state)
{
	struct secret_cfg c;
	char err[512], path[] = "/tmp/voca-secret-XXXXXX";
	char yaml[256];
	FILE *f;
	int fd;

	(void)state;
	assert_int_equal(
	        conf_load("s.yaml", "api:\n  token: hunter2\n", secret_keys, &c, err, sizeof(err)),
	        -1);
	assert_non_null(strstr(err, "s.yaml:2: api.token: is a secret: give it as ${env:NAME}"));
	assert_null(strstr(err, "hunter2")); /* the inline value is not echoed */

	unsetenv("VOCA_TEST_TOKEN");
	assert_int_equal(conf_load("s.yaml", "api:\n  token: ${env:VOCA_TEST_TOKEN}\n", secret_keys,
	                           &c, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "environment variable VOCA_TEST_TOKEN is not set"));

	setenv("VOCA_TEST_TOKEN", "s3cr3t", 1);
	assert_int_equal(conf_load("s.yaml", "api:\n  token: ${env:VOCA_TEST_TOKEN}\n", secret_keys,
	                           &c, err, sizeof(err)),
	                 0);
	assert_string_equal(c.token.value, "s3cr3t");
	/* Printing shows the reference, never the value. */
	char *out = NULL;
	size_t outlen = 0;
	FILE *mem = open_memstream(&out, &outlen);

	conf_print(secret_keys, &c, mem);
	fclose(mem);
	assert_non_null(strstr(out, "${env:VOCA_TEST_TOKEN}"));
	assert_null(strstr(out, "s3cr3t"));
	free(out);
	conf_free(secret_keys, &c);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs("from-file\n", f);
	fclose(f);
	snprintf(yaml, sizeof(yaml), "api:\n  token: ${file:%s}\n", path);
	assert_int_equal(conf_load("s.yaml", yaml, secret_keys, &c, err, sizeof(err)), 0);
	assert_string_equal(c.token.value, "from-file"); /* trailing newline dropped */
	conf_free(secret_keys, &c);
	unlink(path);
	assert_int_equal(conf_load("s.yaml", yaml, secret_keys, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot read secret file"));
}

/* Is the key's last part set (or shown commented out) at the start of a line? */
static int documented(const char *text, const char *path)
{
	const char *leaf = strrchr(path, '.') ? strrchr(path, '.') + 1 : path;
	size_t n = strlen(leaf);

	for (const char *p = text; (p = strstr(p, leaf)) != NULL; p += n) {
		const char *q = p;

		while (q > text && (q[-1] == ' ' || q[-1] == '-' || q[-1] == '#'))
			q--;
		if ((q == text || q[-1] == '\n') && p[n] == ':')
			return 1;
	}
	return 0;
}

static void test_example_loads_and_documents_every_key(void **state)
{
	struct config cfg;
	char err[512], line[512];
	FILE *f;
	char *text = NULL;
	size_t len = 0;

	(void)state;
	if (config_load(EXAMPLE, &cfg, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	config_free(&cfg);
	f = fopen(EXAMPLE, "r");
	assert_non_null(f);
	FILE *mem = open_memstream(&text, &len);

	while (fgets(line, sizeof(line), f))
		fputs(line, mem);
	fclose(f);
	fclose(mem);
	for (const struct conf_key *k = config_keys; k->path; k++)
		if (!documented(text, k->path))
			fail_msg("%s is not documented in the example configuration", k->path);
	for (size_t i = 0; rule_kinds[i]; i++)
		for (const struct conf_key *k = rule_kinds[i]->keys; k->path; k++)
			if (!documented(text, k->path))
				fail_msg("rule kind %s: key %s is not documented in the example",
				         rule_kinds[i]->name, k->path);
	for (size_t i = 0; connectors[i]; i++)
		for (const struct conf_key *k = connectors[i]->keys; k->path; k++)
			if (!documented(text, k->path))
				fail_msg(
				        "receiver kind %s: key %s is not documented in the example",
				        connectors[i]->kind, k->path);
	for (const struct conf_key *k = owner_variants()[0].keys; k->path; k++)
		if (!documented(text, k->path))
			fail_msg("owners: key %s is not documented in the example", k->path);
	for (const struct conf_key *k = route_variants()[0].keys; k->path; k++)
		if (!documented(text, k->path))
			fail_msg("routes: key %s is not documented in the example", k->path);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_errors_name_file_line_and_key),
	        cmocka_unit_test(test_unknown_keys),
	        cmocka_unit_test(test_values_and_defaults),
	        cmocka_unit_test(test_rules_state_path),
	        cmocka_unit_test(test_durations_and_sizes),
	        cmocka_unit_test(test_durations_print_as_written),
	        cmocka_unit_test(test_secrets),
	        cmocka_unit_test(test_example_loads_and_documents_every_key),
	};

	return cmocka_run_group_tests_name("conf", tests, NULL, NULL);
}
