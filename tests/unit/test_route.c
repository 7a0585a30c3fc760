/*
 * test_route.c: the routing map. First match wins, `continue` goes on, a
 * receiver named twice gets one delivery (with the first route's owner),
 * a route without matchers matches all, and unknown names are errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include <voca/route.h>

static const char yaml[] =
        "receivers:\n"
        "  - {name: a, kind: console}\n"
        "  - {name: b, kind: console}\n"
        "  - {name: c, kind: console}\n"
        "owners:\n"
        "  - {name: quality}\n"
        "  - {name: billing}\n"
        "routes:\n"
        "  - {matchers: [\"tier == 1\"], owner: quality, receivers: [a, b], continue: true}\n"
        "  - {matchers: [\"category == billing\"], owner: billing, receivers: [b, c]}\n"
        "  - {matchers: [\"category != billing\"], receivers: [c]}\n"
        "  - {receivers: [a]}\n";

struct inc {
	const char *tier, *category;
};

static int field(void *arg, const char *name, char *out, size_t outlen)
{
	const struct inc *i = arg;
	const char *v = strcmp(name, "tier") == 0       ? i->tier
	                : strcmp(name, "category") == 0 ? i->category
	                                                : NULL;

	if (v == NULL)
		return 0;
	snprintf(out, outlen, "%s", v);
	return 1;
}

static void test_walk(void **state)
{
	struct config cfg;
	char err[512];
	struct route_target t[8];
	size_t n;

	(void)state;
	if (config_load_text("r.yaml", yaml, &cfg, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	/* tier 1 billing: route 0 (a, b; continue), route 1 adds c; b keeps quality */
	struct inc i1 = {"1", "billing"};
	n = route_walk(&cfg.routes, field, &i1, t, 8);
	assert_int_equal(n, 3);
	assert_int_equal(t[0].receiver, 0);
	assert_int_equal(t[1].receiver, 1);
	assert_int_equal(t[1].owner, 0);
	assert_int_equal(t[2].receiver, 2);
	assert_int_equal(t[2].owner, 1);
	/* tier 2 shipping: route 2 (first match), stops there */
	struct inc i2 = {"2", "shipping"};
	n = route_walk(&cfg.routes, field, &i2, t, 8);
	assert_int_equal(n, 1);
	assert_int_equal(t[0].receiver, 2);
	assert_int_equal(t[0].owner, -1);
	/* no category at all: != holds for a missing field, so route 2 again */
	struct inc i3 = {"2", NULL};
	n = route_walk(&cfg.routes, field, &i3, t, 8);
	assert_int_equal(n, 1);
	assert_int_equal(t[0].receiver, 2);
	config_free(&cfg);
}

static void test_unknown_names(void **state)
{
	struct config cfg;
	char err[512];

	(void)state;
	assert_int_equal(config_load_text("r.yaml",
	                                  "receivers:\n  - {name: a, kind: console}\n"
	                                  "routes:\n  - {owner: nobody, receivers: [a]}\n",
	                                  &cfg, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "r.yaml:4: routes[0]: owner: no owner is named 'nobody'"));
	assert_int_equal(config_load_text("r.yaml",
	                                  "receivers:\n  - {name: a, kind: console}\n"
	                                  "  - {name: a, kind: console}\n",
	                                  &cfg, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "receivers[1]: the name 'a' is taken"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_walk),
	        cmocka_unit_test(test_unknown_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
