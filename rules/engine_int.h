/*
 * engine_int.h: the rules engine's insides, shared by its two files:
 * engine.c (events into buckets, firings into incidents) and engine_state.c
 * (what is saved to the rules' file and restored from it). Only those two
 * include it; everyone else has <voca/engine.h>.
 */
#ifndef VOCA_ENGINE_INT_H
#define VOCA_ENGINE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <voca/buf.h>
#include <voca/engine.h>
#include <voca/rule.h>

#define BUDGET_RING 1024 /* the largest hourly notification budget */

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

/* A key's bytes in its slab, for a key text of len bytes with its NUL; 8-aligned. */
static inline size_t key_bytes(const struct rule_rt *r, size_t len)
{
	return (sizeof(struct keyent) + r->inline_size + len + 7) & ~(size_t)7;
}

/* The full state in block i. */
static inline void *block_at(const struct rule_rt *r, uint32_t i)
{
	return r->pool.chunks[i / POOL_CHUNK] + (size_t)(i % POOL_CHUNK) * r->pool.bsize;
}

/* engine_save finds the changed keys by walking the slabs: no list of them to keep. */
static inline void mark_changed(struct keyent *k)
{
	k->changed = 1;
}

/* ---- engine.c's, for restoring ---- */

/* The key's entry in rule r, created if new (zeroed, bucket -1; max_keys aside). */
struct keyent *engine_key_get(struct engine *e, struct rule_rt *r, const char *key);

/*
 * The key's full state, woken if it sleeps: the idle part is copied back and
 * the kind rebuilds the rest (its rings start empty: the key was quiet).
 */
void *engine_key_state(struct engine *e, struct rule_rt *r, struct keyent *k);

/* Puts an awake key of a sleeping kind back to sleep: its idle part only. */
void engine_key_sleep(struct engine *e, struct rule_rt *r, struct keyent *k);

/* The key's history record; created (zeroed) when create is set, else NULL if none. */
struct hist *engine_hist_of(struct engine *e, struct keyent *k, int create);

/* Watches the key's last incident, resolved, until its watch ends (see watch_due). */
void engine_watch_add(struct engine *e, struct rule_rt *r, struct keyent *k, const struct hist *h);

/* Queues k, whose bucket just closed: it may sleep quiet buckets from now. */
void engine_quiet_push(struct rule_rt *r, struct keyent *k);

/* ---- engine_state.c's ---- */

/*
 * What a rule's saved state means: its kind and the settings it is learned
 * under, one "key=value" a line (allocated; the caller frees it).
 */
char *engine_shape_text(const struct rule_rt *r);

#endif
