/*
 * test_event.c: the decoder against every kind of bad input the contract
 * names, and the good inputs beside them. Each row: a frame, and what must
 * come out (events decoded, or the reject code and a phrase of the reason).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <voca/event.h>
#include <voca/xalloc.h>

#define GOOD                                                                                       \
	"{\"event_id\":\"e1\",\"ts\":\"2026-03-01T10:00:00Z\",\"category\":\"shipping\","          \
	"\"sentiment\":{\"label\":\"negative\"}"

struct seen {
	int events, rejects;
	enum reject_code code[8];
	char msg[8][240];
	struct event first; /* its pointers are dangling after the callback */
	char first_raw[4096];
	char publisher[32], taxonomy[32];
	int stop_after; /* ask the decoder to stop after this many calls (0: never) */
};

static int collect(void *arg, const struct event *ev, const struct event_error *err,
                   const char *raw, size_t len)
{
	struct seen *s = arg;

	if (ev) {
		if (s->events == 0) {
			s->first = *ev;
			snprintf(s->first_raw, sizeof(s->first_raw), "%.*s", (int)len, raw);
			snprintf(s->publisher, sizeof(s->publisher), "%s",
			         ev->publisher ? ev->publisher : "");
			snprintf(s->taxonomy, sizeof(s->taxonomy), "%s",
			         ev->taxonomy_version ? ev->taxonomy_version : "");
		}
		s->events++;
	} else if (s->rejects < 8) {
		s->code[s->rejects] = err->code;
		snprintf(s->msg[s->rejects], sizeof(s->msg[0]), "%s", err->msg);
		s->rejects++;
	}
	return s->stop_after && s->events + s->rejects >= s->stop_after;
}

static struct seen decode(const char *frame, size_t len)
{
	struct seen s = {0};

	event_decode(frame, len, NULL, collect, &s);
	return s;
}

struct bad_case {
	const char *name;
	const char *frame;
	enum reject_code code;
	const char *phrase;
};

static const struct bad_case bad_cases[] = {
        {"invalid json", "{\"event_id\": nope}", REJECT_INVALID_JSON, "invalid JSON at byte"},
        {"truncated frame", GOOD ",\"text\":\"it bro", REJECT_INVALID_JSON, "truncated"},
        {"truncated after a comma", GOOD ",", REJECT_INVALID_JSON, "truncated"},
        {"json scalar", "42", REJECT_NOT_OBJECT, "holds a number"},
        {"json string", "\"hello\"", REJECT_NOT_OBJECT, "holds a string"},
        {"json null", "null", REJECT_NOT_OBJECT, "holds null"},
        {"empty array", "[]", REJECT_EMPTY_ARRAY, "empty array"},
        {"trailing garbage", GOOD "} {}", REJECT_INVALID_JSON, "extra data"},
        {"event_id wrong type",
         "{\"event_id\":7,\"ts\":\"2026-03-01T10:00:00Z\",\"category\":\"x\","
         "\"sentiment\":{\"label\":\"negative\"}}",
         REJECT_WRONG_TYPE, "'event_id' must be a string, got a number"},
        {"rating wrong type", GOOD ",\"rating\":\"5\"}", REJECT_WRONG_TYPE,
         "'rating' must be an integer, got a string"},
        {"rating fraction", GOOD ",\"rating\":4.5}", REJECT_WRONG_TYPE, "got a fraction"},
        {"needs_review wrong type", GOOD ",\"needs_review\":1}", REJECT_WRONG_TYPE, "boolean"},
        {"sku null", GOOD ",\"sku\":null}", REJECT_WRONG_TYPE, "'sku' must be a string, got null"},
        {"model wrong type", GOOD ",\"model\":\"gpt\"}", REJECT_WRONG_TYPE,
         "'model' must be an object"},
        {"model field wrong type", GOOD ",\"model\":{\"version\":4}}", REJECT_WRONG_TYPE,
         "'model.version'"},
        {"missing event_id",
         "{\"ts\":\"2026-03-01T10:00:00Z\",\"category\":\"x\","
         "\"sentiment\":{\"label\":\"negative\"}}",
         REJECT_MISSING_FIELD, "'event_id'"},
        {"missing ts",
         "{\"event_id\":\"e\",\"category\":\"x\",\"sentiment\":{\"label\":\"mixed\"}}",
         REJECT_MISSING_FIELD, "'ts'"},
        {"missing category",
         "{\"event_id\":\"e\",\"ts\":\"2026-03-01T10:00:00Z\","
         "\"sentiment\":{\"label\":\"mixed\"}}",
         REJECT_MISSING_FIELD, "'category'"},
        {"missing sentiment",
         "{\"event_id\":\"e\",\"ts\":\"2026-03-01T10:00:00Z\",\"category\":\"x\"}",
         REJECT_MISSING_FIELD, "'sentiment'"},
        {"missing sentiment label",
         "{\"event_id\":\"e\",\"ts\":\"2026-03-01T10:00:00Z\","
         "\"category\":\"x\",\"sentiment\":{\"score\":0.1}}",
         REJECT_MISSING_FIELD, "'sentiment.label'"},
        {"empty event_id",
         "{\"event_id\":\"\",\"ts\":\"2026-03-01T10:00:00Z\",\"category\":\"x\","
         "\"sentiment\":{\"label\":\"negative\"}}",
         REJECT_OUT_OF_RANGE, "1 to 200 characters"},
        {"rating out of range", GOOD ",\"rating\":7}", REJECT_OUT_OF_RANGE,
         "'rating' must be an integer from 1 to 5, got 7"},
        {"confidence out of range", GOOD ",\"confidence\":1.5}", REJECT_OUT_OF_RANGE,
         "'confidence'"},
        {"negative revision", GOOD ",\"revision\":-1}", REJECT_OUT_OF_RANGE, "'revision'"},
        {"sentiment score out of range",
         "{\"event_id\":\"e\",\"ts\":\"2026-03-01T10:00:00Z\","
         "\"category\":\"x\",\"sentiment\":{\"label\":\"negative\","
         "\"score\":-2}}",
         REJECT_OUT_OF_RANGE, "'sentiment.score'"},
        {"NaN literal", GOOD ",\"confidence\":NaN}", REJECT_NOT_FINITE, "NaN and Infinity"},
        {"Infinity literal", GOOD ",\"urgency\":Infinity}", REJECT_NOT_FINITE, "NaN and Infinity"},
        {"overflowing number", GOOD ",\"extra\":1e999}", REJECT_NOT_FINITE,
         "'extra' is not a finite number"},
        {"bad enum", GOOD ",\"severity\":\"urgent\"}", REJECT_BAD_ENUM,
         "must be one of low, medium, high, critical; got 'urgent'"},
        {"bad sentiment label",
         "{\"event_id\":\"e\",\"ts\":\"2026-03-01T10:00:00Z\","
         "\"category\":\"x\",\"sentiment\":{\"label\":\"angry\"}}",
         REJECT_BAD_ENUM, "'sentiment.label'"},
        {"date not rfc3339",
         "{\"event_id\":\"e\",\"ts\":\"03/01/2026 10:00\",\"category\":\"x\","
         "\"sentiment\":{\"label\":\"negative\"}}",
         REJECT_BAD_TIME, "not an RFC 3339 date-time: '03/01/2026 10:00'"},
        {"date without zone",
         "{\"event_id\":\"e\",\"ts\":\"2026-03-01T10:00:00\",\"category\":\"x\","
         "\"sentiment\":{\"label\":\"negative\"}}",
         REJECT_BAD_TIME, "RFC 3339"},
        {"impossible date",
         "{\"event_id\":\"e\",\"ts\":\"2026-02-29T10:00:00Z\",\"category\":\"x\","
         "\"sentiment\":{\"label\":\"negative\"}}",
         REJECT_BAD_TIME, "RFC 3339"},
        {"invalid utf8", GOOD ",\"text\":\"caf\xc3\x28\"}", REJECT_INVALID_UTF8,
         "invalid UTF-8 at byte"},
        {"overlong utf8", GOOD ",\"text\":\"\xc0\xaf\"}", REJECT_INVALID_UTF8, "invalid UTF-8"},
        {"utf16 surrogate in utf8", GOOD ",\"text\":\"\xed\xa0\x80\"}", REJECT_INVALID_UTF8,
         "invalid UTF-8"},
        {"lone surrogate escape", GOOD ",\"text\":\"\\udc00\"}", REJECT_INVALID_JSON,
         "invalid JSON"},
        {"duplicate keys", GOOD ",\"category\":\"billing\"}", REJECT_DUPLICATE_KEY,
         "'category' appears twice"},
        {"duplicate unknown keys", GOOD ",\"x_a\":1,\"x_b\":2,\"x_a\":3}", REJECT_DUPLICATE_KEY,
         "'x_a' appears twice"},
        {"a schema key twice among unknown ones",
         GOOD ",\"x_a\":1,\"x_b\":2,\"category\":\"billing\"}", REJECT_DUPLICATE_KEY,
         "'category' appears twice"},
        {"duplicate keys in an unknown object", GOOD ",\"extra\":{\"k\":1,\"k\":2}}",
         REJECT_DUPLICATE_KEY, "'k' appears twice"},
        {"duplicate nested keys", GOOD ",\"model\":{\"name\":\"a\",\"name\":\"b\"}}",
         REJECT_DUPLICATE_KEY, "'name' appears twice"},
        {"array holding a scalar", "[" GOOD "}, 3]", REJECT_NOT_OBJECT, "element 1 is a number"},
};

static void test_bad_inputs(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct seen s = decode(c->frame, strlen(c->frame));
		int want_events = strcmp(c->name, "array holding a scalar") == 0;

		if (s.rejects != 1 || s.code[0] != c->code || strstr(s.msg[0], c->phrase) == NULL ||
		    s.events != want_events)
			fail_msg("case '%s': got %d rejects, code %s, reason '%s', %d events",
			         c->name, s.rejects, reject_code_name(s.code[0]), s.msg[0],
			         s.events);
	}
}

static void test_empty_frame(void **state)
{
	struct seen s = decode("", 0);

	(void)state;
	assert_int_equal(s.rejects, 1);
	assert_int_equal(s.code[0], REJECT_EMPTY_FRAME);
}

static void test_too_large(void **state)
{
	struct decode_limits lim = decode_limits_default;
	struct seen s = {0};
	char frame[300];

	(void)state;
	lim.max_frame_bytes = 200;
	memset(frame, ' ', sizeof(frame));
	memcpy(frame, GOOD "}", strlen(GOOD "}"));
	event_decode(frame, sizeof(frame), &lim, collect, &s);
	assert_int_equal(s.rejects, 1);
	assert_int_equal(s.code[0], REJECT_TOO_LARGE);
	assert_non_null(strstr(s.msg[0], "300 bytes exceeds the 200-byte limit"));
}

static void test_deeply_nested(void **state)
{
	char frame[8192];
	size_t n = 0;

	(void)state;
	/* Over our own limit (32) but under cJSON's: rejected by the tree check. */
	n += (size_t)snprintf(frame, sizeof(frame), "%s,\"x\":", GOOD);
	for (int i = 0; i < 40; i++)
		frame[n++] = '[';
	for (int i = 0; i < 40; i++)
		frame[n++] = ']';
	frame[n++] = '}';
	struct seen s = decode(frame, n);

	assert_int_equal(s.code[0], REJECT_TOO_DEEP);
	/* Over cJSON's limit: the parse fails and the reason still says why. */
	n = 0;
	for (int i = 0; i < 3000; i++)
		frame[n++] = '[';
	s = decode(frame, n);
	assert_int_equal(s.code[0], REJECT_TOO_DEEP);
	assert_non_null(strstr(s.msg[0], "nested deeper"));
}

static void test_too_many_events(void **state)
{
	struct decode_limits lim = decode_limits_default;
	struct seen s = {0};
	const char *frame = "[" GOOD "}," GOOD "}," GOOD "}]";

	(void)state;
	lim.max_array_events = 2;
	event_decode(frame, strlen(frame), &lim, collect, &s);
	assert_int_equal(s.code[0], REJECT_TOO_MANY_EVENTS);
	assert_int_equal(s.events, 0);
}

/* A ts past the clock by more than max_future: one event like it would move
 * the rules' clock past every event after it. The bound is inclusive; an
 * array's other events are kept. */
static void test_future_time(void **state)
{
	struct decode_limits lim = decode_limits_default;
	struct seen s = {0};
	/* GOOD's ts is 2026-03-01T10:00:00Z */
	const int64_t ts = 1772359200000LL;
	const char *one = GOOD "}";
	const char *two = "[" GOOD "},{\"event_id\":\"f\",\"ts\":\"2099-03-01T10:00:00Z\","
	                  "\"category\":\"x\",\"sentiment\":{\"label\":\"negative\"}}]";

	(void)state;
	lim.max_future_ms = 300000;
	lim.now_ms = ts - 300000;
	event_decode(one, strlen(one), &lim, collect, &s);
	assert_int_equal(s.events, 1);
	lim.now_ms = ts - 300001;
	event_decode(one, strlen(one), &lim, collect, &s);
	assert_int_equal(s.rejects, 1);
	assert_int_equal(s.code[0], REJECT_FUTURE_TIME);
	assert_string_equal(s.msg[0], "field 'ts' is 5 minutes ahead of this machine's clock; "
	                              "ingest.max_future allows 5 minutes");
	lim.now_ms = ts;
	event_decode(two, strlen(two), &lim, collect, &s);
	assert_int_equal(s.events, 2);
	assert_int_equal(s.rejects, 2);
	assert_non_null(strstr(s.msg[1], "element 1: field 'ts' is 26663 days ahead"));
	/* now_ms 0: no bound (what the store's replays use). */
	lim.now_ms = 0;
	event_decode(two, strlen(two), &lim, collect, &s);
	assert_int_equal(s.events, 4);
	assert_int_equal(s.rejects, 2);
}

static void test_array_mixing_good_and_bad(void **state)
{
	const char *frame = "[" GOOD "}, {\"event_id\":\"e2\"}, " GOOD ",\"rating\":9}, "
	                    "{\"event_id\":\"e4\",\"ts\":\"2026-03-01T10:00:00+02:00\","
	                    "\"category\":\"billing\",\"sentiment\":{\"label\":\"mixed\"}}]";
	struct seen s = decode(frame, strlen(frame));

	(void)state;
	assert_int_equal(s.events, 2);
	assert_int_equal(s.rejects, 2);
	assert_int_equal(s.code[0], REJECT_MISSING_FIELD);
	assert_non_null(strstr(s.msg[0], "element 1: "));
	assert_int_equal(s.code[1], REJECT_OUT_OF_RANGE);
	assert_non_null(strstr(s.msg[1], "element 2: "));
}

static void test_full_event(void **state)
{
	const char *frame =
	        "  {\"event_id\":\"rev-42\",\"revision\":3,\"ts\":\"2026-03-01T10:00:00.250+01:00\","
	        "\"source\":\"shopify\",\"channel\":\"review\",\"sku\":\"SKU-1\",\"product\":\"Kettle\","
	        "\"category\":\"product_defect\",\"subcategory\":\"leaking\","
	        "\"sentiment\":{\"label\":\"negative\",\"score\":-0.7},\"severity\":\"high\","
	        "\"urgency\":0.8,\"confidence\":0.91,\"needs_review\":false,\"rating\":1.0,"
	        "\"locale\":\"en-GB\",\"region\":\"EU\",\"customer_tier\":\"vip\",\"text\":\"It leaks\","
	        "\"summary\":\"Leaks\",\"suggested_owner\":\"hw\",\"suggested_action\":\"recall\","
	        "\"url\":\"https://x\",\"model\":{\"name\":\"m\",\"version\":\"1\",\"prompt_version\":"
	        "\"p\",\"taxonomy_version\":\"t\",\"extra\":1},\"publisher\":\"job-1\",\"seq\":17,"
	        "\"unknown_field\":{\"kept\":[1,2,3]}}\n";
	struct seen s = decode(frame, strlen(frame));
	const struct event *e = &s.first;

	(void)state;
	assert_int_equal(s.rejects, 0);
	assert_int_equal(s.events, 1);
	assert_int_equal(e->revision, 3);
	/* 10:00:00.250+01:00 is 09:00:00.250Z */
	assert_int_equal(e->ts_ms, 1772355600250LL);
	assert_int_equal(e->channel, CHANNEL_REVIEW);
	assert_int_equal(e->sentiment, SENTIMENT_NEGATIVE);
	assert_true(fabs(e->sentiment_score + 0.7) < 1e-9);
	assert_int_equal(e->severity, SEVERITY_HIGH);
	assert_int_equal(e->rating, 1);
	assert_int_equal(e->seq, 17);
	assert_string_equal(s.publisher, "job-1");
	assert_string_equal(s.taxonomy, "t");
	/* The raw JSON is the frame without surrounding white space, unknown fields kept. */
	assert_non_null(strstr(s.first_raw, "\"unknown_field\":{\"kept\":[1,2,3]}"));
	assert_int_equal(s.first_raw[0], '{');
	assert_int_equal(s.first_raw[strlen(s.first_raw) - 1], '}');
}

/* A copy taken in the callback holds every string and the raw text after it. */
struct copied {
	struct event ev;
	char buf[4096];
	size_t need, used;
};

static int copy_out(void *arg, const struct event *ev, const struct event_error *err,
                    const char *raw, size_t len)
{
	struct copied *c = arg;

	(void)err;
	(void)raw;
	(void)len;
	if (ev) {
		c->need = event_copy_size(ev, 1);
		assert_true(c->need <= sizeof(c->buf));
		c->used = event_copy(ev, &c->ev, c->buf, 1);
	}
	return 0;
}

static void test_copy_outlives_the_callback(void **state)
{
	const char *frame =
	        "{\"event_id\":\"rev-42\",\"ts\":\"2026-03-01T10:00:00Z\",\"source\":\"shopify\","
	        "\"sku\":\"SKU-1\",\"product\":\"Kettle\",\"category\":\"product_defect\","
	        "\"subcategory\":\"leaking\",\"sentiment\":{\"label\":\"negative\"},"
	        "\"locale\":\"en-GB\",\"region\":\"EU\",\"customer_tier\":\"vip\","
	        "\"text\":\"It leaks\",\"summary\":\"Leaks\",\"suggested_owner\":\"hw\","
	        "\"suggested_action\":\"recall\",\"url\":\"https://x\",\"model\":{\"name\":\"m\","
	        "\"version\":\"1\",\"prompt_version\":\"p\",\"taxonomy_version\":\"t\"},"
	        "\"publisher\":\"job-1\"}";
	struct copied c = {0};
	const struct event *e = &c.ev;

	(void)state;
	assert_int_equal(event_decode(frame, strlen(frame), NULL, copy_out, &c), 1);
	assert_int_equal(c.used, c.need);

	const char *const got[] = {e->event_id,
	                           e->source,
	                           e->sku,
	                           e->product,
	                           e->category,
	                           e->subcategory,
	                           e->locale,
	                           e->region,
	                           e->customer_tier,
	                           e->text,
	                           e->summary,
	                           e->suggested_owner,
	                           e->suggested_action,
	                           e->url,
	                           e->model_name,
	                           e->model_version,
	                           e->prompt_version,
	                           e->taxonomy_version,
	                           e->publisher,
	                           e->raw};

	/* Every string lives in the copy's buffer, none in the decoder's arena. */
	for (size_t i = 0; i < sizeof(got) / sizeof(got[0]); i++) {
		assert_non_null(got[i]);
		assert_true(got[i] >= c.buf && got[i] < c.buf + c.used);
	}
	assert_string_equal(e->event_id, "rev-42");
	assert_string_equal(e->suggested_action, "recall");
	assert_string_equal(e->taxonomy_version, "t");
	assert_string_equal(e->publisher, "job-1");
	assert_string_equal(e->raw, frame);
}

static void test_defaults(void **state)
{
	struct seen s = decode(GOOD "}", strlen(GOOD "}"));

	(void)state;
	assert_int_equal(s.events, 1);
	assert_int_equal(s.first.revision, 0);
	assert_int_equal(s.first.severity, SEVERITY_LOW);
	assert_int_equal(s.first.seq, -1);
	assert_true(isnan(s.first.confidence));
	assert_int_equal(s.publisher[0], '\0');
}

static void test_text_length_counts_characters(void **state)
{
	/* 65536 two-byte characters: 131072 bytes, still within maxLength. */
	size_t n = 65536, len = strlen(GOOD) + 12 + 2 * n + 3;
	char *frame = xmalloc(len + 1), *p = frame;
	struct seen s;

	(void)state;
	p += snprintf(p, len, "%s,\"text\":\"", GOOD);
	for (size_t i = 0; i < n; i++) {
		*p++ = (char)0xc3;
		*p++ = (char)0xa9;
	}
	p += snprintf(p, 3, "\"}");
	s = decode(frame, (size_t)(p - frame));
	assert_int_equal(s.events, 1);
	/* One more character is too long. */
	memmove(frame + strlen(GOOD) + 9 + 2, frame + strlen(GOOD) + 9,
	        (size_t)(p - frame) - strlen(GOOD) - 9);
	frame[strlen(GOOD) + 9] = (char)0xc3;
	frame[strlen(GOOD) + 10] = (char)0xa9;
	s = decode(frame, (size_t)(p - frame) + 2);
	assert_int_equal(s.code[0], REJECT_OUT_OF_RANGE);
	free(frame);
}

static void test_stop_requested(void **state)
{
	const char *frame = "[" GOOD "}, 1, " GOOD "}]";
	struct seen s = {.stop_after = 1};

	(void)state;
	assert_int_equal(event_decode(frame, strlen(frame), NULL, collect, &s), -1);
	assert_int_equal(s.events + s.rejects, 1);
}

static void test_rfc3339(void **state)
{
	int64_t ms;
	char out[32];

	(void)state;
	assert_int_equal(rfc3339_parse("1970-01-01T00:00:00Z", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(rfc3339_parse("2024-02-29T23:59:59.999z", &ms), 0);
	rfc3339_format(ms, out, sizeof(out));
	assert_string_equal(out, "2024-02-29T23:59:59.999Z");
	assert_int_equal(rfc3339_parse("2026-11-22t15:04:05.123456789-05:30", &ms), 0);
	rfc3339_format(ms, out, sizeof(out));
	assert_string_equal(out, "2026-11-22T20:34:05.123Z");
	assert_int_equal(rfc3339_parse("1969-12-31T23:59:59.500Z", &ms), 0);
	assert_int_equal(ms, -500);
	rfc3339_format(ms, out, sizeof(out));
	assert_string_equal(out, "1969-12-31T23:59:59.500Z");
	assert_int_equal(rfc3339_parse("2016-12-31T23:59:60Z", &ms), 0); /* leap second */
	static const char *const bad[] = {
	        "2026-13-01T00:00:00Z",
	        "2026-00-01T00:00:00Z",
	        "2026-04-31T00:00:00Z",
	        "2026-01-01T24:00:00Z",
	        "2026-01-01T00:60:00Z",
	        "2026-01-01 00:00:00Z",
	        "2026-01-01T00:00:00",
	        "2026-01-01T00:00:00.Z",
	        "2026-01-01T00:00:00+0100",
	        "2026-01-01T00:00:00+24:00",
	        "2026-01-01T00:00:00Zjunk",
	        "20260101T000000Z",
	        "",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (rfc3339_parse(bad[i], &ms) == 0)
			fail_msg("accepted '%s'", bad[i]);
}

static void test_utf8(void **state)
{
	(void)state;
	assert_true(utf8_valid("plain ascii long enough for the word loop", 41));
	assert_true(utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
	assert_false(utf8_valid("\xc3", 1));             /* cut short */
	assert_false(utf8_valid("\xe2\x82", 2));         /* cut short */
	assert_false(utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
	assert_false(utf8_valid("\xe0\x80\xaf", 3));     /* overlong */
	assert_false(utf8_valid("\xff", 1));
	assert_false(utf8_valid("abcdefgh\x80", 9));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_bad_inputs),
	        cmocka_unit_test(test_empty_frame),
	        cmocka_unit_test(test_too_large),
	        cmocka_unit_test(test_deeply_nested),
	        cmocka_unit_test(test_too_many_events),
	        cmocka_unit_test(test_future_time),
	        cmocka_unit_test(test_array_mixing_good_and_bad),
	        cmocka_unit_test(test_full_event),
	        cmocka_unit_test(test_copy_outlives_the_callback),
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_text_length_counts_characters),
	        cmocka_unit_test(test_stop_requested),
	        cmocka_unit_test(test_rfc3339),
	        cmocka_unit_test(test_utf8),
	};

	xalloc_install_cjson();
	return cmocka_run_group_tests_name("event", tests, NULL, NULL);
}
