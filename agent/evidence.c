/*
 * evidence.c: the evidence pack (see evidence.h).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/render.h>
#include <voca/suppress.h>
#include <voca/xalloc.h>

#include "evidence.h"

#define DOMINANT_FIELDS 7
static const char *const dominant_fields[DOMINANT_FIELDS] = {
        "category", "subcategory", "region", "source", "channel", "sku", "severity",
};

struct candidate {
	char id[96];
	int64_t ts_ms;
	int rating;
	enum severity severity;
	double confidence;
	double score;
	char *summary, *text, *url, *owner, *action;
	char *vals[DOMINANT_FIELDS];
	int similar; /* near-duplicates collapsed into this one */
	int matched; /* met the rule's conditions */
};

struct scan {
	const struct rule_common *rule;
	const struct incident *inc;
	int64_t end_ms, bucket_ms, span_ms;
	int counts[EVIDENCE_BUCKETS];
	struct candidate *c;
	size_t n, alloc;
	char lineage[4][64]; /* model, model_version, prompt_version, taxonomy_version */
};

void evidence_dedupe(const struct incident *inc, char out[32])
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 */
	char opened[32];
	const char *parts[3] = {inc->rule, inc->key, opened};

	snprintf(opened, sizeof(opened), "%lld", (long long)inc->opened_ms);
	for (int p = 0; p < 3; p++) {
		for (const unsigned char *s = (const unsigned char *)parts[p]; *s; s++)
			h = (h ^ *s) * 1099511628211ULL;
		h = (h ^ 0x1f) * 1099511628211ULL;
	}
	snprintf(out, 32, "voca-%016llx", (unsigned long long)h);
}

/* Does every "f=v" of want appear among the fields of have? (roll-ups key on fewer fields) */
static int key_covers(const char *want, const char *have)
{
	while (*want) {
		size_t n = key_pair_len(want);
		const char *p = have;
		int found = 0;

		while (*p) {
			size_t m = key_pair_len(p);

			if (m == n && memcmp(p, want, n) == 0)
				found = 1;
			p += m + (p[m] == ' ');
		}
		if (!found)
			return 0;
		want += n + (want[n] == ' ');
	}
	return 1;
}

static char *dup_or_null(const char *s)
{
	return s && *s ? xstrdup(s) : NULL;
}

static int on_event(void *arg, const struct event *ev, const struct event_error *err,
                    const char *raw, size_t len)
{
	struct scan *sc = arg;
	char key[RULE_KEY_MAX]; /* as the engine's, or a long key would not match */
	struct candidate *c;
	int matched = 1;

	(void)raw;
	(void)len;
	if (ev == NULL || (err && err->code != REJECT_NONE))
		return 0;
	if (sc->rule) {
		if (rule_group_key(sc->rule, ev, key, sizeof(key)) < 0 ||
		    !key_covers(sc->inc->key, key))
			return 0;
		matched = rule_matches(sc->rule, ev);
	}
	int64_t age = sc->end_ms - ev->ts_ms;
	int b = EVIDENCE_BUCKETS - 1 - (int)(age / sc->bucket_ms);

	if (matched && b >= 0 && b < EVIDENCE_BUCKETS)
		sc->counts[b]++;
	if (sc->lineage[0][0] == '\0' && ev->model_name) {
		snprintf(sc->lineage[0], 64, "%s", ev->model_name);
		snprintf(sc->lineage[1], 64, "%s", ev->model_version ? ev->model_version : "");
		snprintf(sc->lineage[2], 64, "%s", ev->prompt_version ? ev->prompt_version : "");
		snprintf(sc->lineage[3], 64, "%s",
		         ev->taxonomy_version ? ev->taxonomy_version : "");
	}
	if (!matched)
		return 0;
	if (sc->n == sc->alloc) {
		sc->alloc = sc->alloc ? sc->alloc * 2 : 64;
		sc->c = xrealloc(sc->c, sc->alloc * sizeof(*sc->c));
	}
	c = &sc->c[sc->n++];
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", ev->event_id);
	c->ts_ms = ev->ts_ms;
	c->rating = ev->rating;
	c->severity = ev->severity;
	c->confidence = ev->confidence == ev->confidence ? ev->confidence : 0.5;
	c->summary = dup_or_null(ev->summary);
	c->text = dup_or_null(ev->text);
	c->url = dup_or_null(ev->url);
	c->owner = dup_or_null(ev->suggested_owner);
	c->action = dup_or_null(ev->suggested_action);
	c->vals[0] = dup_or_null(ev->category);
	c->vals[1] = dup_or_null(ev->subcategory);
	c->vals[2] = dup_or_null(ev->region);
	c->vals[3] = dup_or_null(ev->source);
	c->vals[4] = ev->channel ? xstrdup(channel_name(ev->channel)) : NULL;
	c->vals[5] = dup_or_null(ev->sku);
	c->vals[6] = xstrdup(severity_name(ev->severity));
	/* severity x confidence x recency: a quarter of the trend window old weighs 1/e */
	c->score = (1.0 + (double)ev->severity) * c->confidence *
	           exp(-(double)(age > 0 ? age : 0) / ((double)sc->span_ms / 4.0));
	return 0;
}

static int on_body(void *arg, const char *body, size_t len)
{
	event_decode(body, len, &decode_limits_stored, on_event, arg);
	return 0;
}

static void candidate_free(struct candidate *c)
{
	free(c->summary);
	free(c->text);
	free(c->url);
	free(c->owner);
	free(c->action);
	for (int i = 0; i < DOMINANT_FIELDS; i++)
		free(c->vals[i]);
}

static int by_score(const void *a, const void *b)
{
	const struct candidate *x = a, *y = b;

	if (x->score != y->score)
		return x->score < y->score ? 1 : -1;
	return x->ts_ms < y->ts_ms ? 1 : x->ts_ms > y->ts_ms ? -1 : 0;
}

/* Lower-case words of s, hashed, for a Jaccard similarity. */
static size_t words(const char *s, uint32_t *out, size_t max)
{
	size_t n = 0;

	while (s && *s && n < max) {
		uint32_t h = 2166136261u;
		int len = 0;

		while (*s && !isalnum((unsigned char)*s))
			s++;
		while (*s && isalnum((unsigned char)*s)) {
			h = (h ^ (uint32_t)tolower((unsigned char)*s++)) * 16777619u;
			len++;
		}
		if (len > 2)
			out[n++] = h;
	}
	return n;
}

/* Near-duplicates: word sets overlapping 70% or more (or both texts empty). */
static int similar(const struct candidate *a, const struct candidate *b)
{
	uint32_t wa[64], wb[64];
	const char *ta = a->text ? a->text : a->summary, *tb = b->text ? b->text : b->summary;
	size_t na = words(ta, wa, 64), nb = words(tb, wb, 64), both = 0;

	if (na == 0 || nb == 0)
		return na == nb;
	for (size_t i = 0; i < na; i++)
		for (size_t j = 0; j < nb; j++)
			if (wa[i] == wb[j]) {
				both++;
				break;
			}
	return (double)both / (double)(na + nb - both) >= 0.7;
}

/* Redacts s into the object under name, cut to max bytes; counts what was replaced. */
static void add_redacted(cJSON *obj, const char *name, const char *s, const struct redactor *red,
                         struct redact_counts *total, size_t max)
{
	struct redact_counts rc = {0};
	struct buf out;
	char *clean;

	if (s == NULL)
		return;
	clean = redact(red, s, &rc);
	total->emails += rc.emails;
	total->phones += rc.phones;
	total->cards += rc.cards;
	total->patterns += rc.patterns;
	buf_init(&out, max + 8);
	text_append_cut(&out, clean, max);
	cJSON_AddStringToObject(obj, name, buf_str(&out));
	buf_free(&out);
	free(clean);
}

static const char *most_common(struct candidate *c, size_t n, size_t off_field, int *count)
{
	const char *best = NULL;
	int top = 0;

	for (size_t i = 0; i < n; i++) {
		const char *v = *(char **)((char *)&c[i] + off_field);
		int k = 0;

		if (v == NULL)
			continue;
		for (size_t j = 0; j < n; j++) {
			const char *w = *(char **)((char *)&c[j] + off_field);

			k += w && strcmp(v, w) == 0;
		}
		if (k > top) {
			top = k;
			best = v;
		}
	}
	if (count)
		*count = top;
	return best;
}

static void add_examples(cJSON *pack, struct scan *sc, const struct redactor *red,
                         struct redact_counts *total)
{
	cJSON *arr = cJSON_AddArrayToObject(pack, "examples");
	size_t kept[EVIDENCE_EXAMPLES], nk = 0, i;

	if (sc->n > 1)
		qsort(sc->c, sc->n, sizeof(*sc->c), by_score);
	for (i = 0; i < sc->n && nk < EVIDENCE_EXAMPLES; i++) {
		size_t j = 0;

		while (j < nk && !similar(&sc->c[kept[j]], &sc->c[i]))
			j++;
		if (j < nk) {
			sc->c[kept[j]].similar++;
			continue;
		}
		kept[nk++] = i;
	}
	/* count collapsed ones among the rest too, so "similar" means what it says */
	for (; i < sc->n; i++)
		for (size_t j = 0; j < nk; j++)
			if (similar(&sc->c[kept[j]], &sc->c[i])) {
				sc->c[kept[j]].similar++;
				break;
			}
	for (size_t j = 0; j < nk; j++) {
		const struct candidate *c = &sc->c[kept[j]];
		cJSON *o = cJSON_CreateObject();
		char t[32];

		cJSON_AddItemToArray(arr, o);
		cJSON_AddStringToObject(o, "id", c->id);
		rfc3339_format(c->ts_ms, t, sizeof(t));
		cJSON_AddStringToObject(o, "time", t);
		if (c->rating)
			cJSON_AddNumberToObject(o, "rating", c->rating);
		cJSON_AddStringToObject(o, "severity", severity_name(c->severity));
		cJSON_AddNumberToObject(o, "confidence", round(c->confidence * 1000) / 1000);
		add_redacted(o, "summary", c->summary, red, total, 300);
		add_redacted(o, "text", c->text, red, total, EVIDENCE_TEXT_MAX);
		if (c->url) {
			struct redact_counts rc = {0};
			char *u = redact(red, c->url, &rc);

			/* a link that carried personal data is dropped, not mangled */
			if (strcmp(u, c->url) == 0 && strncmp(u, "http", 4) == 0)
				cJSON_AddStringToObject(o, "url", u);
			free(u);
		}
		cJSON_AddNumberToObject(o, "similar", c->similar);
	}
}

static void add_trend(cJSON *pack, const struct scan *sc, const cJSON *why)
{
	cJSON *t = cJSON_AddObjectToObject(pack, "trend");
	cJSON *counts = cJSON_AddArrayToObject(t, "counts");
	cJSON *starts = cJSON_AddArrayToObject(t, "starts");
	cJSON *exp = cJSON_AddArrayToObject(t, "expected");
	const cJSON *level = cJSON_GetObjectItemCaseSensitive(
	        cJSON_GetObjectItemCaseSensitive(why, "expected_breakdown"), "level_per_bucket");
	const cJSON *last = cJSON_GetObjectItemCaseSensitive(why, "expected");
	int64_t first = sc->end_ms - (int64_t)EVIDENCE_BUCKETS * sc->bucket_ms;
	char s[32];

	cJSON_AddNumberToObject(t, "bucket_ms", (double)sc->bucket_ms);
	for (int i = 0; i < EVIDENCE_BUCKETS; i++) {
		cJSON_AddItemToArray(counts, cJSON_CreateNumber(sc->counts[i]));
		rfc3339_format(first + (int64_t)i * sc->bucket_ms, s, sizeof(s));
		cJSON_AddItemToArray(starts, cJSON_CreateString(s));
		/* A volume rule knows its per-bucket level; the last bucket its seasonal
		 * expectation. */
		if (i == EVIDENCE_BUCKETS - 1 && cJSON_IsNumber(last) && cJSON_IsNumber(level))
			cJSON_AddItemToArray(exp, cJSON_CreateNumber(last->valuedouble));
		else if (cJSON_IsNumber(level))
			cJSON_AddItemToArray(exp, cJSON_CreateNumber(level->valuedouble));
		else
			cJSON_AddItemToArray(exp, cJSON_CreateNull());
	}
}

static const char *const change_text[] = {"opened", "updated", "resolved", "reopened"};

cJSON *evidence_build(struct store *st, const struct redactor *red, const struct rule_common *rule,
                      const struct incident *inc, enum incident_change ch,
                      const char *config_version)
{
	cJSON *pack = cJSON_CreateObject(), *o, *why;
	struct scan sc = {.rule = rule, .inc = inc};
	struct redact_counts total = {0};
	char dedupe[32], t[32];
	int64_t at = ch == INCIDENT_RESOLVED ? inc->resolved_ms : inc->updated_ms;

	evidence_dedupe(inc, dedupe);
	sc.bucket_ms = rule && rule->bucket_ms > 0 ? rule->bucket_ms : 3600000;
	/* the trend ends with the bucket holding the change */
	sc.end_ms = (at / sc.bucket_ms + 1) * sc.bucket_ms;
	sc.span_ms = (int64_t)EVIDENCE_BUCKETS * sc.bucket_ms;
	store_events_between(st, sc.end_ms - sc.span_ms, sc.end_ms, inc->key, EVIDENCE_SCAN_MAX,
	                     on_body, &sc);

	cJSON_AddNumberToObject(pack, "version", 1);
	o = cJSON_AddObjectToObject(pack, "incident");
	cJSON_AddNumberToObject(o, "id", (double)inc->id);
	cJSON_AddStringToObject(o, "rule", inc->rule);
	cJSON_AddStringToObject(o, "kind", inc->kind);
	cJSON_AddNumberToObject(o, "tier", inc->tier);
	cJSON_AddStringToObject(o, "key", inc->key);
	cJSON_AddStringToObject(o, "change", change_text[ch]);
	add_redacted(o, "summary", inc->summary, red, &total, 320);
	rfc3339_format(inc->opened_ms, t, sizeof(t));
	cJSON_AddStringToObject(o, "opened", t);
	rfc3339_format(at, t, sizeof(t));
	cJSON_AddStringToObject(o, "at", t);
	cJSON_AddNumberToObject(o, "firings", (double)inc->firings);
	cJSON_AddStringToObject(o, "dedupe", dedupe);

	why = inc->why ? cJSON_Duplicate(inc->why, 1) : cJSON_CreateObject();
	cJSON_DeleteItemFromObjectCaseSensitive(why, "examples");
	cJSON_AddItemToObject(pack, "what_changed", why);

	o = cJSON_AddObjectToObject(pack, "why_it_matters");
	cJSON_AddNumberToObject(o, "tier", inc->tier);
	{
		enum severity worst = SEVERITY_LOW;
		cJSON *skus = cJSON_CreateArray();

		for (size_t i = 0; i < sc.n; i++) {
			if (sc.c[i].severity > worst)
				worst = sc.c[i].severity;
			if (sc.c[i].vals[5] && cJSON_GetArraySize(skus) < 10) {
				int seen = 0;
				cJSON *s;

				cJSON_ArrayForEach(s, skus) seen |=
				        strcmp(s->valuestring, sc.c[i].vals[5]) == 0;
				if (!seen)
					cJSON_AddItemToArray(skus,
					                     cJSON_CreateString(sc.c[i].vals[5]));
			}
		}
		cJSON_AddStringToObject(o, "severity", severity_name(worst));
		cJSON_AddItemToObject(o, "skus", skus);
		const cJSON *obs = cJSON_GetObjectItemCaseSensitive(inc->why, "observed");
		const cJSON *exp = cJSON_GetObjectItemCaseSensitive(inc->why, "expected");

		if (cJSON_IsNumber(obs) && cJSON_IsNumber(exp) && exp->valuedouble > 0)
			cJSON_AddNumberToObject(
			        o, "rate", round(obs->valuedouble / exp->valuedouble * 10) / 10);
		cJSON_AddNumberToObject(o, "events", (double)sc.n);
	}

	o = cJSON_AddObjectToObject(pack, "who");
	cJSON_AddArrayToObject(o, "owners");
	{
		const char *v = most_common(sc.c, sc.n, offsetof(struct candidate, owner), NULL);

		if (v)
			add_redacted(o, "suggested_owner", v, red, &total, 200);
		v = most_common(sc.c, sc.n, offsetof(struct candidate, action), NULL);
		if (v)
			add_redacted(o, "suggested_action", v, red, &total, 500);
	}
	o = cJSON_AddObjectToObject(pack, "dominant");
	for (int f = 0; f < DOMINANT_FIELDS; f++) {
		const char *v = most_common(
		        sc.c, sc.n, offsetof(struct candidate, vals) + (size_t)f * sizeof(char *),
		        NULL);

		if (v)
			cJSON_AddStringToObject(o, dominant_fields[f], v);
	}
	add_examples(pack, &sc, red, &total);
	add_trend(pack, &sc, inc->why);

	o = cJSON_AddObjectToObject(pack, "lineage");
	cJSON_AddStringToObject(o, "rule", inc->rule);
	cJSON_AddStringToObject(o, "config", config_version ? config_version : "");
	cJSON_AddStringToObject(o, "model", sc.lineage[0]);
	cJSON_AddStringToObject(o, "model_version", sc.lineage[1]);
	cJSON_AddStringToObject(o, "prompt_version", sc.lineage[2]);
	cJSON_AddStringToObject(o, "taxonomy_version", sc.lineage[3]);

	o = cJSON_AddObjectToObject(pack, "redacted");
	cJSON_AddNumberToObject(o, "emails", total.emails);
	cJSON_AddNumberToObject(o, "phones", total.phones);
	cJSON_AddNumberToObject(o, "cards", total.cards);
	cJSON_AddNumberToObject(o, "patterns", total.patterns);

	for (size_t i = 0; i < sc.n; i++)
		candidate_free(&sc.c[i]);
	free(sc.c);
	return pack;
}

int evidence_dominant(const cJSON *pack, const char *field, char *out, size_t outlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(
	        cJSON_GetObjectItemCaseSensitive(pack, "dominant"), field);

	if (!cJSON_IsString(v))
		return 0;
	snprintf(out, outlen, "%s", v->valuestring);
	return 1;
}
