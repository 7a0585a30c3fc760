/*
 * cond.c: the conditions and group keys every rule kind shares.
 *
 * A condition is "field op value" over a field of the event: strings
 * compare with == and !=; severity and sentiment compare in their order
 * (low < medium < high < critical); numbers with all six operators.
 * Numeric thresholds are first class (confidence >= 0.8), not regexes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/rule.h>

enum ftype { FT_STR, FT_NUM, FT_SEVERITY, FT_SENTIMENT, FT_BOOL };

struct fdef {
	const char *name;
	enum ftype type;
};

enum {
	F_CATEGORY,
	F_SUBCATEGORY,
	F_SKU,
	F_PRODUCT,
	F_SOURCE,
	F_CHANNEL,
	F_REGION,
	F_LOCALE,
	F_CUSTOMER_TIER,
	F_PUBLISHER,
	F_SUGGESTED_OWNER,
	F_SEVERITY,
	F_SENTIMENT,
	F_SENTIMENT_SCORE,
	F_CONFIDENCE,
	F_URGENCY,
	F_RATING,
	F_NEEDS_REVIEW,
	F_COUNT,
};

static const struct fdef fields[F_COUNT] = {
        [F_CATEGORY] = {"category", FT_STR},
        [F_SUBCATEGORY] = {"subcategory", FT_STR},
        [F_SKU] = {"sku", FT_STR},
        [F_PRODUCT] = {"product", FT_STR},
        [F_SOURCE] = {"source", FT_STR},
        [F_CHANNEL] = {"channel", FT_STR},
        [F_REGION] = {"region", FT_STR},
        [F_LOCALE] = {"locale", FT_STR},
        [F_CUSTOMER_TIER] = {"customer_tier", FT_STR},
        [F_PUBLISHER] = {"publisher", FT_STR},
        [F_SUGGESTED_OWNER] = {"suggested_owner", FT_STR},
        [F_SEVERITY] = {"severity", FT_SEVERITY},
        [F_SENTIMENT] = {"sentiment", FT_SENTIMENT},
        [F_SENTIMENT_SCORE] = {"sentiment_score", FT_NUM},
        [F_CONFIDENCE] = {"confidence", FT_NUM},
        [F_URGENCY] = {"urgency", FT_NUM},
        [F_RATING] = {"rating", FT_NUM},
        [F_NEEDS_REVIEW] = {"needs_review", FT_BOOL},
};

enum op { OP_EQ, OP_NE, OP_GE, OP_LE, OP_GT, OP_LT };

static const char *const ops[] = {"==", "!=", ">=", "<=", ">", "<"};

int rule_field_lookup(const char *name)
{
	for (int i = 0; i < F_COUNT; i++)
		if (strcmp(fields[i].name, name) == 0)
			return i;
	return -1;
}

static const char *str_field(int f, const struct event *ev)
{
	switch (f) {
	case F_CATEGORY: return ev->category;
	case F_SUBCATEGORY: return ev->subcategory;
	case F_SKU: return ev->sku;
	case F_PRODUCT: return ev->product;
	case F_SOURCE: return ev->source;
	case F_CHANNEL: return ev->channel ? channel_name(ev->channel) : NULL;
	case F_REGION: return ev->region;
	case F_LOCALE: return ev->locale;
	case F_CUSTOMER_TIER: return ev->customer_tier;
	case F_PUBLISHER: return ev->publisher;
	case F_SUGGESTED_OWNER: return ev->suggested_owner;
	default: return NULL;
	}
}

/* Numeric value of a field; NAN when absent. */
static double num_field(int f, const struct event *ev)
{
	switch (f) {
	case F_SEVERITY: return ev->severity;
	case F_SENTIMENT: return ev->sentiment;
	case F_SENTIMENT_SCORE: return ev->sentiment_score;
	case F_CONFIDENCE: return ev->confidence;
	case F_URGENCY: return ev->urgency;
	case F_RATING: return ev->rating ? ev->rating : NAN;
	case F_NEEDS_REVIEW: return ev->needs_review;
	default: return NAN;
	}
}

const char *rule_field_text(int f, const struct event *ev, char *buf, size_t buflen)
{
	const char *s;
	double v;

	if (fields[f].type == FT_STR) {
		s = str_field(f, ev);
		return s ? s : "";
	}
	if (f == F_SEVERITY)
		return severity_name(ev->severity);
	if (f == F_SENTIMENT)
		return sentiment_name(ev->sentiment);
	v = num_field(f, ev);
	if (isnan(v))
		return "";
	snprintf(buf, buflen, "%g", v);
	return buf;
}

static int parse_value(struct cond *c, const char *v, char *err, size_t errlen)
{
	static const char *const sev[] = {"low", "medium", "high", "critical"};
	static const char *const sent[] = {"positive", "neutral", "negative", "mixed"};
	char *end;

	switch (fields[c->field].type) {
	case FT_STR:
		if (c->op != OP_EQ && c->op != OP_NE)
			goto bad_op;
		c->str = v;
		return 0;
	case FT_SEVERITY:
	case FT_SENTIMENT: {
		const char *const *names = fields[c->field].type == FT_SEVERITY ? sev : sent;

		if (fields[c->field].type == FT_SENTIMENT && c->op != OP_EQ && c->op != OP_NE)
			goto bad_op;
		for (int i = 0; i < 4; i++) {
			if (strcmp(v, names[i]) == 0) {
				c->num = i;
				return 0;
			}
		}
		snprintf(err, errlen, "'%s': %s is one of %s, %s, %s, %s", c->text,
		         fields[c->field].name, names[0], names[1], names[2], names[3]);
		return -1;
	}
	case FT_BOOL:
		if (c->op != OP_EQ && c->op != OP_NE)
			goto bad_op;
		if (strcmp(v, "true") && strcmp(v, "false")) {
			snprintf(err, errlen, "'%s': %s is true or false", c->text,
			         fields[c->field].name);
			return -1;
		}
		c->num = strcmp(v, "true") == 0;
		return 0;
	case FT_NUM:
		c->num = strtod(v, &end);
		if (end == v || *end || !isfinite(c->num)) {
			snprintf(err, errlen, "'%s': %s compares with a number", c->text,
			         fields[c->field].name);
			return -1;
		}
		return 0;
	}
	return 0;
bad_op:
	snprintf(err, errlen, "'%s': %s takes only == and !=", c->text, fields[c->field].name);
	return -1;
}

static int compile(struct cond *c, const char *text, char *err, size_t errlen)
{
	char field[64], op[4];
	char *value = c->value;
	int n = 0;

	snprintf(c->text, sizeof(c->text), "%s", text);
	if (sscanf(text, " %63[a-z_] %3[=!<>] %95[^\n]%n", field, op, value, &n) != 3 ||
	    text[n] != '\0') {
		snprintf(err, errlen, "'%s': expected 'field op value', e.g. 'severity >= high'",
		         text);
		return -1;
	}
	c->field = rule_field_lookup(field);
	if (c->field < 0) {
		snprintf(err, errlen, "'%s': unknown field '%s'", text, field);
		return -1;
	}
	c->op = -1;
	for (int i = 0; i < 6; i++)
		if (strcmp(op, ops[i]) == 0)
			c->op = i;
	if (c->op < 0) {
		snprintf(err, errlen, "'%s': unknown operator '%s' (==, !=, >=, <=, >, <)", text,
		         op);
		return -1;
	}
	/* Trailing blanks are not part of the value. */
	for (size_t len = strlen(value); len && value[len - 1] == ' '; len--)
		value[len - 1] = '\0';
	return parse_value(c, value, err, errlen);
}

int rule_window_buckets(const struct rule_common *c, int64_t window_ms, int most, char *err,
                        size_t errlen)
{
	int64_t b = c->bucket_ms, n = window_ms / b;

	if (window_ms % b == 0 && n >= 1 && n <= most)
		return (int)n;
	if (window_ms % b)
		snprintf(err, errlen, "window must be 1 to %d whole buckets: it is %.2f buckets",
		         most, (double)window_ms / (double)b);
	else
		snprintf(
		        err, errlen,
		        "window must be 1 to %d whole buckets: it is %lld (a rule's rings hold %d; "
		        "bucket: %lldm or more takes it)",
		        most, (long long)n, most,
		        (long long)((window_ms + (int64_t)most * 60000 - 1) /
		                    ((int64_t)most * 60000)));
	return -1;
}

int rule_common_check(struct rule_common *c, char *err, size_t errlen)
{
	if (c->name == NULL) {
		snprintf(err, errlen, "needs a name");
		return -1;
	}
	if (c->where.n > RULE_MAX_WHERE || c->group_by.n > RULE_MAX_GROUP) {
		snprintf(err, errlen, "at most %d conditions and %d group_by fields",
		         RULE_MAX_WHERE, RULE_MAX_GROUP);
		return -1;
	}
	for (size_t i = 0; i < c->where.n; i++)
		if (compile(&c->conds[i], c->where.v[i], err, errlen) < 0)
			return -1;
	c->nconds = (int)c->where.n;
	for (size_t i = 0; i < c->group_by.n; i++) {
		c->group[i] = rule_field_lookup(c->group_by.v[i]);
		if (c->group[i] < 0) {
			snprintf(err, errlen, "group_by: unknown field '%s'", c->group_by.v[i]);
			return -1;
		}
	}
	c->ngroup = (int)c->group_by.n;
	if (c->rollup_by) {
		int f = rule_field_lookup(c->rollup_by), in_group = 0;

		for (int i = 0; i < c->ngroup; i++)
			in_group |= c->group[i] == f;
		if (f < 0 || !in_group || c->ngroup < 2) {
			snprintf(
			        err, errlen,
			        "rollup_by: '%s' must be one of several group_by fields (e.g. group_by "
			        "[sku, category], rollup_by category)",
			        c->rollup_by);
			return -1;
		}
	}
	return 0;
}

static int holds(const struct cond *c, const struct event *ev)
{
	if (fields[c->field].type == FT_STR) {
		const char *v = str_field(c->field, ev);
		int eq = v && strcmp(v, c->str) == 0;

		return c->op == OP_EQ ? eq : !eq;
	}
	double v = num_field(c->field, ev);

	if (isnan(v))
		return c->op == OP_NE; /* an absent value equals nothing */
	switch (c->op) {
	case OP_EQ: return v == c->num;
	case OP_NE: return v != c->num;
	case OP_GE: return v >= c->num;
	case OP_LE: return v <= c->num;
	case OP_GT: return v > c->num;
	default: return v < c->num;
	}
}

int cond_canonical(const char *text, char *out, size_t outlen)
{
	struct cond c;
	char err[256];

	if (compile(&c, text, err, sizeof(err)) < 0)
		return -1;
	if (fields[c.field].type == FT_STR)
		snprintf(out, outlen, "%s %s %s", fields[c.field].name, ops[c.op], c.value);
	else
		snprintf(out, outlen, "%s %s %.17g", fields[c.field].name, ops[c.op], c.num);
	return 0;
}

int conds_hold(const struct cond *conds, int n, const struct event *ev)
{
	for (int i = 0; i < n; i++)
		if (!holds(&conds[i], ev))
			return 0;
	return 1;
}

int rule_matches(const struct rule_common *c, const struct event *ev)
{
	return conds_hold(c->conds, c->nconds, ev);
}

/* FNV-1a over bytes, continued from h. */
static uint64_t fnv(uint64_t h, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
	return h;
}

/*
 * A key too long for out: as much of it as fits before "~" and the hash of
 * the whole key, cut at a UTF-8 character's start. A SKU or a subcategory
 * may be long (the schema bounds neither), and such an event must still
 * count in its group.
 */
static int long_key(const struct rule_common *c, const struct event *ev, char *out, size_t outlen)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t off = 0, keep = outlen - 18; /* "~" + 16 hex digits + NUL */
	char num[32];

	for (int i = 0; i < c->ngroup; i++) {
		const char *name = fields[c->group[i]].name;
		const char *v = rule_field_text(c->group[i], ev, num, sizeof(num));
		const char *parts[] = {i > 0 ? " " : "", name, "=", v};

		if (v[0] == '\0')
			return -1;
		for (size_t j = 0; j < sizeof(parts) / sizeof(parts[0]); j++) {
			size_t n = strlen(parts[j]);

			h = fnv(h, parts[j], n);
			if (off < keep) {
				size_t take = n < keep - off ? n : keep - off;

				memcpy(out + off, parts[j], take);
				off += take;
			}
		}
	}
	if (off == keep) { /* cut: not in the middle of a character */
		size_t lead = off;

		while (lead > 0 && ((unsigned char)out[lead - 1] & 0xC0) == 0x80)
			lead--;
		if (lead > 0) {
			unsigned char b = (unsigned char)out[lead - 1];
			size_t len = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;

			if (lead - 1 + len > off)
				off = lead - 1;
		}
	}
	snprintf(out + off, outlen - off, "~%016llx", (unsigned long long)h);
	return 0;
}

int rule_key_cut(const char *key)
{
	size_t n = strlen(key);

	return n >= 17 && key[n - 17] == '~' && strspn(key + n - 16, "0123456789abcdef") == 16;
}

int rule_group_key(const struct rule_common *c, const struct event *ev, char *out, size_t outlen)
{
	size_t off = 0;
	char num[32];

	/* Runs for every rule and event: plain copies, no printf. */
	for (int i = 0; i < c->ngroup; i++) {
		const char *name = fields[c->group[i]].name;
		const char *v = rule_field_text(c->group[i], ev, num, sizeof(num));
		size_t nl = strlen(name), vl = strlen(v);

		if (vl == 0)
			return -1; /* an event without the field is not in any group */
		if (off + (i > 0) + nl + 1 + vl + 1 > outlen)
			return long_key(c, ev, out, outlen);
		if (i > 0)
			out[off++] = ' ';
		memcpy(out + off, name, nl);
		off += nl;
		out[off++] = '=';
		memcpy(out + off, v, vl);
		off += vl;
	}
	out[off] = '\0';
	return 0;
}

int rule_implied_key(const struct rule_common *c, char *out, size_t outlen)
{
	size_t off = 0;

	out[0] = '\0';
	for (int i = 0; i < c->nconds; i++) {
		const struct cond *k = &c->conds[i];
		int n;

		if (fields[k->field].type != FT_STR || k->op != OP_EQ)
			continue;
		n = snprintf(out + off, outlen - off, "%s%s=%s", off ? " " : "",
		             fields[k->field].name, k->value);
		if (n < 0 || (size_t)n >= outlen - off) {
			out[off] = '\0';
			return -1;
		}
		off += (size_t)n;
	}
	return 0;
}

uint32_t rule_hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h ? h : 1;
}
