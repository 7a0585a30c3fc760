/*
 * redact.h: personal data out of customer text, before anything leaves.
 *
 * Replaces e-mail addresses with [email], phone numbers with [phone], card
 * numbers (13-19 digits, Luhn-valid, spaces or dashes allowed) with [card],
 * and matches of configured patterns (POSIX extended regular expressions)
 * with [redacted]; drops control characters other than newline and tab (no
 * CR/LF injection downstream). Escaping for a target (Slack mrkdwn, ADF,
 * HTML) is the connector's job, after this.
 */
#ifndef VOCA_REDACT_H
#define VOCA_REDACT_H

#include <stddef.h>

#include <voca/conf.h>

struct redactor;

struct redact_counts {
	unsigned emails, phones, cards, patterns, controls;
};

/* Compiles the configured patterns. NULL with err naming the bad pattern. */
struct redactor *redactor_new(const struct conf_list *patterns, char *err, size_t errlen);
void redactor_free(struct redactor *r);

/*
 * Returns a newly allocated (free()) redacted copy of text; counts (may be
 * NULL) says what was replaced. text must be valid UTF-8 (the decoder has
 * checked it); multibyte characters pass through untouched.
 */
char *redact(const struct redactor *r, const char *text, struct redact_counts *counts);

#endif
