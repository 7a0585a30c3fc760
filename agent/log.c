/*
 * log.c: the logger (see log.h). One write(2)-sized line per message so that
 * lines from concurrent processes on one stderr do not interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <voca/event.h>
#include <voca/log.h>

static enum log_level current = LOGL_INFO;
static int stamp = -1; /* -1: not decided yet */

static const char *const names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
	current = level;
}

enum log_level log_get_level(void)
{
	return current;
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

const char *log_level_name(enum log_level level)
{
	return (unsigned)level < sizeof(names) / sizeof(names[0]) ? names[level] : "?";
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[2048];
	size_t off = 0;
	va_list ap;
	int n;

	if (level > current)
		return;
	if (stamp < 0)
		stamp = getenv("JOURNAL_STREAM") == NULL; /* journald stamps lines itself */
	if (stamp) {
		struct timeval tv;

		gettimeofday(&tv, NULL);
		rfc3339_format((int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000, line, sizeof(line));
		off = strlen(line);
		line[off++] = ' ';
	}
	n = snprintf(line + off, sizeof(line) - off, "%s ", log_level_name(level));
	off += (size_t)n;
	va_start(ap, fmt);
	n = vsnprintf(line + off, sizeof(line) - off - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	off += (size_t)n < sizeof(line) - off - 1 ? (size_t)n : sizeof(line) - off - 2;
	line[off++] = '\n';
	fwrite(line, 1, off, stderr);
}

void fatal(const char *fmt, ...)
{
	va_list ap;

	fputs("voca: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}
