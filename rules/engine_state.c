/*
 * engine_state.c: the rules engine's state in the rules' file, and back.
 *
 * Each (rule, key) is a record: a head (its bucket, its incident history),
 * the kind's state, and its open incident if any. A save writes only the
 * keys changed since the last one, in the file's order. Each rule has a
 * shape record too, the settings its state was learned under: a state
 * learned under others is not restored, and a rule no longer configured
 * keeps its records for a while (engine.forget_after). A restart from the
 * file gives the incidents an uninterrupted run gives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/buf.h>
#include <voca/conf.h>
#include <voca/engine.h>
#include <voca/log.h>
#include <voca/rule.h>
#include <voca/xalloc.h>

#include "engine_int.h"

/* Does the kind's shape entry ("window", "time_zone=UTC") name key path? */
static int shape_names(const char *entry, const char *path)
{
	size_t n = strcspn(entry, "=");

	return strlen(path) == n && memcmp(entry, path, n) == 0;
}

/*
 * What a rule's saved state means: its kind and the settings its state is
 * learned under (group_by, where, bucket and the kind's shape keys), one
 * "key=value" a line. A baseline learned per hour read as per five minutes,
 * or a volume learned over negative reviews read as all reviews, would be
 * wrong until relearned, and a ring sum kept for another window length wrong
 * for good: state saved under other settings is not restored.
 */
char *engine_shape_text(const struct rule_rt *r)
{
	static const char *const common[] = {"group_by", "where", "bucket", NULL};
	struct buf b;
	char *out;

	buf_init(&b, 1 << 20);
	buf_addf(&b, "kind=%s", r->kind->name);
	for (const struct conf_key *k = r->kind->keys; k->path; k++) {
		int take = 0;
		const char *at = (const char *)r->config + k->offset;

		for (size_t i = 0; common[i] && !take; i++)
			take = strcmp(k->path, common[i]) == 0;
		for (size_t i = 0; r->kind->shape && r->kind->shape[i] && !take; i++)
			take = shape_names(r->kind->shape[i], k->path);
		if (!take)
			continue;
		buf_addf(&b, "\n%s=", k->path);
		switch (k->type) {
		case CONF_STR: buf_adds(&b, *(char *const *)at ? *(char *const *)at : ""); break;
		case CONF_STRLIST: {
			/* Conditions (where, share_where) by their meaning: a
			 * respelt one is the same. Durations (spike's mid_window)
			 * in milliseconds, as a duration key's: "6h" is what
			 * mid_window: 6h saved when it took one duration. */
			const struct conf_list *l = (const struct conf_list *)at;
			size_t plen = strlen(k->path);
			int conds = plen >= 5 && strcmp(k->path + plen - 5, "where") == 0;
			char canon[192];
			int64_t ms;

			for (size_t i = 0; i < l->n; i++) {
				if (conds && cond_canonical(l->v[i], canon, sizeof(canon)) == 0)
					buf_addf(&b, "%s%s", i ? ", " : "", canon);
				else if (!conds && conf_parse_duration(l->v[i], &ms) == 0)
					buf_addf(&b, "%s%lld", i ? ", " : "", (long long)ms);
				else
					buf_addf(&b, "%s%s", i ? ", " : "", l->v[i]);
			}
			break;
		}
		case CONF_INT:
		case CONF_DURATION:
		case CONF_SIZE: buf_addf(&b, "%lld", (long long)*(const int64_t *)at); break;
		case CONF_DOUBLE: buf_addf(&b, "%.17g", *(const double *)at); break;
		case CONF_BOOL:
		case CONF_ENUM: buf_addf(&b, "%d", *(const int *)at); break;
		default: break; /* not a shape */
		}
	}
	out = xstrdup(buf_str(&b));
	buf_free(&b);
	return out;
}

/*
 * A key's record. magic names this layout: a record of an older one (which
 * began with the bucket, never this value) is skipped, not misread.
 * state_size says what follows: the kind's full state, or a sleeping key's
 * idle part.
 */
#define KEY_MAGIC    0x34454B56u /* "VKE4": the head has last_opened */
#define KEY_MAGIC_V3 0x33454B56u /* "VKE3": read too; the open incident's head has held */
#define KEY_MAGIC_V2 0x32454B56u /* "VKE2": read too, held = 0 */

struct key_head {
	uint32_t magic, state_size;
	int64_t bucket, last_resolved;
	uint64_t last_id;
	uint32_t last_reopens, dirty, has_open;
	uint32_t verified;   /* 0 in a record saved before watches: verified at its end */
	int64_t last_opened; /* since "VKE4"; older records have none (0) */
	int64_t seen;        /* a kind that does not sleep: 1 + its latest event's bucket */
};

#define KEY_HEAD_V3 offsetof(struct key_head, last_opened)

struct inc_head {
	uint64_t id, firings;
	int64_t opened, updated, resolved, last_fire, next_alert;
	uint32_t realerts, reopens;
	int64_t held; /* since KEY_MAGIC "VKE3"; a "VKE2" record has none */
};

#define INC_HEAD_V2 offsetof(struct inc_head, held)

struct engine_head {
	int64_t max_ts;
	uint64_t next_id;
	/* What the rules left out, saved so that a replay recounts exactly (a
	 * head saved before these existed restores them as 0). */
	uint64_t late, ungrouped, capped;
	int64_t forgot_day; /* since forgetting; an older head: 0 */
	uint64_t forgotten;
};

struct rule_head {
	int64_t advanced;
};

static int save_key(struct engine *e, struct rule_rt *r, struct keyent *k, struct buf *b,
                    engine_put_fn put, void *arg)
{
	const struct hist *hi = engine_hist_of(e, k, 0);
	const struct incident *inc = hi ? hi->open : NULL;
	int awake = SLEEPS(r) && k->awake;
	size_t size = awake ? r->kind->state_size : r->inline_size;
	struct key_head h = {.magic = KEY_MAGIC,
	                     .state_size = (uint32_t)size,
	                     .bucket = k->bucket,
	                     .last_resolved = hi ? hi->last_resolved : 0,
	                     .last_id = hi ? hi->last_id : 0,
	                     .last_reopens = hi ? hi->last_reopens : 0,
	                     .dirty = k->dirty,
	                     .has_open = inc != NULL,
	                     .verified = hi ? hi->verified : 0,
	                     .last_opened = hi ? hi->last_opened : 0,
	                     .seen = SLEEPS(r) ? 0 : k->awake};

	buf_reset(b);
	buf_add(b, &h, sizeof(h));
	buf_add(b, awake ? block_at(r, k->awake - 1) : k->state, size);
	if (inc) {
		struct inc_head ih = {
		        inc->id,          inc->firings,      inc->opened_ms,     inc->updated_ms,
		        inc->resolved_ms, inc->last_fire_ms, inc->next_alert_ms, inc->realerts,
		        inc->reopens,     inc->held_ms};
		char *why = cJSON_PrintUnformatted(inc->why);

		buf_add(b, &ih, sizeof(ih));
		buf_add(b, inc->summary, strlen(inc->summary) + 1);
		buf_add(b, why, strlen(why) + 1);
		cJSON_free(why);
	}
	return put(arg, r->common->name, KEY(r, k), b->data, b->len);
}

/* A key to save, with its rule. */
struct to_save {
	struct rule_rt *r;
	struct keyent *k;
};

/* The store's order: rule, then key. */
static int by_rule_and_key(const void *a, const void *b)
{
	const struct to_save *x = a, *y = b;
	int c = x->r == y->r ? 0 : strcmp(x->r->common->name, y->r->common->name);

	return c ? c : strcmp(KEY(x->r, x->k), KEY(y->r, y->k));
}

/*
 * Rules the file has state for and the configuration no longer names: kept
 * for engine_forget_after of event time (a rule taken out for a while comes
 * back with its baselines), then deleted. A file from before shape records
 * gets one, dated now.
 */
static int save_retired(struct engine *e, engine_put_fn put, void *arg)
{
	int rc = 0;

	for (size_t i = 0; i < e->nretired && rc == 0;) {
		struct retired *t = &e->retired[i];

		if (e->max_ts == INT64_MIN) {
			i++;
		} else if (!t->has_record) {
			rc = put(arg, "", t->name, &e->max_ts, sizeof(e->max_ts));
			t->has_record = 1;
			t->last_seen = e->max_ts;
			i++;
		} else if (e->forget_ms > 0 && t->last_seen != INT64_MIN &&
		           e->max_ts - t->last_seen >= e->forget_ms) {
			rc = put(arg, t->name, NULL, NULL, 0);
			if (rc == 0)
				rc = put(arg, "", t->name, NULL, 0);
			if (rc != 0)
				break;
			e->stats.retired++;
			free(t->name);
			*t = e->retired[--e->nretired];
		} else {
			i++;
		}
	}
	return rc;
}

int engine_save(struct engine *e, engine_put_fn put, void *arg)
{
	struct buf b, shared;
	struct engine_head eh = {e->max_ts,          e->next_id,      e->stats.late,
	                         e->stats.ungrouped, e->stats.capped, e->forgot_day,
	                         e->stats.forgotten};
	struct to_save *v;
	size_t nv = 0, nkeys = 0;
	int rc = 0;

	/*
	 * The changed keys, found in allocation order (every key is in the
	 * slabs: sequential reads), are written in the file's order (rule,
	 * key). A key's row is found by a b-tree walk, and 100,000s of them in
	 * allocation order touch its leaves at random, each a read once the
	 * tree outgrows the page cache: 3.0 s for 380,000 keys. In key order
	 * each leaf is read once. The array is sized for every key at once: at
	 * 100,000s of keys it is big enough for its own mapping, given back when
	 * freed rather than left as a hole in the heap.
	 */
	for (size_t n = 0; n < e->nrules; n++)
		nkeys += e->rules[n].nkeys;
	v = xmalloc((nkeys ? nkeys : 1) * sizeof(*v));
	for (size_t n = 0; n < e->nrules; n++) {
		struct rule_rt *r = &e->rules[n];

		for (struct slab *s = r->slab; s; s = s->next) {
			for (size_t off = 0; off < s->used;) {
				struct keyent *k = (struct keyent *)(s->data + off);

				off += key_bytes(r, strlen(KEY(r, k)) + 1);
				if (k->dirty != KEY_FREE && (k->changed || e->save_all) &&
				    nv < nkeys)
					v[nv++] = (struct to_save){r, k};
			}
		}
	}
	qsort(v, nv, sizeof(*v), by_rule_and_key);
	/* The forgotten first: a key forgotten and back since is written after. */
	for (const char *p = e->forgotten.data, *end = p + e->forgotten.len; p < end && rc == 0;) {
		const char *key = p + strlen(p) + 1;

		rc = put(arg, p, key, NULL, 0);
		p = key + strlen(key) + 1;
	}
	if (rc == 0)
		buf_reset(&e->forgotten);
	if (rc == 0)
		rc = save_retired(e, put, arg);
	buf_init(&b, 64 << 20);
	buf_init(&shared, 64 << 20);
	for (size_t i = 0; i < nv && rc == 0; i++) {
		rc = save_key(e, v[i].r, v[i].k, &b, put, arg);
		v[i].k->changed = 0;
	}
	for (size_t n = 0; n < e->nrules && rc == 0; n++) {
		struct rule_rt *r = &e->rules[n];
		struct rule_head rh = {r->advanced};
		int64_t day = e->max_ts / 86400000;

		/* What the state means, and that the rule is configured: once a day. */
		if (!r->shape_saved || e->save_all || day != r->shape_day) {
			buf_reset(&shared);
			buf_add(&shared, &e->max_ts, sizeof(e->max_ts));
			buf_adds(&shared, r->shape);
			rc = put(arg, "", r->common->name, shared.data, shared.len);
			if (rc != 0)
				break;
			r->shape_saved = 1;
			r->shape_day = day;
		}

		/* The rule's own record: written when it changed since the last save. */
		buf_reset(&shared);
		buf_add(&shared, &rh, sizeof(rh));
		if (r->kind->save_shared)
			r->kind->save_shared(r->shared, &shared);
		else if (r->kind->shared_size)
			buf_add(&shared, r->shared, r->kind->shared_size);
		if (e->save_all || shared.len != r->saved_shared.len ||
		    memcmp(shared.data, r->saved_shared.data, shared.len) != 0) {
			rc = put(arg, r->common->name, "", shared.data, shared.len);
			buf_reset(&r->saved_shared);
			buf_add(&r->saved_shared, shared.data, shared.len);
		}
	}
	if (rc == 0)
		rc = put(arg, "", "", &eh, sizeof(eh));
	if (rc == 0)
		e->save_all = 0;
	free(v);
	buf_free(&b);
	buf_free(&shared);
	return rc;
}

void engine_restore_notes(const struct engine *e, restore_note_fn fn, void *arg)
{
	char line[512];

	for (size_t n = 0; n < e->nrules; n++) {
		const struct rule_rt *r = &e->rules[n];

		if (r->unreadable) {
			snprintf(line, sizeof(line),
			         "%zu saved keys are in a layout this version does not read: they "
			         "start over (warm-up included)",
			         r->unreadable);
			fn(arg, r->common->name, line);
		}
		if (!r->reshaped)
			continue;
		snprintf(line, sizeof(line),
		         "its state was learned under other settings (%s changed): its baselines "
		         "start over; %zu keys dropped, %zu kept for their incidents",
		         r->changed[0] ? r->changed : "kind", r->reset_gone, r->reset_kept);
		fn(arg, r->common->name, line);
	}
	for (size_t i = 0; i < e->nretired; i++) {
		const struct retired *t = &e->retired[i];

		if (t->records == 0)
			continue;
		if (e->forget_ms > 0)
			snprintf(
			        line, sizeof(line),
			        "no longer configured: its %zu saved records are kept, and deleted "
			        "%lld d (engine.forget_after) after it was last configured",
			        t->records, (long long)(e->forget_ms / 86400000));
		else
			snprintf(line, sizeof(line),
			         "no longer configured: its %zu saved records are kept "
			         "(engine.forget_after is 0)",
			         t->records);
		fn(arg, t->name, line);
	}
}

void engine_save_everything(struct engine *e)
{
	e->save_all = 1;
}

static struct rule_rt *rule_named(const struct engine *e, const char *name)
{
	for (size_t n = 0; n < e->nrules; n++)
		if (strcmp(e->rules[n].common->name, name) == 0)
			return &e->rules[n];
	return NULL;
}

/* A key's state from its record (the layout checked). */
static void restore_state(struct engine *e, struct rule_rt *r, struct keyent *k,
                          const struct key_head *h, const unsigned char *state)
{
	if (!SLEEPS(r))
		k->awake = (uint32_t)h->seen;
	void *at;

	if (h->state_size == r->inline_size) {
		if (SLEEPS(r) && k->awake)
			engine_key_sleep(e, r, k);
		at = k->state;
	} else {
		at = engine_key_state(e, r, k);
	}
	memcpy(at, state, h->state_size);
	if (r->kind->restored && h->state_size == r->kind->state_size)
		r->kind->restored(at, r->config);
	if (h->dirty && !k->dirty) {
		if (r->ndirty == r->adirty) {
			r->adirty = r->adirty ? r->adirty * 2 : 256;
			r->dirty = xrealloc(r->dirty, r->adirty * sizeof(*r->dirty));
		}
		r->dirty[r->ndirty++] = k;
		k->dirty = 1;
	}
	if (r->quiet && k->awake && !k->dirty) {
		engine_quiet_push(r, k); /* in restore order: sorted by the next sweep */
		r->qsorted = 0;
	}
}

static int restore_key(struct engine *e, struct rule_rt *r, const char *key, const unsigned char *p,
                       size_t len)
{
	struct key_head h = {0};
	struct keyent *k;
	size_t hs = KEY_HEAD_V3;

	if (len < hs)
		return 1;
	memcpy(&h, p, hs);
	if (h.magic == KEY_MAGIC) {
		hs = sizeof(h);
		if (len < hs)
			return 1;
		memcpy(&h, p, hs);
	}
	/* A kind that does not sleep may have grown at the end since (zeros). */
	int grown = r->kind->idle_size == 0 && h.state_size < r->kind->state_size;
	/* Another layout of the kind's state, which the kind may read. */
	_Alignas(8) unsigned char upgraded[RULE_MAX_STATE];
	const unsigned char *state = p + hs;
	struct key_head now = h;

	if ((h.magic != KEY_MAGIC && h.magic != KEY_MAGIC_V3 && h.magic != KEY_MAGIC_V2) ||
	    len < hs + h.state_size) {
		r->unreadable++; /* not a key's record: the key starts over, and the log says so */
		return 1;
	}
	if (!r->reshaped && h.state_size != r->kind->state_size && h.state_size != r->inline_size &&
	    !grown) {
		memset(upgraded, 0, sizeof(upgraded));
		now.state_size = r->kind->upgrade
		                         ? (uint32_t)r->kind->upgrade(upgraded, state, h.state_size)
		                         : 0;
		if (now.state_size != r->kind->state_size && now.state_size != r->inline_size) {
			r->unreadable++; /* a layout the kind does not know: the key starts over */
			return 1;
		}
		state = upgraded;
	}
	if (r->reshaped && !h.last_id && !h.has_open) {
		/* Learned under other settings, and nothing else to keep: its
		 * record goes at the next save (with the rule's new shape). */
		buf_add(&e->forgotten, r->common->name, strlen(r->common->name) + 1);
		buf_add(&e->forgotten, key, strlen(key) + 1);
		r->reset_gone++;
		return 1;
	}
	k = engine_key_get(e, r, key);
	if (r->reshaped) {
		/* Its incidents are kept (an open one resolves, a resolved one is
		 * watched); its state starts over, as a new key's. */
		r->reset_kept++;
		mark_changed(k);
	} else {
		k->bucket = (int32_t)h.bucket;
	}
	if (h.last_id || h.has_open) {
		struct hist *hi = engine_hist_of(e, k, 1);

		hi->last_resolved = h.last_resolved;
		hi->last_id = h.last_id;
		hi->last_reopens = h.last_reopens;
		hi->verified = h.verified;
		hi->last_opened = h.last_opened;
		if (!h.has_open && h.last_id && !h.verified)
			engine_watch_add(e, r, k, hi);
	}
	if (!r->reshaped)
		restore_state(e, r, k, &now, state);
	p += hs + h.state_size;
	len -= hs + h.state_size;
	size_t ihlen = h.magic != KEY_MAGIC_V2 ? sizeof(struct inc_head) : INC_HEAD_V2;

	if (h.has_open && len > ihlen) {
		struct inc_head ih = {0};
		struct incident *inc = xcalloc(1, sizeof(*inc));
		const char *summary = (const char *)p + ihlen;
		size_t slen = strnlen(summary, len - ihlen);
		const char *why = summary + slen + 1;

		memcpy(&ih, p, ihlen);
		inc->id = ih.id;
		inc->firings = ih.firings;
		inc->opened_ms = ih.opened;
		inc->updated_ms = ih.updated;
		inc->resolved_ms = ih.resolved;
		inc->last_fire_ms = ih.last_fire;
		inc->next_alert_ms = ih.next_alert;
		inc->realerts = ih.realerts;
		inc->reopens = ih.reopens;
		inc->held_ms = ih.held;
		inc->rule = r->common->name;
		inc->kind = r->kind->name;
		inc->tier = (int)r->common->tier;
		snprintf(inc->key, sizeof(inc->key), "%s", key);
		snprintf(inc->summary, sizeof(inc->summary), "%.*s", (int)slen, summary);
		inc->why =
		        (size_t)(why - (const char *)p) < len
		                ? cJSON_ParseWithLength(why, len - (size_t)(why - (const char *)p))
		                : NULL;
		if (inc->why == NULL)
			inc->why = cJSON_CreateObject();
		/* A roll-up's explanation says so (rollup); without this, a
		 * restored roll-up counted as a member of itself. */
		inc->rollup = r->common->rollup_by &&
		              cJSON_GetObjectItemCaseSensitive(inc->why, "keys_together");
		engine_hist_of(e, k, 1)->open = inc;
		k->open = 1;
		if (e->nopen == e->aopen) {
			e->aopen = e->aopen ? e->aopen * 2 : 16;
			e->open = xrealloc(e->open, e->aopen * sizeof(*e->open));
		}
		e->open[e->nopen++] = inc;
		e->resolve_next = INT64_MIN; /* restored: walked at the next move */
	}
	return 0;
}

static struct retired *retired_get(struct engine *e, const char *name)
{
	for (size_t i = 0; i < e->nretired; i++)
		if (strcmp(e->retired[i].name, name) == 0)
			return &e->retired[i];
	e->retired = xrealloc(e->retired, (e->nretired + 1) * sizeof(*e->retired));
	e->retired[e->nretired] = (struct retired){xstrdup(name), INT64_MIN, 0, 0};
	return &e->retired[e->nretired++];
}

/* The value of name's line in a shape_text of len bytes (NULL: none). */
static const char *shape_value(const char *text, size_t len, const char *name, size_t nlen,
                               size_t *vlen)
{
	for (const char *p = text, *end = text + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;

		if ((size_t)(e - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
			*vlen = (size_t)(e - p) - nlen - 1;
			return p + nlen + 1;
		}
		p = e + 1;
	}
	return NULL;
}

/*
 * The "name=value" line of a shape text from p to e, against the text
 * other: 1 if other has the name with the same value, 0 with another value
 * (or the line no value), -1 without the name. *nlen: the name's length.
 */
static int shape_line(const char *p, const char *e, const char *other, size_t olen, size_t *nlen)
{
	const char *eq = memchr(p, '=', (size_t)(e - p));
	size_t vlen = 0;
	const char *v;

	*nlen = eq ? (size_t)(eq - p) : (size_t)(e - p);
	v = shape_value(other, olen, p, *nlen, &vlen);
	if (v == NULL)
		return -1;
	return eq && vlen == (size_t)(e - eq - 1) && memcmp(v, eq + 1, vlen) == 0;
}

/*
 * Is the rule's shape line from p to e one a saved shape without it agrees
 * with? A key added to the kind's shape since ("time_zone=UTC") at the value
 * the state was learned under before it was a setting.
 */
static int added_at_default(const struct rule_rt *r, const char *p, const char *e)
{
	size_t nlen;

	/* An entry with a value is a shape text of one line. */
	for (const char *const *s = r->kind->shape; s && *s; s++)
		if (shape_line(p, e, *s, strlen(*s), &nlen) > 0)
			return 1;
	return 0;
}

/*
 * Is a saved shape_text of tlen bytes the rule's own? Each of the rule's
 * lines must be there, the same, or be a key added since at its default; a
 * saved line the rule's shape has no name for is a setting that no longer
 * shapes its state (spike's mid_window before 2026-11-23: its sums are
 * derived again at restore), and is passed.
 */
static int shape_same(const struct rule_rt *r, const char *text, size_t tlen)
{
	size_t nowlen = strlen(r->shape), lines = 1, same = 0, nlen;

	for (const char *p = r->shape; (p = strchr(p, '\n')) != NULL; p++)
		lines++;
	for (const char *p = text, *end = text + tlen; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
		int m = shape_line(p, e, r->shape, nowlen, &nlen);

		if (m == 0)
			return 0;
		same += m > 0;
		p = e + 1;
	}
	for (const char *p = r->shape, *end = r->shape + nowlen; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;

		if (shape_line(p, e, text, tlen, &nlen) < 0 && added_at_default(r, p, e))
			same++;
		p = e + 1;
	}
	return same == lines;
}

/* Names the settings of now whose saved value (was) differs or is missing
 * ("bucket, window"). */
static void shape_diff(const char *was, size_t waslen, const char *now, char *out, size_t outlen)
{
	size_t used = 0, nlen;

	out[0] = '\0';
	for (const char *p = now, *end = now + strlen(now); p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;

		if (shape_line(p, e, was, waslen, &nlen) <= 0 && used < outlen) {
			int w = snprintf(out + used, outlen - used, "%s%.*s", used ? ", " : "",
			                 (int)nlen, p);

			used = w > 0 ? used + (size_t)w : used;
		}
		p = e + 1;
	}
}

/*
 * The record ("", rule): when it was last saved under the configuration
 * (event time) and its shape_text then. Restored before the rule's own
 * records (the file's order: rule "" first).
 */
static int restore_shape(struct engine *e, const char *name, const void *blob, size_t len)
{
	struct rule_rt *r = rule_named(e, name);
	int64_t seen;

	if (len < sizeof(seen))
		return 1;
	memcpy(&seen, blob, sizeof(seen));
	if (r == NULL) {
		struct retired *t = retired_get(e, name);

		/* Saved before any event: dated again at the next save. */
		t->last_seen = seen;
		t->has_record = seen != INT64_MIN;
		return 0;
	}
	const char *text = (const char *)blob + sizeof(seen);
	size_t tlen = len - sizeof(seen);

	/* Empty: written for a rule no longer configured, shape not known. */
	if (tlen == 0 || shape_same(r, text, tlen)) {
		r->shape_saved = tlen != 0;
		r->shape_day = seen / 86400000;
		return 0;
	}
	r->reshaped = 1;
	shape_diff(text, tlen, r->shape, r->changed, sizeof(r->changed));
	return 0;
}

int engine_shape_changed(const struct engine *e, const char *rule, const void *blob, size_t len,
                         char *changed, size_t changedlen)
{
	const struct rule_rt *r = rule_named(e, rule);

	if (r == NULL)
		return -1;
	if (len <= sizeof(int64_t))
		return 0; /* no shape saved: taken as it is */
	const char *text = (const char *)blob + sizeof(int64_t);
	size_t tlen = len - sizeof(int64_t);

	if (shape_same(r, text, tlen))
		return 0;
	shape_diff(text, tlen, r->shape, changed, changedlen);
	return 1;
}

int engine_restore(struct engine *e, const char *rule, const char *key, const void *blob,
                   size_t len)
{
	struct rule_rt *r;

	if (rule[0] == '\0' && key[0] != '\0')
		return restore_shape(e, key, blob, len);
	if (rule[0] == '\0') {
		struct engine_head eh = {0};

		if (len != sizeof(eh) && len != offsetof(struct engine_head, late) &&
		    len != offsetof(struct engine_head, forgot_day))
			return 1;
		memcpy(&eh, blob, len);
		e->max_ts = eh.max_ts;
		e->next_id = eh.next_id;
		e->stats.late = eh.late;
		e->stats.ungrouped = eh.ungrouped;
		e->stats.capped = eh.capped;
		e->forgot_day = eh.forgot_day;
		e->stats.forgotten = eh.forgotten;
		return 0;
	}
	r = rule_named(e, rule);
	if (r == NULL) {
		retired_get(e, rule)->records++; /* kept for a while: see engine_save */
		return 1;
	}
	if (key[0] != '\0')
		return restore_key(e, r, key, blob, len);
	if (r->reshaped)
		return 1; /* its shared state too was learned under other settings */
	struct rule_head rh;

	if (len < sizeof(rh))
		return 1;
	memcpy(&rh, blob, sizeof(rh));
	r->advanced = rh.advanced;
	const char *body = (const char *)blob + sizeof(rh);
	size_t blen = len - sizeof(rh);

	if (r->kind->load_shared) {
		if (r->kind->load_shared(r->shared, body, blen) < 0)
			return 1;
	} else if (r->kind->shared_size) {
		if (blen != r->kind->shared_size)
			return 1;
		memcpy(r->shared, body, blen);
	}
	buf_reset(&r->saved_shared);
	buf_add(&r->saved_shared, blob, len);
	return 0;
}
