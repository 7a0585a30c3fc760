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

#endif
