/*
 * tz.c: IANA zones from TZif files (see tz.h).
 *
 * A TZif file lists the zone's transitions (the instants its UTC offset
 * changes) and ends with a POSIX TZ string ("CET-1CEST,M3.5.0,M10.5.0/3")
 * for the instants after the last one. Files built "fat" list transitions
 * up to 2037; "slim" ones stop at the last rule change and leave the rest
 * to the string, so both are read. Leap seconds are not applied (the
 * "right/" zones), as localtime_r does not for the usual ones.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/tz.h>
#include <voca/xalloc.h>

/* One half of a POSIX rule: month m, week w (5: the last), weekday d (0 Sunday), at secs. */
struct when {
	int m, w, d;
	int32_t secs; /* local time of day; may be negative or past 24h */
};

struct tz {
	char name[128];
	size_t n;       /* transitions */
	int64_t *at;    /* UTC seconds, ascending */
	int32_t *off;   /* the offset from at[i] on */
	int32_t before; /* the offset before at[0] */
	/* After the last transition: the POSIX string's rule, if it has one. */
	int has_rule, has_dst;
	int32_t std_off, dst_off;
	struct when start, end;
	struct tz *next;
};

static pthread_mutex_t zones_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tz *zones; /* every zone loaded; never freed */

/* ---- the calendar (proleptic Gregorian; H. Hinnant's algorithms) ---- */

static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;

	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* ---- the POSIX TZ string ---- */

static const char *skip_name(const char *p)
{
	if (*p == '<') {
		const char *q = strchr(p, '>');

		return q ? q + 1 : NULL;
	}
	const char *q = p;

	while ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z'))
		q++;
	return q - p >= 3 ? q : NULL;
}

/* [+-]hh[:mm[:ss]] into seconds; NULL if malformed. */
static const char *parse_hms(const char *p, int32_t *secs)
{
	int sign = 1, part = 0;
	int32_t v[3] = {0, 0, 0};

	if (*p == '+' || *p == '-')
		sign = *p++ == '-' ? -1 : 1;
	for (;;) {
		if (*p < '0' || *p > '9')
			return NULL;
		while (*p >= '0' && *p <= '9') {
			v[part] = v[part] * 10 + (*p++ - '0');
			if (v[part] > 167)
				return NULL;
		}
		if (*p != ':' || part == 2)
			break;
		p++;
		part++;
	}
	*secs = sign * (v[0] * 3600 + v[1] * 60 + v[2]);
	return p;
}

/* ",Mm.w.d[/time]"; the Jn and n forms, which no IANA zone uses, are refused. */
static const char *parse_when(const char *p, struct when *w)
{
	char *end;

	if (*p++ != ',' || *p++ != 'M')
		return NULL;
	w->m = (int)strtol(p, &end, 10);
	if (end == p || *end != '.' || w->m < 1 || w->m > 12)
		return NULL;
	p = end + 1;
	w->w = (int)strtol(p, &end, 10);
	if (end == p || *end != '.' || w->w < 1 || w->w > 5)
		return NULL;
	p = end + 1;
	w->d = (int)strtol(p, &end, 10);
	if (end == p || w->d < 0 || w->d > 6)
		return NULL;
	p = end;
	w->secs = 7200;
	if (*p == '/')
		p = parse_hms(p + 1, &w->secs);
	return p;
}

/* Reads the footer string; 0 when it is understood (with or without a rule). */
static int parse_posix(struct tz *z, const char *s)
{
	const char *p = skip_name(s);
	int32_t v;

	if (p == NULL || (p = parse_hms(p, &v)) == NULL)
		return -1;
	z->std_off = -v; /* POSIX counts west of Greenwich as positive */
	z->has_rule = 1;
	if (*p == '\0')
		return 0; /* no daylight saving */
	if ((p = skip_name(p)) == NULL)
		return -1;
	z->dst_off = z->std_off + 3600;
	if (*p != ',' && *p != '\0') {
		if ((p = parse_hms(p, &v)) == NULL)
			return -1;
		z->dst_off = -v;
	}
	if (*p == '\0')
		return -1; /* daylight saving without its dates */
	if ((p = parse_when(p, &z->start)) == NULL || (p = parse_when(p, &z->end)) == NULL ||
	    *p != '\0')
		return -1;
	z->has_dst = 1;
	return 0;
}

/* The instant a rule's local date and time falls on in year y, for a zone at offset off. */
static int64_t rule_instant(const struct when *w, int64_t y, int32_t off)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int64_t first = days_from_civil(y, w->m, 1);
	int wday1 = (int)((first % 7 + 11) % 7); /* 1970-01-01 was a Thursday (4) */
	int day = 1 + (w->d - wday1 + 7) % 7 + 7 * (w->w - 1);
	int len = mdays[w->m - 1] + (w->m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)));

	while (day > len)
		day -= 7;
	return (first + day - 1) * 86400 + w->secs - off;
}

static int32_t rule_offset(const struct tz *z, int64_t t)
{
	int64_t y;
	int m, d;

	if (!z->has_dst)
		return z->std_off;
	civil_from_days(floor_div(t + z->std_off, 86400), &y, &m, &d);
	int64_t on = rule_instant(&z->start, y, z->std_off);
	int64_t off = rule_instant(&z->end, y, z->dst_off);

	if (on < off)
		return t >= on && t < off ? z->dst_off : z->std_off;
	return t >= off && t < on ? z->std_off : z->dst_off; /* the southern hemisphere */
}

/* ---- the TZif file ---- */

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct counts {
	uint32_t isut, isstd, leap, time, type, chars;
};

static int header(const unsigned char *p, size_t len, struct counts *c, int *version)
{
	if (len < 44 || memcmp(p, "TZif", 4) != 0)
		return -1;
	*version = p[4] ? p[4] - '0' : 1;
	c->isut = be32(p + 20);
	c->isstd = be32(p + 24);
	c->leap = be32(p + 28);
	c->time = be32(p + 32);
	c->type = be32(p + 36);
	c->chars = be32(p + 40);
	return c->type == 0 || c->type > 256 || c->time > 100000 || c->chars > 100000 ? -1 : 0;
}

static size_t body_size(const struct counts *c, int tsize)
{
	return (size_t)c->time * (tsize + 1) + (size_t)c->type * 6 + c->chars +
	       (size_t)c->leap * (tsize + 4) + c->isstd + c->isut;
}

/* Fills z from the file's bytes; -1 if they are not a TZif file. */
static int parse_tzif(struct tz *z, const unsigned char *p, size_t len)
{
	struct counts c;
	int version, tsize = 4;
	size_t at = 0;

	if (header(p, len, &c, &version) < 0)
		return -1;
	if (version >= 2) {
		/* Skip the 32-bit block: the 64-bit one follows with its own header. */
		at = 44 + body_size(&c, 4);
		if (at > len || header(p + at, len - at, &c, &version) < 0)
			return -1;
		tsize = 8;
	}
	at += 44;
	if (at + body_size(&c, tsize) > len)
		return -1;
	const unsigned char *times = p + at, *idx = times + (size_t)c.time * tsize;
	const unsigned char *types = idx + c.time;

	z->n = c.time;
	z->at = xcalloc(c.time ? c.time : 1, sizeof(*z->at));
	z->off = xcalloc(c.time ? c.time : 1, sizeof(*z->off));
	z->before = (int32_t)be32(types);
	for (uint32_t i = 0; i < c.time; i++) {
		if (idx[i] >= c.type)
			return -1;
		z->at[i] = tsize == 8 ? be64(times + (size_t)i * 8)
		                      : (int64_t)(int32_t)be32(times + (size_t)i * 4);
		z->off[i] = (int32_t)be32(types + (size_t)idx[i] * 6);
		if (i && z->at[i] <= z->at[i - 1])
			return -1;
	}
	if (version >= 2) {
		/* The footer: "\n" POSIX-TZ-string "\n". */
		const char *f = (const char *)p + at + body_size(&c, tsize);
		const char *end = (const char *)p + len;
		char s[128];

		if (f < end && *f == '\n') {
			const char *nl = memchr(f + 1, '\n', (size_t)(end - f - 1));
			size_t n = nl ? (size_t)(nl - f - 1) : 0;

			if (nl && n < sizeof(s)) {
				memcpy(s, f + 1, n);
				s[n] = '\0';
				if (n && parse_posix(z, s) < 0)
					z->has_rule = z->has_dst = 0;
			}
		}
	}
	return 0;
}

static void tz_free(struct tz *z)
{
	if (z) {
		free(z->at);
		free(z->off);
		free(z);
	}
}

static struct tz *load(const char *name, char *err, size_t errlen)
{
	char path[256];
	unsigned char *data = NULL;
	size_t len = 0, cap = 0;
	FILE *f;
	struct tz *z;

	if (name[0] == '\0' || name[0] == '/' || strstr(name, "..") ||
	    strlen(name) >= sizeof(z->name)) {
		snprintf(err, errlen, "unknown IANA time zone '%s'", name);
		return NULL;
	}
	snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", name);
	f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(err, errlen, "unknown IANA time zone '%s' (%s: %s)", name, path,
		         strerror(errno));
		return NULL;
	}
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			if (cap > (1u << 20))
				break;
			data = xrealloc(data, cap);
		}
		size_t got = fread(data + len, 1, cap - len, f);

		if (got == 0)
			break;
		len += got;
	}
	fclose(f);
	z = xcalloc(1, sizeof(*z));
	snprintf(z->name, sizeof(z->name), "%s", name);
	if (parse_tzif(z, data, len) < 0) {
		snprintf(err, errlen, "unknown IANA time zone '%s' (%s is not a TZif file)", name,
		         path);
		tz_free(z);
		z = NULL;
	}
	free(data);
	return z;
}

const struct tz *tz_get(const char *name, char *err, size_t errlen)
{
	struct tz *z;

	if (name == NULL) {
		snprintf(err, errlen, "no time zone named");
		return NULL;
	}
	pthread_mutex_lock(&zones_mu);
	for (z = zones; z && strcmp(z->name, name) != 0; z = z->next)
		;
	if (z == NULL && (z = load(name, err, errlen)) != NULL) {
		z->next = zones;
		zones = z;
	}
	pthread_mutex_unlock(&zones_mu);
	return z;
}

int32_t tz_offset(const struct tz *z, int64_t t)
{
	size_t lo = 0, hi = z->n;

	if (z->n == 0 || t < z->at[0])
		return z->n == 0 && z->has_rule ? rule_offset(z, t) : z->before;
	if (t >= z->at[z->n - 1] && z->has_rule)
		return rule_offset(z, t);
	while (hi - lo > 1) { /* the last transition at or before t */
		size_t mid = lo + (hi - lo) / 2;

		if (z->at[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return z->off[lo];
}

int tz_fixed(const struct tz *z, int32_t *off)
{
	if (z->n > 0 || (z->has_rule && z->has_dst))
		return 0;
	*off = z->has_rule ? z->std_off : z->before;
	return 1;
}

int tz_clock_init(struct tz_clock *c, const char *name, char *err, size_t errlen)
{
	char why[256];
	int32_t off = 0;

	c->zone = tz_get(name, why, sizeof(why));
	if (c->zone == NULL) {
		snprintf(err, errlen, "time_zone: %s", why);
		return -1;
	}
	c->fixed = tz_fixed(c->zone, &off);
	c->fixed_ms = (int64_t)off * 1000;
	return 0;
}

void tz_local(const struct tz *z, int64_t t_ms, int *weekday, int *month, int *minute)
{
	int64_t t = floor_div(t_ms, 1000), local = t + tz_offset(z, t);
	int64_t days = floor_div(local, 86400), y;
	int d;

	civil_from_days(days, &y, month, &d);
	*month -= 1;
	*weekday = (int)((days % 7 + 10) % 7); /* Monday 0: 1970-01-01 was a Thursday (3) */
	*minute = (int)((local - days * 86400) / 60);
}
