/*
 * registry.c: the connectors, looked up by name (OpenSMTPD's table habit).
 * connector_variants() lists the same kinds, in the same order, for the
 * configuration loader: a receiver's "kind" picks its key table.
 */
#include <stddef.h>
#include <string.h>

#include <voca/connector.h>

extern const struct connector connector_console;
extern const struct connector connector_webhook;
extern const struct connector connector_slack;
extern const struct connector connector_teams;
extern const struct connector connector_jira;
extern const struct connector connector_servicenow;

const struct connector *const connectors[] = {
        &connector_console,
        &connector_webhook,
        &connector_slack,
        &connector_teams,
        &connector_jira,
        &connector_servicenow,
        NULL,
};

const struct conf_variant *connector_variants(void)
{
	static struct conf_variant v[sizeof(connectors) / sizeof(connectors[0])];

	if (v[0].name == NULL)
		for (size_t i = 0; connectors[i]; i++)
			v[i] = (struct conf_variant){connectors[i]->kind, connectors[i]->keys,
			                             sizeof(struct receiver)};
	return v;
}

const struct connector *connector_find(const char *kind)
{
	for (size_t i = 0; connectors[i]; i++)
		if (strcmp(connectors[i]->kind, kind) == 0)
			return connectors[i];
	return NULL;
}
