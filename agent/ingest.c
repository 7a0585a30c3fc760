/*
 * ingest.c: ZeroMQ messages in, stored events and quarantine rows out
 * (see ingest.h).
 *
 * A message is one frame (JSON) or two (topic, JSON); anything else is
 * quarantined whole. Rejections are logged with backoff per reason, so a
 * misbehaving publisher produces a few lines a minute, not a flood, while
 * every rejected input is still counted and kept in the quarantine table.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include <voca/event.h>
#include <voca/log.h>
#include <voca/xalloc.h>

#include "clock.h"
#include "ingest.h"
#include "seqtrack.h"

#define COMPLAIN_INTERVAL_MS 10000
#define TOPIC_MAX            256

struct complaint {
	int64_t last_ms;
	uint64_t quiet; /* rejections not logged since last_ms */
};

struct ingest {
	void *zctx;
	void *sock;
	int mode;
	struct conf_list endpoints; /* what the socket is connected or bound to */
	struct conf_list topics;
	struct decode_limits limits;
	size_t batch_max;
	int64_t batch_ns;
	size_t quarantine_keep;

	struct store *st;
	struct seqtrack *seq;
	int64_t deadline_ns; /* when the open batch must commit; 0: none open */
	int64_t first_seq, last_seq;
	int64_t now_ms; /* wall time of the message being handled */
	const char *topic;
	int failed;

	struct ingest_sink sink;
	size_t batch_events;
	struct complaint complain[REJECT_CODES];
	ingest_commit_fn on_commit;
	void *on_commit_arg;
};

static void list_copy(struct conf_list *dst, const struct conf_list *src)
{
	dst->n = src->n;
	dst->v = xcalloc(src->n ? src->n : 1, sizeof(char *));
	for (size_t i = 0; i < src->n; i++)
		dst->v[i] = xstrdup(src->v[i]);
}

static void list_free(struct conf_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int list_has(const struct conf_list *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return 1;
	return 0;
}

static void set_limits(struct ingest *in, const struct config *cfg)
{
	in->limits = config_decode_limits(cfg);
	in->batch_max = (size_t)cfg->store.batch_max;
	in->batch_ns = cfg->store.batch_ms * 1000000;
	in->quarantine_keep = (size_t)cfg->store.quarantine_raw_max;
}

static int set_socket_options(void *sock, const struct config *cfg)
{
	int hwm = (int)cfg->ingest.rcvhwm, zero = 0, one = 1;
	int idle = 30, intvl = 10, cnt = 3;
	/* Frames over the quarantine cap still arrive (to be quarantined with
	 * their reason); only absurd ones make ZeroMQ drop the connection. */
	int64_t hard = cfg->ingest.max_message_bytes * 8;

	/*
	 * A dead peer is found by the kernel's TCP keepalive (about a minute),
	 * not by ZeroMQ heartbeats: while the receive queue is at its
	 * high-water mark (the ingest held back by the rules or the disk),
	 * ZeroMQ stops reading the socket, the peer's PONG waits behind data,
	 * and at the heartbeat timeout the connection is closed with what the
	 * sender had already written into the kernel's buffers: lost, while
	 * the sender believes it delivered. Measured with heartbeats of
	 * 10 s / 30 s (as this socket had) and a reader stalled 45 s: 4,530 of 120,000 messages
	 * lost on PUSH/PULL; none without heartbeats. Keepalive probes are
	 * answered by the peer's kernel, however long the ingest stalls.
	 */
	if (zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(hwm)) ||
	    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero)) ||
	    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &hard, sizeof(hard)) ||
	    zmq_setsockopt(sock, ZMQ_TCP_KEEPALIVE, &one, sizeof(one)) ||
	    zmq_setsockopt(sock, ZMQ_TCP_KEEPALIVE_IDLE, &idle, sizeof(idle)) ||
	    zmq_setsockopt(sock, ZMQ_TCP_KEEPALIVE_INTVL, &intvl, sizeof(intvl)) ||
	    zmq_setsockopt(sock, ZMQ_TCP_KEEPALIVE_CNT, &cnt, sizeof(cnt)))
		return -1;
	return 0;
}

static int attach(struct ingest *in, const char *ep, char *err, size_t errlen)
{
	int rc = in->mode == INGEST_PULL ? zmq_bind(in->sock, ep) : zmq_connect(in->sock, ep);

	if (rc != 0) {
		snprintf(err, errlen, "ingest: cannot %s %s: %s",
		         in->mode == INGEST_PULL ? "bind" : "connect to", ep,
		         zmq_strerror(zmq_errno()));
		return -1;
	}
	return 0;
}

static void detach(struct ingest *in, const char *ep)
{
	if (in->mode == INGEST_PULL)
		zmq_unbind(in->sock, ep);
	else
		zmq_disconnect(in->sock, ep);
}

/* A topic list as subscribed: none configured means every message (""). */
static const char *topic_at(const struct conf_list *topics, size_t i)
{
	return topics->n ? topics->v[i] : "";
}

static size_t topic_count(const struct conf_list *topics)
{
	return topics->n ? topics->n : 1;
}

static int topic_in(const struct conf_list *topics, const char *t)
{
	for (size_t i = 0; i < topic_count(topics); i++)
		if (strcmp(topic_at(topics, i), t) == 0)
			return 1;
	return 0;
}

/*
 * Subscribes to what is in want but not in have, then drops what is in have
 * but not in want. ZeroMQ counts subscriptions, so each topic is subscribed
 * exactly once; subscribing first leaves no moment with neither set.
 */
static void subscribe_diff(struct ingest *in, const struct conf_list *have,
                           const struct conf_list *want)
{
	if (in->mode != INGEST_SUB)
		return;
	for (size_t i = 0; i < topic_count(want); i++) {
		const char *t = topic_at(want, i);

		if (have == NULL || !topic_in(have, t))
			zmq_setsockopt(in->sock, ZMQ_SUBSCRIBE, t, strlen(t));
	}
	for (size_t i = 0; have && i < topic_count(have); i++) {
		const char *t = topic_at(have, i);

		if (!topic_in(want, t))
			zmq_setsockopt(in->sock, ZMQ_UNSUBSCRIBE, t, strlen(t));
	}
}

/* Creates the socket for cfg and attaches it everywhere, or leaves nothing behind. */
static int open_socket(struct ingest *in, const struct config *cfg, char *err, size_t errlen)
{
	in->mode = cfg->ingest.mode;
	in->sock = zmq_socket(in->zctx, in->mode == INGEST_PULL ? ZMQ_PULL : ZMQ_SUB);
	if (in->sock == NULL || set_socket_options(in->sock, cfg) < 0) {
		snprintf(err, errlen, "ingest: socket: %s", zmq_strerror(zmq_errno()));
		goto fail;
	}
	for (size_t i = 0; i < cfg->ingest.endpoints.n; i++)
		if (attach(in, cfg->ingest.endpoints.v[i], err, errlen) < 0)
			goto fail;
	list_copy(&in->endpoints, &cfg->ingest.endpoints);
	list_copy(&in->topics, &cfg->ingest.topics);
	subscribe_diff(in, NULL, &in->topics);
	return 0;
fail:
	if (in->sock)
		zmq_close(in->sock);
	in->sock = NULL;
	return -1;
}

static void close_socket(struct ingest *in)
{
	if (in->sock)
		zmq_close(in->sock);
	in->sock = NULL;
	list_free(&in->endpoints);
	list_free(&in->topics);
}

static void restore_publisher(void *arg, const char *publisher, int64_t last_seq, int64_t seen_ms)
{
	seqtrack_set(arg, publisher, last_seq, seen_ms);
}

struct ingest *ingest_new(void *zctx, const struct config *cfg, struct store *st, char *err,
                          size_t errlen)
{
	struct ingest *in = xcalloc(1, sizeof(*in));

	in->zctx = zctx;
	in->st = st;
	in->seq = seqtrack_new();
	in->first_seq = in->last_seq = -1;
	set_limits(in, cfg);
	if (store_publishers_each(st, restore_publisher, in->seq) < 0) {
		snprintf(err, errlen, "ingest: %s", store_error(st));
		goto fail;
	}
	if (open_socket(in, cfg, err, errlen) < 0)
		goto fail;
	return in;
fail:
	seqtrack_free(in->seq);
	free(in);
	return NULL;
}

void ingest_free(struct ingest *in)
{
	if (in == NULL)
		return;
	close_socket(in);
	seqtrack_free(in->seq);
	free(in);
}

void *ingest_socket(const struct ingest *in)
{
	return in->sock;
}

void ingest_on_commit(struct ingest *in, ingest_commit_fn fn, void *arg)
{
	in->on_commit = fn;
	in->on_commit_arg = arg;
}

int ingest_reconfigure(struct ingest *in, const struct config *cfg, char *err, size_t errlen)
{
	const struct conf_list *want = &cfg->ingest.endpoints;

	if (cfg->ingest.mode != in->mode) {
		struct ingest tmp = *in;

		/* Take what the old socket already holds before replacing it. */
		if (ingest_drain(in, 1 << 30) < 0 || ingest_flush(in) < 0)
			return -1;
		if (open_socket(&tmp, cfg, err, errlen) < 0)
			return -1;
		close_socket(in);
		in->sock = tmp.sock;
		in->mode = tmp.mode;
		in->endpoints = tmp.endpoints;
		in->topics = tmp.topics;
		set_limits(in, cfg);
		return 0;
	}
	for (size_t i = 0; i < want->n; i++) {
		if (!list_has(&in->endpoints, want->v[i]) &&
		    attach(in, want->v[i], err, errlen) < 0) {
			/* Undo the ones attached so far: all or nothing. */
			for (size_t j = 0; j < i; j++)
				if (!list_has(&in->endpoints, want->v[j]))
					detach(in, want->v[j]);
			return -1;
		}
	}
	for (size_t i = 0; i < in->endpoints.n; i++)
		if (!list_has(want, in->endpoints.v[i]))
			detach(in, in->endpoints.v[i]);
	list_free(&in->endpoints);
	list_copy(&in->endpoints, want);
	subscribe_diff(in, &in->topics, &cfg->ingest.topics);
	list_free(&in->topics);
	list_copy(&in->topics, &cfg->ingest.topics);
	set_socket_options(in->sock, cfg); /* HWM: for connections made from now on */
	set_limits(in, cfg);
	return 0;
}

/* ---- handling one message ---- */

static void complain(struct ingest *in, const struct event_error *err)
{
	struct complaint *c = &in->complain[err->code];

	if (c->last_ms && in->now_ms - c->last_ms < COMPLAIN_INTERVAL_MS) {
		c->quiet++;
		return;
	}
	if (c->quiet)
		log_warn("ingest: quarantined %s: %s (and %llu more like it since the last report)",
		         reject_code_name(err->code), err->msg, (unsigned long long)c->quiet);
	else
		log_warn("ingest: quarantined %s: %s", reject_code_name(err->code), err->msg);
	c->last_ms = in->now_ms;
	c->quiet = 0;
}

static int fail_store(struct ingest *in)
{
	log_error("ingest: store failed: %s", store_error(in->st));
	in->failed = 1;
	return 1; /* stop decoding */
}

static void track_seq(struct ingest *in, const struct event *ev)
{
	int64_t expected = 0;

	switch (seqtrack_observe(in->seq, ev->publisher, ev->seq, in->now_ms, &expected)) {
	case SEQ_GAP:
		log_warn("ingest: publisher %s skipped seq %lld..%lld (%lld events lost upstream "
		         "or in transit; replay them with voca publish)",
		         ev->publisher, (long long)expected, (long long)ev->seq - 1,
		         (long long)(ev->seq - expected));
		if (store_gap(in->st, ev->publisher, expected, ev->seq, in->now_ms) < 0)
			fail_store(in);
		break;
	case SEQ_RESET:
		log_info("ingest: publisher %s restarted its sequence at 0", ev->publisher);
		break;
	default: break;
	}
}

static int on_event(void *arg, const struct event *ev, const struct event_error *err,
                    const char *raw, size_t len)
{
	struct ingest *in = arg;
	enum store_verdict verdict;

	in->batch_events++;
	if (ev == NULL) {
		complain(in, err);
		if (store_quarantine(in->st, in->now_ms, in->topic, err->code, err->msg, raw, len,
		                     in->quarantine_keep) < 0)
			return fail_store(in);
		return 0;
	}
	if (ev->publisher && ev->seq >= 0) {
		track_seq(in, ev);
		if (in->failed)
			return 1;
		if (in->first_seq < 0)
			in->first_seq = ev->seq;
		in->last_seq = ev->seq;
	}
	if (store_put(in->st, ev, in->now_ms, &verdict) < 0)
		return fail_store(in);
	if (in->sink.event && verdict == STORE_NEW)
		in->sink.event(in->sink.arg, ev, store_last_event_rowid(in->st));
	else if (in->sink.event && verdict == STORE_SUPERSEDED)
		in->sink.event(in->sink.arg, ev, -store_last_revision_seq(in->st));
	if (verdict == STORE_STALE)
		log_debug("ingest: event %s revision %lld is older than the stored one",
		          ev->event_id, (long long)ev->revision);
	return 0;
}

static void quarantine_frames(struct ingest *in, int nframes, const zmq_msg_t *last)
{
	struct event_error err = {.code = REJECT_BAD_FRAMES};

	snprintf(err.msg, sizeof(err.msg),
	         "message has %d frames; expected 1 (JSON) or 2 (topic, JSON)", nframes);
	on_event(in, NULL, &err, zmq_msg_data((zmq_msg_t *)last), zmq_msg_size(last));
}

/* Copies a topic frame into a printable C string. */
static const char *topic_text(const zmq_msg_t *m, char *out)
{
	const unsigned char *p = zmq_msg_data((zmq_msg_t *)m);
	size_t n = zmq_msg_size(m), i;

	if (n >= TOPIC_MAX)
		n = TOPIC_MAX - 1;
	for (i = 0; i < n; i++)
		out[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
	out[i] = '\0';
	return out;
}

static void handle(struct ingest *in, zmq_msg_t *frames, int nframes)
{
	char topic[TOPIC_MAX];
	zmq_msg_t *body = &frames[nframes >= 2 ? 1 : 0];

	in->now_ms = clock_wall_ms();
	in->topic = nframes >= 2 ? topic_text(&frames[0], topic) : NULL;
	if (in->deadline_ns == 0)
		in->deadline_ns = clock_mono_ns() + in->batch_ns;
	if (nframes > 2) {
		quarantine_frames(in, nframes, &frames[1]);
		return;
	}
	in->limits.now_ms = in->now_ms;
	event_decode(zmq_msg_data(body), zmq_msg_size(body), &in->limits, on_event, in);
}

void ingest_set_sink(struct ingest *in, const struct ingest_sink *sink)
{
	in->sink = *sink;
}

static int save_publisher(void *st, const char *publisher, int64_t last_seq, int64_t seen_ms)
{
	return store_publisher(st, publisher, last_seq, seen_ms);
}

int ingest_flush(struct ingest *in)
{
	struct ingest_commit c;

	if (in->failed)
		return -1;
	c.ops = store_pending(in->st);
	c.events = in->batch_events;
	in->batch_events = 0;
	c.first_seq = in->first_seq;
	c.last_seq = in->last_seq;
	in->deadline_ns = 0;
	in->first_seq = in->last_seq = -1;
	if (c.ops == 0)
		return 0;
	if (seqtrack_flush(in->seq, save_publisher, in->st) < 0 || store_commit(in->st) < 0) {
		log_error("ingest: commit failed: %s", store_error(in->st));
		in->failed = 1;
		return -1;
	}
	c.at_ns = clock_mono_ns();
	c.last_rowid = store_last_event_rowid(in->st);
	if (in->sink.committed)
		in->sink.committed(in->sink.arg);
	if (in->on_commit)
		in->on_commit(in->on_commit_arg, &c);
	return 0;
}

long ingest_timeout_ms(const struct ingest *in)
{
	int64_t left;

	if (in->deadline_ns == 0)
		return -1;
	left = in->deadline_ns - clock_mono_ns();
	return left <= 0 ? 0 : (long)((left + 999999) / 1000000);
}

int ingest_drain(struct ingest *in, int max)
{
	int handled = 0;

	while (handled < max && !in->failed) {
		zmq_msg_t f[3];
		int n = 0, more;

		zmq_msg_init(&f[0]);
		if (zmq_msg_recv(&f[0], in->sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&f[0]);
			if (zmq_errno() != EAGAIN && zmq_errno() != EINTR)
				log_warn("ingest: receive: %s", zmq_strerror(zmq_errno()));
			break;
		}
		n = 1;
		more = zmq_msg_more(&f[0]);
		/* A multipart message arrives whole: these receives never wait. */
		while (more) {
			zmq_msg_t *m = &f[n < 3 ? n : 2];

			if (n >= 3)
				zmq_msg_close(m);
			zmq_msg_init(m);
			if (zmq_msg_recv(m, in->sock, 0) < 0) {
				zmq_msg_close(m);
				break;
			}
			more = zmq_msg_more(m);
			n++;
		}
		handle(in, f, n);
		for (int i = 0; i < (n < 3 ? n : 3); i++)
			zmq_msg_close(&f[i]);
		handled++;
		if (store_pending(in->st) >= in->batch_max ||
		    (in->deadline_ns && clock_mono_ns() >= in->deadline_ns)) {
			if (ingest_flush(in) < 0)
				return -1;
		}
	}
	return in->failed ? -1 : handled;
}
