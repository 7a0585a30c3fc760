/*
 * log.h: the daemon's one logger.
 *
 * Lines go to stderr as "TIME LEVEL component: message" (TIME is left out
 * under systemd, whose journal stamps lines itself). Leaves of the code do not
 * log: they fill an error buffer and the layer that decides policy logs once.
 * Secrets never reach a log line; response bodies only at debug level.
 */
#ifndef VOCA_LOG_H
#define VOCA_LOG_H

enum log_level {
	LOGL_ERROR = 0,
	LOGL_WARN = 1,
	LOGL_INFO = 2,
	LOGL_DEBUG = 3,
};

void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Parses "error", "warn", "info" or "debug". Returns 0, or -1 if unknown. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOGL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOGL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOGL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOGL_DEBUG, __VA_ARGS__)

/* Print "voca: message" to stderr and exit(1). For start-up and OOM only. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
