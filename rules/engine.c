/*
 * engine.c: rules over events in event time, firings into incidents
 * (see engine.h).
 *
 * Each rule keeps a hash map from group key to that key's state. Bucketed
 * rules see a key's bucket close when the key's next event falls in a later
 * bucket, or when the watermark passes it; only keys with events in their
 * open bucket (the dirty list) are visited then, so an hour boundary costs
 * the keys that were active, not all of them.
 *
 * What it saves to the rules' file and restores from it is in
 * engine_state.c; the structures both share are in engine_int.h.
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

#include "engine_int.h"

#define MAX_REPLAY  48            /* empty buckets replayed for a key that was quiet longer */
#define SILENT_DAYS 31            /* days of them replayed for a kind that judges silence */
#define NIDS        3             /* example event ids given with a firing */
#define ID_MAX      255           /* the schema allows event ids of up to 200 characters */
#define RECENT_TEXT (RECENT * 32) /* bytes of id text kept: a ring too */
#define RECENT      16384         /* matching events remembered per rule, for examples */

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

struct keyent *engine_key_get(struct engine *e, struct rule_rt *r, const char *key)
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
struct hist *engine_hist_of(struct engine *e, struct keyent *k, int create)
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
	return k->open ? engine_hist_of(e, k, 0)->open : NULL;
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

void engine_watch_add(struct engine *e, struct rule_rt *r, struct keyent *k, const struct hist *h)
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
		struct hist *h = engine_hist_of(e, w.k, 0);

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
		verify(e, due[i].r, due[i].k, engine_hist_of(e, due[i].k, 0));
	free(due);
}

/* ---- sleeping keys: full states in a pool ---- */

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
void *engine_key_state(struct engine *e, struct rule_rt *r, struct keyent *k)
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

void engine_key_sleep(struct engine *e, struct rule_rt *r, struct keyent *k)
{
	uint32_t i = k->awake - 1;

	e->stats.awake--;
	memcpy(k->state, block_at(r, i), r->kind->idle_size);
	pool_put(r, i);
	k->awake = 0;
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
		r->shape = engine_shape_text(r);
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
	struct keyent *rk = engine_key_get(e, r, token);
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
	h = engine_hist_of(e, k, 1);
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
	return (struct rule_ctx){
	        .config = r->config,
	        .state = engine_key_state(e, r, k),
	        .shared = r->shared,
	        .key = KEY(r, k),
	        .incident_open = k->open,
	        .fired_ms = k->open ? engine_hist_of(e, k, 0)->open->last_fire_ms : 0,
	        .opened_ms = k->open ? engine_hist_of(e, k, 0)->open->opened_ms : 0};
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
			struct incident *inc = engine_hist_of(e, k, 0)->open;

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
		struct keyent *k = engine_key_get(e, r, inc->key);
		struct hist *h = engine_hist_of(e, k, 1);

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
		engine_watch_add(e, r, k, h);
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
void engine_quiet_push(struct rule_rt *r, struct keyent *k)
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
		engine_key_sleep(e, r, k);
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
			h = k->history ? engine_hist_of(e, k, 0) : NULL;
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
					engine_quiet_push(r, k);
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
