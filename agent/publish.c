/*
 * publish.c: `voca publish` (see publish.h).
 *
 * It never drops silently. On PUB it uses an XPUB socket with
 * ZMQ_XPUB_NODROP, so a full queue makes a send fail with EAGAIN instead of
 * discarding; it then waits for room and retries. It waits for subscribers
 * before the first send (ZeroMQ's slow joiner would otherwise lose the
 * start), and on exit it lingers until the queue is flushed, reporting if
 * it was not. Lines are sent as they are: validating is the receiver's job,
 * and tests use this to send bad input.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include <voca/buf.h>
#include <voca/log.h>

#include "clock.h"
#include "jsonl.h"
#include "publish.h"

struct pub_opts {
	const char *endpoint;
	const char *topic;
	int push;    /* PUSH instead of PUB */
	int bind;    /* -1: the socket type's usual side */
	int frames;  /* 1: JSON only; 2: topic + JSON */
	long array;  /* events per frame; 1 sends objects as they are */
	double rate; /* events/s; 0: as fast as the receiver takes them */
	int subscribers;
	double timeout_s;
	int quiet;
};

struct pub_state {
	void *sock;
	struct pub_opts *o;
	int64_t start_ns;
	unsigned long long events, messages, bytes, waits;
};

static void usage(FILE *f)
{
	fputs("usage: voca publish --endpoint URL [options] FILE...\n"
	      "\n"
	      "Sends JSON Lines files (plain or gzip; - is stdin) to a ZeroMQ endpoint, one\n"
	      "event per message, and reports what it sent.\n"
	      "\n"
	      "  -e, --endpoint URL       where to send, e.g. tcp://127.0.0.1:7600\n"
	      "  -s, --socket pub|push    pub (default) binds; push connects\n"
	      "      --bind, --connect    override the side the socket takes\n"
	      "  -t, --topic T            topic frame (default: feedback)\n"
	      "      --frames 1|2         1 sends the JSON alone; 2 (default) topic + JSON\n"
	      "      --array N            pack N events per frame as a JSON array\n"
	      "  -r, --rate N             at most N events per second (default: no limit)\n"
	      "      --subscribers N      pub: wait for N subscribers first (default 1)\n"
	      "      --timeout SECONDS    give up when the receiver takes nothing this long\n"
	      "                           (default 30)\n"
	      "  -q, --quiet              print nothing on success\n",
	      f);
}

static int wait_subscribers(struct pub_state *p)
{
	int64_t deadline = clock_mono_ns() + (int64_t)(p->o->timeout_s * 1e9);
	int have = 0;

	while (have < p->o->subscribers) {
		zmq_pollitem_t it = {.socket = p->sock, .events = ZMQ_POLLIN};
		long left = (long)((deadline - clock_mono_ns()) / 1000000);
		char msg[512];

		if (left <= 0) {
			fprintf(stderr,
			        "voca publish: %d of %d subscribers connected to %s within %.0f s\n",
			        have, p->o->subscribers, p->o->endpoint, p->o->timeout_s);
			return -1;
		}
		if (zmq_poll(&it, 1, left) > 0) {
			int n = zmq_recv(p->sock, msg, sizeof(msg), ZMQ_DONTWAIT);

			if (n > 0 && msg[0] == 1)
				have++;
		}
	}
	return 0;
}

/* Drains subscription messages so the XPUB's inbound queue never fills. */
static void drain_subscriptions(void *sock)
{
	char msg[512];

	while (zmq_recv(sock, msg, sizeof(msg), ZMQ_DONTWAIT) >= 0)
		;
}

static int send_frame(struct pub_state *p, const void *data, size_t len, int flags)
{
	int64_t stuck_since = 0;

	for (;;) {
		if (zmq_send(p->sock, data, len, flags | ZMQ_DONTWAIT) >= 0)
			return 0;
		if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) {
			fprintf(stderr, "voca publish: send: %s\n", zmq_strerror(zmq_errno()));
			return -1;
		}
		/* Queue full (or, for PUSH, no receiver yet): wait for room. */
		if (stuck_since == 0) {
			stuck_since = clock_mono_ns();
			p->waits++;
		} else if (clock_mono_ns() - stuck_since > (int64_t)(p->o->timeout_s * 1e9)) {
			fprintf(stderr,
			        "voca publish: the receiver took nothing for %.0f s; stopped after "
			        "%llu events\n",
			        p->o->timeout_s, p->events);
			return -1;
		}
		zmq_pollitem_t it = {.socket = p->sock, .events = ZMQ_POLLOUT | ZMQ_POLLIN};

		zmq_poll(&it, 1, 100);
		if (!p->o->push)
			drain_subscriptions(p->sock);
	}
}

static void pace(struct pub_state *p)
{
	int64_t due, now;

	if (p->o->rate <= 0)
		return;
	due = p->start_ns + (int64_t)((double)p->events / p->o->rate * 1e9);
	now = clock_mono_ns();
	if (due > now) {
		struct timespec ts = {(time_t)((due - now) / 1000000000),
		                      (long)((due - now) % 1000000000)};

		nanosleep(&ts, NULL);
	}
}

static int send_message(struct pub_state *p, const char *data, size_t len, long events)
{
	pace(p);
	if (p->o->frames == 2 && send_frame(p, p->o->topic, strlen(p->o->topic), ZMQ_SNDMORE) < 0)
		return -1;
	if (send_frame(p, data, len, 0) < 0)
		return -1;
	p->events += (unsigned long long)events;
	p->messages++;
	p->bytes += len;
	return 0;
}

static int publish_file(struct pub_state *p, const char *path)
{
	char err[256];
	struct jsonl *j = jsonl_open(path, err, sizeof(err));
	struct buf batch;
	const char *line;
	long n, in_batch = 0;
	int rc = 0;

	if (j == NULL) {
		fprintf(stderr, "voca publish: %s\n", err);
		return -1;
	}
	buf_init(&batch, (size_t)1 << 30);
	while ((n = jsonl_next(j, &line, err, sizeof(err))) >= 0) {
		if (n == 0)
			continue;
		if (p->o->array <= 1) {
			if (send_message(p, line, (size_t)n, 1) < 0) {
				rc = -1;
				break;
			}
			continue;
		}
		if (buf_add(&batch, in_batch ? "," : "[", 1) < 0 ||
		    buf_add(&batch, line, (size_t)n) < 0) {
			fprintf(stderr, "voca publish: batch over 1 GiB\n");
			rc = -1;
			break;
		}
		if (++in_batch == p->o->array) {
			if (buf_add(&batch, "]", 1) < 0 ||
			    send_message(p, batch.data, batch.len, in_batch) < 0) {
				rc = -1;
				break;
			}
			buf_reset(&batch);
			in_batch = 0;
		}
	}
	if (n == -2) {
		fprintf(stderr, "voca publish: %s: %s\n", path, err);
		rc = -1;
	}
	if (rc == 0 && in_batch &&
	    (buf_add(&batch, "]", 1) < 0 || send_message(p, batch.data, batch.len, in_batch) < 0))
		rc = -1;
	buf_free(&batch);
	jsonl_close(j);
	return rc;
}

static int parse_opts(int argc, char **argv, struct pub_opts *o)
{
	static const struct option longopts[] = {
	        {"endpoint", required_argument, NULL, 'e'},
	        {"socket", required_argument, NULL, 's'},
	        {"bind", no_argument, NULL, 'B'},
	        {"connect", no_argument, NULL, 'C'},
	        {"topic", required_argument, NULL, 't'},
	        {"frames", required_argument, NULL, 'F'},
	        {"array", required_argument, NULL, 'A'},
	        {"rate", required_argument, NULL, 'r'},
	        {"subscribers", required_argument, NULL, 'S'},
	        {"timeout", required_argument, NULL, 'T'},
	        {"quiet", no_argument, NULL, 'q'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	char *end;
	int c;

	*o = (struct pub_opts){.topic = "feedback",
	                       .bind = -1,
	                       .frames = 2,
	                       .array = 1,
	                       .subscribers = 1,
	                       .timeout_s = 30};
	optind = 1;
	while ((c = getopt_long(argc, argv, "e:s:t:r:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'e': o->endpoint = optarg; break;
		case 's':
			if (strcmp(optarg, "pub") && strcmp(optarg, "push")) {
				fprintf(stderr, "voca publish: --socket takes pub or push\n");
				return -1;
			}
			o->push = strcmp(optarg, "push") == 0;
			break;
		case 'B': o->bind = 1; break;
		case 'C': o->bind = 0; break;
		case 't': o->topic = optarg; break;
		case 'F':
			o->frames = (int)strtol(optarg, &end, 10);
			if (*end || (o->frames != 1 && o->frames != 2)) {
				fprintf(stderr, "voca publish: --frames takes 1 or 2\n");
				return -1;
			}
			break;
		case 'A':
			o->array = strtol(optarg, &end, 10);
			if (*end || o->array < 1 || o->array > 1000000) {
				fprintf(stderr, "voca publish: --array takes 1 to 1000000\n");
				return -1;
			}
			break;
		case 'r': {
			o->rate = strtod(optarg, &end);
			if (strcmp(end, "/s") == 0)
				end += 2;
			if (*end || !(o->rate > 0)) {
				fprintf(stderr, "voca publish: --rate takes events per second, "
				                "e.g. 5000 or 5000/s\n");
				return -1;
			}
			break;
		}
		case 'S':
			o->subscribers = (int)strtol(optarg, &end, 10);
			if (*end || o->subscribers < 0 || o->subscribers > 10000) {
				fprintf(stderr, "voca publish: --subscribers takes 0 to 10000\n");
				return -1;
			}
			break;
		case 'T':
			o->timeout_s = strtod(optarg, &end);
			if (*end || !(o->timeout_s > 0)) {
				fprintf(stderr, "voca publish: --timeout takes seconds > 0\n");
				return -1;
			}
			break;
		case 'q': o->quiet = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (o->endpoint == NULL || optind >= argc) {
		fprintf(stderr, "voca publish: needs --endpoint and at least one FILE\n");
		usage(stderr);
		return -1;
	}
	if (o->bind < 0)
		o->bind = !o->push;
	return 0;
}

int publish_main(int argc, char **argv)
{
	struct pub_opts o;
	struct pub_state p = {0};
	void *ctx;
	int rc = 0, hwm = 100000, one = 1, linger;
	int64_t flush_ns;

	if (parse_opts(argc, argv, &o) < 0)
		return 2;
	p.o = &o;
	ctx = zmq_ctx_new();
	p.sock = zmq_socket(ctx, o.push ? ZMQ_PUSH : ZMQ_XPUB);
	linger = (int)(o.timeout_s * 1000);
	zmq_setsockopt(p.sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(p.sock, ZMQ_LINGER, &linger, sizeof(linger));
	if (!o.push)
		zmq_setsockopt(p.sock, ZMQ_XPUB_NODROP, &one, sizeof(one));
	if ((o.bind ? zmq_bind(p.sock, o.endpoint) : zmq_connect(p.sock, o.endpoint)) != 0) {
		fprintf(stderr, "voca publish: cannot %s %s: %s\n", o.bind ? "bind" : "connect to",
		        o.endpoint, zmq_strerror(zmq_errno()));
		rc = 1;
		goto out;
	}
	if (!o.push && wait_subscribers(&p) < 0) {
		rc = 1;
		goto out;
	}
	p.start_ns = clock_mono_ns();
	for (int i = optind; i < argc && rc == 0; i++)
		if (publish_file(&p, argv[i]) < 0)
			rc = 1;
out:
	flush_ns = clock_mono_ns();
	zmq_close(p.sock);
	zmq_ctx_term(ctx); /* returns when the queue is flushed or the linger ran out */
	flush_ns = clock_mono_ns() - flush_ns;
	if (p.messages && flush_ns >= (int64_t)linger * 1000000) {
		fprintf(stderr,
		        "voca publish: the receiver did not take everything within %.0f s: some "
		        "of the last messages may not have arrived\n",
		        o.timeout_s);
		rc = 1;
	}
	if (p.start_ns && (!o.quiet || rc)) {
		double secs = (double)(clock_mono_ns() - p.start_ns) / 1e9;

		printf("voca publish: sent %llu events in %llu messages (%.1f MB) to %s in %.2f s "
		       "(%.0f events/s)%s\n",
		       p.events, p.messages, (double)p.bytes / 1e6, o.endpoint, secs,
		       secs > 0 ? (double)p.events / secs : 0.0,
		       p.waits ? " waiting for the receiver when its queue was full" : "");
	}
	return rc;
}
