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

void xalloc_install_cjson(void)
{
	cJSON_Hooks hooks = {.malloc_fn = xmalloc, .free_fn = free};

	cJSON_InitHooks(&hooks);
}
