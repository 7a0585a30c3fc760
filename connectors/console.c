/*
 * console.c: prints what would be sent, for the demo and dry runs.
 *
 * The agent writes a CONSOLE request's body to its standard output instead
 * of sending it; the delivery then counts as done.
 */
#include <stddef.h>

#include <voca/connector.h>
#include <voca/render.h>

static const struct conf_key keys[] = {
        RECEIVER_COMMON_KEYS("10s", "0s"),
        CONF_END,
};

static int check(struct receiver *r, char *err, size_t errlen)
{
	(void)r;
	(void)err;
	(void)errlen;
	return 0;
}

static enum render_result render(const struct delivery *d, struct http_req *req, struct verdict *v)
{
	(void)v;
	req->method = "CONSOLE";
	buf_addf(&req->body, "---- %s: delivery %lld, %s, to %s%s\n", d->rcv->name,
	         (long long)d->id, action_name(d->action), d->owner ? "owner " : "(no owner)",
	         d->owner ? d->owner->name : "");
	if (d->action == ACTION_ALERT)
		buf_addf(&req->body, "NOT DELIVERED to %s: %s\n",
		         pack_str(d->pack, "delivery_failure.receiver", "?"),
		         pack_str(d->pack, "delivery_failure.reason", ""));
	render_text(d->pack, &req->body, NULL);
	return RENDER_REQUEST;
}

static void classify(struct delivery *d, const struct http_resp *resp, struct verdict *v)
{
	(void)d;
	if (!verdict_http(resp, v))
		verdict_set(v, VERDICT_DONE, 0, "printed");
}

const struct connector connector_console = {
        .kind = "console",
        .keys = keys,
        .check = check,
        .render = render,
        .classify = classify,
};
