/*
 * xalloc.h: allocation that never returns NULL.
 *
 * voca treats out-of-memory as fatal (the OpenSMTPD habit): every caller can
 * use the result without a check, and a half-built object never escapes. The
 * daemon commits before it acts, so dying here loses nothing that was
 * acknowledged. xalloc_install_cjson() routes cJSON through the same hooks.
 */
#ifndef VOCA_XALLOC_H
#define VOCA_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Make cJSON allocate through xmalloc/free. Call once at start-up. */
void xalloc_install_cjson(void);

/*
 * Between xalloc_arena_begin() and xalloc_arena_end(), cJSON on this thread
 * allocates from a bump arena and its frees cost nothing; end releases it
 * all at once. For parse trees that live for one frame: a scored event is
 * ~80 small allocations, which malloc and free would otherwise dominate.
 * Everything cJSON allocated inside must be dead by the end. Nestable (a
 * decoder run from a decoder's callback): an end releases only what was
 * allocated since its begin.
 */
void xalloc_arena_begin(void);
void xalloc_arena_end(void);

/*
 * Is p in this thread's arena? A tree whose root is was built wholly there
 * (cJSON allocates nothing while it parses but the tree), so dropping it at
 * xalloc_arena_end() needs no cJSON_Delete walk.
 */
int xalloc_arena_holds(const void *p);

/* Frees the chunk this thread's arena keeps between frames: call it before
 * a thread that decoded exits (the memory is the thread's, and goes with it). */
void xalloc_arena_release(void);

/*
 * Suspends the arena around code that may keep what it builds (a decoder's
 * callback): returns a token for xalloc_arena_resume(). Freeing arena memory
 * is a no-op whether the arena is on or not.
 */
int xalloc_arena_pause(void);
void xalloc_arena_resume(int token);

#endif
