/*
 * registry.c: the rule kinds, looked up by name (OpenSMTPD's table habit).
 * rule_variants() lists the same kinds, in the same order, for the
 * configuration loader: an item's "kind" picks its key table.
 */
#include <stddef.h>

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
