/*
 * event.h: one scored-feedback event, and the decoder that turns ZeroMQ
 * frames into events or into reasons for quarantine.
 *
 * The contract is shared/schema/scored-feedback.v1.schema.json. A frame holds
 * one JSON object or an array of them. The decoder checks the bytes (size,
 * UTF-8), the JSON (syntax, duplicate keys, depth, finite numbers) and every
 * field the schema names (types, enums, ranges, RFC 3339 times). Fields the
 * schema does not name are kept in the event's raw JSON and otherwise ignored.
 *
 * Decoding is a pure function of the bytes: no clock, no I/O, no logging.
 */
#ifndef VOCA_EVENT_H
#define VOCA_EVENT_H

#include <stddef.h>
#include <stdint.h>

enum channel {
	CHANNEL_NONE = 0, /* field absent */
	CHANNEL_REVIEW,
	CHANNEL_SUPPORT,
	CHANNEL_SURVEY,
	CHANNEL_CHAT,
	CHANNEL_SOCIAL,
	CHANNEL_RETURN,
	CHANNEL_OTHER,
};

enum sentiment {
	SENTIMENT_POSITIVE = 0,
	SENTIMENT_NEUTRAL,
	SENTIMENT_NEGATIVE,
	SENTIMENT_MIXED,
};

enum severity {
	SEVERITY_LOW = 0, /* the schema's default */
	SEVERITY_MEDIUM,
	SEVERITY_HIGH,
	SEVERITY_CRITICAL,
};

const char *channel_name(enum channel c);
const char *sentiment_name(enum sentiment s);
const char *severity_name(enum severity s);

/*
 * A decoded event. Every pointer is borrowed from the decoder and valid only
 * during the callback that receives the event. Absent optional strings are
 * NULL; absent numbers are flagged as shown.
 */
struct event {
	const char *event_id;
	int64_t revision; /* 0 when absent */
	int64_t ts_ms;    /* milliseconds since the Unix epoch, UTC */
	const char *source;
	enum channel channel;
	const char *sku;
	const char *product;
	const char *category;
	const char *subcategory;
	enum sentiment sentiment;
	double sentiment_score; /* NAN when absent */
	enum severity severity;
	double urgency;    /* NAN when absent */
	double confidence; /* NAN when absent */
	int needs_review;  /* 0 when absent */
	int rating;        /* 0 when absent, else 1..5 */
	const char *locale;
	const char *region;
	const char *customer_tier;
	const char *text;
	const char *summary;
	const char *suggested_owner;
	const char *suggested_action;
	const char *url;
	const char *model_name;
	const char *model_version;
	const char *prompt_version;
	const char *taxonomy_version;
	const char *publisher;
	int64_t seq; /* -1 when absent */

	const char *raw; /* the event's JSON text, unknown fields included */
	size_t raw_len;
};

/*
 * Why an input was quarantined. The values are stored: never renumber them,
 * add new ones at the end. reject_code_name() gives the stable text form.
 */
enum reject_code {
	REJECT_NONE = 0,
	REJECT_EMPTY_FRAME,
	REJECT_TOO_LARGE,
	REJECT_INVALID_UTF8,
	REJECT_INVALID_JSON,
	REJECT_TOO_DEEP,
	REJECT_DUPLICATE_KEY,
	REJECT_NOT_OBJECT,
	REJECT_EMPTY_ARRAY,
	REJECT_MISSING_FIELD,
	REJECT_WRONG_TYPE,
	REJECT_OUT_OF_RANGE,
	REJECT_BAD_ENUM,
	REJECT_BAD_TIME,
	REJECT_NOT_FINITE,
	REJECT_BAD_FRAMES, /* a ZeroMQ message with an unexpected frame count */
	REJECT_TOO_MANY_EVENTS,
	REJECT_FUTURE_TIME, /* ts too far ahead of this machine's clock */
};
#define REJECT_CODES (REJECT_FUTURE_TIME + 1) /* for arrays by code */

const char *reject_code_name(enum reject_code code);

struct event_error {
	enum reject_code code;
	char msg[240]; /* one line a person understands */
};

struct decode_limits {
	size_t max_frame_bytes;  /* larger frames are rejected whole */
	int max_depth;           /* deepest nesting of objects and arrays */
	size_t max_array_events; /* most events one frame may carry */
	/*
	 * An event whose ts is more than max_future_ms after now_ms (this
	 * machine's clock, passed in) is rejected: one such event would move
	 * the rules' clock past every event that comes after it. now_ms 0: no
	 * bound (the default; replays of what was stored, the fuzzer).
	 */
	int64_t now_ms;
	int64_t max_future_ms;
};

/* The limits voca uses unless configured otherwise. */
extern const struct decode_limits decode_limits_default;

/* The loosest limits a configuration may set (ingest.max_message_bytes, ...). */
#define DECODE_MAX_FRAME_BYTES  ((size_t)256 << 20)
#define DECODE_MAX_DEPTH        512
#define DECODE_MAX_ARRAY_EVENTS 1000000

/*
 * What decodes an event read back from the store: the loosest limits, so
 * that nothing the ingest accepted under whatever limits it had then (a
 * reload or a restart may have tightened them since) is refused for them.
 */
extern const struct decode_limits decode_limits_stored;

/*
 * Called once per element of a frame (with normal allocation, so what it
 * builds may outlive the frame): ev is the decoded event, or NULL and
 * err says why it was rejected. raw/raw_len are what to quarantine: the
 * element's JSON, or the whole frame when the frame itself is bad. Return 0
 * to go on, non-zero to stop decoding this frame.
 */
typedef int (*event_fn)(void *arg, const struct event *ev, const struct event_error *err,
                        const char *raw, size_t raw_len);

/*
 * Decodes one frame and calls fn for each event or rejection in it. Returns
 * the number of valid events, or -1 if fn asked to stop. Never fails on bad
 * input: bad input becomes a call with err set.
 */
int event_decode(const char *frame, size_t len, const struct decode_limits *limits, event_fn fn,
                 void *arg);

/*
 * An event outlives the decoder's callback only as a copy: event_copy puts
 * ev into *out with its strings (and, with with_raw, its raw text; without,
 * raw is "") packed into buf, which must hold event_copy_size(ev, with_raw)
 * bytes, and returns the bytes it used.
 */
size_t event_copy_size(const struct event *ev, int with_raw);
size_t event_copy(const struct event *ev, struct event *out, char *buf, int with_raw);

/*
 * The same in two steps, each string measured once: the plan gives the size
 * (to find room), then the copy follows it. ev must not change in between.
 */
struct event_plan {
	size_t len[32]; /* of each string field with its NUL; 0: NULL */
	size_t size;
};
size_t event_copy_plan(const struct event *ev, int with_raw, struct event_plan *plan);
size_t event_copy_planned(const struct event *ev, struct event *out, char *buf, int with_raw,
                          const struct event_plan *plan);

/*
 * Parses an RFC 3339 date-time ("2026-11-22T15:04:05.123+01:00") into
 * milliseconds since the epoch, UTC. Returns 0, or -1 if s is not one.
 */
int rfc3339_parse(const char *s, int64_t *ms_out);

/* Formats ms since the epoch as "YYYY-MM-DDTHH:MM:SS.mmmZ" into out (>= 25 bytes). */
void rfc3339_format(int64_t ms, char *out, size_t outlen);

/* Returns 1 if the n bytes at p are well-formed UTF-8, else 0. */
int utf8_valid(const char *p, size_t n);

#endif
