/*
 * fuzz_decode.c: libFuzzer harness for the frame decoder.
 *
 * Whatever the bytes, event_decode must not crash, leak or hit undefined
 * behaviour, and every call it makes must be either a valid event with the
 * required fields set or a rejection with a code and a reason.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <voca/event.h>
#include <voca/xalloc.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check(void *arg, const struct event *ev, const struct event_error *err, const char *raw,
                 size_t len)
{
	(void)arg;
	if (len && raw == NULL)
		abort();
	if (ev) {
		if (ev->event_id == NULL || ev->category == NULL || !ev->event_id[0] ||
		    ev->raw == NULL || (ev->rating && (ev->rating < 1 || ev->rating > 5)))
			abort();
	} else if (err == NULL || err->code == REJECT_NONE || err->msg[0] == '\0' ||
	           memchr(err->msg, '\0', sizeof(err->msg)) == NULL) {
		abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int init;
	struct decode_limits lim = decode_limits_default;

	if (!init) {
		xalloc_install_cjson();
		init = 1;
	}
	lim.max_array_events = 64;
	event_decode((const char *)data, size, &lim, check, NULL);
	return 0;
}
