/*
 * route.h: who hears of an incident (the routing map).
 *
 * Routes are tried in order; the first whose matchers all hold takes the
 * incident, and the walk stops there unless the route says continue (the
 * Alertmanager convention). A route names an owner team (owners carry their
 * chat mentions and ticket targets, connector.h) and the receivers to
 * deliver to. A route without matchers matches everything: put it last as
 * the default. Matchers are "field == value" or "field != value" on rule,
 * kind, tier, change (opened, updated, resolved, reopened), a group-key
 * field (sku, category, ...) or, failing that, the value most of the
 * incident's example events share (category, region, source, ...).
 */
#ifndef VOCA_ROUTE_H
#define VOCA_ROUTE_H

#include <stddef.h>

#include <voca/conf.h>
#include <voca/connector.h>
#include <voca/suppress.h>

#define ROUTE_MAX_RECEIVERS 8

struct route {
	struct conf_list matchers;
	char *owner;
	struct conf_list receivers;
	int cont; /* "continue": go on matching after this route */
	/* compiled by route_check() */
	struct matcher m[SUPPRESS_MAX_MATCHERS];
	int nm;
	int owner_ix;                    /* into owners, -1 for none */
	int rcv_ix[ROUTE_MAX_RECEIVERS]; /* into receivers */
	int nrcv;
};

const struct conf_variant *owner_variants(void);
const struct conf_variant *route_variants(void);

/*
 * Compiles r's matchers and resolves its owner and receivers by name
 * against the loaded lists (items of owner_variants() and
 * connector_variants()). Returns 0, or -1 with err naming what is unknown.
 */
int route_check(struct route *r, const struct conf_items *owners,
                const struct conf_items *receivers, char *err, size_t errlen);

/* Looks up an incident field by name into out; returns 1 if it has one. */
typedef matcher_field_fn route_field_fn;

/* One receiver an incident goes to, with the owner of the route that sent it there. */
struct route_target {
	int receiver; /* index into receivers */
	int owner;    /* index into owners, -1 for none */
};

/*
 * Walks routes (items of route_variants(), checked) for an incident whose
 * fields field() gives. Fills out with at most max targets, each receiver
 * once (the first route to name it decides its owner). Returns how many.
 */
size_t route_walk(const struct conf_items *routes, route_field_fn field, void *arg,
                  struct route_target *out, size_t max);

#endif
