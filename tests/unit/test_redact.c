/*
 * test_redact.c: personal data out, everything else untouched. Each row: a
 * text and what must come out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <voca/redact.h>

static const struct {
	const char *in, *out;
} cases[] = {
        /* e-mail addresses */
        {"reach me at jane.doe42@example.com.", "reach me at [email]."},
        {"a+b_c@mail.example.co.uk, thanks", "[email], thanks"},
        {"not an address: @handle or foo@bar", "not an address: @handle or foo@bar"},
        /* phone numbers */
        {"Call me on +1 415 555 0132.", "Call me on [phone]."},
        {"(415) 555-0132 after 5pm", "[phone] after 5pm"},
        {"tel 030 12345678", "tel [phone]"},
        {"+49 30 1234567", "[phone]"},
        /* card numbers: Luhn-valid only */
        {"card 4111 1111 1111 1111 declined", "card [card] declined"},
        {"4111-1111-1111-1111", "[card]"},
        {"5500005555555559", "[card]"},
        {"order 4111 1111 1111 1112 (not Luhn)", "order 4111 1111 1111 1112 (not Luhn)"},
        /* what must stay */
        {"arrived 2026-11-22 after 40 minutes", "arrived 2026-11-22 after 40 minutes"},
        {"$19.99 for 2 units, rated 4.5", "$19.99 for 2 units, rated 4.5"},
        {"SKU-1042 and B01M7UD21X", "SKU-1042 and B01M7UD21X"},
        {"caf\xc3\xa9 \xe2\x82\xac"
         "12 \xf0\x9f\x98\x80",
         "caf\xc3\xa9 \xe2\x82\xac"
         "12 \xf0\x9f\x98\x80"},
        /* control characters: no CR/LF injection, newlines and tabs stay */
        {"line one\r\nX-Injected: yes\x07\tend\n", "line one\nX-Injected: yes\tend\n"},
        {"", ""},
};

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = redact(NULL, cases[i].in, NULL);

		if (strcmp(got, cases[i].out) != 0)
			fail_msg("redact('%s') = '%s', want '%s'", cases[i].in, got, cases[i].out);
		free(got);
	}
}

static void test_counts_and_patterns(void **state)
{
	char *pats[] = {"ORD-[0-9]{6}", "secret[a-z]*"};
	struct conf_list list = {pats, 2};
	struct redact_counts c;
	char err[256];
	struct redactor *r = redactor_new(&list, err, sizeof(err));
	char *got;

	(void)state;
	assert_non_null(r);
	got = redact(r, "ORD-123456 by x@y.io, +1 415 555 0132, 4111111111111111, secretword\r",
	             &c);
	assert_string_equal(got, "[redacted] by [email], [phone], [card], [redacted]");
	assert_int_equal(c.emails, 1);
	assert_int_equal(c.phones, 1);
	assert_int_equal(c.cards, 1);
	assert_int_equal(c.patterns, 2);
	assert_int_equal(c.controls, 1);
	free(got);
	redactor_free(r);

	/* A bad pattern is a clear error. */
	char *bad[] = {"ORD-[0-9"};
	struct conf_list badlist = {bad, 1};

	assert_null(redactor_new(&badlist, err, sizeof(err)));
	assert_non_null(strstr(err, "pattern 'ORD-[0-9':"));
}

static void test_long_text(void **state)
{
	/* A 100 KB review: linear, nothing lost but what is redacted. */
	size_t n = 100 * 1024;
	char *text = malloc(n + 1), *got;

	(void)state;
	for (size_t i = 0; i < n; i++)
		text[i] = "abc xyz. "[i % 9];
	memcpy(text + 5000, " me@example.com ", 16);
	text[n] = '\0';
	got = redact(NULL, text, NULL);
	assert_int_equal(strlen(got), n - strlen("me@example.com") + strlen("[email]"));
	assert_non_null(strstr(got, " [email] "));
	free(got);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_table),
	        cmocka_unit_test(test_counts_and_patterns),
	        cmocka_unit_test(test_long_text),
	};

	return cmocka_run_group_tests_name("redact", tests, NULL, NULL);
}
