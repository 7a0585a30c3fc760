/*
 * clock.h: the two clocks the agent reads (rule and render code never do:
 * they get time passed in).
 */
#ifndef VOCA_CLOCK_H
#define VOCA_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Wall time, ms since the epoch: for timestamps people read. */
static inline int64_t clock_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Monotonic time in ns: for deadlines and durations. */
static inline int64_t clock_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
