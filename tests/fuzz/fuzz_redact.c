/*
 * fuzz_redact.c: libFuzzer harness for redaction.
 *
 * Whatever the text, redact must not crash or misbehave under ASan/UBSan,
 * must not grow it unreasonably, and must leave no control character other
 * than newline and tab.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <voca/redact.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), *out;

	memcpy(text, data, size);
	text[size] = '\0'; /* redact takes a C string: stop at the first NUL */
	out = redact(NULL, text, NULL);
	/* Replacements are at most 3 bytes longer than what they replace ("[card]" for 13+). */
	if (strlen(out) > 2 * strlen(text) + 16)
		abort();
	for (const char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\n' && *p != '\t')
			abort();
	free(out);
	free(text);
	return 0;
}
