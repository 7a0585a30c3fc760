/*
 * test_tz.c: the TZif reader against glibc's localtime_r, which reads the
 * same files (this test is single-threaded, so switching TZ is safe here).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <voca/tz.h>

/* Zones with daylight saving north and south, half- and quarter-hour
 * offsets, a 30-minute DST (Lord Howe), none at all, and rule changes. */
static const char *const zones[] = {
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Sydney",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Australia/Lord_Howe",
        "America/Sao_Paulo",
        "Asia/Tehran",
        "Pacific/Chatham",
        "America/Santiago",
        "Europe/London",
        "Africa/Casablanca",
        "America/St_Johns",
        "Pacific/Auckland",
        "Asia/Tokyo",
};

static int32_t glibc_offset(const char *zone, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	setenv("TZ", zone, 1);
	tzset();
	localtime_r(&tt, &tm);
	return (int32_t)tm.tm_gmtoff;
}

static void check_at(const struct tz *z, const char *zone, int64_t t)
{
	int32_t want = glibc_offset(zone, t), got = tz_offset(z, t);

	if (got != want)
		fail_msg("%s at %lld: %d, glibc %d", zone, (long long)t, got, want);
}

/*
 * Every 431 minutes from 1975 to 2100 (past the 2037 end of a "fat" file's
 * transitions, so the footer's rule is checked too), and the seconds on
 * either side of each transition found that way.
 */
static void test_offsets_agree_with_glibc(void **state)
{
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		const struct tz *z = tz_get(zones[i], err, sizeof(err));
		int32_t prev = 0;

		if (z == NULL)
			fail_msg("%s: %s", zones[i], err);
		for (int64_t t = 157766400; t < 4102444800LL; t += 431 * 60) {
			int32_t now = glibc_offset(zones[i], t);

			check_at(z, zones[i], t);
			if (t > 157766400 && now != prev) {
				/* A transition in (t - 431 min, t]: find its second. */
				int64_t lo = t - 431 * 60, hi = t;

				while (hi - lo > 1) {
					int64_t mid = lo + (hi - lo) / 2;

					if (glibc_offset(zones[i], mid) == prev)
						lo = mid;
					else
						hi = mid;
				}
				check_at(z, zones[i], lo);
				check_at(z, zones[i], hi);
			}
			prev = now;
		}
	}
	unsetenv("TZ");
	tzset();
}

static void test_local_calendar(void **state)
{
	char err[256];
	const struct tz *z = tz_get("Europe/Berlin", err, sizeof(err));
	int day, month, minute;

	(void)state;
	assert_non_null(z);
	/* 2026-03-29T00:59:59Z is 01:59:59 CET, a Sunday; a second later 03:00 CEST. */
	tz_local(z, 1774745999000LL, &day, &month, &minute);
	assert_int_equal(day, 6);
	assert_int_equal(month, 2);
	assert_int_equal(minute, 119);
	tz_local(z, 1774746000000LL, &day, &month, &minute);
	assert_int_equal(minute, 180);
	/* Before the epoch: 1969-12-31T23:30:00Z is 00:30 on Thursday 1 January 1970. */
	tz_local(z, -1800000LL, &day, &month, &minute);
	assert_int_equal(day, 3);
	assert_int_equal(month, 0);
	assert_int_equal(minute, 30);
}

/* A zone whose offset never changes is told, so a hot path skips the lookup. */
static void test_fixed_zones(void **state)
{
	char err[256];
	int32_t off = 1;

	(void)state;
	assert_true(tz_fixed(tz_get("UTC", err, sizeof(err)), &off));
	assert_int_equal(off, 0);
	assert_true(tz_fixed(tz_get("Etc/GMT+5", err, sizeof(err)), &off)); /* POSIX signs */
	assert_int_equal(off, -5 * 3600);
	assert_int_equal(tz_offset(tz_get("Etc/GMT+5", err, sizeof(err)), 1774745999), off);
	assert_false(tz_fixed(tz_get("Europe/Berlin", err, sizeof(err)), &off));
	assert_false(tz_fixed(tz_get("Asia/Tokyo", err, sizeof(err)), &off)); /* DST in 1948-51 */
}

static void test_unknown_zones_are_refused(void **state)
{
	char err[256];

	(void)state;
	assert_null(tz_get("Mars/Olympus_Mons", err, sizeof(err)));
	assert_non_null(strstr(err, "unknown IANA time zone 'Mars/Olympus_Mons'"));
	assert_null(tz_get("../../etc/passwd", err, sizeof(err)));
	assert_null(tz_get("/etc/passwd", err, sizeof(err)));
	assert_null(tz_get("zone.tab", err, sizeof(err))); /* a file, not a TZif one */
	assert_non_null(strstr(err, "is not a TZif file"));
	/* Loaded once: the same zone twice is the same object. */
	assert_ptr_equal(tz_get("Asia/Tokyo", err, sizeof(err)), tz_get("Asia/Tokyo", err, 256));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_offsets_agree_with_glibc),
	        cmocka_unit_test(test_local_calendar),
	        cmocka_unit_test(test_fixed_zones),
	        cmocka_unit_test(test_unknown_zones_are_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
