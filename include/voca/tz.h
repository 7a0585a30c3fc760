/*
 * tz.h: local time in an IANA time zone, read from the system's TZif files
 * (RFC 8536), without the TZ variable.
 *
 * localtime_r takes its zone from TZ, and switching TZ means setenv(),
 * which races with getenv() on every other thread (libcurl reads its
 * proxy variables at each transfer): a time window in a daemon with
 * delivery workers must not touch it.
 */
#ifndef VOCA_TZ_H
#define VOCA_TZ_H

#include <stddef.h>
#include <stdint.h>

struct tz;

/*
 * The zone named ("Europe/Berlin"), loaded once and kept for the life of
 * the process (zones are few, and shared by every configuration that names
 * them); safe to call from any thread. NULL with err set when the name is
 * not a zone or its file cannot be read.
 */
const struct tz *tz_get(const char *name, char *err, size_t errlen);

/* Local time minus UTC, in seconds, at the instant t (seconds since the epoch). */
int32_t tz_offset(const struct tz *z, int64_t t);

/* 1 with *off set when the zone's offset never changes (UTC, Etc/GMT+5):
 * callers on a hot path add it and skip tz_offset. */
int tz_fixed(const struct tz *z, int32_t *off);

/* The local calendar at t_ms: weekday (0 Monday), month (0 January), minute of the day. */
void tz_local(const struct tz *z, int64_t t_ms, int *weekday, int *month, int *minute);

/*
 * A zone for a hot path (a rule's seasons, looked up at every key's close):
 * tz_clock_init loads it (0, or -1 with err "time_zone: ..."), and
 * tz_clock_local gives the wall clock at t_ms in ms since a local epoch, a
 * zone whose offset never changes (UTC) without a lookup.
 */
struct tz_clock {
	const struct tz *zone;
	int fixed;        /* the offset never changes: */
	int64_t fixed_ms; /* it */
};

int tz_clock_init(struct tz_clock *c, const char *name, char *err, size_t errlen);

/* The hour (0-23) and weekday (0 Monday) of a wall clock's ms since its epoch. */
static inline void tz_hour_weekday(int64_t local_ms, int *hour, int *weekday)
{
	int64_t day = local_ms >= 0 ? local_ms / 86400000 : (local_ms - 86399999) / 86400000;

	*hour = (int)((local_ms - day * 86400000) / 3600000);
	*weekday = (int)((day % 7 + 10) % 7); /* 1970-01-01 was a Thursday */
}

static inline int64_t tz_clock_local(const struct tz_clock *c, int64_t t_ms)
{
	if (c->fixed)
		return t_ms + c->fixed_ms;
	return t_ms +
	       (int64_t)tz_offset(c->zone, t_ms >= 0 ? t_ms / 1000 : (t_ms - 999) / 1000) * 1000;
}

#endif
