/*
 * delivery.c: the outbox's workers (see delivery.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <sqlite3.h>

#include <voca/connector.h>
#include <voca/log.h>
#include <voca/xalloc.h>

#include "clock.h"
#include "delivery.h"
#include "store.h"
#include "version.h"

#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS  (10 * 60 * 1000)
#define IDLE_WAIT_MS    1000

struct worker {
	pthread_t thread;
	struct delivery_pool *pool;
	const struct receiver *rcv;
	const struct connector *conn;
	sqlite3 *db;
	CURL *curl;
	int64_t last_request_ms;
	uint64_t rand;
	int running;
};

struct delivery_pool {
	struct store *st;         /* for its writers' turns only */
	struct conf_items owners; /* a copy: SIGHUP keeps the items, not the struct */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	uint64_t kicks;
	struct worker *w;
	size_t n;
	char **alert; /* delivery.deadletter_receivers, copied */
	size_t nalert;
};

static pthread_mutex_t console_mu = PTHREAD_MUTEX_INITIALIZER;

int64_t delivery_backoff_ms(int attempt)
{
	int64_t ms = BACKOFF_BASE_MS;

	for (int i = 1; i < attempt && ms < BACKOFF_CAP_MS; i++)
		ms *= 2;
	return ms < BACKOFF_CAP_MS ? ms : BACKOFF_CAP_MS;
}

/* ---- sending ---- */

struct response {
	struct buf body;
	int64_t retry_after_ms;
	int too_big;
	const struct delivery_pool *pool;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct response *r = arg;

	if (buf_add(&r->body, p, size * n) < 0) {
		r->too_big = 1;
		return 0; /* aborts the transfer */
	}
	return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct response *r = arg;
	size_t len = size * n, vlen;
	const char *v;

	if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
		char val[64];

		v = p + 12;
		vlen = len - 12;
		while (vlen && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
			vlen--;
		snprintf(val, sizeof(val), "%.*s", (int)vlen, v);
		if (val[0] >= '0' && val[0] <= '9') {
			r->retry_after_ms = strtoll(val, NULL, 10) * 1000;
		} else {
			time_t t = curl_getdate(val, NULL);

			if (t > 0)
				r->retry_after_ms = ((int64_t)t * 1000 - clock_wall_ms());
		}
		if (r->retry_after_ms > 3600 * 1000)
			r->retry_after_ms = 3600 * 1000; /* a server's hour is enough */
		if (r->retry_after_ms < 0)
			r->retry_after_ms = 0;
	}
	return len;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	struct response *r = arg;

	(void)a, (void)b, (void)c, (void)d;
	return r->pool->stop; /* non-zero aborts: shutting down */
}

/* Sends req; fills resp (whose body points into rb). Never logs secrets. */
static void send_request(struct worker *w, const struct http_req *req, struct response *rb,
                         struct http_resp *resp)
{
	const struct receiver *rcv = w->rcv;
	struct curl_slist *hdrs = NULL;
	curl_mime *mime = NULL;
	CURLcode rc;
	char line[256];

	memset(resp, 0, sizeof(*resp));
	resp->retry_after_ms = -1;
	if (strcmp(req->method, "CONSOLE") == 0) {
		pthread_mutex_lock(&console_mu);
		fwrite(req->body.data ? req->body.data : "", 1, req->body.len, stdout);
		fflush(stdout);
		pthread_mutex_unlock(&console_mu);
		resp->status = 200;
		resp->body = "";
		return;
	}
	CURL *h = w->curl;

	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, buf_str(&req->url));
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (rcv->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, rcv->ca_file);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)rcv->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
	                 (long)(rcv->timeout_ms < 10000 ? rcv->timeout_ms : 10000));
	curl_easy_setopt(h, CURLOPT_USERAGENT, "voca/" VOCA_VERSION);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, rb);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, rb);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, rb);
	if (req->auth == AUTH_BASIC) {
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(h, CURLOPT_USERNAME, rcv->user.value ? rcv->user.value : "");
		curl_easy_setopt(h, CURLOPT_PASSWORD, rcv->token.value ? rcv->token.value : "");
	} else if (req->auth == AUTH_BEARER && rcv->token.value) {
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
		curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, rcv->token.value);
	}
	for (int i = 0; i < req->nheaders; i++)
		hdrs = curl_slist_append(hdrs, req->headers[i]);
	hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue stall */
	if (req->part_name) {
		curl_mimepart *part;

		mime = curl_mime_init(h);
		part = curl_mime_addpart(mime);
		curl_mime_name(part, req->part_name);
		curl_mime_data(part, req->body.data ? req->body.data : "", req->body.len);
		curl_mime_filename(part, req->file_name);
		curl_mime_type(part, req->file_type);
		curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);
	} else if (strcmp(req->method, "GET") == 0) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else {
		if (req->content_type) {
			snprintf(line, sizeof(line), "Content-Type: %s", req->content_type);
			hdrs = curl_slist_append(hdrs, line);
		}
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body.len);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body.data ? req->body.data : "");
		if (strcmp(req->method, "POST") != 0)
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK) {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
	} else {
		resp->status = 0;
		if (rb->too_big)
			snprintf(resp->err, sizeof(resp->err), "response over %lld bytes",
			         (long long)rcv->max_response);
		else
			snprintf(resp->err, sizeof(resp->err), "%s", curl_easy_strerror(rc));
	}
	resp->body = buf_str(&rb->body);
	resp->len = rb->body.len;
	resp->retry_after_ms = rb->retry_after_ms;
	curl_slist_free_all(hdrs);
	curl_mime_free(mime);
}

/* ---- the row ---- */

struct row {
	struct delivery d;
	int64_t change_id, created_ms, inflight_ms;
	char action[16], owner[128];
	char had_id[64], had_key[64]; /* remote ids before the step, to see what changed */
	char *pack_text;
	cJSON *pack;
	char dedupe[32];
};

static int exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static void copy_col(sqlite3_stmt *s, int i, char *out, size_t outlen)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	snprintf(out, outlen, "%s", t ? (const char *)t : "");
}

/* The receiver's next due delivery; 1 if one, 0 if none (*next_ms: when the next is due). */
static int claim(struct worker *w, int64_t now, struct row *r, int64_t *next_ms)
{
	sqlite3_stmt *s;
	int found = 0;

	*next_ms = INT64_MAX;
	if (sqlite3_prepare_v2(
	            w->db,
	            "SELECT d.id, d.change_id, d.incident_id, d.owner, d.action, d.step, d.attempts,"
	            " d.created_ms, d.inflight_ms, d.create_tried_ms, d.remote_id, d.remote_key,"
	            " d.aux, e.dedupe, e.pack, d.next_ms"
	            " FROM deliveries d JOIN evidence e ON e.change_id = d.change_id"
	            " WHERE d.receiver = ?1 AND d.status = 'pending'"
	            " AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.receiver = d.receiver"
	            "  AND p.incident_id = d.incident_id AND p.status = 'pending' AND p.id < d.id)"
	            " ORDER BY d.next_ms, d.id LIMIT 1",
	            -1, &s, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(s, 1, w->rcv->name, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW) {
		int64_t due = sqlite3_column_int64(s, 15);

		if (due > now) {
			*next_ms = due;
		} else {
			memset(r, 0, sizeof(*r));
			r->d.id = sqlite3_column_int64(s, 0);
			r->change_id = sqlite3_column_int64(s, 1);
			r->d.incident_id = sqlite3_column_int64(s, 2);
			copy_col(s, 3, r->owner, sizeof(r->owner));
			copy_col(s, 4, r->action, sizeof(r->action));
			r->d.step = sqlite3_column_int(s, 5);
			r->d.attempts = sqlite3_column_int(s, 6);
			r->created_ms = sqlite3_column_int64(s, 7);
			r->inflight_ms = sqlite3_column_int64(s, 8);
			r->d.create_tried_ms = sqlite3_column_int64(s, 9);
			copy_col(s, 10, r->d.remote_id, sizeof(r->d.remote_id));
			copy_col(s, 11, r->d.remote_key, sizeof(r->d.remote_key));
			copy_col(s, 12, r->d.aux, sizeof(r->d.aux));
			copy_col(s, 13, r->dedupe, sizeof(r->dedupe));
			r->pack_text = xstrdup((const char *)sqlite3_column_text(s, 14));
			found = 1;
		}
	}
	sqlite3_finalize(s);
	if (!found)
		return 0;
	/* The ledger first: what an earlier delivery of this incident learnt. */
	if (r->d.remote_key[0] == '\0' &&
	    sqlite3_prepare_v2(w->db,
	                       "SELECT remote_id, remote_key FROM tickets"
	                       " WHERE receiver = ?1 AND dedupe = ?2",
	                       -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_text(s, 1, w->rcv->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, r->dedupe, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW) {
			copy_col(s, 0, r->d.remote_id, sizeof(r->d.remote_id));
			copy_col(s, 1, r->d.remote_key, sizeof(r->d.remote_key));
		}
		sqlite3_finalize(s);
	}
	memcpy(r->had_id, r->d.remote_id, sizeof(r->had_id));
	memcpy(r->had_key, r->d.remote_key, sizeof(r->had_key));
	return 1;
}

/* Commits that a request is about to go out (the crash guard). */
static int mark_inflight(struct worker *w, const struct row *r, int64_t now, int creates)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(w->db,
	                       "UPDATE deliveries SET inflight_ms = ?2, create_tried_ms ="
	                       " CASE WHEN ?3 THEN ?2 ELSE create_tried_ms END WHERE id = ?1",
	                       -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(s, 1, r->d.id);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_int(s, 3, creates);
	store_writer_enter(w->pool->st);
	rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -1;
	store_writer_leave(w->pool->st);
	sqlite3_finalize(s);
	return rc;
}

static const char *const verdict_names[] = {"next", "done", "retry", "dead"};

/*
 * A dead letter is news for the operators: in the transaction that records
 * it, log a "dead letter" change of the incident, give it the incident's
 * pack with what failed, and queue it to delivery.deadletter_receivers (not
 * to the receiver that failed, and never for a failed alert: no loops).
 * Returns how many were queued, or -1.
 */
static int queue_alerts(struct worker *w, const struct row *r, const struct verdict *v, int64_t now)
{
	struct delivery_pool *p = w->pool;
	sqlite3_stmt *s = NULL;
	char change[48];
	int64_t change_id;
	int n = 0;

	if (p->nalert == 0 || r->d.action == ACTION_ALERT)
		return 0;
	snprintf(change, sizeof(change), "dead letter %lld", (long long)r->d.id);
	if (sqlite3_prepare_v2(w->db,
	                       "INSERT INTO incident_changes(incident_id, at_ms, change, notify,"
	                       " summary) VALUES(?1, ?2, ?3, 1, ?4) ON CONFLICT DO NOTHING",
	                       -1, &s, NULL) != SQLITE_OK)
		return -1;
	char summary[400];

	snprintf(summary, sizeof(summary), "delivery %lld to %s failed for good: %s",
	         (long long)r->d.id, w->rcv->name, v->reason);
	sqlite3_bind_int64(s, 1, r->d.incident_id);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_text(s, 3, change, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, summary, -1, SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto fail;
	sqlite3_finalize(s);
	s = NULL;
	if (sqlite3_changes(w->db) == 0)
		return 0; /* recorded already */
	change_id = sqlite3_last_insert_rowid(w->db);
	if (sqlite3_prepare_v2(
	            w->db,
	            "INSERT INTO evidence(change_id, incident_id, dedupe, pack)"
	            " SELECT ?1, incident_id, dedupe, json_set(pack, '$.incident.change', 'dead letter',"
	            " '$.delivery_failure', json_object('delivery', ?2, 'receiver', ?3,"
	            " 'reason', ?4, 'attempts', ?5)) FROM evidence WHERE change_id = ?6",
	            -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(s, 1, change_id);
	sqlite3_bind_int64(s, 2, r->d.id);
	sqlite3_bind_text(s, 3, w->rcv->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, v->reason, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 5, r->d.attempts + 1);
	sqlite3_bind_int64(s, 6, r->change_id);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto fail;
	sqlite3_finalize(s);
	if (sqlite3_prepare_v2(
	            w->db,
	            "INSERT INTO deliveries(change_id, incident_id, receiver, owner, action,"
	            " created_ms, next_ms) VALUES(?1, ?2, ?3, ?4, 'alert', ?5, ?5)"
	            " ON CONFLICT DO NOTHING",
	            -1, &s, NULL) != SQLITE_OK)
		return -1;
	for (size_t i = 0; i < p->nalert; i++) {
		if (strcmp(p->alert[i], w->rcv->name) == 0)
			continue;
		sqlite3_bind_int64(s, 1, change_id);
		sqlite3_bind_int64(s, 2, r->d.incident_id);
		sqlite3_bind_text(s, 3, p->alert[i], -1, SQLITE_STATIC);
		if (r->owner[0])
			sqlite3_bind_text(s, 4, r->owner, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(s, 4);
		sqlite3_bind_int64(s, 5, now);
		if (sqlite3_step(s) != SQLITE_DONE)
			goto fail;
		sqlite3_reset(s);
		n++;
	}
	sqlite3_finalize(s);
	return n;
fail:
	sqlite3_finalize(s);
	return -1;
}

/* Records the verdict, the step, the remote ids and the log line, in one transaction. */
static int record(struct worker *w, struct row *r, const struct verdict *v, long status,
                  int64_t now)
{
	const char *st = "pending";
	int64_t next = now;
	int step = r->d.step, attempts = r->d.attempts;
	sqlite3_stmt *s = NULL;
	int ok = 0, alerts = 0;

	switch (v->kind) {
	case VERDICT_NEXT:
		step = v->step;
		attempts = 0;
		break;
	case VERDICT_DONE: st = "done"; break;
	case VERDICT_RETRY: {
		int64_t wait;

		step = v->step;
		attempts++;
		wait = delivery_backoff_ms(attempts);
		/* full jitter on the upper half: retries of many deliveries spread out */
		w->rand = w->rand * 6364136223846793005ULL + 1442695040888963407ULL;
		wait = wait / 2 + (int64_t)((w->rand >> 33) % (uint64_t)(wait / 2 + 1));
		if (v->retry_after_ms >= 0 && wait < v->retry_after_ms)
			wait = v->retry_after_ms;
		next = now + wait;
		break;
	}
	case VERDICT_FAIL: st = "dead"; break;
	}
	store_writer_enter(w->pool->st);
	if (exec(w->db, "BEGIN IMMEDIATE") < 0) {
		store_writer_leave(w->pool->st);
		log_error("delivery %s: cannot record delivery %lld: %s", w->rcv->name,
		          (long long)r->d.id, sqlite3_errmsg(w->db));
		return -1;
	}
	if (sqlite3_prepare_v2(
	            w->db,
	            "UPDATE deliveries SET status = ?2, step = ?3, attempts = ?4,"
	            " next_ms = ?5, done_ms = CASE WHEN ?2 = 'pending' THEN NULL ELSE ?6 END,"
	            " inflight_ms = NULL, remote_id = ?7, remote_key = ?8, aux = ?9,"
	            " last_error = CASE WHEN ?10 = 'next' OR ?10 = 'done' THEN last_error"
	            " ELSE ?11 END WHERE id = ?1",
	            -1, &s, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_int64(s, 1, r->d.id);
	sqlite3_bind_text(s, 2, st, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 3, step);
	sqlite3_bind_int(s, 4, attempts);
	sqlite3_bind_int64(s, 5, next);
	sqlite3_bind_int64(s, 6, now);
	sqlite3_bind_text(s, 7, r->d.remote_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, r->d.remote_key, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 9, r->d.aux, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 10, verdict_names[v->kind], -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 11, v->reason, -1, SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto out;
	sqlite3_finalize(s);
	s = NULL;
	/* A known issue's ticket is not the incident's own: the ledger does not
	 * learn it, so the incident gets its own ticket if the issue is dropped. */
	if (r->d.remote_key[0] && r->d.action != ACTION_KNOWN &&
	    (strcmp(r->had_key, r->d.remote_key) || strcmp(r->had_id, r->d.remote_id))) {
		if (sqlite3_prepare_v2(
		            w->db,
		            "INSERT INTO tickets(receiver, dedupe, incident_id, remote_id,"
		            " remote_key, updated_ms) VALUES(?1,?2,?3,?4,?5,?6)"
		            " ON CONFLICT(receiver, dedupe) DO UPDATE SET"
		            " remote_id = excluded.remote_id, remote_key = excluded.remote_key,"
		            " updated_ms = excluded.updated_ms",
		            -1, &s, NULL) != SQLITE_OK)
			goto out;
		sqlite3_bind_text(s, 1, w->rcv->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, r->dedupe, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, r->d.incident_id);
		sqlite3_bind_text(s, 4, r->d.remote_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 5, r->d.remote_key, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 6, now);
		if (sqlite3_step(s) != SQLITE_DONE)
			goto out;
		sqlite3_finalize(s);
		s = NULL;
	}
	if (sqlite3_prepare_v2(w->db,
	                       "INSERT INTO delivery_log(delivery_id, at_ms, step, status, verdict,"
	                       " detail) VALUES(?1,?2,?3,?4,?5,?6)",
	                       -1, &s, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_int64(s, 1, r->d.id);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_int(s, 3, r->d.step);
	if (status)
		sqlite3_bind_int64(s, 4, status);
	sqlite3_bind_text(s, 5, verdict_names[v->kind], -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, v->reason, -1, SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto out;
	if (v->kind == VERDICT_FAIL && (alerts = queue_alerts(w, r, v, now)) < 0)
		goto out;
	ok = 1;
out:
	sqlite3_finalize(s);
	if (exec(w->db, ok ? "COMMIT" : "ROLLBACK") < 0 || !ok) {
		log_error("delivery %s: cannot record delivery %lld: %s", w->rcv->name,
		          (long long)r->d.id, sqlite3_errmsg(w->db));
		if (ok)
			exec(w->db, "ROLLBACK");
		store_writer_leave(w->pool->st);
		return -1;
	}
	store_writer_leave(w->pool->st);
	if (alerts > 0) {
		log_warn("delivery %s: id=%lld dead-lettered; %d alert%s queued to "
		         "delivery.deadletter_receivers",
		         w->rcv->name, (long long)r->d.id, alerts, alerts == 1 ? "" : "s");
		delivery_kick(w->pool);
	}
	return 0;
}

static void log_verdict(const struct worker *w, const struct row *r, int step,
                        const struct verdict *v, long status, int64_t ms)
{
	enum log_level lvl = v->kind == VERDICT_FAIL    ? LOGL_ERROR
	                     : v->kind == VERDICT_RETRY ? LOGL_WARN
	                                                : LOGL_INFO;

	log_msg(lvl,
	        "delivery %s: id=%lld incident=%lld action=%s step=%d status=%ld verdict=%s "
	        "attempt=%d ms=%lld reason=\"%s\"",
	        w->rcv->name, (long long)r->d.id, (long long)r->d.incident_id, r->action, step,
	        status, verdict_names[v->kind], r->d.attempts + 1, (long long)ms, v->reason);
}

static void run_one(struct worker *w, struct row *r)
{
	const struct conf_items *owners = &w->pool->owners;
	struct http_req req;
	struct verdict v = {.retry_after_ms = -1};
	int64_t now = clock_wall_ms();
	int step = r->d.step, a = action_parse(r->action);
	long status = 0;

	r->d.action = a < 0 ? ACTION_UPDATE : (enum delivery_action)a;
	r->d.rcv = w->rcv;
	r->d.dedupe = r->dedupe;
	r->d.owner = NULL;
	for (size_t i = 0; r->owner[0] && i < owners->n; i++)
		if (strcmp(((struct owner *)owners->v[i].data)->name, r->owner) == 0)
			r->d.owner = owners->v[i].data;
	r->pack = cJSON_Parse(r->pack_text);
	r->d.pack = r->pack;
	if (r->inflight_ms) {
		/* The last run died with a request in flight: its answer is lost. */
		if (r->d.create_tried_ms == r->inflight_ms) {
			log_warn("delivery %s: id=%lld: a create was interrupted; finding before "
			         "creating again",
			         w->rcv->name, (long long)r->d.id);
			r->d.step = step = 0;
		} else {
			log_warn(
			        "delivery %s: id=%lld incident=%lld: a send was interrupted; sending "
			        "again (the receiver may show it twice)",
			        w->rcv->name, (long long)r->d.id, (long long)r->d.incident_id);
		}
	}
	if (r->pack == NULL) {
		verdict_set(&v, VERDICT_FAIL, step, "the evidence pack does not parse");
		goto done;
	}
	if (r->d.action == ACTION_KNOWN && !w->conn->comments) {
		verdict_set(&v, VERDICT_FAIL, step,
		            "a known issue's comment cannot go to a %s receiver", w->conn->kind);
		goto done;
	}
	if (now - r->created_ms > w->rcv->max_age_ms) {
		verdict_set(&v, VERDICT_FAIL, step, "expired after %lld s and %d attempts",
		            (long long)((now - r->created_ms) / 1000), r->d.attempts);
		goto done;
	}
	/* The receiver's rate limit. */
	if (w->rcv->min_interval_ms && now < w->last_request_ms + w->rcv->min_interval_ms) {
		struct timespec ts;
		int64_t wait = w->last_request_ms + w->rcv->min_interval_ms - now;

		ts.tv_sec = (time_t)(wait / 1000);
		ts.tv_nsec = (long)(wait % 1000) * 1000000L;
		nanosleep(&ts, NULL);
		now = clock_wall_ms();
	}
	r->d.now_ms = now;
	http_req_init(&req);
	switch (w->conn->render(&r->d, &req, &v)) {
	case RENDER_SKIP:
	case RENDER_FAIL: break;
	case RENDER_REQUEST: {
		struct response rb = {.retry_after_ms = -1, .pool = w->pool};
		struct http_resp resp;

		if ((req.creates || req.sends_message) &&
		    mark_inflight(w, r, now, req.creates) < 0) {
			verdict_set(&v, VERDICT_RETRY, step, "cannot record the attempt: %s",
			            sqlite3_errmsg(w->db));
			break;
		}
		if (req.creates)
			r->d.create_tried_ms = now;
		buf_init(&rb.body, (size_t)w->rcv->max_response);
		send_request(w, &req, &rb, &resp);
		w->last_request_ms = clock_wall_ms();
		if (w->pool->stop && resp.status == 0) {
			/* shutting down: leave the row as a crash would */
			buf_free(&rb.body);
			http_req_free(&req);
			goto out;
		}
		w->conn->classify(&r->d, &resp, &v);
		status = resp.status;
		if (resp.status && resp.status >= 400)
			log_debug("delivery %s: id=%lld response: %.300s", w->rcv->name,
			          (long long)r->d.id, resp.body);
		buf_free(&rb.body);
		break;
	}
	}
	http_req_free(&req);
	if (v.kind == VERDICT_RETRY && now - r->created_ms > w->rcv->max_age_ms) {
		char why[256];

		snprintf(why, sizeof(why), "expired; last: %.200s", v.reason);
		verdict_set(&v, VERDICT_FAIL, step, "%s", why);
	}
done:
	r->d.step = step;
	log_verdict(w, r, step, &v, status, clock_wall_ms() - now);
	record(w, r, &v, status, clock_wall_ms());
out:
	cJSON_Delete(r->pack);
	free(r->pack_text);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct delivery_pool *p = w->pool;

	for (;;) {
		struct row r;
		int64_t next, now = clock_wall_ms();
		uint64_t kicks;

		pthread_mutex_lock(&p->mu);
		kicks = p->kicks;
		if (p->stop) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		pthread_mutex_unlock(&p->mu);
		if (claim(w, now, &r, &next)) {
			run_one(w, &r);
			continue;
		}
		/* Sleep until the next delivery is due, new ones arrive, or a second passes. */
		int64_t wait = next == INT64_MAX ? IDLE_WAIT_MS : next - now;
		struct timespec until;

		if (wait > IDLE_WAIT_MS)
			wait = IDLE_WAIT_MS;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)(wait / 1000);
		until.tv_nsec += (long)(wait % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&p->mu);
		while (!p->stop && p->kicks == kicks &&
		       pthread_cond_timedwait(&p->cv, &p->mu, &until) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&p->mu);
	}
	return NULL;
}

/* Pending deliveries to a receiver no longer configured would wait forever: say so. */
static void warn_orphans(struct delivery_pool *p)
{
	sqlite3_stmt *s;

	if (p->n == 0 || sqlite3_prepare_v2(p->w[0].db,
	                                    "SELECT receiver, count(*) FROM deliveries"
	                                    " WHERE status = 'pending' GROUP BY receiver",
	                                    -1, &s, NULL) != SQLITE_OK)
		return;
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 0);
		size_t i = 0;

		while (i < p->n && strcmp(p->w[i].rcv->name, name) != 0)
			i++;
		if (i == p->n)
			log_warn(
			        "delivery: %d pending deliveries to receiver '%s', which is no longer "
			        "configured: they wait until it is again (voca stats lists them)",
			        sqlite3_column_int(s, 1), name);
	}
	sqlite3_finalize(s);
}

struct delivery_pool *delivery_start(const struct config *cfg, struct store *st,
                                     const char *db_path, char *err, size_t errlen)
{
	struct delivery_pool *p = xcalloc(1, sizeof(*p));

	p->st = st;
	p->owners = cfg->owners;
	p->nalert = cfg->delivery.deadletter_receivers.n;
	p->alert = xcalloc(p->nalert ? p->nalert : 1, sizeof(*p->alert));
	for (size_t i = 0; i < p->nalert; i++)
		p->alert[i] = xstrdup(cfg->delivery.deadletter_receivers.v[i]);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->n = cfg->receivers.n;
	p->w = xcalloc(p->n ? p->n : 1, sizeof(*p->w));
	curl_global_init(CURL_GLOBAL_DEFAULT);
	for (size_t i = 0; i < p->n; i++) {
		struct worker *w = &p->w[i];

		w->pool = p;
		w->rcv = cfg->receivers.v[i].data;
		w->conn = connectors[w->rcv->kind];
		w->rand = 0x9e3779b97f4a7c15ULL ^ (uint64_t)clock_mono_ns() ^ (uint64_t)i;
		if (sqlite3_open_v2(db_path, &w->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
		                    NULL) != SQLITE_OK) {
			snprintf(err, errlen, "%s: cannot open for delivery: %s", db_path,
			         sqlite3_errmsg(w->db));
			goto fail;
		}
		sqlite3_busy_timeout(w->db, 10000);
		/* as the store: a commit survives a crash of the process (WAL) */
		exec(w->db, "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL");
		w->curl = curl_easy_init();
		if (w->curl == NULL) {
			snprintf(err, errlen, "libcurl: cannot make a handle");
			goto fail;
		}
	}
	warn_orphans(p);
	for (size_t i = 0; i < p->n; i++) {
		if (pthread_create(&p->w[i].thread, NULL, worker_main, &p->w[i]) != 0) {
			snprintf(err, errlen, "cannot start a delivery thread");
			goto fail;
		}
		p->w[i].running = 1;
	}
	return p;
fail:
	delivery_stop(p);
	return NULL;
}

void delivery_kick(struct delivery_pool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->kicks++;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void delivery_stop(struct delivery_pool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (size_t i = 0; i < p->n; i++) {
		if (p->w[i].running)
			pthread_join(p->w[i].thread, NULL);
		if (p->w[i].curl)
			curl_easy_cleanup(p->w[i].curl);
		sqlite3_close(p->w[i].db);
	}
	free(p->w);
	for (size_t i = 0; i < p->nalert; i++)
		free(p->alert[i]);
	free(p->alert);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
	curl_global_cleanup();
}

int delivery_deadletters(const char *db_path, int requeue, int64_t id, char *err, size_t errlen)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	int n = 0;

	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", db_path, sqlite3_errmsg(db));
		sqlite3_close(db);
		return -1;
	}
	sqlite3_busy_timeout(db, 10000);
	if (requeue) {
		/* A re-queued delivery starts its step afresh, with a fresh max_age. */
		if (sqlite3_prepare_v2(db,
		                       "UPDATE deliveries SET status = 'pending', attempts = 0,"
		                       " next_ms = ?2, created_ms = ?2, done_ms = NULL"
		                       " WHERE status = 'dead' AND (?1 = 0 OR id = ?1)",
		                       -1, &s, NULL) != SQLITE_OK)
			goto fail;
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, clock_wall_ms());
		if (sqlite3_step(s) != SQLITE_DONE) {
			sqlite3_finalize(s);
			goto fail;
		}
		n = sqlite3_changes(db);
		sqlite3_finalize(s);
		printf("re-queued %d dead letter%s\n", n, n == 1 ? "" : "s");
		sqlite3_close(db);
		return n;
	}
	if (sqlite3_prepare_v2(db,
	                       "SELECT id, incident_id, receiver, action, step, attempts,"
	                       " datetime(done_ms / 1000, 'unixepoch'), last_error FROM deliveries"
	                       " WHERE status = 'dead' ORDER BY id",
	                       -1, &s, NULL) != SQLITE_OK)
		goto fail;
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (n == 0) /* attempts: the failed tries of its step before it was given up */
			printf("%-6s %-8s %-16s %-8s %-4s %-8s %-19s %s\n", "id", "incident",
			       "receiver", "action", "step", "retries", "failed", "reason");
		printf("%-6lld %-8lld %-16s %-8s %-4d %-8d %-19s %s\n",
		       (long long)sqlite3_column_int64(s, 0), (long long)sqlite3_column_int64(s, 1),
		       sqlite3_column_text(s, 2), sqlite3_column_text(s, 3),
		       sqlite3_column_int(s, 4), sqlite3_column_int(s, 5),
		       sqlite3_column_text(s, 6) ? (const char *)sqlite3_column_text(s, 6) : "",
		       sqlite3_column_text(s, 7) ? (const char *)sqlite3_column_text(s, 7) : "");
		n++;
	}
	sqlite3_finalize(s);
	printf("%d dead letter%s\n", n, n == 1 ? "" : "s");
	sqlite3_close(db);
	return n;
fail:
	snprintf(err, errlen, "%s: %s", db_path, sqlite3_errmsg(db));
	sqlite3_close(db);
	return -1;
}
