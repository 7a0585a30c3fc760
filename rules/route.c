/*
 * route.c: the routing map (see route.h).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <voca/route.h>

#define OFFO(m) offsetof(struct owner, m)
#define OFFR(m) offsetof(struct route, m)

static const struct conf_key owner_keys[] = {
        CONF_KEY("name", CONF_STR, OFFO(name), NULL, 0, 0, NULL, "unique name, used by routes"),
        CONF_KEY("slack_mentions", CONF_STRLIST, OFFO(slack_mentions), NULL, 0, 0, NULL,
                 "Slack user ids (U...) or user-group ids (S...) to mention"),
        CONF_KEY("teams_mentions", CONF_STRLIST, OFFO(teams_mentions), NULL, 0, 0, NULL,
                 "Teams mentions as 'id|Display Name' (Entra object id or UPN)"),
        CONF_KEY("jira_project", CONF_STR, OFFO(jira_project), NULL, 0, 0, NULL,
                 "Jira project key for this owner's tickets (else the receiver's)"),
        CONF_KEY("jira_components", CONF_STRLIST, OFFO(jira_components), NULL, 0, 0, NULL,
                 "Jira components (else the receiver's)"),
        CONF_KEY("servicenow_group", CONF_STR, OFFO(servicenow_group), NULL, 0, 0, NULL,
                 "ServiceNow assignment_group (sys_id or name)"),
        CONF_KEY("servicenow_category", CONF_STR, OFFO(servicenow_category), NULL, 0, 0, NULL,
                 "ServiceNow incident category"),
        CONF_KEY("email", CONF_STR, OFFO(email), NULL, 0, 0, NULL,
                 "the team's address (for the e-mail digest; nothing reads it yet)"),
        CONF_END,
};

static const struct conf_key route_keys[] = {
        CONF_KEY("matchers", CONF_STRLIST, OFFR(matchers), NULL, 0, 0, NULL,
                 "'field == value' or 'field != value', all must hold; none matches all"),
        CONF_KEY("owner", CONF_STR, OFFR(owner), NULL, 0, 0, NULL, "an owner's name"),
        CONF_KEY("receivers", CONF_STRLIST, OFFR(receivers), NULL, 0, 0, NULL, "receivers' names"),
        CONF_KEY("continue", CONF_BOOL, OFFR(cont), "false", 0, 0, NULL,
                 "keep matching the routes after this one"),
        CONF_END,
};

const struct conf_variant *owner_variants(void)
{
	static const struct conf_variant v[] = {
	        {"*", owner_keys, sizeof(struct owner)},
	        {NULL, NULL, 0},
	};
	return v;
}

const struct conf_variant *route_variants(void)
{
	static const struct conf_variant v[] = {
	        {"*", route_keys, sizeof(struct route)},
	        {NULL, NULL, 0},
	};
	return v;
}

int route_check(struct route *r, const struct conf_items *owners,
                const struct conf_items *receivers, char *err, size_t errlen)
{
	r->owner_ix = -1;
	if (r->owner) {
		for (size_t i = 0; i < owners->n; i++)
			if (strcmp(((struct owner *)owners->v[i].data)->name, r->owner) == 0)
				r->owner_ix = (int)i;
		if (r->owner_ix < 0) {
			snprintf(err, errlen, "owner: no owner is named '%s'", r->owner);
			return -1;
		}
	}
	if (r->receivers.n == 0 || r->receivers.n > ROUTE_MAX_RECEIVERS) {
		snprintf(err, errlen, "receivers: needs 1 to %d receivers", ROUTE_MAX_RECEIVERS);
		return -1;
	}
	r->nrcv = 0;
	for (size_t i = 0; i < r->receivers.n; i++) {
		int found = -1;

		for (size_t j = 0; j < receivers->n; j++)
			if (strcmp(((struct receiver *)receivers->v[j].data)->name,
			           r->receivers.v[i]) == 0)
				found = (int)j;
		if (found < 0) {
			snprintf(err, errlen, "receivers: no receiver is named '%s'",
			         r->receivers.v[i]);
			return -1;
		}
		r->rcv_ix[r->nrcv++] = found;
	}
	return matchers_compile(&r->matchers, r->m, &r->nm, err, errlen);
}

size_t route_walk(const struct conf_items *routes, route_field_fn field, void *arg,
                  struct route_target *out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < routes->n; i++) {
		const struct route *r = routes->v[i].data;

		if (!matchers_hold(r->m, r->nm, field, arg))
			continue;
		for (int j = 0; j < r->nrcv; j++) {
			size_t k = 0;

			while (k < n && out[k].receiver != r->rcv_ix[j])
				k++;
			if (k == n && n < max)
				out[n++] = (struct route_target){r->rcv_ix[j], r->owner_ix};
		}
		if (!r->cont)
			break;
	}
	return n;
}
