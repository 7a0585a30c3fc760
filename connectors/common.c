/*
 * common.c: what every connector shares: actions, requests, the generic
 * HTTP verdict, and the text helpers of render.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/connector.h>
#include <voca/render.h>
#include <voca/xalloc.h>

static const char *const action_names[] = {"open", "update", "resolve", "reopen", "alert", "known"};

#define NACTIONS (int)(sizeof(action_names) / sizeof(action_names[0]))

const char *action_name(enum delivery_action a)
{
	return (unsigned)a < NACTIONS ? action_names[a] : "?";
}

int action_parse(const char *s)
{
	for (int i = 0; i < NACTIONS; i++)
		if (strcmp(s, action_names[i]) == 0)
			return i;
	return -1;
}

void http_req_init(struct http_req *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->url, 8192);
	buf_init(&r->body, 64 << 20);
}

void http_req_free(struct http_req *r)
{
	buf_free(&r->url);
	buf_free(&r->body);
	for (int i = 0; i < r->nheaders; i++)
		free(r->headers[i]);
	r->nheaders = 0;
}

int http_req_header(struct http_req *r, const char *fmt, ...)
{
	va_list ap;
	char line[1024];

	if (r->nheaders == HTTP_MAX_HEADERS)
		return -1;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* No header injection: a value never carries a line break. */
	if (strpbrk(line, "\r\n"))
		return -1;
	r->headers[r->nheaders++] = xstrdup(line);
	return 0;
}

void verdict_set(struct verdict *v, enum verdict_kind kind, int step, const char *fmt, ...)
{
	va_list ap;

	v->kind = kind;
	v->step = step;
	v->retry_after_ms = -1;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
	va_end(ap);
}

/* The first line of a body, printable, for a reason. */
static void snippet(const struct http_resp *r, char *out, size_t outlen)
{
	size_t n = 0;

	for (size_t i = 0; r->body && i < r->len && n + 1 < outlen && n < 160; i++) {
		unsigned char c = (unsigned char)r->body[i];

		out[n++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	out[n] = '\0';
}

int verdict_http(const struct http_resp *r, struct verdict *v)
{
	char body[200];

	if (r->status == 0) {
		verdict_set(v, VERDICT_RETRY, 0, "no response: %s", r->err);
		return 1;
	}
	if (r->status >= 200 && r->status < 300)
		return 0;
	snippet(r, body, sizeof(body));
	if (r->status == 408 || r->status == 429 || r->status >= 500) {
		verdict_set(v, VERDICT_RETRY, 0, "HTTP %ld: %s", r->status, body);
		if (r->status == 429 || r->status == 503)
			v->retry_after_ms = r->retry_after_ms;
		return 1;
	}
	verdict_set(v, VERDICT_FAIL, 0, "HTTP %ld: %s", r->status, body);
	return 1;
}

const cJSON *pack_get(const cJSON *pack, const char *path)
{
	char name[64];
	const cJSON *at = pack;

	while (at && *path) {
		size_t n = strcspn(path, ".");

		if (n >= sizeof(name))
			return NULL;
		memcpy(name, path, n);
		name[n] = '\0';
		at = cJSON_GetObjectItemCaseSensitive(at, name);
		path += n + (path[n] == '.');
	}
	return at;
}

const char *pack_str(const cJSON *pack, const char *path, const char *dflt)
{
	const cJSON *it = pack_get(pack, path);

	return cJSON_IsString(it) ? it->valuestring : dflt;
}

double pack_num(const cJSON *pack, const char *path, double dflt)
{
	const cJSON *it = pack_get(pack, path);

	return cJSON_IsNumber(it) ? it->valuedouble : dflt;
}

void text_append_cut(struct buf *out, const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n <= max) {
		buf_add(out, s, n);
		return;
	}
	n = max > 3 ? max - 3 : 0;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--; /* do not split a UTF-8 sequence */
	buf_add(out, s, n);
	buf_adds(out, "\xe2\x80\xa6"); /* … */
}

int pack_again(const cJSON *pack)
{
	return strcmp(pack_str(pack, "incident.change", ""), "updated") == 0 &&
	       pack_num(pack, "what_changed.again_after_clear_buckets", 0) > 0;
}

const char *render_chat_verb(const struct delivery *d)
{
	static const char *const verbs[] = {"New", "Still firing", "Resolved", "Back again",
	                                    "NOT DELIVERED"};

	if (d->action == ACTION_UPDATE && pack_again(d->pack))
		return "New episode";
	return (unsigned)d->action < 5 ? verbs[d->action] : verbs[1];
}

void render_note(const struct delivery *d, struct buf *out)
{
	/* By action; a known issue's note goes by the change, in the same order. */
	static const char *const verbs[] = {"fired", "is still firing", "cleared", "fired again",
	                                    "could not be delivered everywhere"};
	static const char *const changes[] = {"opened", "updated", "resolved", "reopened"};
	const char *change = pack_str(d->pack, "incident.change", "updated");

	double back = pack_num(d->pack, "what_changed.hours_since_resolved", -1);
	char since[64] = "";

	/* A regression: how long it stayed away says whether the fix held at all. */
	if (back >= 0 && (d->action == ACTION_REOPEN || strcmp(change, "reopened") == 0))
		snprintf(since, sizeof(since), ", %.4g h after it resolved", back);
	if (d->action != ACTION_KNOWN) {
		const char *verb = (unsigned)d->action < 5 ? verbs[d->action] : verbs[1];

		if (d->action == ACTION_UPDATE && pack_again(d->pack))
			verb = "fired again after a clear spell";
		buf_addf(out, "voca: incident %lld %s at %s%s (firings: %d). %s",
		         (long long)d->incident_id, verb, pack_str(d->pack, "incident.at", ""),
		         since, (int)pack_num(d->pack, "incident.firings", 0),
		         pack_str(d->pack, "incident.summary", ""));
		return;
	}
	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++)
		if (strcmp(change, changes[i]) == 0)
			change = verbs[i];
	if (pack_again(d->pack))
		change = "fired again after a clear spell";
	buf_addf(out,
	         "voca: incident %lld (%s, %s) %s at %s%s (firings: %d); it matches this known "
	         "issue, so voca opens no ticket of its own. %s",
	         (long long)d->incident_id, pack_str(d->pack, "incident.rule", ""),
	         pack_str(d->pack, "incident.key", ""), change,
	         pack_str(d->pack, "incident.at", ""), since,
	         (int)pack_num(d->pack, "incident.firings", 0),
	         pack_str(d->pack, "incident.summary", ""));
}

void render_headline(const cJSON *pack, struct buf *out, size_t max)
{
	struct buf line;

	buf_init(&line, 4096);
	const char *change = pack_str(pack, "incident.change", "opened");
	double back = pack_num(pack, "what_changed.hours_since_resolved", -1);

	if (pack_again(pack))
		change = "fired again after a clear spell";
	buf_addf(&line, "[voca] tier %d %s: %s %s", (int)pack_num(pack, "incident.tier", 0),
	         pack_str(pack, "incident.rule", "?"), pack_str(pack, "incident.key", ""), change);
	if (back >= 0 && strcmp(change, "reopened") == 0)
		buf_addf(&line, " %.4g h after it resolved", back);
	text_append_cut(out, buf_str(&line), max);
	buf_free(&line);
}

void render_sparkline(const cJSON *pack, struct buf *out)
{
	static const char *const bars[] = {"\xe2\x96\x81", "\xe2\x96\x82", "\xe2\x96\x83",
	                                   "\xe2\x96\x84", "\xe2\x96\x85", "\xe2\x96\x86",
	                                   "\xe2\x96\x87", "\xe2\x96\x88"};
	const cJSON *counts = pack_get(pack, "trend.counts"), *c;
	double top = 0;

	cJSON_ArrayForEach(c, counts) if (c->valuedouble > top) top = c->valuedouble;
	cJSON_ArrayForEach(c, counts)
	{
		int i = top > 0 ? (int)(c->valuedouble / top * 7.0 + 0.5) : 0;

		buf_adds(out, bars[i < 0 ? 0 : i > 7 ? 7 : i]);
	}
}

void render_trend_csv(const cJSON *pack, struct buf *out)
{
	const cJSON *counts = pack_get(pack, "trend.counts");
	const cJSON *expected = pack_get(pack, "trend.expected");
	const cJSON *starts = pack_get(pack, "trend.starts");
	int n = cJSON_GetArraySize(counts);

	buf_adds(out, "bucket_start,count,expected\n");
	for (int i = 0; i < n; i++) {
		const cJSON *s = cJSON_GetArrayItem(starts, i);
		const cJSON *e = cJSON_GetArrayItem(expected, i);

		buf_addf(out, "%s,%d,", cJSON_IsString(s) ? s->valuestring : "",
		         (int)cJSON_GetArrayItem(counts, i)->valuedouble);
		if (cJSON_IsNumber(e))
			buf_addf(out, "%.3f", e->valuedouble);
		buf_adds(out, "\n");
	}
}

/* Breaks an @-mention word with a zero-width space so no client pings on it. */
static int defuse_at(struct buf *out, const char *s)
{
	static const char *const words[] = {"@here", "@channel", "@everyone", "@all"};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		size_t n = strlen(words[i]);

		if (strncasecmp(s, words[i], n) == 0) {
			buf_add(out, "@\xe2\x80\x8b", 4);
			buf_add(out, s + 1, n - 1);
			return (int)n;
		}
	}
	return 0;
}

void esc_slack(struct buf *out, const char *s)
{
	while (*s) {
		int used;

		if (*s == '@' && (used = defuse_at(out, s)) > 0) {
			s += used;
			continue;
		}
		switch (*s) {
		case '&': buf_adds(out, "&amp;"); break;
		case '<': buf_adds(out, "&lt;"); break;
		case '>': buf_adds(out, "&gt;"); break;
		/* mrkdwn emphasis would otherwise run across a customer's text */
		case '*':
		case '_':
		case '~':
		case '`':
			buf_add(out, "\xe2\x80\x8b", 3);
			buf_add(out, s, 1);
			break;
		default: buf_add(out, s, 1);
		}
		s++;
	}
}

void esc_jira_wiki(struct buf *out, const char *s)
{
	for (; *s; s++) {
		if (strchr("\\*_+-^~?{}[]|!#", *s))
			buf_adds(out, "\\");
		buf_add(out, s, 1);
	}
}

void esc_teams(struct buf *out, const char *s)
{
	while (*s) {
		int used;

		if (*s == '@' && (used = defuse_at(out, s)) > 0) {
			s += used;
			continue;
		}
		if (*s == '<')
			buf_adds(out, "&lt;"); /* no <at> mention from customer text */
		else if (*s == '>')
			buf_adds(out, "&gt;");
		else {
			if (strchr("\\*_[]", *s))
				buf_adds(out, "\\");
			buf_add(out, s, 1);
		}
		s++;
	}
}

const char *receiver_url(const struct receiver *r)
{
	return r->secret_url.value ? r->secret_url.value : r->url;
}

int receiver_check_url(const char *url, char *err, size_t errlen)
{
	static const char *const loopback[] = {"http://127.0.0.1:", "http://127.0.0.1/",
	                                       "http://[::1]:",     "http://[::1]/",
	                                       "http://localhost:", "http://localhost/"};

	if (url == NULL || *url == '\0') {
		snprintf(err, errlen, "url: needed");
		return -1;
	}
	if (strpbrk(url, " \r\n\t")) {
		snprintf(err, errlen, "url: must not contain spaces or line breaks");
		return -1;
	}
	if (strncmp(url, "https://", 8) == 0)
		return 0;
	for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++)
		if (strncmp(url, loopback[i], strlen(loopback[i])) == 0)
			return 0;
	snprintf(err, errlen, "url: must be https:// (plain http only to a loopback address)");
	return -1;
}

void render_what_changed(const cJSON *pack, struct buf *out)
{
	const cJSON *w = pack_get(pack, "what_changed");
	const char *test = pack_str(w, "test", NULL);
	const cJSON *obs = cJSON_GetObjectItemCaseSensitive(w, "observed");
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(w, "expected");
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(w, "p_value");
	const char *sep = "";

	const char *from = pack_str(w, "window.start", NULL), *to = pack_str(w, "window.end", NULL);

	if (cJSON_IsNumber(obs)) {
		buf_addf(out, "observed %g", obs->valuedouble);
		sep = ", ";
		if (cJSON_IsNumber(exp))
			buf_addf(out, " vs expected %.3g", exp->valuedouble);
		/* Our own RFC 3339 times: nothing in them to escape for any markup. */
		if (from && to && strlen(from) >= 16 && strlen(to) >= 16)
			buf_addf(out, " from %.16s to %.16s", from, to);
	}
	if (test) {
		buf_addf(out, "%stest: %s", sep, test);
		sep = ", ";
	}
	if (cJSON_IsNumber(p)) {
		buf_addf(out, "%sp = %.2g", sep, p->valuedouble);
		sep = ", ";
	}
	const cJSON *g = cJSON_GetObjectItemCaseSensitive(w, "guards"), *it;

	cJSON_ArrayForEach(it, g) if (cJSON_IsString(it))
	{
		buf_addf(out, "%s%s %s", sep, it->string, it->valuestring);
		sep = ", ";
	}
	if (*sep == '\0')
		buf_adds(out, "see the explanation");
}

static void add_esc(struct buf *out, const char *s, void (*esc)(struct buf *, const char *))
{
	if (esc)
		esc(out, s);
	else
		buf_adds(out, s);
}

void render_text(const cJSON *pack, struct buf *out, void (*esc)(struct buf *, const char *))
{
	const cJSON *ex, *o;
	int i = 0;

	render_headline(pack, out, 300);
	buf_adds(out, "\n");
	add_esc(out, pack_str(pack, "incident.summary", ""), esc);
	buf_adds(out, "\n\nWhat changed: ");
	render_what_changed(pack, out);
	buf_addf(out, "\nWhy it matters: tier %d, worst severity %s",
	         (int)pack_num(pack, "why_it_matters.tier", 0),
	         pack_str(pack, "why_it_matters.severity", "?"));
	if (pack_num(pack, "why_it_matters.rate", 0) > 0)
		buf_addf(out, ", %.1fx the expected rate",
		         pack_num(pack, "why_it_matters.rate", 0));
	buf_addf(out, ", %d matching events in the trend window",
	         (int)pack_num(pack, "why_it_matters.events", 0));
	buf_adds(out, "\nWho should act: ");
	cJSON_ArrayForEach(o, pack_get(pack, "who.owners"))
	        buf_addf(out, "%s%s", i++ ? ", " : "", o->valuestring);
	if (i == 0)
		buf_adds(out, "(no owner routed)");
	if (pack_str(pack, "who.suggested_owner", NULL)) {
		buf_adds(out, "; the scorer suggests ");
		add_esc(out, pack_str(pack, "who.suggested_owner", ""), esc);
	}
	if (pack_str(pack, "who.suggested_action", NULL)) {
		buf_adds(out, "\nNext: ");
		add_esc(out, pack_str(pack, "who.suggested_action", ""), esc);
	}
	buf_adds(out, "\n\nExamples:\n");
	cJSON_ArrayForEach(ex, pack_get(pack, "examples"))
	{
		buf_addf(out, "- %s %s", pack_str(ex, "time", ""), pack_str(ex, "id", ""));
		if (pack_num(ex, "rating", 0) > 0)
			buf_addf(out, " rating %d", (int)pack_num(ex, "rating", 0));
		buf_addf(out, " %s:", pack_str(ex, "severity", ""));
		if (pack_str(ex, "summary", NULL)) {
			buf_adds(out, " ");
			add_esc(out, pack_str(ex, "summary", ""), esc);
		}
		if (pack_str(ex, "text", NULL)) {
			buf_adds(out, "\n  \"");
			add_esc(out, pack_str(ex, "text", ""), esc);
			buf_adds(out, "\"");
		}
		if (pack_num(ex, "similar", 0) > 0)
			buf_addf(out, " (+%d similar)", (int)pack_num(ex, "similar", 0));
		if (pack_str(ex, "url", NULL))
			buf_addf(out, "\n  %s", pack_str(ex, "url", ""));
		buf_adds(out, "\n");
	}
	buf_adds(out, "\nTrend (per bucket, oldest first): ");
	render_sparkline(pack, out);
	buf_addf(out, "\nLineage: rule %s, config %s, model %s %s, prompt %s, taxonomy %s\n",
	         pack_str(pack, "lineage.rule", ""), pack_str(pack, "lineage.config", ""),
	         pack_str(pack, "lineage.model", ""), pack_str(pack, "lineage.model_version", ""),
	         pack_str(pack, "lineage.prompt_version", ""),
	         pack_str(pack, "lineage.taxonomy_version", ""));
}
