/*
 * event.c: decode and validate scored-feedback frames (see event.h).
 *
 * Order of checks, cheapest and most fundamental first: frame size, UTF-8,
 * JSON syntax, then per event the tree (depth, duplicate keys, finite
 * numbers) and the schema's fields. The first problem found is the reason
 * given; one reason a person can act on beats a list.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include <voca/event.h>
#include <voca/xalloc.h>

const struct decode_limits decode_limits_default = {
        .max_frame_bytes = 1024 * 1024,
        .max_depth = 32,
        .max_array_events = 10000,
};

const struct decode_limits decode_limits_stored = {
        .max_frame_bytes = DECODE_MAX_FRAME_BYTES,
        .max_depth = DECODE_MAX_DEPTH,
        .max_array_events = DECODE_MAX_ARRAY_EVENTS,
};

static const char *const channel_names[] = {
        [CHANNEL_NONE] = "",         [CHANNEL_REVIEW] = "review", [CHANNEL_SUPPORT] = "support",
        [CHANNEL_SURVEY] = "survey", [CHANNEL_CHAT] = "chat",     [CHANNEL_SOCIAL] = "social",
        [CHANNEL_RETURN] = "return", [CHANNEL_OTHER] = "other",
};
static const char *const sentiment_names[] = {"positive", "neutral", "negative", "mixed"};
static const char *const severity_names[] = {"low", "medium", "high", "critical"};
static const char *const reject_names[] = {
        [REJECT_NONE] = "none",
        [REJECT_EMPTY_FRAME] = "empty_frame",
        [REJECT_TOO_LARGE] = "too_large",
        [REJECT_INVALID_UTF8] = "invalid_utf8",
        [REJECT_INVALID_JSON] = "invalid_json",
        [REJECT_TOO_DEEP] = "too_deep",
        [REJECT_DUPLICATE_KEY] = "duplicate_key",
        [REJECT_NOT_OBJECT] = "not_object",
        [REJECT_EMPTY_ARRAY] = "empty_array",
        [REJECT_MISSING_FIELD] = "missing_field",
        [REJECT_WRONG_TYPE] = "wrong_type",
        [REJECT_OUT_OF_RANGE] = "out_of_range",
        [REJECT_BAD_ENUM] = "bad_enum",
        [REJECT_BAD_TIME] = "bad_time",
        [REJECT_NOT_FINITE] = "not_finite",
        [REJECT_BAD_FRAMES] = "bad_frames",
        [REJECT_TOO_MANY_EVENTS] = "too_many_events",
        [REJECT_FUTURE_TIME] = "future_time",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *channel_name(enum channel c)
{
	return (unsigned)c < NELEM(channel_names) ? channel_names[c] : "?";
}

const char *sentiment_name(enum sentiment s)
{
	return (unsigned)s < NELEM(sentiment_names) ? sentiment_names[s] : "?";
}

const char *severity_name(enum severity s)
{
	return (unsigned)s < NELEM(severity_names) ? severity_names[s] : "?";
}

const char *reject_code_name(enum reject_code code)
{
	return (unsigned)code < NELEM(reject_names) ? reject_names[code] : "unknown";
}

/* ---- UTF-8 ---- */

/* Returns the offset of the first ill-formed byte, or n if all is well. */
static size_t utf8_check(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = p[i];

		if (c < 0x80) {
			/* ASCII fast path: eight bytes at a time. */
			while (i + 8 <= n) {
				uint64_t w;

				memcpy(&w, p + i, 8);
				if (w & 0x8080808080808080ULL)
					break;
				i += 8;
			}
			if (i < n && p[i] < 0x80)
				i++;
			continue;
		}
		size_t need;
		unsigned lo = 0x80, hi = 0xBF;

		if (c >= 0xC2 && c <= 0xDF) {
			need = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2;
			if (c == 0xE0)
				lo = 0xA0; /* overlong */
			else if (c == 0xED)
				hi = 0x9F; /* surrogates */
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3;
			if (c == 0xF0)
				lo = 0x90; /* overlong */
			else if (c == 0xF4)
				hi = 0x8F; /* above U+10FFFF */
		} else {
			return i;
		}
		if (i + need >= n) /* sequence cut short by the end */
			return i;
		if (p[i + 1] < lo || p[i + 1] > hi)
			return i;
		for (size_t k = 2; k <= need; k++)
			if ((p[i + k] & 0xC0) != 0x80)
				return i;
		i += need + 1;
	}
	return n;
}

int utf8_valid(const char *p, size_t n)
{
	return utf8_check((const unsigned char *)p, n) == n;
}

/* Code points in a valid UTF-8 string. */
static size_t utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* ---- RFC 3339 ---- */

static int digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
	z += 719468;
	const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	const unsigned doe = (unsigned)(z - era * 146097);
	const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	const unsigned mp = (5 * doy + 2) / 153;

	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int)((int64_t)yoe + era * 400 + (*m <= 2));
}

static int days_in_month(int y, int m)
{
	static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return dm[m - 1];
}

int rfc3339_parse(const char *s, int64_t *ms_out)
{
	int y, mo, d, h, mi, sec, ms = 0, off = 0;
	const char *p;

	if (strlen(s) < 20)
		return -1;
	if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
	    digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) ||
	    s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60)
		return -1;
	p = s + 19;
	if (*p == '.') {
		int n = 0;

		for (p++; *p >= '0' && *p <= '9'; p++, n++)
			if (n < 3)
				ms = ms * 10 + (*p - '0');
		if (n == 0)
			return -1;
		for (; n < 3; n++)
			ms *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;

		if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 ||
		    om > 59)
			return -1;
		off = (oh * 60 + om) * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return -1;
	}
	if (*p != '\0')
		return -1;
	int64_t t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
	            sec - off * 60;
	*ms_out = t * 1000 + ms;
	return 0;
}

void rfc3339_format(int64_t ms, char *out, size_t outlen)
{
	int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
	int64_t rem = ms - secs * 1000;
	int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
	int64_t sod = secs - days * 86400;
	int y;
	unsigned m, d;

	civil_from_days(days, &y, &m, &d);
	snprintf(out, outlen, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", y, m, d, (int)(sod / 3600),
	         (int)(sod / 60 % 60), (int)(sod % 60), (int)rem);
}

/* ---- tree checks: depth, duplicate keys, finite numbers ---- */

static void reject(struct event_error *err, enum reject_code code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void reject(struct event_error *err, enum reject_code code, const char *fmt, ...)
{
	va_list ap;

	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

static uint32_t name_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns the first key that appears twice in obj, or NULL. */
static const char *duplicate_key(const cJSON *obj)
{
	const cJSON *c;
	size_t n = 0;

	for (c = obj->child; c; c = c->next)
		n++;
	if (n < 2)
		return NULL;
	if (n <= 6) {
		/* sentiment and model: a few names, compared pairwise. */
		for (c = obj->child; c; c = c->next)
			for (const cJSON *d = c->next; d; d = d->next)
				if (strcmp(c->string, d->string) == 0)
					return d->string;
		return NULL;
	}
	if (n <= 128) {
		/* Open addressing on the stack, at most half full: no allocation. */
		const char *slot[256];
		uint32_t mask = 15;

		while (mask + 1 < 2 * n)
			mask = mask * 2 + 1;
		memset(slot, 0, (mask + 1) * sizeof(slot[0]));
		for (c = obj->child; c; c = c->next) {
			uint32_t i = name_hash(c->string) & mask;

			while (slot[i]) {
				if (strcmp(slot[i], c->string) == 0)
					return c->string;
				i = (i + 1) & mask;
			}
			slot[i] = c->string;
		}
		return NULL;
	}
	const char **names = xmalloc(n * sizeof(*names));
	const char *dup = NULL;
	size_t i = 0;

	for (c = obj->child; c; c = c->next)
		names[i++] = c->string;
	qsort(names, n, sizeof(*names), cmp_names);
	for (i = 1; i < n && !dup; i++)
		if (strcmp(names[i - 1], names[i]) == 0)
			dup = names[i];
	free(names);
	return dup;
}

/* Rejects obj if a key appears twice in it. Returns 0 or -1 (err set). */
static int no_duplicate(const cJSON *obj, struct event_error *err)
{
	const char *dup = duplicate_key(obj);

	if (dup == NULL)
		return 0;
	reject(err, REJECT_DUPLICATE_KEY, "key '%.60s' appears twice in one object", dup);
	return -1;
}

static int check_members(const cJSON *item, int depth, int max_depth, struct event_error *err);

static int check_tree(const cJSON *item, int depth, int max_depth, struct event_error *err)
{
	if (cJSON_IsNumber(item) && !isfinite(item->valuedouble)) {
		reject(err, REJECT_NOT_FINITE, "field '%s' is not a finite number",
		       item->string ? item->string : "?");
		return -1;
	}
	if (!cJSON_IsObject(item) && !cJSON_IsArray(item))
		return 0;
	if (depth > max_depth) {
		reject(err, REJECT_TOO_DEEP, "JSON nested deeper than %d levels", max_depth);
		return -1;
	}
	if (cJSON_IsObject(item) && no_duplicate(item, err) < 0)
		return -1;
	return check_members(item, depth, max_depth, err);
}

/* The tree checks of each of item's members. */
static int check_members(const cJSON *item, int depth, int max_depth, struct event_error *err)
{
	for (const cJSON *c = item->child; c; c = c->next)
		if (check_tree(c, depth + 1, max_depth, err) < 0)
			return -1;
	return 0;
}

/* ---- schema fields ---- */

enum field_kind {
	F_STR,
	F_ID,
	F_TEXT,
	F_TS,
	F_NONNEG_INT,
	F_CHANNEL,
	F_SENTIMENT,
	F_SEVERITY,
	F_UNIT,
	F_BOOL,
	F_RATING,
	F_MODEL,
};

struct field {
	const char *name;
	enum field_kind kind;
	size_t offset; /* into struct event */
	size_t len;    /* of name */
};

#define FLD(n, k, m)                                                                               \
	{                                                                                          \
		n, k, offsetof(struct event, m), sizeof(n) - 1                                     \
	}

/* Sorted by name: fields with the same first byte are adjacent (see struct field_index). */
static const struct field event_fields[] = {
        FLD("category", F_STR, category),
        FLD("channel", F_CHANNEL, channel),
        FLD("confidence", F_UNIT, confidence),
        FLD("customer_tier", F_STR, customer_tier),
        FLD("event_id", F_ID, event_id),
        FLD("locale", F_STR, locale),
        FLD("model", F_MODEL, model_name),
        FLD("needs_review", F_BOOL, needs_review),
        FLD("product", F_STR, product),
        FLD("publisher", F_STR, publisher),
        FLD("rating", F_RATING, rating),
        FLD("region", F_STR, region),
        FLD("revision", F_NONNEG_INT, revision),
        FLD("sentiment", F_SENTIMENT, sentiment),
        FLD("seq", F_NONNEG_INT, seq),
        FLD("severity", F_SEVERITY, severity),
        FLD("sku", F_STR, sku),
        FLD("source", F_STR, source),
        FLD("subcategory", F_STR, subcategory),
        FLD("suggested_action", F_STR, suggested_action),
        FLD("suggested_owner", F_STR, suggested_owner),
        FLD("summary", F_STR, summary),
        FLD("text", F_TEXT, text),
        FLD("ts", F_TS, ts_ms),
        FLD("url", F_STR, url),
        FLD("urgency", F_UNIT, urgency),
};

static const struct field model_fields[] = {
        FLD("name", F_STR, model_name),
        FLD("prompt_version", F_STR, prompt_version),
        FLD("taxonomy_version", F_STR, taxonomy_version),
        FLD("version", F_STR, model_version),
};

/*
 * Where each first byte's fields start and end in a sorted table. A lookup
 * is then a length check and one memcmp, not five strcmp calls: this runs
 * for every key of every event.
 */
struct field_index {
	unsigned char start[256], end[256];
};

/* ---- copies ---- */

#define STR_AT(ev, off) (*(const char **)((char *)(ev) + (off)))

/*
 * The offsets of struct event's string fields, from the decoder's own tables
 * (so a field added there is copied too); built with the field indexes.
 */
#define MAX_STRINGS 32
static size_t string_off[MAX_STRINGS];
static size_t nstrings;

static void index_all_fields(void);
static pthread_once_t indexes_once = PTHREAD_ONCE_INIT;

static void index_strings(void)
{
	for (size_t i = 0; i < NELEM(event_fields); i++)
		if (event_fields[i].kind == F_STR || event_fields[i].kind == F_ID ||
		    event_fields[i].kind == F_TEXT)
			string_off[nstrings++] = event_fields[i].offset;
	for (size_t i = 0; i < NELEM(model_fields); i++)
		string_off[nstrings++] = model_fields[i].offset;
}

_Static_assert(NELEM(event_fields) + NELEM(model_fields) <= MAX_STRINGS, "string_off holds them");

size_t event_copy_plan(const struct event *ev, int with_raw, struct event_plan *plan)
{
	size_t used = (with_raw ? ev->raw_len : 0) + 1;

	pthread_once(&indexes_once, index_all_fields);
	for (size_t i = 0; i < nstrings; i++) {
		const char *s = STR_AT(ev, string_off[i]);
		size_t n = s ? strlen(s) + 1 : 0;

		plan->len[i] = n;
		used += n;
	}
	plan->size = used;
	return used;
}

size_t event_copy_planned(const struct event *ev, struct event *out, char *buf, int with_raw,
                          const struct event_plan *plan)
{
	size_t used = 0, raw_len = with_raw ? ev->raw_len : 0;

	*out = *ev;
	for (size_t i = 0; i < nstrings; i++) {
		size_t n = plan->len[i];

		if (n) {
			memcpy(buf + used, STR_AT(ev, string_off[i]), n);
			STR_AT(out, string_off[i]) = buf + used;
			used += n;
		}
	}
	memcpy(buf + used, ev->raw, raw_len);
	buf[used + raw_len] = '\0';
	out->raw = buf + used;
	out->raw_len = raw_len;
	return used + raw_len + 1;
}

size_t event_copy_size(const struct event *ev, int with_raw)
{
	struct event_plan plan;

	return event_copy_plan(ev, with_raw, &plan);
}

size_t event_copy(const struct event *ev, struct event *out, char *buf, int with_raw)
{
	struct event_plan plan;

	event_copy_plan(ev, with_raw, &plan);
	return event_copy_planned(ev, out, buf, with_raw, &plan);
}

static const struct field *lookup(const struct field *fields, const struct field_index *ix,
                                  const char *name)
{
	size_t len = strlen(name);

	for (size_t i = ix->start[(unsigned char)name[0]]; i < ix->end[(unsigned char)name[0]]; i++)
		if (fields[i].len == len && memcmp(fields[i].name, name, len) == 0)
			return &fields[i];
	return NULL;
}

static struct field_index event_index, model_index;

static void index_fields(const struct field *fields, size_t n, struct field_index *ix)
{
	for (size_t i = n; i-- > 0;) {
		unsigned char c = (unsigned char)fields[i].name[0];

		if (ix->end[c] == 0)
			ix->end[c] = (unsigned char)(i + 1);
		ix->start[c] = (unsigned char)i;
	}
}

/* Built once, before any thread's first decode reads them. */
static void index_all_fields(void)
{
	index_fields(event_fields, NELEM(event_fields), &event_index);
	index_fields(model_fields, NELEM(model_fields), &model_index);
	index_strings();
}

static const char *type_name(const cJSON *v)
{
	if (cJSON_IsString(v))
		return "a string";
	if (cJSON_IsNumber(v))
		return "a number";
	if (cJSON_IsBool(v))
		return "a boolean";
	if (cJSON_IsNull(v))
		return "null";
	if (cJSON_IsArray(v))
		return "an array";
	return "an object";
}

/* Copies a value into a short printable quote for an error message. */
static const char *quote(const char *s, char *out, size_t outlen)
{
	size_t i = 0;

	for (; *s && i + 4 < outlen; s++)
		out[i++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	if (*s) {
		out[i++] = '.';
		out[i++] = '.';
		out[i++] = '.';
	}
	out[i] = '\0';
	return out;
}

static int enum_index(const char *s, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (names[i][0] && strcmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

static int want_string(const char *path, const cJSON *v, struct event_error *err)
{
	if (cJSON_IsString(v))
		return 0;
	reject(err, REJECT_WRONG_TYPE, "field '%s' must be a string, got %s", path, type_name(v));
	return -1;
}

static int want_enum(const char *path, const cJSON *v, const char *const *names, size_t n,
                     const char *list, int *out, struct event_error *err)
{
	char q[48];
	int i;

	if (want_string(path, v, err) < 0)
		return -1;
	i = enum_index(v->valuestring, names, n);
	if (i < 0) {
		reject(err, REJECT_BAD_ENUM, "field '%s' must be one of %s; got '%s'", path, list,
		       quote(v->valuestring, q, sizeof(q)));
		return -1;
	}
	*out = i;
	return 0;
}

static int want_number(const char *path, const cJSON *v, double lo, double hi, int integer,
                       double *out, struct event_error *err)
{
	const char *what = integer ? "an integer" : "a number";

	if (!cJSON_IsNumber(v) || (integer && (v->valuedouble != trunc(v->valuedouble)))) {
		reject(err, REJECT_WRONG_TYPE, "field '%s' must be %s, got %s", path, what,
		       cJSON_IsNumber(v) ? "a fraction" : type_name(v));
		return -1;
	}
	if (v->valuedouble < lo || v->valuedouble > hi) {
		if (hi >= 9e15)
			reject(err, REJECT_OUT_OF_RANGE, "field '%s' must be %s >= %g, got %g",
			       path, what, lo, v->valuedouble);
		else
			reject(err, REJECT_OUT_OF_RANGE,
			       "field '%s' must be %s from %g to %g, got %g", path, what, lo, hi,
			       v->valuedouble);
		return -1;
	}
	*out = v->valuedouble;
	return 0;
}

static int decode_model(const cJSON *obj, struct event *ev, struct event_error *err)
{
	char path[64];

	if (!cJSON_IsObject(obj)) {
		reject(err, REJECT_WRONG_TYPE, "field 'model' must be an object, got %s",
		       type_name(obj));
		return -1;
	}
	for (const cJSON *c = obj->child; c; c = c->next) {
		const struct field *f = lookup(model_fields, &model_index, c->string);

		if (f == NULL)
			continue;         /* unknown: kept, ignored */
		if (!cJSON_IsString(c)) { /* the path is built for the message only */
			snprintf(path, sizeof(path), "model.%s", f->name);
			return want_string(path, c, err);
		}
		*(const char **)((char *)ev + f->offset) = c->valuestring;
	}
	return 0;
}

static int decode_sentiment(const cJSON *obj, struct event *ev, struct event_error *err)
{
	const cJSON *label = NULL;
	int i;

	if (!cJSON_IsObject(obj)) {
		reject(err, REJECT_WRONG_TYPE, "field 'sentiment' must be an object, got %s",
		       type_name(obj));
		return -1;
	}
	for (const cJSON *c = obj->child; c; c = c->next) {
		if (strcmp(c->string, "label") == 0) {
			label = c;
		} else if (strcmp(c->string, "score") == 0) {
			if (want_number("sentiment.score", c, -1, 1, 0, &ev->sentiment_score, err) <
			    0)
				return -1;
		}
	}
	if (label == NULL) {
		reject(err, REJECT_MISSING_FIELD, "missing required field 'sentiment.label'");
		return -1;
	}
	if (want_enum("sentiment.label", label, sentiment_names, NELEM(sentiment_names),
	              "positive, neutral, negative, mixed", &i, err) < 0)
		return -1;
	ev->sentiment = (enum sentiment)i;
	return 0;
}

static int decode_field(const struct field *f, const cJSON *v, struct event *ev,
                        struct event_error *err)
{
	void *dst = (char *)ev + f->offset;
	char q[48];
	double d;
	int i;

	switch (f->kind) {
	case F_STR:
		if (want_string(f->name, v, err) < 0)
			return -1;
		*(const char **)dst = v->valuestring;
		return 0;
	case F_ID:
		if (want_string(f->name, v, err) < 0)
			return -1;
		if (v->valuestring[0] == '\0' || utf8_chars(v->valuestring) > 200) {
			reject(err, REJECT_OUT_OF_RANGE,
			       "field 'event_id' must be 1 to 200 characters long");
			return -1;
		}
		*(const char **)dst = v->valuestring;
		return 0;
	case F_TEXT:
		if (want_string(f->name, v, err) < 0)
			return -1;
		/* Characters never outnumber bytes: count only when it can matter. */
		if (strlen(v->valuestring) > 65536 && utf8_chars(v->valuestring) > 65536) {
			reject(err, REJECT_OUT_OF_RANGE,
			       "field 'text' is longer than 65536 characters");
			return -1;
		}
		*(const char **)dst = v->valuestring;
		return 0;
	case F_TS:
		if (want_string(f->name, v, err) < 0)
			return -1;
		if (rfc3339_parse(v->valuestring, dst) < 0) {
			reject(err, REJECT_BAD_TIME,
			       "field 'ts' is not an RFC 3339 date-time: '%s'",
			       quote(v->valuestring, q, sizeof(q)));
			return -1;
		}
		return 0;
	case F_NONNEG_INT:
		if (want_number(f->name, v, 0, 9007199254740991.0, 1, &d, err) < 0)
			return -1;
		*(int64_t *)dst = (int64_t)d;
		return 0;
	case F_RATING:
		if (want_number(f->name, v, 1, 5, 1, &d, err) < 0)
			return -1;
		*(int *)dst = (int)d;
		return 0;
	case F_UNIT: return want_number(f->name, v, 0, 1, 0, dst, err);
	case F_BOOL:
		if (!cJSON_IsBool(v)) {
			reject(err, REJECT_WRONG_TYPE, "field '%s' must be a boolean, got %s",
			       f->name, type_name(v));
			return -1;
		}
		*(int *)dst = cJSON_IsTrue(v);
		return 0;
	case F_CHANNEL:
		if (want_enum(f->name, v, channel_names, NELEM(channel_names),
		              "review, support, survey, chat, social, return, other", &i, err) < 0)
			return -1;
		*(enum channel *)dst = (enum channel)i;
		return 0;
	case F_SEVERITY:
		if (want_enum(f->name, v, severity_names, NELEM(severity_names),
		              "low, medium, high, critical", &i, err) < 0)
			return -1;
		*(enum severity *)dst = (enum severity)i;
		return 0;
	case F_SENTIMENT: return decode_sentiment(v, ev, err);
	case F_MODEL: return decode_model(v, ev, err);
	}
	return 0;
}

/*
 * The tree checks of an event object, with each member's schema field looked
 * up once (into fields, in member order; NULL: unknown): a schema field seen
 * twice is a duplicate by its bit, and only unknown members are hashed.
 * Returns the number of members, or -1 (err set).
 */
static int check_event(const cJSON *obj, int depth, int max_depth, const struct field **fields,
                       size_t max, struct event_error *err)
{
	_Static_assert(NELEM(event_fields) <= 32, "a bit per schema field");
	uint32_t seen = 0;
	size_t n = 0, unknown = 0;

	if (depth > max_depth) {
		reject(err, REJECT_TOO_DEEP, "JSON nested deeper than %d levels", max_depth);
		return -1;
	}
	for (const cJSON *c = obj->child; c; c = c->next, n++) {
		const struct field *f = lookup(event_fields, &event_index, c->string);

		if (n < max)
			fields[n] = f;
		if (f) {
			uint32_t bit = 1u << (f - event_fields);

			if (seen & bit) {
				reject(err, REJECT_DUPLICATE_KEY,
				       "key '%.60s' appears twice in one object", c->string);
				return -1;
			}
			seen |= bit;
		} else {
			unknown++;
		}
	}
	/* Many members, or unknown ones that may repeat each other: the general
	 * check (a schema name is never an unknown one). */
	if ((n > max || unknown > 1) && no_duplicate(obj, err) < 0)
		return -1;
	return check_members(obj, depth, max_depth, err) < 0 ? -1 : (int)n;
}

/*
 * Fills ev from an object that passed the tree checks, its members' fields
 * from check_event (n of them; when more, looked up here). Returns 0 or -1
 * (err set).
 */
static int decode_object(const cJSON *obj, const struct field *const *fields, size_t n,
                         struct event *ev, struct event_error *err)
{
	int have_id = 0, have_ts = 0, have_cat = 0, have_sent = 0;
	size_t i = 0;

	memset(ev, 0, sizeof(*ev));
	ev->sentiment_score = NAN;
	ev->urgency = NAN;
	ev->confidence = NAN;
	ev->seq = -1;
	for (const cJSON *c = obj->child; c; c = c->next, i++) {
		const struct field *f =
		        i < n ? fields[i] : lookup(event_fields, &event_index, c->string);

		if (f == NULL)
			continue; /* unknown fields are kept in raw and ignored */
		if (decode_field(f, c, ev, err) < 0)
			return -1;
		have_id |= f->kind == F_ID;
		have_ts |= f->kind == F_TS;
		have_cat |= f->offset == offsetof(struct event, category);
		have_sent |= f->kind == F_SENTIMENT;
	}
	if (!have_id || !have_ts || !have_cat || !have_sent) {
		reject(err, REJECT_MISSING_FIELD, "missing required field '%s'",
		       !have_id    ? "event_id"
		       : !have_ts  ? "ts"
		       : !have_cat ? "category"
		                   : "sentiment");
		return -1;
	}
	return 0;
}

/* ---- frames ---- */

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * Deepest nesting of the bytes, strings skipped; *open says whether the text
 * ends inside a string or an unclosed bracket. Only explains parse failures.
 */
static int raw_depth(const char *p, size_t n, int *open)
{
	int depth = 0, max = 0, in_str = 0;

	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = 0;
		} else if (c == '"') {
			in_str = 1;
		} else if (c == '{' || c == '[') {
			if (++depth > max)
				max = depth;
		} else if (c == '}' || c == ']') {
			depth--;
		}
	}
	*open = in_str || depth > 0;
	return max;
}

static void explain_parse_error(const char *frame, size_t len, struct event_error *err)
{
	const char *at = cJSON_GetErrorPtr();
	size_t off = (at && at >= frame && at <= frame + len) ? (size_t)(at - frame) : len;
	char near[24];
	size_t k = 0;
	int open;

	if (raw_depth(frame, len, &open) >= CJSON_NESTING_LIMIT) {
		reject(err, REJECT_TOO_DEEP, "JSON nested deeper than %d levels",
		       CJSON_NESTING_LIMIT);
		return;
	}
	while (off < len && is_space(frame[off]))
		off++;
	if (off >= len || open) {
		reject(err, REJECT_INVALID_JSON,
		       "invalid JSON: input ends early at byte %zu (truncated frame?)", len);
		return;
	}
	for (size_t i = off; i < len && k < sizeof(near) - 1; i++)
		near[k++] = (frame[i] >= 0x20 && frame[i] < 0x7f) ? frame[i] : '?';
	near[k] = '\0';
	if (strncmp(near, "NaN", 3) == 0 || strncmp(near, "Infinity", 8) == 0 ||
	    strncmp(near, "-Infinity", 9) == 0)
		reject(err, REJECT_NOT_FINITE,
		       "NaN and Infinity are not JSON numbers (at byte %zu)", off);
	else
		reject(err, REJECT_INVALID_JSON, "invalid JSON at byte %zu near '%s'", off, near);
}

/* Calls back with the parse arena suspended: what the callback builds may outlive the frame. */
static int deliver(event_fn fn, void *arg, const struct event *ev, const struct event_error *err,
                   const char *raw, size_t len)
{
	int token = xalloc_arena_pause(), r = fn(arg, ev, err, raw, len);

	xalloc_arena_resume(token);
	return r;
}

static int emit_reject(event_fn fn, void *arg, const struct event_error *err, const char *raw,
                       size_t len)
{
	return deliver(fn, arg, NULL, err, raw, len);
}

/* "3 days", "5 hours", "2 minutes", "40 seconds": how far ahead, roughly. */
static void span_text(int64_t ms, char *out, size_t len)
{
	static const struct {
		int64_t ms;
		const char *unit;
	} units[] = {{86400000, "days"}, {3600000, "hours"}, {60000, "minutes"}};

	for (size_t i = 0; i < NELEM(units); i++)
		if (ms >= 2 * units[i].ms) {
			snprintf(out, len, "%lld %s", (long long)(ms / units[i].ms), units[i].unit);
			return;
		}
	snprintf(out, len, "%lld seconds", (long long)(ms / 1000));
}

/* The event is from the future, as far as this machine's clock can tell. */
static int too_far_ahead(const struct event *ev, const struct decode_limits *lim,
                         struct event_error *err)
{
	char ahead[32], allowed[32];

	if (lim->now_ms == 0 || ev->ts_ms - lim->now_ms <= lim->max_future_ms)
		return 0;
	span_text(ev->ts_ms - lim->now_ms, ahead, sizeof(ahead));
	span_text(lim->max_future_ms, allowed, sizeof(allowed));
	reject(err, REJECT_FUTURE_TIME,
	       "field 'ts' is %s ahead of this machine's clock; ingest.max_future allows %s", ahead,
	       allowed);
	return 1;
}

/* Decodes one object; raw is its JSON text. Returns 1 valid, 0 rejected, -1 stop. */
static int one(const cJSON *obj, const struct decode_limits *lim, int depth, const char *prefix,
               const char *raw, size_t raw_len, event_fn fn, void *arg)
{
	struct event ev;
	struct event_error err = {0};
	const struct field *fields[64];
	int n = check_event(obj, depth, lim->max_depth, fields, NELEM(fields), &err);

	if (n >= 0 &&
	    decode_object(obj, fields, (size_t)n < NELEM(fields) ? (size_t)n : NELEM(fields), &ev,
	                  &err) == 0 &&
	    !too_far_ahead(&ev, lim, &err)) {
		ev.raw = raw;
		ev.raw_len = raw_len;
		return deliver(fn, arg, &ev, NULL, raw, raw_len) ? -1 : 1;
	}
	if (prefix[0]) {
		char msg[sizeof(err.msg)];

		snprintf(msg, sizeof(msg), "%s%s", prefix, err.msg);
		memcpy(err.msg, msg, sizeof(msg));
	}
	return emit_reject(fn, arg, &err, raw, raw_len) ? -1 : 0;
}

int event_decode(const char *frame, size_t len, const struct decode_limits *lim, event_fn fn,
                 void *arg)
{
	struct event_error err = {0};
	const char *end = NULL;
	cJSON *root;
	size_t bad;
	int valid = 0, r;

	pthread_once(&indexes_once, index_all_fields);
	if (lim == NULL)
		lim = &decode_limits_default;
	if (len == 0) {
		reject(&err, REJECT_EMPTY_FRAME, "empty frame");
		return emit_reject(fn, arg, &err, frame, len) ? -1 : 0;
	}
	if (len > lim->max_frame_bytes) {
		reject(&err, REJECT_TOO_LARGE, "frame of %zu bytes exceeds the %zu-byte limit", len,
		       lim->max_frame_bytes);
		return emit_reject(fn, arg, &err, frame, len) ? -1 : 0;
	}
	bad = utf8_check((const unsigned char *)frame, len);
	if (bad != len) {
		reject(&err, REJECT_INVALID_UTF8, "invalid UTF-8 at byte %zu", bad);
		return emit_reject(fn, arg, &err, frame, len) ? -1 : 0;
	}
	xalloc_arena_begin(); /* the tree lives for this frame only */
	root = cJSON_ParseWithLengthOpts(frame, len, &end, 0);
	if (root == NULL) {
		explain_parse_error(frame, len, &err);
		xalloc_arena_end();
		return emit_reject(fn, arg, &err, frame, len) ? -1 : 0;
	}
	while (end < frame + len && is_space(*end))
		end++;
	if (end < frame + len) {
		reject(&err, REJECT_INVALID_JSON,
		       "invalid JSON: extra data after the value at byte %zu",
		       (size_t)(end - frame));
		r = emit_reject(fn, arg, &err, frame, len) ? -1 : 0;
		goto out;
	}
	if (cJSON_IsObject(root)) {
		size_t start = 0, stop = len;

		while (start < stop && is_space(frame[start]))
			start++;
		while (stop > start && is_space(frame[stop - 1]))
			stop--;
		r = one(root, lim, 1, "", frame + start, stop - start, fn, arg);
		valid = r > 0;
		r = r < 0 ? -1 : valid;
		goto out;
	}
	if (!cJSON_IsArray(root)) {
		reject(&err, REJECT_NOT_OBJECT, "the frame holds %s, not an event object",
		       type_name(root));
		r = emit_reject(fn, arg, &err, frame, len) ? -1 : 0;
		goto out;
	}
	int n = cJSON_GetArraySize(root);

	if (n == 0) {
		reject(&err, REJECT_EMPTY_ARRAY, "the frame holds an empty array: no events");
		r = emit_reject(fn, arg, &err, frame, len) ? -1 : 0;
		goto out;
	}
	if ((size_t)n > lim->max_array_events) {
		reject(&err, REJECT_TOO_MANY_EVENTS,
		       "the frame holds %d events, more than the limit of %zu", n,
		       lim->max_array_events);
		r = emit_reject(fn, arg, &err, frame, len) ? -1 : 0;
		goto out;
	}
	int i = 0;

	r = 0;
	for (const cJSON *c = root->child; c; c = c->next, i++) {
		char prefix[32];
		char *raw = cJSON_PrintUnformatted(c);
		int k;

		snprintf(prefix, sizeof(prefix), "element %d: ", i);
		if (!cJSON_IsObject(c)) {
			reject(&err, REJECT_NOT_OBJECT, "element %d is %s, not an event object", i,
			       type_name(c));
			k = emit_reject(fn, arg, &err, raw, strlen(raw)) ? -1 : 0;
		} else {
			k = one(c, lim, 2, prefix, raw, strlen(raw), fn, arg);
		}
		cJSON_free(raw);
		if (k < 0) {
			r = -1;
			break;
		}
		valid += k;
	}
	if (r == 0)
		r = valid;
out:
	/* Built in the arena (cJSON's hooks installed): released with it, not
	 * walked node by node to frees that do nothing. */
	if (!xalloc_arena_holds(root))
		cJSON_Delete(root);
	xalloc_arena_end();
	return r;
}
