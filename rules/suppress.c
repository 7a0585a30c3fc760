/*
 * suppress.c: silences and recurring time windows (see suppress.h).
 *
 * Local time in a window's zone comes from the zone's TZif file (tz.h), not
 * from localtime_r under TZ=zone: setting TZ races with getenv() on the
 * daemon's other threads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <voca/event.h>
#include <voca/suppress.h>
#include <voca/tz.h>
#include <voca/xalloc.h>

#define SOFF(m) offsetof(struct silence, m)
#define WOFF(m) offsetof(struct time_window, m)

static const struct conf_key silence_keys[] = {
        CONF_KEY("matchers", CONF_STRLIST, SOFF(matchers), NULL, 0, 0, NULL,
                 "which incidents: 'rule == x', 'sku == y', 'tier == 2'; all must hold"),
        CONF_KEY("start", CONF_STR, SOFF(start), NULL, 0, 0, NULL, "RFC 3339 start"),
        CONF_KEY("end", CONF_STR, SOFF(end), NULL, 0, 0, NULL, "RFC 3339 end"),
        CONF_KEY("author", CONF_STR, SOFF(author), NULL, 0, 0, NULL, "who silenced it"),
        CONF_KEY("comment", CONF_STR, SOFF(comment), NULL, 0, 0, NULL, "why"),
        CONF_END,
};

static const struct conf_key window_keys[] = {
        CONF_KEY("name", CONF_STR, WOFF(name), NULL, 0, 0, NULL, "shown in suppressed incidents"),
        CONF_KEY("matchers", CONF_STRLIST, WOFF(matchers), NULL, 0, 0, NULL,
                 "which incidents; all must hold (none: every incident)"),
        CONF_KEY("weekdays", CONF_STRLIST, WOFF(weekdays), NULL, 0, 0, NULL,
                 "monday .. sunday (none: every day)"),
        CONF_KEY("times", CONF_STRLIST, WOFF(times), NULL, 0, 0, NULL,
                 "HH:MM-HH:MM local times, end excluded (none: all day)"),
        CONF_KEY("months", CONF_STRLIST, WOFF(months), NULL, 0, 0, NULL,
                 "january .. december (none: every month), e.g. peak season"),
        CONF_KEY("time_zone", CONF_STR, WOFF(time_zone), NULL, 0, 0, NULL,
                 "IANA time zone the times are in, e.g. Europe/Berlin; unset: the "
                 "top-level time_zone"),
        CONF_END,
};

#define KOFF(m) offsetof(struct known_issue, m)

static const struct conf_key known_keys[] = {
        CONF_KEY("matchers", CONF_STRLIST, KOFF(matchers), NULL, 0, 0, NULL,
                 "which incidents belong to the ticket; all must hold"),
        CONF_KEY("ticket", CONF_STR, KOFF(ticket), NULL, 0, 0, NULL,
                 "the existing ticket, e.g. PROD-1234"),
        CONF_KEY("comment", CONF_STR, KOFF(comment), NULL, 0, 0, NULL, "what is known"),
        CONF_KEY("receiver", CONF_STR, KOFF(receiver), NULL, 0, 0, NULL,
                 "the jira or servicenow receiver holding the ticket: each change that "
                 "would have notified is added to it as a comment (none: only muted)"),
        CONF_END,
};

const struct conf_variant *known_issue_variants(void)
{
	static const struct conf_variant v[] = {
	        {"*", known_keys, sizeof(struct known_issue)},
	        {NULL, NULL, 0},
	};
	return v;
}

int known_issue_check(struct known_issue *k, char *err, size_t errlen)
{
	if (k->ticket == NULL || k->matchers.n == 0) {
		snprintf(err, errlen, "needs a ticket and at least one matcher");
		return -1;
	}
	/* It goes into the tracker's URL: a ticket key or number, nothing else. */
	if (k->receiver && (k->ticket[0] == '\0' || strlen(k->ticket) > KNOWN_TICKET_MAX ||
	                    strspn(k->ticket, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                                      "0123456789_-") != strlen(k->ticket))) {
		snprintf(err, errlen,
		         "ticket: '%.80s' is not a ticket key or number (letters, digits, - and _, "
		         "at most %d)",
		         k->ticket, KNOWN_TICKET_MAX);
		return -1;
	}
	return matchers_compile(&k->matchers, k->m, &k->nm, err, errlen);
}

const struct conf_variant *silence_variants(void)
{
	static const struct conf_variant v[] = {
	        {"*", silence_keys, sizeof(struct silence)},
	        {NULL, NULL, 0},
	};
	return v;
}

const struct conf_variant *time_window_variants(void)
{
	static const struct conf_variant v[] = {
	        {"*", window_keys, sizeof(struct time_window)},
	        {NULL, NULL, 0},
	};
	return v;
}

int matchers_compile(const struct conf_list *l, struct matcher *m, int *n, char *err, size_t errlen)
{
	if (l->n > SUPPRESS_MAX_MATCHERS) {
		snprintf(err, errlen, "at most %d matchers", SUPPRESS_MAX_MATCHERS);
		return -1;
	}
	for (size_t i = 0; i < l->n; i++) {
		char op[4];
		int end = 0;

		if (sscanf(l->v[i], " %31[a-z_] %3[=!] %95[^\n]%n", m[i].field, op, m[i].value,
		           &end) != 3 ||
		    (strcmp(op, "==") && strcmp(op, "!="))) {
			snprintf(err, errlen,
			         "matcher '%s': expected 'field == value' or 'field != value'",
			         l->v[i]);
			return -1;
		}
		m[i].negate = op[0] == '!';
		for (size_t k = strlen(m[i].value); k && m[i].value[k - 1] == ' '; k--)
			m[i].value[k - 1] = '\0';
	}
	*n = (int)l->n;
	return 0;
}

int silence_check(struct silence *s, char *err, size_t errlen)
{
	if (s->start == NULL || s->end == NULL || rfc3339_parse(s->start, &s->start_ms) < 0 ||
	    rfc3339_parse(s->end, &s->end_ms) < 0 || s->end_ms <= s->start_ms) {
		snprintf(err, errlen, "needs start and end as RFC 3339 times, end after start");
		return -1;
	}
	if (s->author == NULL || s->comment == NULL) {
		snprintf(err, errlen,
		         "needs an author and a comment (a silence must say who and why)");
		return -1;
	}
	if (s->matchers.n == 0) {
		snprintf(err, errlen,
		         "needs at least one matcher (silencing everything is an outage)");
		return -1;
	}
	return matchers_compile(&s->matchers, s->m, &s->nm, err, errlen);
}

static int index_of(const char *s, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

int time_window_check(struct time_window *w, char *err, size_t errlen)
{
	static const char *const days[] = {"monday", "tuesday",  "wednesday", "thursday",
	                                   "friday", "saturday", "sunday"};
	static const char *const months[] = {"january",   "february", "march",    "april",
	                                     "may",       "june",     "july",     "august",
	                                     "september", "october",  "november", "december"};
	char why[256];

	if (w->name == NULL) {
		snprintf(err, errlen, "needs a name");
		return -1;
	}
	w->zone = tz_get(w->time_zone, why, sizeof(why));
	if (w->zone == NULL) {
		snprintf(err, errlen, "time_zone: %s", why);
		return -1;
	}
	w->days = w->weekdays.n ? 0 : 0x7f;
	for (size_t i = 0; i < w->weekdays.n; i++) {
		int d = index_of(w->weekdays.v[i], days, 7);

		if (d < 0) {
			snprintf(err, errlen, "weekdays: '%s' is not monday .. sunday",
			         w->weekdays.v[i]);
			return -1;
		}
		w->days |= (uint8_t)(1 << d);
	}
	w->months_mask = w->months.n ? 0 : 0xfff;
	for (size_t i = 0; i < w->months.n; i++) {
		int m = index_of(w->months.v[i], months, 12);

		if (m < 0) {
			snprintf(err, errlen, "months: '%s' is not january .. december",
			         w->months.v[i]);
			return -1;
		}
		w->months_mask |= (uint16_t)(1 << m);
	}
	if (w->times.n > SUPPRESS_MAX_TIMES) {
		snprintf(err, errlen, "at most %d times", SUPPRESS_MAX_TIMES);
		return -1;
	}
	for (size_t i = 0; i < w->times.n; i++) {
		int h1, m1, h2, m2, end = 0;

		if (sscanf(w->times.v[i], "%2d:%2d-%2d:%2d%n", &h1, &m1, &h2, &m2, &end) != 4 ||
		    w->times.v[i][end] || h1 > 23 || m1 > 59 || h2 > 24 || m2 > 59 ||
		    (h2 == 24 && m2) || h1 * 60 + m1 >= h2 * 60 + m2) {
			snprintf(err, errlen,
			         "times: '%s' is not HH:MM-HH:MM with start before end",
			         w->times.v[i]);
			return -1;
		}
		w->from[i] = (uint16_t)(h1 * 60 + m1);
		w->to[i] = (uint16_t)(h2 * 60 + m2);
	}
	w->ntimes = (int)w->times.n;
	return matchers_compile(&w->matchers, w->m, &w->nm, err, errlen);
}

int matchers_hold(const struct matcher *m, int n, matcher_field_fn field, void *arg)
{
	char v[128];

	for (int i = 0; i < n; i++) {
		int has = field(arg, m[i].field, v, sizeof(v));
		int eq = has && strcmp(v, m[i].value) == 0;

		if (eq == m[i].negate)
			return 0;
	}
	return 1;
}

struct incident_fields {
	const char *rule, *kind, *key;
	int tier;
};

/* The value of field for an incident: rule, kind, tier, or a group key field. */
static int field_value(void *arg, const char *field, char *out, size_t outlen)
{
	const struct incident_fields *f = arg;

	if (strcmp(field, "rule") == 0)
		snprintf(out, outlen, "%s", f->rule);
	else if (strcmp(field, "kind") == 0)
		snprintf(out, outlen, "%s", f->kind);
	else if (strcmp(field, "tier") == 0)
		snprintf(out, outlen, "%d", f->tier);
	else
		return key_field(f->key, field, out, outlen);
	return 1;
}

const char *key_value_end(const char *v)
{
	for (const char *sp = strchr(v, ' '); sp; sp = strchr(sp + 1, ' ')) {
		size_t n = strspn(sp + 1, KEY_FIELD_CHARS);

		if (n > 0 && sp[1 + n] == '=')
			return sp;
	}
	return v + strlen(v);
}

size_t key_pair_len(const char *p)
{
	const char *v = p + strspn(p, KEY_FIELD_CHARS);

	return *v == '=' ? (size_t)(key_value_end(v + 1) - p) : strlen(p);
}

const char *key_find(const char *key, const char *field, size_t *len)
{
	size_t n = strlen(field);

	/* Pair by pair: a value may hold spaces, and text like a field name. */
	for (const char *p = key; *p;) {
		size_t m = key_pair_len(p);

		if (m > n && p[n] == '=' && strncmp(p, field, n) == 0) {
			*len = m;
			return p;
		}
		p += m + (p[m] == ' ');
	}
	return NULL;
}

int key_field(const char *key, const char *field, char *out, size_t outlen)
{
	size_t n = strlen(field), len;
	const char *p = key_find(key, field, &len);

	if (p == NULL)
		return 0;
	snprintf(out, outlen, "%.*s", (int)(len - n - 1), p + n + 1);
	return 1;
}

static int matches(const struct matcher *m, int n, const char *rule, const char *kind, int tier,
                   const char *key)
{
	struct incident_fields f = {rule, kind, key, tier};

	return matchers_hold(m, n, field_value, &f);
}

const struct known_issue *known_issue_find(const struct conf_items *known, const char *rule,
                                           const char *kind, int tier, const char *key)
{
	for (size_t i = 0; known && i < known->n; i++) {
		const struct known_issue *k = known->v[i].data;

		if (matches(k->m, k->nm, rule, kind, tier, key))
			return k;
	}
	return NULL;
}

int time_window_contains(const struct time_window *w, int64_t t_ms)
{
	int day, month, minute, in = 0;

	tz_local(w->zone, t_ms, &day, &month, &minute);
	if (!(w->days & (1 << day)) || !(w->months_mask & (1 << month)))
		return 0;
	if (w->ntimes == 0)
		return 1;
	for (int i = 0; i < w->ntimes; i++)
		in |= minute >= w->from[i] && minute < w->to[i];
	return in;
}

enum suppressed_by suppress_match(const struct suppress_lists *l, const char *rule,
                                  const char *kind, int tier, const char *key, int64_t t_ms,
                                  char *why, size_t whylen)
{
	const struct conf_items *silences = l->silences, *windows = l->windows;

	const struct known_issue *k = known_issue_find(l->known_issues, rule, kind, tier, key);

	if (k) {
		snprintf(why, whylen, "known issue %s%s%s", k->ticket, k->comment ? ": " : "",
		         k->comment ? k->comment : "");
		return SUPPRESSED_KNOWN_ISSUE;
	}
	for (size_t i = 0; silences && i < silences->n; i++) {
		const struct silence *s = silences->v[i].data;

		if (t_ms >= s->start_ms && t_ms < s->end_ms &&
		    matches(s->m, s->nm, rule, kind, tier, key)) {
			snprintf(why, whylen, "silence %zu by %s until %s: %s", i, s->author,
			         s->end, s->comment);
			return SUPPRESSED_SILENCE;
		}
	}
	for (size_t i = 0; windows && i < windows->n; i++) {
		const struct time_window *w = windows->v[i].data;

		if (matches(w->m, w->nm, rule, kind, tier, key) && time_window_contains(w, t_ms)) {
			snprintf(why, whylen, "time window '%s' (%s)", w->name, w->time_zone);
			return SUPPRESSED_TIME_WINDOW;
		}
	}
	return SUPPRESSED_NOT;
}
