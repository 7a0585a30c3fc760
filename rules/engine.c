/*
 * engine.c: rules over events in event time, firings into incidents
 * (see engine.h).
 *
 * Each rule keeps a hash map from group key to that key's state. Bucketed
 * rules see a key's bucket close when the key's next event falls in a later
 * bucket, or when the watermark passes it; only keys with events in their
 * open bucket (the dirty list) are visited then, so an hour boundary costs
 * the keys that were active, not all of them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voca/buf.h>
#include <voca/engine.h>
#include <voca/log.h>
#include <voca/rule.h>
#include <voca/suppress.h>
#include <voca/xalloc.h>

#define MAX_REPLAY  48            /* empty buckets replayed for a key that was quiet longer */
#define SILENT_DAYS 31            /* days of them replayed for a kind that judges silence */
#define NIDS        3             /* example event ids given with a firing */
#define ID_MAX      255           /* the schema allows event ids of up to 200 characters */
#define RECENT_TEXT (RECENT * 32) /* bytes of id text kept: a ring too */
#define RECENT      16384         /* matching events remembered per rule, for examples */
#define BUDGET_RING 1024          /* the largest hourly notification budget */

/*
 * One (rule, group key): 16 bytes of header, the kind's state (or, for a
 * kind that sleeps, its idle part), then the key text (KEY()). Hundreds of
 * thousands of these are the engine's memory, so the header is packed: a
 * bucket index fits 32 bits (buckets are at least 5 minutes: year 9999 is
 * bucket 8.4e8), the flags are bytes, and what only keys with incidents
 * need (the open incident, the last one for reopening) lives in the
 * engine's history table instead.
 */
struct keyent {
	uint32_t hash;
	int32_t bucket; /* index of the open bucket; -1 before the first event */
	/* A sleeping kind's key: 1 + its full state's pool block; 0 asleep. Any
	 * other kind's: 1 + the bucket of its latest event (see key_seen). */
	uint32_t awake;
	uint8_t dirty;   /* KEY_FREE: forgotten, its bytes on the rule's free list */
	uint8_t changed; /* touched since the last engine_save */
	uint8_t open;    /* an incident is open (in the history table) */
	uint8_t history; /* the key has a record in the history table */
	_Alignas(8) unsigned char state[];
};

/* The key text, stored after the kind's state (or its idle part). */
#define KEY(r, k) ((char *)(k)->state + (r)->inline_size)

#define KEY_FREE 0xff

/* Whether the kind sleeps its quiet keys (then awake is a pool block). */
#define SLEEPS(r) ((r)->kind->idle_size != 0)

/* A key's incident history: few keys have one, so it is not in every key. */
struct hist {
	const struct keyent *k;
	struct incident *open;
	uint64_t last_id;      /* the key's last incident, for reopening */
	int64_t last_resolved; /* when it resolved */
	uint32_t last_reopens;
	uint32_t verified;   /* last_id was quiet for its whole watch: it stays closed */
	int64_t last_opened; /* when it first opened (0: not known, saved before VKE4) */
};

/* A resolved incident under watch (see watch_due), verified at due if quiet. */
struct watch {
	struct rule_rt *r;
	struct keyent *k;
	uint64_t id;
	int64_t due;
};

/*
 * The full states of a sleeping kind's awake keys: fixed-size blocks in
 * chunks that never move, with a free list (a free block holds the next
 * free one's index + 1). A key quiet for the kind's quiet_buckets keeps only
 * its idle part (most keys, most of the time).
 */
#define POOL_CHUNK 1024

struct pool {
	unsigned char **chunks;
	size_t nchunks, bsize;
	uint32_t used;      /* blocks ever handed out */
	uint32_t free_head; /* 1 + first free block; 0: none */
};

/*
 * The latest matching events of a rule, for a firing's examples. Keeping them
 * per rule rather than per key saves ~150 bytes a key (there are 100,000 of
 * them); a firing scans back for its key, which is rare and cheap. The ids'
 * text goes round a byte ring of its own, so that ids of any length up to the
 * schema's are kept whole (a fixed slot cut long ones short); an entry whose
 * text has been written over is skipped.
 */
struct recent {
	const struct keyent *k;
	uint64_t at; /* where its id starts in the text ring, counted since the start */
	uint16_t len;
};

#define SLAB_SIZE (1 << 20)

struct slab {
	struct slab *next;
	size_t used;
	_Alignas(8) unsigned char data[];
};

struct rule_rt {
	struct slab *slab; /* where the keys live */
	const struct rule_kind *kind;
	size_t inline_size; /* state bytes in the key: idle_size for a kind that sleeps */
	int64_t quiet;      /* closed empty buckets after which a key sleeps (0: never) */
	struct pool pool;   /* awake keys' full states (kinds that sleep) */
	/* Keys that went quiet, by the bucket they went quiet at (oldest first):
	 * the sweep takes them in turn once quiet buckets have passed. */
	struct quiet_ent {
		struct keyent *k;
		int64_t bucket;
	} * q;
	size_t qhead, qlen, qcap;
	int qsorted;           /* 0 after a restore appended in no order */
	struct keyent **retry; /* awake keys whose incident resolved: may sleep now */
	size_t nretry, aretry;
	const void *config;
	const struct rule_common *common;
	char implied[256]; /* key tokens its conditions imply (rule_implied_key) */
	int same_key;      /* an earlier rule with this group_by (its key is this one's); -1 */
	void *shared;
	struct slab **slabv; /* the slabs by number, for slot references */
	size_t nslabv;
	uint32_t *slots; /* key references (slab_ref); 0: empty */
	size_t nslots, nkeys;
	struct keyent **dirty;
	size_t ndirty, adirty;
	struct recent *recent; /* ring of RECENT */
	size_t recent_head;
	char *recent_text;       /* ring of RECENT_TEXT bytes */
	uint64_t text_pos;       /* bytes ever written to it */
	struct buf saved_shared; /* the shared state as last saved */
	int64_t advanced;        /* watermark bucket already processed */
	uint32_t *free_refs;     /* forgotten keys' bytes, by size / 8: lists through them */
	size_t nfree_classes;
	/* No key's latest activity is older (INT64_MIN: not known, after a
	 * restore): a forgetting pass before seen_lb + the wait has nothing to do. */
	int64_t seen_lb;
	size_t nforget; /* keys of this rule in the pass under way */
	/* What the state means (shape_text), and how it stands with the file. */
	char *shape;
	int shape_saved;   /* the file's record says so, as of shape_day */
	int64_t shape_day; /* event-time day the record was last written */
	int reshaped;      /* the file's state was learned under other settings */
	char changed[160]; /* which of them, for the log */
	size_t reset_kept; /* keys kept (incident history) with their state zeroed */
	size_t reset_gone; /* keys dropped */
	size_t unreadable; /* saved keys in a layout this build does not read */
};

/* A rule the file has state for and the configuration no longer names. */
struct retired {
	char *name;
	int64_t last_seen; /* event time it was last configured; INT64_MIN: not known */
	int has_record;    /* its shape record is in the file */
	size_t records;
};

struct engine {
	struct rule_rt *rules;
	size_t nrules;
	int64_t lateness_ms, max_ts;
	incident_fn fn;
	void *arg;
	struct incident **open;
	size_t nopen, aopen;
	struct pend {
		char key[RULE_KEY_MAX];
		size_t len;
		uint32_t h;
		int ok;
	} * pend;          /* engine_event's rules taking the event, per rule */
	struct hist *hist; /* open addressing by key pointer; keys never move */
	size_t nhist, ahist;
	uint64_t next_id;
	struct engine_stats stats;
	double review_confidence;
	int review_counts_volume;
	review_fn review;
	const struct suppress_lists *lists;
	int budget;                /* tier-1/2 notifications an hour; 0: no limit */
	int rolling;               /* fire() is opening a roll-up */
	int64_t sent[BUDGET_RING]; /* times of recent tier-1/2 notifications */
	int sent_head;
	int save_all;        /* the next engine_save writes every record (engine_save_everything) */
	size_t max_keys;     /* per rule (engine_max_keys) */
	struct watch *watch; /* resolved incidents under watch, in no order */
	size_t nwatch, awatch;
	int64_t watch_next;   /* the earliest due in watch (INT64_MAX: none) */
	int64_t resolve_next; /* no open incident is due before (INT64_MIN: not known) */
	int64_t forget_ms;    /* keys quiet this long are forgotten (0: never) */
	int64_t forgot_day;   /* the event-time day of the last forgetting pass */
	struct buf forgotten; /* "rule\0key\0" of keys forgotten since the last save */
	struct retired *retired;
	size_t nretired;
};

/*
 * A hash slot holds a 32-bit reference to its key instead of a pointer (half
 * the table at 100,000s of keys): 1 + the slab's number << 17 | the key's
 * offset in it / 8 (keys are 8-aligned in slabs of at most 1 MiB; 32,767
 * slabs a rule).
 */
#define SLAB_SHIFT 17

static struct keyent *key_at(const struct rule_rt *r, uint32_t ref)
{
	if (ref-- == 0)
		return NULL;
	return (struct keyent *)(r->slabv[ref >> SLAB_SHIFT]->data +
	                         ((size_t)(ref & ((1u << SLAB_SHIFT) - 1)) << 3));
}

static void grow(struct rule_rt *r)
{
	size_t n = r->nslots ? r->nslots * 2 : 1024;
	uint32_t *slots = xcalloc(n, sizeof(*slots));

	for (size_t i = 0; i < r->nslots; i++) {
		const struct keyent *k = key_at(r, r->slots[i]);

		if (k == NULL)
			continue;
		size_t j = k->hash & (n - 1);

		while (slots[j])
			j = (j + 1) & (n - 1);
		slots[j] = r->slots[i];
	}
	free(r->slots);
	r->slots = slots;
	r->nslots = n;
}

/* A key's bytes in its slab, for a key text of len bytes with its NUL; 8-aligned. */
static size_t key_bytes(const struct rule_rt *r, size_t len)
{
	return (sizeof(struct keyent) + r->inline_size + len + 7) & ~(size_t)7;
}

/*
 * Keys live until they are forgotten (months), and never move, so they come
 * from a per-rule slab: no per-key malloc header or rounding (~24 bytes of
 * each of 100,000s of keys); a forgotten key's bytes go to the next new key
 * of its size.
 */
static void *slab_alloc(struct engine *e, struct rule_rt *r, size_t n, uint32_t *ref)
{
	/* A forgotten key's bytes of the same size first: a key takes the same
	 * bytes for any text of its size class, so the slab walk of engine_save
	 * stays in step. */
	if (n / 8 < r->nfree_classes && r->free_refs[n / 8]) {
		unsigned char *p = (unsigned char *)key_at(r, r->free_refs[n / 8]);

		*ref = r->free_refs[n / 8];
		memcpy(&r->free_refs[n / 8], p, sizeof(uint32_t));
		memset(p, 0, n);
		return p;
	}
	if (r->slab == NULL || r->slab->used + n > SLAB_SIZE) {
		struct slab *s = xmalloc(sizeof(*s) + SLAB_SIZE);

		if (r->nslabv == (1u << (31 - SLAB_SHIFT)) - 1)
			fatal("engine: more than 32 GiB of keys in rule %s", r->common->name);
		s->next = r->slab;
		s->used = 0;
		e->stats.slab_bytes += SLAB_SIZE;
		r->slab = s;
		r->slabv = xrealloc(r->slabv, (r->nslabv + 1) * sizeof(*r->slabv));
		r->slabv[r->nslabv++] = s;
	}
	void *p = r->slab->data + r->slab->used;

	*ref = (uint32_t)(((r->nslabv - 1) << SLAB_SHIFT) | (r->slab->used >> 3)) + 1;
	r->slab->used += n;
	memset(p, 0, n);
	return p;
}

/*
 * The key table's hash, eight bytes a step (FNV-1a's byte a step was ~6% of
 * the engine's instructions at 100,000 keys). In memory only: rule_hash,
 * whose values kinds keep in their saved state, stays as it was.
 */
static uint32_t key_hash(const char *s, size_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15u ^ n, w;

	for (; n >= 8; s += 8, n -= 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdu;
		h ^= h >> 32;
	}
	w = 0;
	for (size_t i = 0; i < n; i++)
		w |= (uint64_t)(unsigned char)s[i] << (8 * i);
	h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
	h ^= h >> 29;
	h ^= h >> 32;
	return (uint32_t)h ? (uint32_t)h : 1;
}

/*
 * The key's entry, created if new; h is key_hash of its len bytes. With
 * limit, NULL for a new key when the rule holds max_keys already.
 */
static struct keyent *key_get_h(struct engine *e, struct rule_rt *r, const char *key, size_t len,
                                uint32_t h, int limit)
{
	size_t i;

	if ((r->nkeys + 1) * 10 > r->nslots * 7)
		grow(r);
	for (i = h & (r->nslots - 1); r->slots[i]; i = (i + 1) & (r->nslots - 1)) {
		struct keyent *k = key_at(r, r->slots[i]);

		if (k->hash == h && strcmp(KEY(r, k), key) == 0)
			return k;
	}
	if (limit && r->nkeys >= e->max_keys)
		return NULL;
	uint32_t ref;
	struct keyent *k = slab_alloc(e, r, key_bytes(r, len + 1), &ref);

	memcpy(KEY(r, k), key, len + 1);
	k->hash = h;
	k->bucket = -1;
	r->slots[i] = ref;
	r->nkeys++;
	e->stats.keys++;
	return k;
}

static struct keyent *key_get(struct engine *e, struct rule_rt *r, const char *key)
{
	size_t len = strlen(key);

	return key_get_h(e, r, key, len, key_hash(key, len), 0);
}

/* ---- incident history, per key that had one ---- */

static size_t hist_slot(const struct engine *e, const struct keyent *k)
{
	uint64_t h = (uint64_t)(uintptr_t)k * 0x9E3779B97F4A7C15ULL;

	return (size_t)(h >> 32) & (e->ahist - 1);
}

static void hist_grow(struct engine *e)
{
	struct hist *old = e->hist;
	size_t n = e->ahist;

	e->ahist = n ? n * 2 : 64;
	e->hist = xcalloc(e->ahist, sizeof(*e->hist));
	for (size_t i = 0; i < n; i++) {
		if (old[i].k == NULL)
			continue;
		size_t j = hist_slot(e, old[i].k);

		while (e->hist[j].k)
			j = (j + 1) & (e->ahist - 1);
		e->hist[j] = old[i];
	}
	free(old);
}

/* The key's history record; created (zeroed) when create is set, else NULL if none. */
static struct hist *hist_of(struct engine *e, struct keyent *k, int create)
{
	size_t i;

	if (!k->history) {
		if (!create)
			return NULL;
		if ((e->nhist + 1) * 2 > e->ahist)
			hist_grow(e);
	}
	for (i = hist_slot(e, k); e->hist[i].k != k; i = (i + 1) & (e->ahist - 1)) {
		if (e->hist[i].k == NULL) {
			e->hist[i].k = k;
			e->nhist++;
			k->history = 1;
			break;
		}
	}
	return &e->hist[i];
}

static struct incident *open_of(struct engine *e, struct keyent *k)
{
	return k->open ? hist_of(e, k, 0)->open : NULL;
}

/*
 * The lifecycle after resolving (DESIGN.md section 5): the key is watched
 * for the rule's watch, never less than its cooldown. A firing meanwhile
 * reopens the incident (fire); quiet throughout, it is verified at the end.
 */
static int64_t watch_ms(const struct rule_rt *r)
{
	return r->common->watch_ms > r->common->cooldown_ms ? r->common->watch_ms
	                                                    : r->common->cooldown_ms;
}

/* Whether the key's last incident is still watched at event time at. */
static int watched(const struct rule_rt *r, const struct hist *h, int64_t at)
{
	return h->last_id && !h->verified && !h->open && at - h->last_resolved < watch_ms(r);
}

static void watch_add(struct engine *e, struct rule_rt *r, struct keyent *k, const struct hist *h)
{
	if (r->common->watch_ms == 0)
		return; /* no watch: reopened within cooldown, never verified */
	if (e->nwatch == e->awatch) {
		e->awatch = e->awatch ? e->awatch * 2 : 16;
		e->watch = xrealloc(e->watch, e->awatch * sizeof(*e->watch));
	}
	e->watch[e->nwatch++] = (struct watch){r, k, h->last_id, h->last_resolved + watch_ms(r)};
	if (e->watch[e->nwatch - 1].due < e->watch_next)
		e->watch_next = e->watch[e->nwatch - 1].due;
}

/* Says the key's last incident was quiet for its whole watch. */
static void verify(struct engine *e, struct rule_rt *r, struct keyent *k, struct hist *h)
{
	struct incident inc = {.id = h->last_id,
	                       .rule = r->common->name,
	                       .kind = r->kind->name,
	                       .tier = (int)r->common->tier,
	                       .opened_ms = h->last_opened,
	                       .resolved_ms = h->last_resolved,
	                       .reopens = h->last_reopens};
	int64_t span = watch_ms(r);

	h->verified = 1;
	k->changed = 1;
	inc.updated_ms = h->last_resolved + span;
	snprintf(inc.key, sizeof(inc.key), "%s", KEY(r, k));
	snprintf(inc.summary, sizeof(inc.summary),
	         "verified: quiet for the %.3g days it was watched after resolving",
	         (double)span / 86400000.0);
	e->fn(e->arg, &inc, INCIDENT_VERIFIED);
}

static int by_due(const void *a, const void *b)
{
	const struct watch *x = a, *y = b;

	if (x->due != y->due)
		return (x->due > y->due) - (x->due < y->due);
	return (x->id > y->id) - (x->id < y->id);
}

/*
 * Verifies the watched incidents whose watch ended by now, in order of
 * (due, id) so that a restored engine says the same in the same order. An
 * entry is stale when its key reopened (and maybe resolved again, with a
 * new entry) or was verified since.
 */
static void watch_due(struct engine *e, int64_t now)
{
	struct watch *due;
	size_t j = 0, ndue = 0;

	if (now < e->watch_next)
		return;
	e->watch_next = INT64_MAX;
	due = xmalloc(e->nwatch * sizeof(*due));
	for (size_t i = 0; i < e->nwatch; i++) {
		struct watch w = e->watch[i];
		struct hist *h = hist_of(e, w.k, 0);

		if (h == NULL || h->last_id != w.id || h->verified || h->open ||
		    h->last_resolved + watch_ms(w.r) != w.due)
			continue;
		if (w.due <= now) {
			due[ndue++] = w;
			continue;
		}
		e->watch[j++] = w;
		if (w.due < e->watch_next)
			e->watch_next = w.due;
	}
	e->nwatch = j;
	qsort(due, ndue, sizeof(*due), by_due);
	for (size_t i = 0; i < ndue; i++)
		verify(e, due[i].r, due[i].k, hist_of(e, due[i].k, 0));
	free(due);
}

/* ---- sleeping keys: full states in a pool ---- */

/* The full state in block i. */
static void *block_at(const struct rule_rt *r, uint32_t i)
{
	return r->pool.chunks[i / POOL_CHUNK] + (size_t)(i % POOL_CHUNK) * r->pool.bsize;
}

static uint32_t pool_take(struct rule_rt *r)
{
	struct pool *p = &r->pool;
	uint32_t i;

	if (p->free_head) {
		i = p->free_head - 1;
		memcpy(&p->free_head, block_at(r, i), sizeof(p->free_head));
	} else {
		if (p->used / POOL_CHUNK == p->nchunks) {
			p->chunks = xrealloc(p->chunks, (p->nchunks + 1) * sizeof(*p->chunks));
			p->chunks[p->nchunks++] = xmalloc(POOL_CHUNK * p->bsize);
		}
		i = p->used++;
	}
	return i;
}

static void pool_put(struct rule_rt *r, uint32_t i)
{
	memcpy(block_at(r, i), &r->pool.free_head, sizeof(r->pool.free_head));
	r->pool.free_head = i + 1;
}

/*
 * The key's full state, woken if it sleeps: the idle part is copied back and
 * the kind rebuilds the rest (its rings start empty: the key was quiet).
 */
static void *key_state(struct engine *e, struct rule_rt *r, struct keyent *k)
{
	if (r->kind->idle_size == 0)
		return k->state;
	if (k->awake)
		return block_at(r, k->awake - 1);
	uint32_t i = pool_take(r);
	unsigned char *full = block_at(r, i);

	e->stats.awake++;
	memset(full, 0, r->kind->state_size);
	memcpy(full, k->state, r->kind->idle_size);
	k->awake = i + 1;
	if (r->kind->wake) {
		struct rule_ctx c = {.config = r->config,
		                     .state = full,
		                     .shared = r->shared,
		                     .key = KEY(r, k),
		                     .incident_open = k->open};

		r->kind->wake(&c);
	}
	return full;
}

static void key_sleep(struct engine *e, struct rule_rt *r, struct keyent *k)
{
	uint32_t i = k->awake - 1;

	e->stats.awake--;
	memcpy(k->state, block_at(r, i), r->kind->idle_size);
	pool_put(r, i);
	k->awake = 0;
}

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
static char *shape_text(const struct rule_rt *r)
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

struct engine *engine_new(const struct conf_items *rules, int64_t lateness_ms, incident_fn fn,
                          void *arg)
{
	struct engine *e = xcalloc(1, sizeof(*e));

	e->rules = xcalloc(rules->n ? rules->n : 1, sizeof(*e->rules));
	e->pend = xcalloc(rules->n ? rules->n : 1, sizeof(*e->pend));
	e->nrules = rules->n;
	e->lateness_ms = lateness_ms;
	e->fn = fn;
	e->arg = arg;
	e->max_ts = INT64_MIN;
	e->max_keys = SIZE_MAX;
	e->watch_next = INT64_MAX;
	e->resolve_next = INT64_MIN;
	buf_init(&e->forgotten, (size_t)1 << 30);
	for (size_t i = 0; i < rules->n; i++) {
		struct rule_rt *r = &e->rules[i];

		r->kind = rule_kinds[rules->v[i].variant];
		r->seen_lb = INT64_MIN;
		r->config = rules->v[i].data;
		r->inline_size = r->kind->idle_size ? r->kind->idle_size : r->kind->state_size;
		r->quiet = r->kind->idle_size ? r->kind->quiet_buckets(r->config) : 0;
		r->pool.bsize = (r->kind->state_size + 7) & ~(size_t)7;
		r->common = rules->v[i].data; /* every kind's config starts with it */
		rule_implied_key(r->common, r->implied, sizeof(r->implied));
		r->same_key = -1;
		for (size_t j = 0; j < i && r->same_key < 0; j++)
			if (e->rules[j].common->ngroup == r->common->ngroup &&
			    memcmp(e->rules[j].common->group, r->common->group,
			           (size_t)r->common->ngroup * sizeof(r->common->group[0])) == 0)
				r->same_key = (int)j;
		r->shared = r->kind->new_shared    ? r->kind->new_shared(r->config)
		            : r->kind->shared_size ? xcalloc(1, r->kind->shared_size)
		                                   : NULL;
		r->advanced = INT64_MIN;
		r->shape = shape_text(r);
		r->qsorted = 1;
		r->recent = xcalloc(RECENT, sizeof(*r->recent));
		r->recent_text = xmalloc(RECENT_TEXT);
		buf_init(&r->saved_shared, 64 << 20);
		grow(r);
	}
	return e;
}

static void incident_free(struct incident *inc)
{
	cJSON_Delete(inc->why);
	free(inc);
}

void engine_free(struct engine *e)
{
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->nrules; i++) {
		struct rule_rt *r = &e->rules[i];

		while (r->slab) {
			struct slab *next = r->slab->next;

			free(r->slab);
			r->slab = next;
		}
		for (size_t c = 0; c < r->pool.nchunks; c++)
			free(r->pool.chunks[c]);
		free(r->pool.chunks);
		free(r->q);
		free(r->retry);
		free(r->slabv);
		free(r->slots);
		free(r->dirty);
		free(r->recent);
		free(r->recent_text);
		free(r->free_refs);
		buf_free(&r->saved_shared);
		free(r->shape);
		if (r->kind->free_shared)
			r->kind->free_shared(r->shared);
		else
			free(r->shared);
	}
	for (size_t i = 0; i < e->nopen; i++)
		incident_free(e->open[i]);
	free(e->open);
	free(e->hist);
	free(e->watch);
	for (size_t i = 0; i < e->nretired; i++)
		free(e->retired[i].name);
	free(e->retired);
	buf_free(&e->forgotten);
	free(e->pend);
	free(e->rules);
	free(e);
}

void engine_suppress(struct engine *e, const struct suppress_lists *lists, int budget_per_hour)
{
	e->lists = lists;
	e->budget = budget_per_hour;
}

/* Is the "field=value" pair tok (n bytes) one of the key list's? (values may hold spaces) */
static int has_token(const char *list, const char *tok, size_t n)
{
	for (const char *q = list; *q;) {
		size_t m = key_pair_len(q);

		if (m == n && memcmp(q, tok, n) == 0)
			return 1;
		q += m + (q[m] == ' ');
	}
	return 0;
}

/* Is each of a's tokens in b or in also (either may be "")? *shared: is any in b? */
static int tokens_in(const char *a, const char *b, const char *also, int *shared)
{
	*shared = 0;
	for (const char *p = a; *p;) {
		size_t n = key_pair_len(p);
		int in_b = has_token(b, p, n);

		if (!in_b && !has_token(also, p, n))
			return 0;
		*shared |= in_b;
		p += n + (p[n] == ' ');
	}
	return 1;
}

/*
 * Does the higher-tier incident hi cover lo? When its key is lo's key or
 * more general (sku=A covers sku=A category=shipping), and when it lies
 * inside lo and shares a field of lo's key with it: a burst of severe
 * "sku=A subcategory=overheating" reports, whose rule takes only category
 * == product_defect, is inside a spike of "sku=A category=product_defect"
 * (BASELINES.md: one incident, the most severe rule the headline), not
 * inside a spike of sku=A's shipping complaints, nor a roll-up of the
 * whole category (no key field in common).
 */
static int covers(const struct engine *e, const struct incident *hi, const struct incident *lo)
{
	int shared;

	if (tokens_in(hi->key, lo->key, "", &shared))
		return 1;
	for (size_t n = 0; n < e->nrules; n++)
		if (e->rules[n].common->name == hi->rule)
			return tokens_in(lo->key, hi->key, e->rules[n].implied, &shared) && shared;
	return 0;
}

/*
 * The notification gate: a change that would notify is muted, with the
 * reason recorded, by a known issue, a silence or a time window; by an open
 * incident of a higher tier that covers it (inhibition, above); or, for
 * tiers 1 and 2, when the hour's notification budget is spent (demoted to
 * the digest). Returns 1 when it was muted only for a while (a silence, a
 * time window): the notification is still owed once that ends.
 */
static int gate(struct engine *e, struct incident *inc, int64_t at)
{
	enum suppressed_by by = SUPPRESSED_NOT;

	inc->suppressed[0] = '\0';
	inc->muted_by = SUPPRESSED_NOT;
	if (!inc->notify)
		return 0;
	if (e->lists)
		by = suppress_match(e->lists, inc->rule, inc->kind, inc->tier, inc->key, at,
		                    inc->suppressed, sizeof(inc->suppressed));
	inc->muted_by = (int)by;
	if (by != SUPPRESSED_NOT)
		goto muted;
	for (size_t i = 0; i < e->nopen; i++) {
		const struct incident *o = e->open[i];

		if (o != inc && o->tier < inc->tier && covers(e, o, inc)) {
			snprintf(inc->suppressed, sizeof(inc->suppressed),
			         "inhibited by incident %llu (tier %d %s, %.100s)",
			         (unsigned long long)o->id, o->tier, o->rule, o->key);
			goto muted;
		}
	}
	if (e->budget > 0 && inc->tier <= 2) {
		int n = 0;

		for (int i = 0; i < BUDGET_RING; i++)
			n += e->sent[i] && at - e->sent[i] < 3600000;
		if (n >= e->budget) {
			snprintf(
			        inc->suppressed, sizeof(inc->suppressed),
			        "over the budget of %d tier-1/2 notifications an hour: demoted to the "
			        "digest",
			        e->budget);
			goto muted;
		}
		e->sent[e->sent_head] = at;
		e->sent_head = (e->sent_head + 1) % BUDGET_RING;
	}
	return 0;
muted:
	inc->notify = 0;
	e->stats.suppressed++;
	/* Replace does not take the new item when the key is absent: add then. */
	if (cJSON_GetObjectItemCaseSensitive(inc->why, "suppressed_by"))
		cJSON_ReplaceItemInObject(inc->why, "suppressed_by",
		                          cJSON_CreateString(inc->suppressed));
	else
		cJSON_AddStringToObject(inc->why, "suppressed_by", inc->suppressed);
	return by == SUPPRESSED_SILENCE || by == SUPPRESSED_TIME_WINDOW;
}

void engine_review(struct engine *e, double min_confidence, int counts_volume, review_fn fn)
{
	e->review_confidence = min_confidence;
	e->review_counts_volume = counts_volume;
	e->review = fn;
}

/* Returns 1 (with a reason) if the event belongs in the review queue. */
static int needs_review(const struct engine *e, const struct event *ev, char *why, size_t len)
{
	if (e->review == NULL)
		return 0;
	if (ev->needs_review) {
		snprintf(why, len, "the scorer flagged it needs_review");
		return 1;
	}
	if (ev->confidence == ev->confidence && ev->confidence < e->review_confidence) {
		snprintf(why, len, "confidence %.2f is under %.2f", ev->confidence,
		         e->review_confidence);
		return 1;
	}
	return 0;
}

int64_t engine_max_ts(const struct engine *e)
{
	return e->max_ts;
}

_Static_assert(sizeof(((struct incident *)0)->key) == RULE_KEY_MAX, "an incident keeps any key");

const struct engine_stats *engine_stats(const struct engine *e)
{
	return &e->stats;
}

void engine_forget_after(struct engine *e, int64_t ms)
{
	e->forget_ms = ms > 0 ? ms : 0;
}

void engine_max_keys(struct engine *e, size_t max)
{
	e->max_keys = max ? max : SIZE_MAX;
}

int engine_is_open(const struct engine *e, uint64_t id)
{
	for (size_t i = 0; i < e->nopen; i++)
		if (e->open[i]->id == id)
			return 1;
	return 0;
}

/* engine_save finds the changed keys by walking the slabs: no list of them to keep. */
static void mark_changed(struct keyent *k)
{
	k->changed = 1;
}

static void fire(struct engine *e, struct rule_rt *r, struct keyent *k, struct firing *f,
                 int64_t at);

/* The "field=value" token of key for field, copied into out; 0 if absent. */
static int key_token(const char *key, const char *field, char *out, size_t outlen)
{
	size_t len;
	const char *p = key_find(key, field, &len);

	if (p == NULL)
		return 0;
	snprintf(out, outlen, "%.*s", (int)len, p);
	return 1;
}

static double why_number(const cJSON *why, const char *name, double otherwise)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(why, name);

	return cJSON_IsNumber(v) ? v->valuedouble : otherwise;
}

/*
 * Does a member stand out of the others it would be rolled up with?
 * BASELINES.md 1.3's share test, asked of the roll-up rather than of the
 * category: a campaign lifts a whole category and one roll-up says so, a
 * problem of ten SKUs is one roll-up too, but a SKU lifted far beyond its
 * fellows in the middle of either is a problem of its own. Its observed
 * count is tested against its expectation times the other members' pooled
 * lift (their observed over their expected; observed and expected are all
 * members' sums, its own included), at its own firing's alpha and
 * dispersion. Explanations without those (kinds other than spike) are not
 * tested, and roll up as before.
 */
struct stand_out {
	int tested, alone;
	double lift, others_lift, p;
};

static struct stand_out stand_out(const cJSON *why, double observed, double expected)
{
	double x = why_number(why, "observed", -1), m = why_number(why, "expected", -1);
	double alpha = why_number(why, "alpha", -1), phi = why_number(why, "dispersion_phi", 1);
	struct stand_out t = {.p = 1};

	if (x <= 0 || m <= 0 || alpha <= 0 || expected - m <= 0)
		return t;
	t.tested = 1;
	t.lift = x / m;
	t.others_lift = (observed - x) / (expected - m);
	if (t.lift > t.others_lift)
		t.p = nb_upper_tail(x, t.others_lift * m, phi);
	t.alone = t.p < alpha;
	return t;
}

/* Is o an incident of inc's rule whose rollup_by value is token? */
static int member(const struct rule_rt *r, const struct incident *inc, const struct incident *o,
                  const char *token)
{
	char t[160];

	return o->rule == inc->rule && !o->rollup &&
	       key_token(o->key, r->common->rollup_by, t, sizeof(t)) && strcmp(t, token) == 0;
}

/* The open roll-up of inc's rule keyed token, if any. */
static const struct incident *rollup_open(const struct engine *e, const struct incident *inc,
                                          const char *token)
{
	for (size_t i = 0; i < e->nopen; i++)
		if (e->open[i]->rollup && e->open[i]->rule == inc->rule &&
		    strcmp(e->open[i]->key, token) == 0)
			return e->open[i];
	return NULL;
}

/*
 * Category roll-up: when rollup_min open incidents of the rule share the
 * rollup_by value of inc's key, they are one problem. The roll-up incident
 * (keyed by that value alone) opens or updates, and inc is rolled up into
 * it, unless inc stands out of the others (stand_out; a member that does is
 * not counted either). While the roll-up is open, every firing of a member
 * goes into it, however few members are still open: the problem goes on,
 * and the roll-up re-alerts on its own schedule; resolving between its
 * members' re-alerts and reopening, it told the problem again and again.
 * A rolled-up firing that would notify (inc->notify) is muted by the
 * caller; one that would not only updates the roll-up. Membership is worked
 * out from the members' explanations each time, which a restart restores,
 * so a restart mutes what an uninterrupted run mutes. The test of inc goes
 * into its explanation. Returns 1 if inc was rolled up.
 */
static int rollup(struct engine *e, struct rule_rt *r, struct incident *inc, int64_t at)
{
	char token[160], keys[200] = "";
	double observed = 0, expected = 0; /* all members' */
	int n = 0;

	if (r->common->rollup_by == NULL || inc->rollup || inc->suppressed[0] ||
	    !key_token(inc->key, r->common->rollup_by, token, sizeof(token)))
		return 0;
	for (size_t i = 0; i < e->nopen; i++) {
		if (member(r, inc, e->open[i], token)) {
			observed += why_number(e->open[i]->why, "observed", 0);
			expected += why_number(e->open[i]->why, "expected", 0);
		}
	}
	/* The members that count: those that do not stand out of the others. */
	for (size_t i = 0; i < e->nopen; i++) {
		const struct incident *o = e->open[i];

		if (!member(r, inc, o, token) ||
		    (o != inc && stand_out(o->why, observed, expected).alone))
			continue;
		n++;
		snprintf(keys + strlen(keys), sizeof(keys) - strlen(keys), "%s%.40s",
		         keys[0] ? ", " : "", o->key);
	}
	const struct incident *was = rollup_open(e, inc, token);

	if (n < r->common->rollup_min && was == NULL)
		return 0;
	struct stand_out t = stand_out(inc->why, observed, expected);

	if (t.tested) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddNumberToObject(o, "lift", round(t.lift * 10) / 10);
		cJSON_AddNumberToObject(o, "members_lift", round(t.others_lift * 10) / 10);
		cJSON_AddNumberToObject(o, "p_value", t.p);
		cJSON_AddBoolToObject(o, "stands_alone", t.alone);
		cJSON_DeleteItemFromObjectCaseSensitive(inc->why, "rollup_test");
		cJSON_AddItemToObject(inc->why, "rollup_test", o);
		if (t.alone)
			return 0;
	}
	struct keyent *rk = key_get(e, r, token);
	struct firing f = {.window_start_ms = at, .window_end_ms = at};
	/* The most keys at once so far: a roll-up kept alive by fewer than
	 * rollup_min says so ("1 key at once" read as if one were a surge). */
	int most = was ? (int)why_number(was->why, "keys_most", n) : n;

	most = most > n ? most : n;
	f.why = cJSON_CreateObject();
	cJSON_AddNumberToObject(f.why, "keys_together", n);
	cJSON_AddNumberToObject(f.why, "keys_most", most);
	cJSON_AddStringToObject(f.why, "keys", keys);
	cJSON_AddStringToObject(f.why, "latest", inc->summary);
	if (n >= r->common->rollup_min)
		snprintf(f.summary, sizeof(f.summary),
		         "%.60s: %d keys at once (%.120s); latest: %.100s", token, n, keys,
		         inc->summary);
	else
		snprintf(f.summary, sizeof(f.summary),
		         "%.60s: %d key%s still firing of %d at once (%.90s); latest: %.100s",
		         token, n, n == 1 ? "" : "s", most, keys, inc->summary);
	e->rolling = 1;
	fire(e, r, rk, &f, at);
	e->rolling = 0;
	mark_changed(rk);
	if (inc->notify)
		snprintf(inc->suppressed, sizeof(inc->suppressed),
		         "rolled up into incident %llu (%s)",
		         (unsigned long long)open_of(e, rk)->id, token);
	return 1;
}

static void fire(struct engine *e, struct rule_rt *r, struct keyent *k, struct firing *f,
                 int64_t at)
{
	struct incident *inc = open_of(e, k);
	struct hist *h;
	cJSON *ex;

	cJSON_AddStringToObject(f->why, "rule", r->common->name);
	cJSON_AddStringToObject(f->why, "kind", r->kind->name);
	cJSON_AddStringToObject(f->why, "key", KEY(r, k));
	ex = cJSON_AddArrayToObject(f->why, "examples");
	for (size_t n = 0, found = 0; n < RECENT && found < NIDS; n++) {
		const struct recent *x = &r->recent[(r->recent_head + RECENT - 1 - n) % RECENT];

		if (x->k == NULL)
			break;
		if (x->k == k && r->text_pos - x->at <= RECENT_TEXT) {
			char id[ID_MAX + 1];
			size_t off = (size_t)(x->at % RECENT_TEXT), first = RECENT_TEXT - off;

			if (first > x->len)
				first = x->len;
			memcpy(id, r->recent_text + off, first);
			memcpy(id + first, r->recent_text, x->len - first);
			id[x->len] = '\0';
			/* A higher revision of an event is remembered again: once. */
			int again = 0;

			for (const cJSON *y = ex->child; y && !again; y = y->next)
				again = strcmp(y->valuestring, id) == 0;
			if (!again) {
				cJSON_AddItemToArray(ex, cJSON_CreateString(id));
				found++;
			}
		}
	}
	if (inc) {
		inc->firings++;
		inc->updated_ms = inc->last_fire_ms = at;
		cJSON_Delete(inc->why);
		inc->why = f->why;
		memcpy(inc->summary, f->summary, sizeof(inc->summary));
		/* Re-alert while it persists, at a doubling interval (ElastAlert's
		 * exponential realert): cooldown after the opening, twice that
		 * after the first re-alert, and so on. One a silence or time window
		 * muted stays due: the first firing after it ends notifies, not the
		 * next interval's (hours later). */
		int due = at >= inc->next_alert_ms;

		inc->notify = due || f->again;
		if (!gate(e, inc, at) && due) {
			int64_t gap = r->common->cooldown_ms
			              << (inc->realerts < 20 ? inc->realerts + 1 : 21);

			inc->realerts++;
			inc->next_alert_ms =
			        at +
			        (gap < r->common->realert_max_ms ? gap : r->common->realert_max_ms);
		}
		if (rollup(e, r, inc, at) && inc->notify) {
			if (f->again) { /* a new episode is the key's news, not the surge's */
				inc->suppressed[0] = '\0';
			} else {
				inc->notify = 0;
				e->stats.suppressed++;
			}
		}
		e->fn(e->arg, inc, INCIDENT_UPDATED);
		return;
	}
	h = hist_of(e, k, 1);
	int reopen = watched(r, h, at);

	/* Its watch ended before this firing, and the watermark has not said so yet. */
	if (!reopen && h->last_id && !h->verified && r->common->watch_ms)
		verify(e, r, k, h);
	if (reopen)
		cJSON_AddNumberToObject(f->why, "hours_since_resolved",
		                        round((double)(at - h->last_resolved) / 360000.0) / 10);

	inc = xcalloc(1, sizeof(*inc));
	inc->id = reopen ? h->last_id : ++e->next_id;
	inc->reopens = reopen ? h->last_reopens + 1 : 0;
	inc->rule = r->common->name;
	inc->kind = r->kind->name;
	inc->tier = (int)r->common->tier;
	snprintf(inc->key, sizeof(inc->key), "%s", KEY(r, k));
	inc->opened_ms = inc->updated_ms = inc->last_fire_ms = at;
	if (reopen && h->last_opened)
		inc->opened_ms = h->last_opened; /* the same incident: its tickets' key */
	inc->firings = 1;
	inc->notify = 1;
	inc->next_alert_ms = at + r->common->cooldown_ms;
	inc->why = f->why;
	inc->rollup = e->rolling;
	memcpy(inc->summary, f->summary, sizeof(inc->summary));
	h->open = inc;
	k->open = 1;
	if (e->nopen == e->aopen) {
		e->aopen = e->aopen ? e->aopen * 2 : 16;
		e->open = xrealloc(e->open, e->aopen * sizeof(*e->open));
	}
	e->open[e->nopen++] = inc;
	if (at + r->common->resolve_after_ms < e->resolve_next)
		e->resolve_next = at + r->common->resolve_after_ms;
	if (gate(e, inc, at))
		inc->next_alert_ms = at; /* muted for a while: owed at the first firing after */
	if (rollup(e, r, inc, at) && inc->notify) {
		inc->notify = 0;
		e->stats.suppressed++;
	}
	e->fn(e->arg, inc, reopen ? INCIDENT_REOPENED : INCIDENT_OPENED);
}

/* What a kind's callback may leave unset when it does not fire: not the
 * 320-byte summary, zeroed for every bucket closed and rule taken. */
static void firing_clear(struct firing *f)
{
	f->why = NULL;
	f->summary[0] = '\0';
	f->window_start_ms = f->window_end_ms = 0;
	f->again = 0;
}

static struct rule_ctx ctx_for(struct engine *e, struct rule_rt *r, struct keyent *k)
{
	return (struct rule_ctx){.config = r->config,
	                         .state = key_state(e, r, k),
	                         .shared = r->shared,
	                         .key = KEY(r, k),
	                         .incident_open = k->open,
	                         .fired_ms = k->open ? hist_of(e, k, 0)->open->last_fire_ms : 0,
	                         .opened_ms = k->open ? hist_of(e, k, 0)->open->opened_ms : 0};
}

/*
 * Closes the key's buckets before index upto. Only the key's open bucket can
 * hold events (when the key is dirty); the ones after it are empty, replayed
 * so the baselines see the silence. An empty replayed bucket may not fire
 * (unless the kind judges silence): replays happen when the key's next event
 * arrives, possibly hours later, and a firing then would land in the past,
 * after the watermark had already resolved the incident. A kind that judges
 * silence has up to 31 days replayed, as a live stream's clock would have
 * closed them: replaying 48, a backtest of a sparse source judged only the
 * end of each gap, and found fewer outages than the daemon would.
 */
static void close_until(struct engine *e, struct rule_rt *r, struct keyent *k, int64_t upto)
{
	int64_t b = r->common->bucket_ms, first = k->bucket;
	int64_t replay = r->kind->every_bucket ? SILENT_DAYS * 86400000LL / b : MAX_REPLAY;
	int had_events = k->dirty;

	/* The same for every bucket until a firing changes the key's incident. */
	struct rule_ctx ctx = ctx_for(e, r, k);

	mark_changed(k);
	for (int64_t i = k->bucket; i < upto; i++) {
		struct firing f;

		firing_clear(&f);
		if (i > k->bucket && upto - i > replay)
			i = upto - replay; /* a long silence: replay only its end */
		enum rule_verdict v = r->kind->on_close(&ctx, (i + 1) * b, &f);

		if (v == RULE_HOLD && k->open) {
			struct incident *inc = hist_of(e, k, 0)->open;

			if (inc->held_ms < (i + 1) * b)
				inc->held_ms = (i + 1) * b;
		}
		if (v != RULE_FIRE)
			continue;
		if ((i == first && had_events) || r->kind->every_bucket) {
			fire(e, r, k, &f, (i + 1) * b);
			ctx = ctx_for(e, r, k);
		} else {
			cJSON_Delete(f.why);
		}
	}
	k->bucket = upto;
}

static void resolve_due(struct engine *e, int64_t now)
{
	size_t j = 0;
	int64_t next = INT64_MAX;

	/* Called as time moves, before and after each event: a walk over the
	 * open incidents only once one may be due. */
	if (now < e->resolve_next) {
		watch_due(e, now);
		return;
	}
	for (size_t i = 0; i < e->nopen; i++) {
		struct incident *inc = e->open[i];
		struct rule_rt *r = NULL;

		for (size_t n = 0; n < e->nrules && !r; n++)
			if (e->rules[n].common->name == inc->rule)
				r = &e->rules[n];
		/* Clear for resolve_after: neither fired nor held (hysteresis). */
		int64_t active =
		        inc->held_ms > inc->last_fire_ms ? inc->held_ms : inc->last_fire_ms;

		if (now - active < r->common->resolve_after_ms) {
			e->open[j++] = inc;
			if (active + r->common->resolve_after_ms < next)
				next = active + r->common->resolve_after_ms;
			continue;
		}
		inc->resolved_ms = active + r->common->resolve_after_ms;
		/* Find the key to clear its open pointer. */
		struct keyent *k = key_get(e, r, inc->key);
		struct hist *h = hist_of(e, k, 1);

		h->open = NULL;
		k->open = 0;
		mark_changed(k);
		h->last_id = inc->id;
		h->last_resolved = inc->resolved_ms;
		h->last_reopens = inc->reopens;
		h->last_opened = inc->opened_ms;
		h->verified = 0;
		if (inc->resolved_ms < r->seen_lb)
			r->seen_lb = inc->resolved_ms;
		watch_add(e, r, k, h);
		if (r->quiet && k->awake) {
			if (r->nretry == r->aretry) {
				r->aretry = r->aretry ? r->aretry * 2 : 16;
				r->retry = xrealloc(r->retry, r->aretry * sizeof(*r->retry));
			}
			r->retry[r->nretry++] = k;
		}
		inc->notify = 1;
		e->fn(e->arg, inc, INCIDENT_RESOLVED);
		incident_free(inc);
	}
	e->nopen = j;
	e->resolve_next = next; /* firings only move an incident's due later */
	watch_due(e, now);
}

/* Queues k, whose bucket just closed: it may sleep quiet buckets from now. */
static void quiet_push(struct rule_rt *r, struct keyent *k)
{
	if (r->qlen == r->qcap) {
		size_t n = r->qcap ? r->qcap * 2 : 1024;
		struct quiet_ent *q = xmalloc(n * sizeof(*q));

		for (size_t i = 0; i < r->qlen; i++)
			q[i] = r->q[(r->qhead + i) % r->qcap];
		free(r->q);
		r->q = q;
		r->qhead = 0;
		r->qcap = n;
	}
	r->q[(r->qhead + r->qlen++) % r->qcap] = (struct quiet_ent){k, k->bucket};
}

static int by_bucket(const void *a, const void *b)
{
	const struct quiet_ent *x = a, *y = b;

	return (x->bucket > y->bucket) - (x->bucket < y->bucket);
}

/*
 * Sleeps k if it may: awake, no events in its open bucket, no open incident
 * (its baseline is frozen, its evidence current), quiet long enough. Its
 * empty buckets are closed now (as its next event would have), which empties
 * the kind's rings, and only the idle part stays.
 */
static void try_sleep(struct engine *e, struct rule_rt *r, struct keyent *k, int64_t idx)
{
	if (!k->awake || k->dirty || k->open || k->bucket < 0 || k->bucket + r->quiet > idx)
		return;
	close_until(e, r, k, idx);
	if (!k->open)
		key_sleep(e, r, k);
}

/*
 * At each bucket advance, a key sleeps once quiet buckets have passed since
 * it went quiet, unless it is busy again or has an open incident (it is
 * retried when that resolves). Work is per key that goes quiet, not per key.
 */
static void sweep(struct engine *e, struct rule_rt *r, int64_t idx)
{
	if (!r->qsorted) {
		struct quiet_ent *q = xmalloc((r->qlen ? r->qlen : 1) * sizeof(*q));

		for (size_t i = 0; i < r->qlen; i++)
			q[i] = r->q[(r->qhead + i) % r->qcap];
		qsort(q, r->qlen, sizeof(*q), by_bucket);
		free(r->q);
		r->q = q;
		r->qhead = 0;
		r->qcap = r->qlen ? r->qlen : 1;
		r->qsorted = 1;
	}
	while (r->qlen && r->q[r->qhead].bucket + r->quiet <= idx) {
		struct keyent *k = r->q[r->qhead].k;

		r->qhead = (r->qhead + 1) % r->qcap;
		r->qlen--;
		try_sleep(e, r, k, idx);
	}
	for (size_t i = 0; i < r->nretry; i++)
		try_sleep(e, r, r->retry[i], idx);
	r->nretry = 0;
}

/* ---- forgetting keys quiet for months ---- */

/* Where a forgotten key's examples were: matches no key. */
static const struct keyent tomb;

struct dead {
	struct keyent *k;
	struct rule_rt *r;
	uint32_t ref; /* its slot's reference, for the free list */
};

static int by_key_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)((const struct dead *)a)->k,
	          y = (uintptr_t)((const struct dead *)b)->k;

	return (x > y) - (x < y);
}

static int is_dead(const struct dead *d, size_t n, const struct keyent *k)
{
	struct dead probe = {(struct keyent *)(uintptr_t)k, NULL, 0};

	return n && k && bsearch(&probe, d, n, sizeof(*d), by_key_ptr) != NULL;
}

/*
 * The event time of the key's latest activity, or -1 if it never had any:
 * a sleeping kind's asleep key slept at its bucket, another kind's key
 * keeps its latest event's bucket in awake; an incident's resolution counts.
 */
static int64_t key_seen_ms(const struct rule_rt *r, const struct keyent *k, const struct hist *h)
{
	int64_t b = SLEEPS(r) ? k->bucket : (int64_t)k->awake - 1;
	int64_t t = b >= 0 ? b * r->common->bucket_ms : -1;

	if (h && h->last_id && h->last_resolved > t)
		t = h->last_resolved;
	return t;
}

/* Rebuilds the rule's slot table without the dead keys. */
static void slots_without(struct rule_rt *r, const struct dead *d, size_t n)
{
	uint32_t *slots = xcalloc(r->nslots, sizeof(*slots));

	for (size_t i = 0; i < r->nslots; i++) {
		const struct keyent *k = key_at(r, r->slots[i]);

		if (k == NULL || is_dead(d, n, k))
			continue;
		size_t j = k->hash & (r->nslots - 1);

		while (slots[j])
			j = (j + 1) & (r->nslots - 1);
		slots[j] = r->slots[i];
	}
	free(r->slots);
	r->slots = slots;
}

/* The history table, the watch list, the rules' queues without the dead keys. */
static void forget_refs(struct engine *e, const struct dead *d, size_t n)
{
	struct hist *old = e->hist;
	size_t j = 0;

	e->hist = xcalloc(e->ahist, sizeof(*e->hist));
	e->nhist = 0;
	for (size_t i = 0; i < e->ahist; i++) {
		if (old[i].k == NULL || is_dead(d, n, old[i].k))
			continue;
		size_t at = hist_slot(e, old[i].k);

		while (e->hist[at].k)
			at = (at + 1) & (e->ahist - 1);
		e->hist[at] = old[i];
		e->nhist++;
	}
	free(old);
	for (size_t i = 0; i < e->nwatch; i++)
		if (!is_dead(d, n, e->watch[i].k))
			e->watch[j++] = e->watch[i];
	e->nwatch = j;
	for (size_t m = 0; m < e->nrules; m++) {
		struct rule_rt *r = &e->rules[m];
		size_t kept = 0;

		for (size_t i = 0; i < r->qlen; i++) {
			struct quiet_ent q = r->q[(r->qhead + i) % r->qcap];

			if (!is_dead(d, n, q.k))
				r->q[(r->qhead + kept++) % r->qcap] = q;
		}
		r->qlen = kept;
		for (size_t i = 0; i < RECENT; i++)
			if (is_dead(d, n, r->recent[i].k))
				r->recent[i].k = &tomb;
	}
}

/*
 * Forgets the keys quiet for forget_ms at now: asleep, no events pending,
 * no incident open or under watch. Their slots go, their bytes go on their
 * rule's free list (by size), their records are deleted at the next save.
 * What they learnt is lost: a key that comes back is a new key, with a new
 * key's warm-up. O(keys) once a day of event time.
 */
static void forget(struct engine *e, int64_t now)
{
	struct dead *d = NULL;
	size_t n = 0, cap = 0;

	for (size_t m = 0; m < e->nrules; m++) {
		struct rule_rt *r = &e->rules[m];
		int64_t after = r->kind->memory_ms ? r->kind->memory_ms(r->config) : 0;

		int64_t lb = INT64_MAX;

		if (after < e->forget_ms)
			after = e->forget_ms;
		/* Nothing old enough (most days): no walk over the keys. */
		if (r->seen_lb != INT64_MIN && now - r->seen_lb < after)
			continue;
		for (size_t i = 0; i < r->nslots; i++) {
			struct keyent *k = key_at(r, r->slots[i]);
			const struct hist *h;
			int64_t seen;

			if (k == NULL)
				continue;
			h = k->history ? hist_of(e, k, 0) : NULL;
			/* (An awake key's bucket, for a sleeping kind, is below what it
			 * will have slept at: a bound all the same.) */
			seen = key_seen_ms(r, k, h);
			if (k->dirty || k->open || (SLEEPS(r) && k->awake) ||
			    (h && (h->open || watched(r, h, now))) || seen < 0 ||
			    now - seen < after) {
				if (seen >= 0 && seen < lb)
					lb = seen; /* kept: it may be forgotten at lb + after */
				continue;
			}
			if (n == cap) {
				cap = cap ? cap * 2 : 256;
				d = xrealloc(d, cap * sizeof(*d));
			}
			d[n++] = (struct dead){k, r, r->slots[i]};
			r->nforget++;
			buf_add(&e->forgotten, r->common->name, strlen(r->common->name) + 1);
			buf_add(&e->forgotten, KEY(r, k), strlen(KEY(r, k)) + 1);
		}
		r->seen_lb = lb;
	}
	if (n == 0)
		return;
	qsort(d, n, sizeof(*d), by_key_ptr);
	for (size_t m = 0; m < e->nrules; m++)
		if (e->rules[m].nforget) /* a rule that lost none keeps its table */
			slots_without(&e->rules[m], d, n);
	forget_refs(e, d, n);
	for (size_t i = 0; i < n; i++) {
		struct rule_rt *r = d[i].r;
		struct keyent *k = d[i].k;
		size_t c = key_bytes(r, strlen(KEY(r, k)) + 1) / 8;

		if (c >= r->nfree_classes) {
			r->free_refs = xrealloc(r->free_refs, (c + 1) * sizeof(*r->free_refs));
			memset(r->free_refs + r->nfree_classes, 0,
			       (c + 1 - r->nfree_classes) * sizeof(*r->free_refs));
			r->nfree_classes = c + 1;
		}
		memcpy(k, &r->free_refs[c], sizeof(uint32_t)); /* over its hash */
		r->free_refs[c] = d[i].ref;
		k->dirty = KEY_FREE;
		k->changed = 0;
		r->nkeys--;
		r->nforget = 0;
		e->stats.keys--;
	}
	e->stats.forgotten += n;
	free(d);
}

static void advance(struct engine *e, int64_t watermark)
{
	for (size_t n = 0; n < e->nrules; n++) {
		struct rule_rt *r = &e->rules[n];
		int64_t idx;
		size_t j = 0;

		if (r->kind->on_close == NULL)
			continue;
		idx = watermark / r->common->bucket_ms;
		if (idx <= r->advanced)
			continue;
		r->advanced = idx;
		if (r->kind->every_bucket) {
			/* Silence matters to this kind: every key's buckets close. */
			for (size_t i = 0; i < r->nslots; i++) {
				struct keyent *k = key_at(r, r->slots[i]);

				if (k && k->bucket >= 0 && k->bucket < idx)
					close_until(e, r, k, idx);
				if (k)
					k->dirty = 0;
			}
			r->ndirty = 0;
			continue;
		}
		for (size_t i = 0; i < r->ndirty; i++) {
			struct keyent *k = r->dirty[i];

			if (k->bucket < idx) {
				close_until(e, r, k, idx);
				k->dirty = 0;
				if (r->quiet)
					quiet_push(r, k);
			} else {
				r->dirty[j++] = k;
			}
		}
		r->ndirty = j;
		if (r->quiet)
			sweep(e, r, idx);
	}
	resolve_due(e, watermark);
	if (e->forget_ms > 0 && watermark / 86400000 > e->forgot_day) {
		e->forgot_day = watermark / 86400000;
		forget(e, watermark);
	}
}

static void remember_id(struct rule_rt *r, const struct keyent *k, const char *id)
{
	struct recent *x = &r->recent[r->recent_head];
	size_t n = strnlen(id, ID_MAX), off = (size_t)(r->text_pos % RECENT_TEXT);
	size_t first = RECENT_TEXT - off < n ? RECENT_TEXT - off : n;

	x->k = k;
	x->at = r->text_pos;
	x->len = (uint16_t)n;
	memcpy(r->recent_text + off, id, first); /* per event and rule: no printf */
	memcpy(r->recent_text, id + first, n - first);
	r->text_pos += n;
	r->recent_head = (r->recent_head + 1) % RECENT;
}

/* An event, or a higher revision of one (only for kinds that take revisions). */
static void take(struct engine *e, const struct event *ev, int revision)
{
	char reason[96];
	int review = needs_review(e, ev, reason, sizeof(reason)), late = 0, ungrouped = 0,
	    capped = 0;

	/* A revision too: a report re-scored as unsure belongs in the queue (the
	 * queue keeps one row per report); one re-scored confident leaves it. */
	if (review) {
		e->stats.review++;
		e->review(e->arg, ev, reason);
	} else if (revision && e->review) {
		e->review(e->arg, ev, NULL);
	}
	/*
	 * Time moves first: what the watermark says happened before this event
	 * (buckets closed, incidents resolved, watches ended) is so when the
	 * event is taken. Taken first, an event a day after an incident's
	 * resolution time found it still open, and re-alerted it instead of
	 * reopening it, on a stream too sparse to have moved the watermark in
	 * between. Up to just before the event's time: what clears exactly at
	 * it is still firing if the event fires (the end of take() moves the
	 * rest). The event's own bucket is not before the watermark's.
	 */
	if (ev->ts_ms > e->max_ts) {
		e->max_ts = ev->ts_ms;
		advance(e, e->max_ts - e->lateness_ms - 1);
	}
	/*
	 * First which rules take the event and under which key, then the keys:
	 * each rule's lookup is a cache miss or two in a table of 100,000s, and
	 * fetching all of an event's slots, then all its entries, before using
	 * any overlaps them.
	 */
	for (size_t n = 0; n < e->nrules; n++) {
		struct rule_rt *r = &e->rules[n];
		struct pend *p = &e->pend[n];

		p->ok = 0;
		if (revision && !r->kind->revisions)
			continue;
		/* Under review: never alone behind a tier-1 per-event incident; in
		 * volume only if configured. */
		if (review && (r->kind->on_close ? !e->review_counts_volume : r->common->tier == 1))
			continue;
		if (!rule_matches(r->common, ev))
			continue;
		if (r->same_key >= 0 && e->pend[r->same_key].ok) {
			/* The key an earlier rule grouping by the same fields made. */
			const struct pend *q = &e->pend[r->same_key];

			memcpy(p->key, q->key, q->len + 1);
			p->len = q->len;
			p->h = q->h;
		} else if (rule_group_key(r->common, ev, p->key, sizeof(p->key)) < 0) {
			ungrouped = 1;
			continue;
		} else {
			p->len = strlen(p->key);
			p->h = key_hash(p->key, p->len);
		}
		p->ok = 1;
		__builtin_prefetch(&r->slots[p->h & (r->nslots - 1)]);
	}
	for (size_t n = 0; n < e->nrules; n++) {
		struct rule_rt *r = &e->rules[n];

		if (e->pend[n].ok)
			__builtin_prefetch(key_at(r, r->slots[e->pend[n].h & (r->nslots - 1)]));
	}
	for (size_t n = 0; n < e->nrules; n++) {
		struct rule_rt *r = &e->rules[n];
		const struct keyent *k =
		        e->pend[n].ok ? key_at(r, r->slots[e->pend[n].h & (r->nslots - 1)]) : NULL;

		if (k && k->awake && SLEEPS(r))
			__builtin_prefetch(block_at(r, k->awake - 1));
	}
	for (size_t n = 0; n < e->nrules; n++) {
		struct rule_rt *r = &e->rules[n];
		struct pend *p = &e->pend[n];
		struct firing f;
		struct keyent *k;
		int64_t idx = ev->ts_ms / r->common->bucket_ms;

		if (!p->ok)
			continue;
		firing_clear(&f);
		k = key_get_h(e, r, p->key, p->len, p->h, 1);
		if (k == NULL) {
			capped = 1;
			continue;
		}
		mark_changed(k);
		if (idx * r->common->bucket_ms < r->seen_lb)
			r->seen_lb = idx * r->common->bucket_ms;
		if (!SLEEPS(r) && (int64_t)k->awake < idx + 1)
			k->awake = (uint32_t)(idx + 1);
		if (r->kind->on_close) {
			if (k->bucket < 0) {
				k->bucket = idx;
			} else if (idx < k->bucket) {
				late = 1;
				continue;
			} else if (idx > k->bucket) {
				close_until(e, r, k, idx);
			}
			if (!k->dirty) {
				if (r->ndirty == r->adirty) {
					r->adirty = r->adirty ? r->adirty * 2 : 256;
					r->dirty =
					        xrealloc(r->dirty, r->adirty * sizeof(*r->dirty));
				}
				r->dirty[r->ndirty++] = k;
				k->dirty = 1;
			}
		}
		remember_id(r, k, ev->event_id);
		struct rule_ctx ctx = ctx_for(e, r, k);

		if (r->kind->on_event && r->kind->on_event(&ctx, ev, &f) == RULE_FIRE)
			fire(e, r, k, &f, ev->ts_ms);
	}
	e->stats.late += late; /* events, however many rules left them out */
	e->stats.ungrouped += ungrouped;
	e->stats.capped += capped;
	advance(e, e->max_ts - e->lateness_ms);
}

int engine_reads_raw(const struct engine *e)
{
	for (size_t n = 0; n < e->nrules; n++)
		if (e->rules[n].kind->reads_raw && e->rules[n].kind->reads_raw(e->rules[n].config))
			return 1;
	return 0;
}

void engine_event(struct engine *e, const struct event *ev)
{
	e->stats.events++;
	take(e, ev, 0);
}

void engine_revision(struct engine *e, const struct event *ev)
{
	e->stats.revisions++;
	take(e, ev, 1);
}

void engine_flush(struct engine *e, int64_t until_ms)
{
	advance(e, until_ms);
}

void engine_finish(struct engine *e)
{
	if (e->max_ts == INT64_MIN)
		return;
	for (size_t n = 0; n < e->nrules; n++) {
		struct rule_rt *r = &e->rules[n];

		if (r->kind->on_close == NULL)
			continue;
		for (size_t i = 0; i < r->ndirty; i++) {
			close_until(e, r, r->dirty[i], r->dirty[i]->bucket + 1);
			r->dirty[i]->dirty = 0;
		}
		r->ndirty = 0;
	}
	resolve_due(e, e->max_ts);
}

/* ---- persistence ---- */

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
	const struct hist *hi = hist_of(e, k, 0);
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
			key_sleep(e, r, k);
		at = k->state;
	} else {
		at = key_state(e, r, k);
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
		quiet_push(r, k); /* in restore order: sorted by the next sweep */
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
	k = key_get(e, r, key);
	if (r->reshaped) {
		/* Its incidents are kept (an open one resolves, a resolved one is
		 * watched); its state starts over, as a new key's. */
		r->reset_kept++;
		mark_changed(k);
	} else {
		k->bucket = (int32_t)h.bucket;
	}
	if (h.last_id || h.has_open) {
		struct hist *hi = hist_of(e, k, 1);

		hi->last_resolved = h.last_resolved;
		hi->last_id = h.last_id;
		hi->last_reopens = h.last_reopens;
		hi->verified = h.verified;
		hi->last_opened = h.last_opened;
		if (!h.has_open && h.last_id && !h.verified)
			watch_add(e, r, k, hi);
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
		hist_of(e, k, 1)->open = inc;
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
	const char *eq = memchr(p, '=', (size_t)(e - p));

	for (const char *const *s = r->kind->shape; eq && s && *s; s++) {
		size_t n = strcspn(*s, "=");

		if ((*s)[n] == '=' && n == (size_t)(eq - p) && memcmp(*s, p, n) == 0)
			return strlen(*s + n + 1) == (size_t)(e - eq - 1) &&
			       memcmp(*s + n + 1, eq + 1, (size_t)(e - eq - 1)) == 0;
	}
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
