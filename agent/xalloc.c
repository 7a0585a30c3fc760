/*
 * xalloc.c: allocators that make out-of-memory fatal (see xalloc.h).
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include <voca/log.h>
#include <voca/xalloc.h>

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		fatal("out of memory (%zu bytes)", n);
	return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (p == NULL)
		fatal("out of memory (%zu x %zu bytes)", nmemb, size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		fatal("out of memory (%zu bytes)", n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* ---- the parse arena ---- */

#define ARENA_CHUNK (64 * 1024)

struct chunk {
	struct chunk *next;
	size_t used, size;
	_Alignas(16) unsigned char data[];
};

static _Thread_local struct chunk *arena; /* first chunk is kept between frames */
static _Thread_local int arena_on;

#define ARENA_NEST 4
struct mark {
	struct chunk *c;
	size_t used;
	int on;
};
static _Thread_local struct mark marks[ARENA_NEST];
static _Thread_local int depth;

static struct chunk *chunk_new(size_t size, struct chunk *next)
{
	struct chunk *c = xmalloc(sizeof(*c) + size);

	c->next = next;
	c->used = 0;
	c->size = size;
	return c;
}

static void *arena_alloc(size_t n)
{
	size_t need = (n + 15) & ~(size_t)15;

	if (arena->used + need > arena->size)
		arena = chunk_new(need > ARENA_CHUNK ? need : ARENA_CHUNK, arena);
	arena->used += need;
	return arena->data + arena->used - need;
}

static int arena_owns(const void *p)
{
	for (const struct chunk *c = arena; c; c = c->next)
		if ((const unsigned char *)p >= c->data &&
		    (const unsigned char *)p < c->data + c->size)
			return 1;
	return 0;
}

int xalloc_arena_holds(const void *p)
{
	return arena_on && arena && arena_owns(p);
}

static void *hook_malloc(size_t n)
{
	return arena_on ? arena_alloc(n) : xmalloc(n);
}

static void hook_free(void *p)
{
	if (arena && arena_owns(p))
		return; /* released at xalloc_arena_end() */
	free(p);
}

int xalloc_arena_pause(void)
{
	int was = arena_on;

	arena_on = 0;
	return was;
}

void xalloc_arena_resume(int token)
{
	arena_on = token;
}

void xalloc_arena_begin(void)
{
	if (arena == NULL)
		arena = chunk_new(ARENA_CHUNK, NULL);
	if (depth < ARENA_NEST)
		marks[depth] = (struct mark){arena, arena->used, arena_on};
	depth++;
	arena_on = 1;
}

void xalloc_arena_end(void)
{
	/*
	 * Back to where the matching begin found the arena: a nested parse (a
	 * decoder called from a decoder's callback) releases only its own
	 * allocations. The outermost end keeps the oldest chunk (the usual
	 * frame fits in it) and frees the rest.
	 */
	depth--;
	if (depth >= ARENA_NEST)
		return; /* too deep to have a mark: the outer end releases it */
	while (arena != marks[depth].c) {
		struct chunk *c = arena;

		arena = c->next;
		free(c);
	}
	arena->used = marks[depth].used;
	arena_on = marks[depth].on;
}

void xalloc_arena_release(void)
{
	while (depth == 0 && arena) {
		struct chunk *c = arena;

		arena = c->next;
		free(c);
	}
}

void xalloc_install_cjson(void)
{
	cJSON_Hooks hooks = {.malloc_fn = hook_malloc, .free_fn = hook_free};

	cJSON_InitHooks(&hooks);
}
