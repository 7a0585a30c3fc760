/*
 * registry.c: the rule kinds, looked up by name (OpenSMTPD's table habit).
 * rule_variants() lists the same kinds, in the same order, for the
 * configuration loader: an item's "kind" picks its key table.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <voca/rule.h>

extern const struct rule_kind rule_threshold;
extern const struct rule_kind rule_spike;
extern const struct rule_kind rule_rate_shift;
extern const struct rule_kind rule_flatline;
extern const struct rule_kind rule_new_topic;

const struct rule_kind *const rule_kinds[] = {
        &rule_threshold, &rule_spike, &rule_rate_shift, &rule_flatline, &rule_new_topic, NULL,
};

const struct conf_variant *rule_variants(void)
{
	/* Built on first use: another file's struct members are not constants in C. */
	static struct conf_variant v[sizeof(rule_kinds) / sizeof(rule_kinds[0])];

	if (v[0].name == NULL)
		for (size_t i = 0; rule_kinds[i]; i++)
			v[i] = (struct conf_variant){rule_kinds[i]->name, rule_kinds[i]->keys,
			                             rule_kinds[i]->config_size};
	return v;
}

cJSON *rule_why_window(cJSON *why, int64_t start_ms, int64_t end_ms)
{
	cJSON *o = cJSON_AddObjectToObject(why, "window");
	char t[48];

	rfc3339_format(start_ms, t, sizeof(t));
	cJSON_AddStringToObject(o, "start", t);
	rfc3339_format(end_ms, t, sizeof(t));
	cJSON_AddStringToObject(o, "end", t);
	return o;
}

void rule_why_guard(cJSON *why, const char *name, const char *fmt, ...)
{
	cJSON *g = cJSON_GetObjectItemCaseSensitive(why, "guards");
	char text[96];
	va_list ap;

	if (g == NULL)
		g = cJSON_AddObjectToObject(why, "guards");
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	cJSON_AddStringToObject(g, name, text);
}
