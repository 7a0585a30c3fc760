/*
 * redact.c: personal-data redaction (see redact.h).
 *
 * E-mail, phone and card numbers are found by small scanners rather than
 * regular expressions: they are faster, and their rules can be exact where
 * regexes get loose (a card must pass Luhn; a phone needs 9 digits, or 7
 * after '+' or '(', so "2026-11-22", "$19.99" and "40 minutes" stay).
 */
#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/buf.h>
#include <voca/redact.h>
#include <voca/log.h>
#include <voca/xalloc.h>

struct redactor {
	regex_t *re;
	size_t n;
};

struct redactor *redactor_new(const struct conf_list *patterns, char *err, size_t errlen)
{
	struct redactor *r = xcalloc(1, sizeof(*r));

	r->re = xcalloc(patterns && patterns->n ? patterns->n : 1, sizeof(regex_t));
	for (size_t i = 0; patterns && i < patterns->n; i++) {
		int rc = regcomp(&r->re[i], patterns->v[i], REG_EXTENDED);

		if (rc != 0) {
			char why[128];

			regerror(rc, &r->re[i], why, sizeof(why));
			snprintf(err, errlen, "pattern '%.80s': %s", patterns->v[i], why);
			redactor_free(r);
			return NULL;
		}
		r->n++;
	}
	return r;
}

void redactor_free(struct redactor *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		regfree(&r->re[i]);
	free(r->re);
	free(r);
}

static int email_local(unsigned char c)
{
	return isalnum(c) || strchr("._%+-", c);
}

static int email_domain(unsigned char c)
{
	return isalnum(c) || c == '.' || c == '-';
}

/* An e-mail address around the '@' at s[at]: sets [*from, *to). */
static int find_email(const char *s, size_t at, size_t len, size_t *from, size_t *to)
{
	size_t a = at, b = at + 1, dot = 0;

	while (a > 0 && email_local((unsigned char)s[a - 1]))
		a--;
	while (b < len && email_domain((unsigned char)s[b])) {
		if (s[b] == '.')
			dot = b;
		b++;
	}
	while (b > at + 1 && (s[b - 1] == '.' || s[b - 1] == '-'))
		b--; /* the sentence's full stop is not the domain's */
	for (dot = b; dot > at && s[dot - 1] != '.'; dot--)
		;
	dot = dot > at ? dot - 1 : 0; /* the last dot inside the domain */
	if (a == at || dot <= at + 1 || dot >= b - 2)
		return 0;
	*from = a;
	*to = b;
	return 1;
}

static int luhn(const char *digits, size_t n)
{
	int sum = 0;

	for (size_t i = 0; i < n; i++) {
		int d = digits[n - 1 - i] - '0';

		if (i % 2) {
			d *= 2;
			if (d > 9)
				d -= 9;
		}
		sum += d;
	}
	return sum % 10 == 0;
}

/*
 * A run of digits starting at s[i] with single spaces, dashes, dots or
 * parentheses between them (and an optional leading '+'): its end, and its
 * digits in d (at most 20).
 */
static size_t digit_run(const char *s, size_t i, size_t len, char *d, size_t *nd)
{
	size_t j = i;

	*nd = 0;
	if (s[j] == '+' || s[j] == '(')
		j++;
	while (j < len) {
		if (isdigit((unsigned char)s[j])) {
			if (*nd < 20)
				d[*nd] = s[j];
			(*nd)++;
			j++;
		} else if (strchr(" -.()", s[j]) && j + 1 < len &&
		           (isdigit((unsigned char)s[j + 1]) ||
		            (s[j] == ')' && s[j + 1] == ' ' && j + 2 < len &&
		             isdigit((unsigned char)s[j + 2])))) {
			j++;
		} else if (s[j] == ')') {
			j++;
			break;
		} else {
			break;
		}
	}
	return j;
}

static void put(struct buf *out, const char *s, size_t n)
{
	if (buf_add(out, s, n) < 0)
		fatal("redact: text over the buffer limit");
}

char *redact(const struct redactor *r, const char *text, struct redact_counts *counts)
{
	struct redact_counts c = {0};
	struct buf out;
	size_t len = strlen(text), i = 0;

	buf_init(&out, len * 2 + 64);
	while (i < len) {
		unsigned char ch = (unsigned char)text[i];
		size_t from, to;

		if (ch == '@' && find_email(text, i, len, &from, &to) && out.len >= i - from &&
		    memcmp(out.data + out.len - (i - from), text + from, i - from) == 0) {
			/* The local part was already copied as it was: take it back. */
			out.len -= i - from;
			put(&out, "[email]", 7);
			c.emails++;
			i = to;
			continue;
		}
		if (isdigit(ch) || ((ch == '+' || ch == '(') && i + 1 < len &&
		                    isdigit((unsigned char)text[i + 1]))) {
			int starts_word = i == 0 || !isalnum((unsigned char)text[i - 1]);
			char d[20];
			size_t nd, end = digit_run(text, i, len, d, &nd);
			int ends_word = end >= len || !isalnum((unsigned char)text[end]);

			if (starts_word && ends_word && nd >= 13 && nd <= 19 && luhn(d, nd)) {
				put(&out, "[card]", 6);
				c.cards++;
				i = end;
				continue;
			}
			if (starts_word && ends_word && nd <= 15 &&
			    (nd >= 9 || (nd >= 7 && (ch == '+' || ch == '(')))) {
				put(&out, "[phone]", 7);
				c.phones++;
				i = end;
				continue;
			}
			put(&out, text + i, end - i);
			i = end;
			continue;
		}
		if (ch < 0x20 && ch != '\n' && ch != '\t') {
			c.controls++;
			i++;
			continue;
		}
		put(&out, text + i, 1);
		i++;
	}
	for (size_t p = 0; r && p < r->n; p++) {
		struct buf next;
		regmatch_t m;
		const char *s = buf_str(&out);

		buf_init(&next, out.len * 2 + 64);
		while (regexec(&r->re[p], s, 1, &m, 0) == 0 && m.rm_eo > m.rm_so) {
			put(&next, s, (size_t)m.rm_so);
			put(&next, "[redacted]", 10);
			c.patterns++;
			s += m.rm_eo;
		}
		put(&next, s, strlen(s));
		buf_free(&out);
		out = next;
	}
	if (counts)
		*counts = c;
	char *result = xstrdup(buf_str(&out));

	buf_free(&out);
	return result;
}
