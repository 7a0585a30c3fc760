/*
 * conf.c: the declarative YAML loader (see conf.h).
 *
 * libyaml builds the document (with line marks and aliases resolved); we
 * walk its mappings, turning each dotted path into a table row. Sections are
 * implied by the paths: "ingest" is a section because "ingest.mode" is a key.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include <voca/log.h>
#include <voca/xalloc.h>

#include <voca/conf.h>

struct loader {
	const char *file;
	const struct conf_key *keys;
	void *dst;
	unsigned char *seen; /* one flag per key: set twice is an error */
	char *err;
	size_t errlen;
	yaml_document_t *doc;
	const char *label; /* shown before paths: "rules[2]." inside a list item */
	const char *skip;  /* a key the walk leaves to its caller: "kind" */
};

static int fail(struct loader *l, const yaml_node_t *node, const char *path, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static int fail(struct loader *l, const yaml_node_t *node, const char *path, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (node)
		snprintf(l->err, l->errlen, "%s:%zu: %s%s: %s", l->file, node->start_mark.line + 1,
		         l->label ? l->label : "", path, msg);
	else
		snprintf(l->err, l->errlen, "%s: %s%s: %s", l->file, l->label ? l->label : "", path,
		         msg);
	return -1;
}

static void *field(const struct conf_key *k, void *dst)
{
	return (char *)dst + k->offset;
}

/* ---- scalar parsers ---- */

static int parse_int(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

static int parse_scaled(const char *s, int64_t *out, const char *const *units, const int64_t *scale,
                        int unit_required)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || v < 0)
		return -1;
	if (*end == '\0') {
		if (unit_required && v != 0)
			return -1;
		*out = v;
		return 0;
	}
	for (size_t i = 0; units[i]; i++) {
		if (strcmp(end, units[i]) == 0) {
			if (v > INT64_MAX / scale[i])
				return -1;
			*out = v * scale[i];
			return 0;
		}
	}
	return -1;
}

int conf_parse_duration(const char *s, int64_t *ms)
{
	static const char *const units[] = {"ms", "s", "m", "h", "d", "w", NULL};
	static const int64_t scale[] = {1, 1000, 60000, 3600000, 86400000, 604800000};

	return parse_scaled(s, ms, units, scale, 1);
}

int conf_parse_size(const char *s, int64_t *bytes)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "kB", "MB", "GB", NULL};
	static const int64_t scale[] = {1, 1024, 1048576, 1073741824, 1000, 1000000, 1000000000};

	return parse_scaled(s, bytes, units, scale, 0);
}

static int read_secret_file(const char *path, char **out)
{
	FILE *f = fopen(path, "r");
	char buf[65536];
	size_t n;

	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	*out = xstrndup(buf, n);
	return 0;
}

static int resolve_secret(struct loader *l, const yaml_node_t *node, const char *path,
                          const char *s, struct secret *out)
{
	size_t len = strlen(s);
	char *name;
	const char *v;

	if (len < 8 || s[0] != '$' || s[1] != '{' || s[len - 1] != '}' ||
	    (strncmp(s + 2, "env:", 4) != 0 && strncmp(s + 2, "file:", 5) != 0))
		return fail(l, node, path,
		            "is a secret: give it as ${env:NAME} or ${file:PATH}, not inline");
	if (strncmp(s + 2, "env:", 4) == 0) {
		name = xstrndup(s + 6, len - 7);
		v = getenv(name);
		if (v == NULL || *v == '\0') {
			fail(l, node, path, "environment variable %s is not set", name);
			free(name);
			return -1;
		}
		out->value = xstrdup(v);
	} else {
		name = xstrndup(s + 7, len - 8);
		if (read_secret_file(name, &out->value) < 0) {
			fail(l, node, path, "cannot read secret file %s: %s", name,
			     strerror(errno));
			free(name);
			return -1;
		}
	}
	free(name);
	out->ref = xstrdup(s);
	return 0;
}

static void free_value(const struct conf_key *k, void *dst)
{
	void *p = field(k, dst);

	switch (k->type) {
	case CONF_STR:
		free(*(char **)p);
		*(char **)p = NULL;
		break;
	case CONF_STRLIST: {
		struct conf_list *list = p;

		for (size_t i = 0; i < list->n; i++)
			free(list->v[i]);
		free(list->v);
		list->v = NULL;
		list->n = 0;
		break;
	}
	case CONF_LIST: {
		struct conf_items *items = p;

		for (size_t i = 0; i < items->n; i++) {
			conf_free(k->variants()[items->v[i].variant].keys, items->v[i].data);
			free(items->v[i].data);
		}
		free(items->v);
		items->v = NULL;
		items->n = 0;
		break;
	}
	case CONF_SECRET: {
		struct secret *sec = p;

		if (sec->value) {
			/* volatile: the wipe must not be optimised away. */
			for (volatile char *c = sec->value; *c; c++)
				*c = '\0';
		}
		free(sec->value);
		free(sec->ref);
		sec->value = sec->ref = NULL;
		break;
	}
	default: break;
	}
}

/* Integers, durations and sizes: parsed, range-checked, stored as int64_t. */
static int set_number(struct loader *l, const struct conf_key *k, const yaml_node_t *node,
                      const char *s)
{
	const char *what, *unit, *examples;
	int64_t v;
	int bad;

	if (k->type == CONF_DOUBLE) {
		char *end;
		double d = strtod(s, &end);

		if (end == s || *end || !(d >= (double)k->min && d <= (double)k->max))
			return fail(l, node, k->path,
			            "expected a number from %lld to %lld, got '%s'",
			            (long long)k->min, (long long)k->max, s);
		*(double *)field(k, l->dst) = d;
		return 0;
	}
	switch (k->type) {
	case CONF_DURATION:
		bad = conf_parse_duration(s, &v) < 0;
		what = "a duration", unit = "ms", examples = " (such as 5ms, 30s, 1h, 7d)";
		break;
	case CONF_SIZE:
		bad = conf_parse_size(s, &v) < 0;
		what = "a size", unit = " bytes", examples = " (such as 4096, 64KiB, 1MiB)";
		break;
	default:
		bad = parse_int(s, &v) < 0;
		what = "an integer", unit = "", examples = "";
		break;
	}
	if (bad || v < k->min || v > k->max)
		return fail(l, node, k->path, "expected %s from %lld%s to %lld%s%s, got '%s'", what,
		            (long long)k->min, unit, (long long)k->max, unit, examples, s);
	*(int64_t *)field(k, l->dst) = v;
	return 0;
}

/* Sets one scalar value. node is NULL for defaults. */
static int set_scalar(struct loader *l, const struct conf_key *k, const yaml_node_t *node,
                      const char *s)
{
	void *p = field(k, l->dst);

	switch (k->type) {
	case CONF_STR:
		if (*s == '\0')
			return fail(l, node, k->path, "needs a value");
		if (node && k->check) {
			char why[200];

			if (k->check(s, why, sizeof(why)) < 0)
				return fail(l, node, k->path, "%s", why);
		}
		free(*(char **)p);
		*(char **)p = xstrdup(s);
		return 0;
	case CONF_INT:
	case CONF_DURATION:
	case CONF_SIZE:
	case CONF_DOUBLE: return set_number(l, k, node, s);
	case CONF_LIST: return fail(l, node, k->path, "expected a list of mappings");
	case CONF_BOOL:
		if (strcmp(s, "true") == 0)
			*(int *)p = 1;
		else if (strcmp(s, "false") == 0)
			*(int *)p = 0;
		else
			return fail(l, node, k->path, "expected true or false, got '%s'", s);
		return 0;
	case CONF_ENUM:
		for (int i = 0; k->choices[i]; i++) {
			if (strcmp(s, k->choices[i]) == 0) {
				*(int *)p = i;
				return 0;
			}
		}
		{
			char list[160] = "";

			for (int i = 0; k->choices[i]; i++) {
				strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
				strncat(list, k->choices[i], sizeof(list) - strlen(list) - 1);
			}
			return fail(l, node, k->path, "expected one of %s, got '%s'", list, s);
		}
	case CONF_SECRET: {
		struct secret tmp = {0};

		if (resolve_secret(l, node, k->path, s, &tmp) < 0)
			return -1;
		free_value(k, l->dst);
		*(struct secret *)p = tmp;
		return 0;
	}
	case CONF_STRLIST: {
		struct conf_list *list = p;

		if (*s == '\0')
			return fail(l, node, k->path, "list items need a value");
		list->v = xrealloc(list->v, (list->n + 1) * sizeof(*list->v));
		list->v[list->n++] = xstrdup(s);
		return 0;
	}
	}
	return 0;
}

static int walk(struct loader *l, yaml_node_t *map, const char *prefix);

/* One item of a CONF_LIST: its "kind" picks the variant, whose keys it is walked against. */
static int load_item(struct loader *l, const struct conf_key *k, yaml_node_t *item, size_t index)
{
	struct conf_items *items = field(k, l->dst);
	const struct conf_variant *var = NULL;
	const char *kind = NULL;
	char label[64], list[160] = "";
	struct conf_item it;
	size_t nkeys = 0;
	int rc;

	snprintf(label, sizeof(label), "%s%s[%zu]", l->label ? l->label : "", k->path, index);
	if (item->type != YAML_MAPPING_NODE) {
		snprintf(l->err, l->errlen, "%s:%zu: %s: expected a mapping", l->file,
		         item->start_mark.line + 1, label);
		return -1;
	}
	for (yaml_node_pair_t *p = item->data.mapping.pairs.start; p < item->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *key = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *val = yaml_document_get_node(l->doc, p->value);

		if (key->type == YAML_SCALAR_NODE &&
		    strcmp((const char *)key->data.scalar.value, "kind") == 0 &&
		    val->type == YAML_SCALAR_NODE)
			kind = (const char *)val->data.scalar.value;
	}
	const struct conf_variant *vars = k->variants();

	/* A list of one shape ("*") takes no kind. */
	if (strcmp(vars[0].name, "*") == 0) {
		var = &vars[0];
		goto load;
	}
	for (int i = 0; vars[i].name; i++) {
		strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
		strncat(list, vars[i].name, sizeof(list) - strlen(list) - 1);
		if (kind && strcmp(kind, vars[i].name) == 0)
			var = &vars[i];
	}
	if (var == NULL) {
		snprintf(l->err, l->errlen, "%s:%zu: %s.kind: %s; expected one of %s", l->file,
		         item->start_mark.line + 1, label, kind ? "unknown kind" : "missing", list);
		return -1;
	}
load:
	it.variant = (int)(var - vars);
	it.line = (int)item->start_mark.line + 1;
	it.data = xcalloc(1, var->size);
	for (const struct conf_key *vk = var->keys; vk->path; vk++)
		nkeys++;
	strncat(label, ".", sizeof(label) - strlen(label) - 1);
	struct loader sub = {.file = l->file,
	                     .keys = var->keys,
	                     .dst = it.data,
	                     .err = l->err,
	                     .errlen = l->errlen,
	                     .doc = l->doc,
	                     .label = label,
	                     .skip = var->name[0] == '*' ? NULL : "kind"};

	sub.seen = xcalloc(nkeys ? nkeys : 1, 1);
	conf_defaults(var->keys, it.data);
	rc = walk(&sub, item, "");
	free(sub.seen);
	if (rc < 0) {
		conf_free(var->keys, it.data);
		free(it.data);
		return -1;
	}
	items->v = xrealloc(items->v, (items->n + 1) * sizeof(*items->v));
	items->v[items->n++] = it;
	return 0;
}

static int set_value(struct loader *l, const struct conf_key *k, yaml_node_t *node)
{
	if (k->type == CONF_LIST) {
		if (node->type == YAML_SCALAR_NODE && node->data.scalar.length == 0)
			return 0; /* "rules:" with nothing under it */
		if (node->type != YAML_SEQUENCE_NODE)
			return fail(l, node, k->path, "expected a list of mappings");
		for (yaml_node_item_t *it = node->data.sequence.items.start;
		     it < node->data.sequence.items.top; it++)
			if (load_item(l, k, yaml_document_get_node(l->doc, *it),
			              (size_t)(it - node->data.sequence.items.start)) < 0)
				return -1;
		return 0;
	}
	if (k->type == CONF_STRLIST) {
		free_value(k, l->dst); /* the file's list replaces the default */
		if (node->type == YAML_SCALAR_NODE)
			return set_scalar(l, k, node, (const char *)node->data.scalar.value);
		if (node->type != YAML_SEQUENCE_NODE)
			return fail(l, node, k->path, "expected a list of strings");
		for (yaml_node_item_t *it = node->data.sequence.items.start;
		     it < node->data.sequence.items.top; it++) {
			yaml_node_t *item = yaml_document_get_node(l->doc, *it);

			if (item->type != YAML_SCALAR_NODE)
				return fail(l, item, k->path, "list items must be strings");
			if (set_scalar(l, k, item, (const char *)item->data.scalar.value) < 0)
				return -1;
		}
		return 0;
	}
	if (node->type != YAML_SCALAR_NODE)
		return fail(l, node, k->path, "expected a single value, got a %s",
		            node->type == YAML_MAPPING_NODE ? "mapping" : "list");
	return set_scalar(l, k, node, (const char *)node->data.scalar.value);
}

/* ---- paths ---- */

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;

			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, (lb + 1) * sizeof(size_t));
	}
	return prev[lb];
}

/* Is path a section, that is, a proper prefix of some key followed by '.'? */
static int is_section(const struct conf_key *keys, const char *path)
{
	size_t n = strlen(path);

	for (const struct conf_key *k = keys; k->path; k++)
		if (strncmp(k->path, path, n) == 0 && k->path[n] == '.')
			return 1;
	return 0;
}

static int unknown_key(struct loader *l, const yaml_node_t *node, const char *path)
{
	const char *best = NULL;
	size_t best_d = 3;

	for (const struct conf_key *k = l->keys; k->path; k++) {
		size_t d = edit_distance(path, k->path);

		if (d < best_d) {
			best_d = d;
			best = k->path;
		}
	}
	if (best)
		return fail(l, node, path, "unknown key (did you mean '%s'?)", best);
	return fail(l, node, path, "unknown key");
}

static int walk(struct loader *l, yaml_node_t *map, const char *prefix)
{
	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
	     pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *key = yaml_document_get_node(l->doc, pair->key);
		yaml_node_t *val = yaml_document_get_node(l->doc, pair->value);
		char path[256];
		const struct conf_key *k;

		if (key->type != YAML_SCALAR_NODE)
			return fail(l, key, prefix[0] ? prefix : "(top)", "keys must be strings");
		snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "",
		         (const char *)key->data.scalar.value);
		if (l->skip && strcmp(path, l->skip) == 0)
			continue;
		for (k = l->keys; k->path && strcmp(k->path, path) != 0; k++)
			;
		if (k->path) {
			size_t idx = (size_t)(k - l->keys);

			if (l->seen[idx])
				return fail(l, key, path, "set twice");
			l->seen[idx] = 1;
			if (set_value(l, k, val) < 0)
				return -1;
		} else if (is_section(l->keys, path)) {
			if (val->type == YAML_SCALAR_NODE && val->data.scalar.length == 0 &&
			    val->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
				continue; /* "ingest:" with nothing under it: all defaults */
			if (val->type != YAML_MAPPING_NODE)
				return fail(l, val, path, "expected a section (a mapping of keys)");
			for (yaml_node_pair_t *q = pair + 1; q < map->data.mapping.pairs.top; q++) {
				yaml_node_t *k2 = yaml_document_get_node(l->doc, q->key);

				if (k2->type == YAML_SCALAR_NODE &&
				    strcmp((const char *)k2->data.scalar.value,
				           (const char *)key->data.scalar.value) == 0)
					return fail(l, k2, path, "section appears twice");
			}
			if (walk(l, val, path) < 0)
				return -1;
		} else {
			return unknown_key(l, key, path);
		}
	}
	return 0;
}

static size_t type_size(enum conf_type t)
{
	switch (t) {
	case CONF_STR: return sizeof(char *);
	case CONF_BOOL:
	case CONF_ENUM: return sizeof(int);
	case CONF_STRLIST: return sizeof(struct conf_list);
	case CONF_SECRET: return sizeof(struct secret);
	case CONF_DOUBLE: return sizeof(double);
	case CONF_LIST: return sizeof(struct conf_items);
	default: return sizeof(int64_t);
	}
}

void conf_defaults(const struct conf_key *keys, void *dst)
{
	struct loader l = {.file = "(defaults)", .keys = keys, .dst = dst};
	char err[256];

	l.err = err;
	l.errlen = sizeof(err);
	for (const struct conf_key *k = keys; k->path; k++)
		memset(field(k, dst), 0, type_size(k->type));
	for (const struct conf_key *k = keys; k->path; k++) {
		if (k->def && set_scalar(&l, k, NULL, k->def) < 0)
			fatal("bad built-in default: %s", err);
	}
}

void conf_free(const struct conf_key *keys, void *dst)
{
	for (const struct conf_key *k = keys; k->path; k++)
		free_value(k, dst);
}

int conf_load(const char *file, const char *text, const struct conf_key *keys, void *dst, char *err,
              size_t errlen)
{
	struct loader l = {.file = file, .keys = keys, .dst = dst, .err = err, .errlen = errlen};
	yaml_parser_t parser;
	yaml_document_t doc;
	FILE *f = NULL;
	size_t nkeys = 0;
	int rc = -1;

	conf_defaults(keys, dst);
	if (!yaml_parser_initialize(&parser))
		fatal("out of memory (yaml parser)");
	if (text) {
		yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
	} else {
		f = fopen(file, "rb");
		if (f == NULL) {
			snprintf(err, errlen, "%s: cannot open: %s", file, strerror(errno));
			yaml_parser_delete(&parser);
			conf_free(keys, dst);
			return -1;
		}
		yaml_parser_set_input_file(&parser, f);
	}
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err, errlen, "%s:%zu: YAML syntax error: %s %s", file,
		         parser.problem_mark.line + 1, parser.problem ? parser.problem : "",
		         parser.context ? parser.context : "");
		goto out_parser;
	}
	l.doc = &doc;
	for (const struct conf_key *k = keys; k->path; k++)
		nkeys++;
	l.seen = xcalloc(nkeys, 1);
	yaml_node_t *root = yaml_document_get_root_node(&doc);

	if (root == NULL) {
		rc = 0; /* an empty file: all defaults */
	} else if (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0) {
		rc = 0;
	} else if (root->type != YAML_MAPPING_NODE) {
		snprintf(err, errlen, "%s:%zu: the top level must be a mapping of sections", file,
		         root->start_mark.line + 1);
	} else {
		rc = walk(&l, root, "");
	}
	free(l.seen);
	yaml_document_delete(&doc);
out_parser:
	yaml_parser_delete(&parser);
	if (f)
		fclose(f);
	if (rc < 0)
		conf_free(keys, dst);
	return rc;
}

int conf_inherit(const struct conf_key *keys, void *dst, const char *path, const char *value)
{
	for (const struct conf_key *k = keys; k->path; k++) {
		if (k->type != CONF_STR || strcmp(k->path, path) != 0)
			continue;
		if (*(char **)field(k, dst) != NULL)
			return 0;
		*(char **)field(k, dst) = xstrdup(value);
		return 1;
	}
	return 0;
}

void conf_print(const struct conf_key *keys, const void *dst, FILE *out)
{
	for (const struct conf_key *k = keys; k->path; k++) {
		const void *p = (const char *)dst + k->offset;

		fprintf(out, "  %-28s ", k->path);
		switch (k->type) {
		case CONF_STR:
			fprintf(out, "%s", *(char *const *)p ? *(char *const *)p : "(unset)");
			break;
		case CONF_DURATION: {
			/* In the largest unit it is a whole number of: 90d, not 7776000000ms. */
			static const struct {
				int64_t ms;
				const char *unit;
			} units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
			int64_t v = *(const int64_t *)p;
			size_t u = 0;

			while (u < sizeof(units) / sizeof(units[0]) && (v == 0 || v % units[u].ms))
				u++;
			if (u < sizeof(units) / sizeof(units[0]))
				fprintf(out, "%lld%s", (long long)(v / units[u].ms), units[u].unit);
			else
				fprintf(out, "%lldms", (long long)v);
			break;
		}
		case CONF_INT:
		case CONF_SIZE:
			fprintf(out, "%lld%s", (long long)*(const int64_t *)p,
			        k->type == CONF_SIZE ? " B" : "");
			break;
		case CONF_BOOL: fputs(*(const int *)p ? "true" : "false", out); break;
		case CONF_ENUM: fputs(k->choices[*(const int *)p], out); break;
		case CONF_SECRET: {
			const struct secret *sec = p;

			fputs(sec->ref ? sec->ref : "(unset)", out);
			break;
		}
		case CONF_DOUBLE: fprintf(out, "%g", *(const double *)p); break;
		case CONF_LIST: {
			const struct conf_items *items = p;

			fprintf(out, "%zu", items->n);
			for (size_t i = 0; i < items->n; i++) {
				const struct conf_variant *v = &k->variants()[items->v[i].variant];

				fprintf(out, "\n  %s[%zu]: kind %s (line %d)\n", k->path, i,
				        v->name, items->v[i].line);
				conf_print(v->keys, items->v[i].data, out);
			}
			continue;
		}
		case CONF_STRLIST: {
			const struct conf_list *list = p;

			fputc('[', out);
			for (size_t i = 0; i < list->n; i++)
				fprintf(out, "%s\"%s\"", i ? ", " : "", list->v[i]);
			fputc(']', out);
			break;
		}
		}
		fputc('\n', out);
	}
}
