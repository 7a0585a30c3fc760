/*
 * bench_ingest.c: ingest throughput, latency and memory, against the same
 * machine's raw floor measured in the same run.
 *
 *   voca   the daemon's own loop (daemon_run, as `voca run` runs it) on a
 *          PULL socket: decode, validate, dedupe, store with group commit
 *   floor  the least a correct ingest must do: zmq receive, cJSON parse,
 *          batched INSERT OR IGNORE of (event_id, body) into a table with a
 *          unique key, with the same SQLite pragmas and batch size
 *
 * Both run in child processes forked before the feed is loaded, so their
 * peak RSS is their own. The parent pushes the same simulated events (from
 * `voca simulate`) over tcp loopback as fast as they are taken; throughput
 * is events / (last commit - first send). Latency is measured separately at
 * a fixed rate below saturation: for each event, the time from its send to
 * the commit that made it durable (the child reports every commit with the
 * range of sequence numbers it covered; CLOCK_MONOTONIC is shared).
 *
 * The daemon measured is the one linked into this program, i.e. this tree's;
 * --voca only generates the feed. To compare two versions, build the bench
 * in each tree.
 *
 * A program that prints numbers, not a test: run it with `make bench`.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <zmq.h>

#include <voca/xalloc.h>

#include "clock.h"
#include "daemon.h"
#include "ingest.h"

/* A commit; or first_seq -2: peak RSS (ops, KiB); -3: the rules ran up to rowid ops. */
struct commit_rec {
	int64_t first_seq, last_seq, ops, at_ns, last_rowid;
};

struct feed {
	char *data;
	char **line;
	size_t *len;
	size_t n;
};

/* ---- children ---- */

static int commit_fd = -1;

static void on_commit(void *arg, const struct ingest_commit *c)
{
	/* Inputs, not rows: incidents and rule state ride in the same commits. */
	struct commit_rec r = {c->first_seq, c->last_seq, (int64_t)c->events, c->at_ns,
	                       c->last_rowid};

	(void)arg;
	if (write(commit_fd, &r, sizeof(r)) != sizeof(r))
		_exit(3);
}

/* On the rules' thread: the ingest may be ahead of them (the queue spills). */
static void on_rules_idle(void *arg, int64_t fed_rowid)
{
	struct commit_rec r = {-3, -3, fed_rowid, clock_mono_ns(), 0};

	(void)arg;
	if (write(commit_fd, &r, sizeof(r)) != sizeof(r))
		_exit(3);
}

static void report_rss(int fd)
{
	struct rusage ru;
	struct commit_rec r = {-2, -2, 0, 0, 0};

	getrusage(RUSAGE_SELF, &ru);
	r.ops = ru.ru_maxrss; /* KiB */
	if (write(fd, &r, sizeof(r)) != sizeof(r))
		_exit(3);
}

static pid_t start_voca(const char *config, int fd)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct daemon_opts opts = {.config_file = config,
		                           .on_commit = on_commit,
		                           .on_rules_idle = on_rules_idle};
		int rc;

		commit_fd = fd;
		rc = daemon_run(&opts);
		report_rss(fd);
		_exit(rc);
	}
	return pid;
}

static pid_t start_floor(const char *endpoint, const char *dbpath, size_t expect, int fd)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	sqlite3 *db;
	sqlite3_stmt *ins;
	void *ctx = zmq_ctx_new(), *sock = zmq_socket(ctx, ZMQ_PULL);
	int hwm = 10000;
	size_t in_batch = 0, got = 0;
	zmq_msg_t m;

	zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	if (zmq_bind(sock, endpoint) != 0)
		_exit(4);
	sqlite3_open(dbpath, &db);
	sqlite3_exec(db,
	             "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
	             " PRAGMA cache_size=-16384;"
	             "CREATE TABLE events(event_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL);",
	             NULL, NULL, NULL);
	sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO events(event_id, body) VALUES(?1, ?2)", -1,
	                   &ins, NULL);
	zmq_msg_init(&m);
	while (got < expect && zmq_msg_recv(&m, sock, 0) >= 0) {
		cJSON *root = cJSON_ParseWithLength(zmq_msg_data(&m), zmq_msg_size(&m));
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "event_id");

		if (in_batch == 0)
			sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		if (cJSON_IsString(id)) {
			sqlite3_bind_text(ins, 1, id->valuestring, -1, SQLITE_STATIC);
			sqlite3_bind_text(ins, 2, zmq_msg_data(&m), (int)zmq_msg_size(&m),
			                  SQLITE_STATIC);
			sqlite3_step(ins);
			sqlite3_reset(ins);
		}
		cJSON_Delete(root);
		got++;
		if (++in_batch == 2000 || got == expect) {
			struct commit_rec r = {-1, -1, (int64_t)in_batch, 0, 0};

			sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
			r.at_ns = clock_mono_ns();
			in_batch = 0;
			if (write(fd, &r, sizeof(r)) != sizeof(r))
				_exit(3);
		}
	}
	zmq_msg_close(&m);
	sqlite3_finalize(ins);
	sqlite3_close(db);
	zmq_close(sock);
	zmq_ctx_term(ctx);
	report_rss(fd);
	_exit(0);
}

/* ---- the parent ---- */

struct reader {
	int fd;
	pthread_mutex_t mu;
	struct commit_rec *v;
	size_t n, alloc;
	int64_t ops;
	int64_t rss_kib;
	int64_t rules_rowid, rules_at_ns; /* the rules' latest idle report */
};

static void *read_commits(void *arg)
{
	struct reader *r = arg;
	struct commit_rec rec;

	while (read(r->fd, &rec, sizeof(rec)) == sizeof(rec)) {
		pthread_mutex_lock(&r->mu);
		if (rec.first_seq == -2) {
			r->rss_kib = rec.ops;
		} else if (rec.first_seq == -3) {
			r->rules_rowid = rec.ops;
			r->rules_at_ns = rec.at_ns;
		} else {
			if (r->n == r->alloc) {
				r->alloc = r->alloc ? r->alloc * 2 : 1024;
				r->v = xrealloc(r->v, r->alloc * sizeof(*r->v));
			}
			r->v[r->n++] = rec;
			r->ops += rec.ops;
		}
		pthread_mutex_unlock(&r->mu);
	}
	return NULL;
}

static int64_t committed(struct reader *r)
{
	int64_t ops;

	pthread_mutex_lock(&r->mu);
	ops = r->ops;
	pthread_mutex_unlock(&r->mu);
	return ops;
}

static void wait_committed(struct reader *r, int64_t want, const char *what)
{
	int64_t deadline = clock_mono_ns() + 120 * 1000000000LL;

	while (committed(r) < want) {
		if (clock_mono_ns() > deadline) {
			fprintf(stderr, "bench: %s: only %lld of %lld committed after 120 s\n",
			        what, (long long)committed(r), (long long)want);
			exit(1);
		}
		usleep(1000);
	}
}

static struct commit_rec last_commit(struct reader *r)
{
	struct commit_rec c;

	pthread_mutex_lock(&r->mu);
	c = r->v[r->n - 1];
	pthread_mutex_unlock(&r->mu);
	return c;
}

/*
 * CPU seconds (user + system, all threads) a child has used so far, from
 * /proc: the throughput phases' CPU per event is a steadier figure than
 * their events/s on a shared VM, whose speed moves from minute to minute.
 */
static double cpu_seconds(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long utime = 0, stime = 0;
	FILE *f;
	size_t len;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	/* After the command's name in parentheses: state, then fields 4-15. */
	p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	                        &utime, &stime) != 2)
		return -1;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Waits until the rules report they ran every event up to rowid; returns when. */
static int64_t wait_rules(struct reader *r, int64_t rowid)
{
	int64_t deadline = clock_mono_ns() + 120 * 1000000000LL;

	for (;;) {
		int64_t got, at;

		pthread_mutex_lock(&r->mu);
		got = r->rules_rowid;
		at = r->rules_at_ns;
		pthread_mutex_unlock(&r->mu);
		if (got >= rowid)
			return at;
		if (clock_mono_ns() > deadline) {
			fprintf(stderr,
			        "bench: the rules ran up to rowid %lld of %lld after 120 s\n",
			        (long long)got, (long long)rowid);
			exit(1);
		}
		usleep(1000);
	}
}

static void load_feed(const char *voca, const char *dir, size_t want, size_t skus, struct feed *f)
{
	char path[512], cmd[1024];
	struct stat st;
	FILE *fp;
	/* ~1.6% of simulated lines are duplicates or revisions: ask for a little more. */
	long per_day = (long)(want / 30 + want / 1000 + 100);

	snprintf(path, sizeof(path), "%s/feed.jsonl", dir);
	snprintf(cmd, sizeof(cmd),
	         "%s simulate --seed 11 --days 31 --per-day %ld --skus %zu --incidents 20 -o %s "
	         "2>/dev/null",
	         voca, per_day, skus, path);
	if (system(cmd) != 0 || stat(path, &st) < 0) {
		fprintf(stderr, "bench: '%s' failed\n", cmd);
		exit(1);
	}
	f->data = xmalloc((size_t)st.st_size + 1);
	fp = fopen(path, "rb");
	if (fp == NULL || fread(f->data, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
		fprintf(stderr, "bench: cannot read %s\n", path);
		exit(1);
	}
	fclose(fp);
	unlink(path);
	f->line = xmalloc(want * sizeof(char *));
	f->len = xmalloc(want * sizeof(size_t));
	for (char *p = f->data, *end = f->data + st.st_size; p < end && f->n < want;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));

		if (nl == NULL)
			break;
		f->line[f->n] = p;
		f->len[f->n++] = (size_t)(nl - p);
		p = nl + 1;
	}
	if (f->n < want) {
		fprintf(stderr, "bench: the feed has %zu lines, wanted %zu\n", f->n, want);
		exit(1);
	}
}

/*
 * Sends lines [from, to); rate 0 is as fast as the receiver takes them. The
 * sockets time a send out after a second: a receiver that has exited (a
 * configuration it refused) is reported, not waited for for ever.
 */
static void push(void *sock, const struct feed *f, size_t from, size_t to, double rate,
                 int64_t *sent_ns, pid_t peer, const char *what)
{
	int64_t start = clock_mono_ns(), stalled = 0;

	for (size_t i = from; i < to; i++) {
		if (rate > 0 && (i - from) % 16 == 0) {
			int64_t due = start + (int64_t)((double)(i - from) / rate * 1e9);
			int64_t now = clock_mono_ns();

			if (due > now) {
				struct timespec ts = {0, (long)(due - now)};

				nanosleep(&ts, NULL);
			}
		}
		if (sent_ns)
			sent_ns[i - from] = clock_mono_ns();
		while (zmq_send(sock, f->line[i], f->len[i], 0) < 0) {
			int status;

			if (zmq_errno() != EAGAIN) {
				fprintf(stderr, "bench: send: %s\n", zmq_strerror(zmq_errno()));
				exit(1);
			}
			if (waitpid(peer, &status, WNOHANG) == peer) {
				fprintf(stderr,
				        "bench: %s exited (status %d) before taking the feed\n",
				        what, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
				exit(1);
			}
			if (++stalled > 120) {
				fprintf(stderr, "bench: %s took nothing for 120 s\n", what);
				exit(1);
			}
		}
		stalled = 0;
	}
}

/* The daemon and the floor: a bench that gives up must not leave them running. */
static pid_t children[2];

static void stop_children(void)
{
	for (int i = 0; i < 2; i++)
		if (children[i] > 0)
			kill(children[i], SIGKILL);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static void usage(void)
{
	fputs("usage: bench_ingest --voca PATH [--events N] [--latency-events N] "
	      "[--latency-rate N] [--skus N] [--rules CONFIG]\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"voca", required_argument, NULL, 'v'},
	        {"events", required_argument, NULL, 'n'},
	        {"latency-events", required_argument, NULL, 'l'},
	        {"latency-rate", required_argument, NULL, 'r'},
	        {"rules", required_argument, NULL, 'R'},
	        {"skus", required_argument, NULL, 'k'},
	        {NULL, 0, NULL, 0},
	};
	const char *voca = NULL, *rules_file = NULL;
	size_t skus = 5000;
	size_t n = 1000000, nlat = 200000;
	double lat_rate = 50000;
	char dir[] = "/tmp/voca-bench-XXXXXX", config[512], vdb[512], fdb[512];
	char vep[64], fep[64];
	int c, vpipe[2], fpipe[2];
	struct feed feed = {0};
	struct reader vr = {.mu = PTHREAD_MUTEX_INITIALIZER},
	              fr = {.mu = PTHREAD_MUTEX_INITIALIZER};
	pthread_t vt, ft;
	int port = 20000 + (int)(getpid() % 20000);

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'v': voca = optarg; break;
		case 'n': n = strtoul(optarg, NULL, 10); break;
		case 'l': nlat = strtoul(optarg, NULL, 10); break;
		case 'r': lat_rate = strtod(optarg, NULL); break;
		case 'R': rules_file = optarg; break;
		case 'k': skus = strtoul(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (voca == NULL || n == 0)
		usage();
	xalloc_install_cjson();
	if (mkdtemp(dir) == NULL || pipe(vpipe) < 0 || pipe(fpipe) < 0)
		return 1;
	snprintf(vep, sizeof(vep), "tcp://127.0.0.1:%d", port);
	snprintf(fep, sizeof(fep), "tcp://127.0.0.1:%d", port + 1);
	snprintf(vdb, sizeof(vdb), "%s/voca.db", dir);
	snprintf(fdb, sizeof(fdb), "%s/floor.db", dir);
	snprintf(config, sizeof(config), "%s/voca.yaml", dir);
	FILE *cf = fopen(config, "w");

	fprintf(cf,
	        "ingest:\n  mode: pull\n  endpoints: [\"%s\"]\nstore:\n  path: %s\n"
	        "log:\n  level: info\n",
	        vep, vdb);
	if (rules_file) {
		/* The rules' sections of a configuration (engine:, rules:, ...). */
		FILE *rf = fopen(rules_file, "r");
		char line[1024];
		int on = 0;

		if (rf == NULL) {
			fprintf(stderr, "bench: cannot read %s\n", rules_file);
			return 1;
		}
		/* From engine: to the delivery section: the rules alone are measured. */
		while (fgets(line, sizeof(line), rf)) {
			on |= strncmp(line, "engine:", 7) == 0;
			if (strncmp(line, "# ---- delivery", 15) == 0)
				break;
			if (on)
				fputs(line, cf);
		}
		fclose(rf);
	}
	fclose(cf);

	/* Fork before loading the feed: the children's RSS is their own. */
	pid_t vpid = start_voca(config, vpipe[1]);
	pid_t fpid = start_floor(fep, fdb, n, fpipe[1]);

	children[0] = vpid;
	children[1] = fpid;
	atexit(stop_children);
	close(vpipe[1]);
	close(fpipe[1]);
	vr.fd = vpipe[0];
	fr.fd = fpipe[0];
	pthread_create(&vt, NULL, read_commits, &vr);
	pthread_create(&ft, NULL, read_commits, &fr);

	fprintf(stderr, "bench: simulating %zu events...\n", n + nlat);
	load_feed(voca, dir, n + nlat, skus, &feed);
	size_t bytes = 0;

	for (size_t i = 0; i < n; i++)
		bytes += feed.len[i];

	void *ctx = zmq_ctx_new();
	void *vs = zmq_socket(ctx, ZMQ_PUSH), *fs = zmq_socket(ctx, ZMQ_PUSH);

	int send_timeout_ms = 1000;

	zmq_setsockopt(vs, ZMQ_SNDTIMEO, &send_timeout_ms, sizeof(send_timeout_ms));
	zmq_setsockopt(fs, ZMQ_SNDTIMEO, &send_timeout_ms, sizeof(send_timeout_ms));
	zmq_connect(vs, vep);
	zmq_connect(fs, fep);
	usleep(200000); /* let both connect */

	/* Throughput: voca, then the floor, one after the other on the same cores. */
	fprintf(stderr, "bench: voca throughput...\n");
	int64_t t0 = clock_mono_ns();
	double vcpu = cpu_seconds(vpid), fcpu;

	push(vs, &feed, 0, n, 0, NULL, vpid, "voca");
	wait_committed(&vr, (int64_t)n, "voca");
	int64_t voca_ns = last_commit(&vr).at_ns - t0, rules_lag_ns = -1;

	if (rules_file) {
		/* Done when the rules have run the last event too: the ingest does not wait. */
		int64_t at = wait_rules(&vr, last_commit(&vr).last_rowid);

		rules_lag_ns = at - (voca_ns + t0);
		if (rules_lag_ns > 0)
			voca_ns += rules_lag_ns;
	}
	vcpu = cpu_seconds(vpid) - vcpu;

	fprintf(stderr, "bench: floor throughput...\n");
	t0 = clock_mono_ns();
	fcpu = cpu_seconds(fpid);
	push(fs, &feed, 0, n, 0, NULL, fpid, "the floor");
	wait_committed(&fr, (int64_t)n, "floor");
	int64_t floor_ns = fr.v[fr.n - 1].at_ns - t0;
	fcpu = cpu_seconds(fpid) - fcpu;

	/* Latency at a fixed rate: new events (the lines after the first n). */
	fprintf(stderr, "bench: voca latency at %.0f events/s...\n", lat_rate);
	int64_t *sent = xmalloc(nlat * sizeof(int64_t)), *lat = xmalloc(nlat * sizeof(int64_t));
	size_t first_rec = vr.n;
	int64_t seq0 = -1;

	{
		cJSON *o = cJSON_ParseWithLength(feed.line[n], feed.len[n]);

		seq0 = (int64_t)cJSON_GetObjectItem(o, "seq")->valuedouble;
		cJSON_Delete(o);
	}
	push(vs, &feed, n, n + nlat, lat_rate, sent, vpid, "voca");
	wait_committed(&vr, (int64_t)(n + nlat), "voca latency");
	size_t nl = 0;

	pthread_mutex_lock(&vr.mu);
	for (size_t i = first_rec; i < vr.n; i++)
		for (int64_t s = vr.v[i].first_seq; s >= 0 && s <= vr.v[i].last_seq; s++)
			if (s - seq0 >= 0 && (size_t)(s - seq0) < nlat)
				lat[nl++] = vr.v[i].at_ns - sent[s - seq0];
	pthread_mutex_unlock(&vr.mu);
	qsort(lat, nl, sizeof(int64_t), cmp_i64);

	kill(vpid, SIGTERM);
	int vstatus = 0, fstatus = 0;

	waitpid(vpid, &vstatus, 0);
	waitpid(fpid, &fstatus, 0);
	children[0] = children[1] = 0; /* reaped: their pids may be another's now */
	pthread_join(vt, NULL);
	pthread_join(ft, NULL);
	zmq_close(vs);
	zmq_close(fs);
	zmq_ctx_term(ctx);

	sqlite3 *db;
	sqlite3_stmt *st;
	long long stored = -1, new_events = -1;

	sqlite3_open_v2(vdb, &db, SQLITE_OPEN_READONLY, NULL);
	if (sqlite3_prepare_v2(db,
	                       "SELECT (SELECT count(*) FROM events),"
	                       " (SELECT value FROM counters WHERE name='events_new')",
	                       -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		stored = sqlite3_column_int64(st, 0);
		new_events = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);

	double vrate = (double)n / ((double)voca_ns / 1e9);
	double frate = (double)n / ((double)floor_ns / 1e9);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	printf("bench_ingest: %zu events (%.0f MB of JSON, %.0f B each, %zu SKUs) over tcp "
	       "loopback, PUSH -> PULL, %ld cores%s%s\n",
	       n, (double)bytes / 1e6, (double)bytes / (double)n, skus, ncpu,
	       rules_file ? ", rules from " : "", rules_file ? rules_file : "");
	printf("  voca    %9.0f events/s  (%.2f s; decode + validate + dedupe + store, "
	       "group commit)\n",
	       vrate, (double)voca_ns / 1e9);
	if (rules_file)
		printf("  rules   %9.0f ms    after the last commit, the rules had run every event "
		       "(included above)\n",
		       rules_lag_ns > 0 ? (double)rules_lag_ns / 1e6 : 0.0);
	printf("  floor   %9.0f events/s  (%.2f s; zmq recv + cJSON parse + batched INSERT)\n",
	       frate, (double)floor_ns / 1e9);
	printf("  ratio   %9.2f  voca / floor\n", vrate / frate);
	printf("  cpu     %9.2f us an event, voca (%.2f s, user + system, all threads); floor "
	       "%.2f us (%.2f s)\n",
	       vcpu * 1e6 / (double)n, vcpu, fcpu * 1e6 / (double)n, fcpu);
	printf("  loss    %9s  (%lld inputs committed for %zu sent; %lld events stored, "
	       "%lld new)\n",
	       committed(&vr) == (int64_t)(n + nlat) ? "none" : "LOSS", (long long)committed(&vr),
	       n + nlat, stored, new_events);
	if (nl)
		printf("  latency publish -> commit at %.0f events/s over %zu events: p50 %.2f ms, "
		       "p99 %.2f ms, max %.2f ms\n",
		       lat_rate, nl, (double)lat[nl / 2] / 1e6, (double)lat[nl * 99 / 100] / 1e6,
		       (double)lat[nl - 1] / 1e6);
	printf("  peak RSS: voca %.1f MB, floor %.1f MB\n", (double)vr.rss_kib / 1024,
	       (double)fr.rss_kib / 1024);
	printf("  exit: voca %d, floor %d\n", WEXITSTATUS(vstatus), WEXITSTATUS(fstatus));

	unlink(config);
	static const char *const suffixes[] = {"", "-wal", "-shm"};

	for (int i = 0; i < 3; i++) {
		char p[600];

		snprintf(p, sizeof(p), "%s%s", vdb, suffixes[i]);
		unlink(p);
		snprintf(p, sizeof(p), "%s%s", fdb, suffixes[i]);
		unlink(p);
	}
	rmdir(dir);
	free(sent);
	free(lat);
	free(feed.data);
	free(feed.line);
	free(feed.len);
	free(vr.v);
	free(fr.v);
	return committed(&vr) == (int64_t)(n + nlat) && WEXITSTATUS(vstatus) == 0 ? 0 : 1;
}
