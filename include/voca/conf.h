/*
 * conf.h: load a YAML file into a C struct through a declarative key table
 * (Fluent Bit's config map idea: one row per key with its type, offset,
 * default, range and documentation).
 *
 * Every problem is reported as "FILE:LINE: KEY: what is wrong", and unknown
 * keys are errors (with a "did you mean" when one is close), so a typo never
 * silently turns into a default. Secrets are only accepted as ${env:NAME} or
 * ${file:PATH}; what they resolve to is never printed.
 */
#ifndef VOCA_CONF_H
#define VOCA_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum conf_type {
	CONF_STR,      /* char *                                      */
	CONF_INT,      /* int64_t, within [min, max]                  */
	CONF_BOOL,     /* int, true or false                          */
	CONF_ENUM,     /* int, the index of the value in choices      */
	CONF_STRLIST,  /* struct conf_list; a scalar is a list of one */
	CONF_SECRET,   /* struct secret                               */
	CONF_DURATION, /* int64_t milliseconds: "5ms", "30s", "1h", "7d", "2w" */
	CONF_SIZE,     /* int64_t bytes: "512", "64KiB", "1MiB", "1GiB" */
	CONF_DOUBLE,   /* double, within [min, max] */
	CONF_LIST,     /* struct conf_items: mappings, each a variant picked by its "kind" */
};

struct conf_list {
	char **v;
	size_t n;
};

/* One shape a CONF_LIST item can take, selected by the item's "kind". */
struct conf_variant {
	const char *name;            /* the value of "kind" that selects it */
	const struct conf_key *keys; /* paths relative to the item: "window" */
	size_t size;                 /* of the struct the keys fill */
};

struct conf_item {
	int variant; /* index into the key's variants */
	int line;    /* 1-based line where the item starts, for later messages */
	void *data;  /* the variant's struct */
};

struct conf_items {
	struct conf_item *v;
	size_t n;
};

struct secret {
	char *value; /* resolved; never print or log it */
	char *ref;   /* "${env:NAME}" as written: safe to show */
};

struct conf_key {
	const char *path; /* "ingest.rcvhwm" */
	enum conf_type type;
	size_t offset;              /* into the destination struct */
	const char *def;            /* default as YAML text; NULL: none (empty) */
	int64_t min, max;           /* CONF_INT, CONF_DURATION, CONF_SIZE */
	const char *const *choices; /* CONF_ENUM: NULL-terminated */
	const char *doc;            /* one line for `voca check` and the reference */
	/* CONF_LIST: the variants, NULL-terminated by name (a function: they may be built) */
	const struct conf_variant *(*variants)(void);
	/* CONF_STR (optional): checks a value the file gives as it is read, so that
	 * its error names the key's line. Returns 0, or -1 with err. */
	int (*check)(const char *value, char *err, size_t errlen);
};

/* A row of a key table; CONF_END closes the table. */
#define CONF_KEY(path_, type_, off_, def_, min_, max_, choices_, doc_)                             \
	{                                                                                          \
		.path = (path_), .type = (type_), .offset = (off_), .def = (def_), .min = (min_),  \
		.max = (max_), .choices = (choices_), .doc = (doc_), .variants = NULL              \
	}
#define CONF_END                                                                                   \
	{                                                                                          \
		.path = NULL                                                                       \
	}

/*
 * Loads file (or, when text is not NULL, the YAML in text, named file in
 * messages) into dst according to keys, a table ended by a row with a NULL
 * path. dst (its keys' fields) is first zeroed and filled with the defaults. Returns 0, or -1 with
 * a one-line message in err; on failure dst holds nothing to free.
 */
int conf_load(const char *file, const char *text, const struct conf_key *keys, void *dst, char *err,
              size_t errlen);

/* Fills dst with the defaults only. Cannot fail for a well-formed table. */
void conf_defaults(const struct conf_key *keys, void *dst);

/* Frees what conf_load or conf_defaults allocated in dst. */
void conf_free(const struct conf_key *keys, void *dst);

/*
 * Sets the CONF_STR key path of dst to a copy of value if it is unset (a
 * key whose table default is NULL, not in the file): a default the file
 * gives elsewhere (the top-level time_zone for a rule's). Returns 1 if it
 * set it, 0 if the key was set or keys has no such string key.
 */
int conf_inherit(const struct conf_key *keys, void *dst, const char *path, const char *value);

/* Prints "path = value" for every key; secrets show their reference only. */
void conf_print(const struct conf_key *keys, const void *dst, FILE *out);

/* Parsers shared with the CLI. Return 0, or -1 if s is not one. */
int conf_parse_duration(const char *s, int64_t *ms);
int conf_parse_size(const char *s, int64_t *bytes);

#endif
