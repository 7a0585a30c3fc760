"""Fake Jira, ServiceNow, Slack and Teams servers that enforce CONTRACTS.md.

Each fake is a real HTTP/1.1 server on loopback (http.server, one thread per
connection) that checks what the real service checks (auth, body shapes,
ADF vs string per API version, required headers, limits) and answers the way
the real one answers (status codes, bodies, paging, search lag, 429 with
Retry-After). Tests inspect `requests` and the fake's state; knobs inject
failures: `fail(path_regex, status, body, headers, times)` answers the next
`times` matching requests with that response, `hang(path_regex, seconds)`
sleeps before answering, `search_lag` hides new Jira issues from search.

Run as a program for `make demo`: it starts the fakes on the given ports
and prints each request it accepts in readable form.
"""
import base64
import email.parser
import email.policy
import http.server
import json
import re
import secrets
import sys
import threading
import time
import urllib.parse


class Fake:
    name = "fake"

    def __init__(self, port=0, verbose=False):
        self.lock = threading.RLock()
        self.requests = []   # (method, path, headers dict, body bytes)
        self.failures = []   # [regex, status, body, headers, remaining]
        self.hangs = []      # [regex, seconds]
        self.verbose = verbose
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else 40 ms per answer (delayed ACK)

            def log_message(self, *a):
                pass

            def handle_one(self, method):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                fake.serve(self, method, body)

            def do_GET(self):
                self.handle_one("GET")

            def do_POST(self):
                self.handle_one("POST")

            def do_PUT(self):
                self.handle_one("PUT")

            def do_PATCH(self):
                self.handle_one("PATCH")

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    # -- knobs --
    def fail(self, path_regex, status, body=b"", headers=None, times=1):
        with self.lock:
            self.failures.append([re.compile(path_regex), status,
                                  body.encode() if isinstance(body, str) else body,
                                  headers or {}, times])

    def hang(self, path_regex, seconds):
        with self.lock:
            self.hangs.append([re.compile(path_regex), seconds])

    def calls(self, method=None, path_regex=None):
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r[0] == method)
                    and (path_regex is None or re.search(path_regex, r[1]))]

    # -- plumbing --
    def serve(self, h, method, body):
        path = h.path
        with self.lock:
            self.requests.append((method, path, dict(h.headers.items()), body))
            hang = next((s for rx, s in self.hangs if rx.search(path)), 0)
            scripted = None
            for f in self.failures:
                if f[4] > 0 and f[0].search(path):
                    f[4] -= 1
                    scripted = f
                    break
        if hang:
            time.sleep(hang)
        if scripted:
            return self.reply(h, scripted[1], scripted[2], scripted[3])
        try:
            status, payload, headers = self.handle(method, path, h.headers, body)
        except Exception as e:  # a bug in the fake must show, not hang the client
            status, payload, headers = 500, f"fake error: {e!r}".encode(), {}
        if self.verbose and status < 400:
            self.show(method, path, body)
        self.reply(h, status, payload, headers)

    def reply(self, h, status, payload, headers):
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
            headers = {"Content-Type": "application/json", **headers}
        elif isinstance(payload, str):
            payload = payload.encode()
        try:
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a test killed it): nothing to answer

    def show(self, method, path, body):
        pass


def basic_user(headers):
    a = headers.get("Authorization", "")
    if not a.startswith("Basic "):
        return None
    try:
        return base64.b64decode(a[6:]).decode()
    except Exception:
        return None


def multipart(headers, body):
    """[(name, filename, content_type, bytes)] of a multipart/form-data body."""
    ct = headers.get("Content-Type", "")
    if not ct.startswith("multipart/form-data"):
        return None
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ct.encode() + b"\r\n\r\n" + body)
    parts = []
    for p in msg.iter_parts():
        parts.append((p.get_param("name", header="content-disposition"),
                      p.get_filename(), p.get_content_type(), p.get_payload(decode=True)))
    return parts


# ---------------------------------------------------------------- Jira ----

JIRA_STATUSES = {"To Do": "new", "In Progress": "indeterminate", "Done": "done"}
JIRA_TRANSITIONS = {  # from status: [(id, name, to)]
    "To Do": [("11", "Start", "In Progress"), ("31", "Done", "Done")],
    "In Progress": [("31", "Done", "Done")],
    "Done": [("41", "Reopen", "To Do")],
}


def adf_problems(node, path="doc"):
    """What is wrong with an ADF document, per the rules CONTRACTS.md lists."""
    out = []
    if path == "doc" and (node.get("type") != "doc" or node.get("version") != 1
                          or not isinstance(node.get("content"), list)):
        return ["root must be {type: doc, version: 1, content: [...]}"]
    for i, c in enumerate(node.get("content", []) or []):
        p = f"{path}.content[{i}]"
        if not isinstance(c, dict) or "type" not in c:
            out.append(f"{p}: not a node")
            continue
        if c["type"] == "text":
            if not isinstance(c.get("text"), str) or len(c["text"]) < 1:
                out.append(f"{p}: text node with empty text")
            if node.get("type") == "codeBlock" and c.get("marks"):
                out.append(f"{p}: codeBlock text must not have marks")
        if c["type"] == "heading" and not 1 <= c.get("attrs", {}).get("level", 0) <= 6:
            out.append(f"{p}: heading level must be 1-6")
        out += adf_problems(c, p)
    return out


class FakeJira(Fake):
    """Jira Cloud (REST v3, /search/jql) or Data Center (REST v2, /search)."""
    name = "jira"

    def __init__(self, mode="cloud", user="bot@example.com", token="jira-token", **kw):
        super().__init__(**kw)
        self.mode, self.user, self.token = mode, user, token
        self.issues = {}         # key -> dict
        self.counter = 0
        self.search_lag = 0.0    # seconds a new issue stays invisible to search
        self.upload_limit = 1000000
        self.max_comments = 5000

    def auth_ok(self, headers):
        if self.mode == "cloud":
            return basic_user(headers) == f"{self.user}:{self.token}"
        return headers.get("Authorization") == f"Bearer {self.token}"

    def err(self, status, messages=(), errors=None):
        return status, {"errorMessages": list(messages), "errors": errors or {}}, {}

    def handle(self, method, path, headers, body):
        u = urllib.parse.urlsplit(path)
        p = u.path
        if not self.auth_ok(headers):
            return 401, {"errorMessages": ["You are not authenticated."], "errors": {}}, {}
        ver = "3" if self.mode == "cloud" else "2"
        if re.fullmatch(r"/rest/api/[23]/search", p):
            if self.mode == "cloud":
                return self.err(410, ["The requested API has been removed. Please migrate to "
                                      "the /rest/api/3/search/jql API. A full migration "
                                      "guideline is available at https://developer.atlassian"
                                      ".com/changelog/#CHANGE-2046"])
            return self.search(json.loads(body or b"{}"), dc=True)
        if not p.startswith(f"/rest/api/{ver}/"):
            return 404, "", {}
        rest = p[len(f"/rest/api/{ver}/"):]
        if rest == "search/jql" and method == "POST" and self.mode == "cloud":
            return self.search(json.loads(body or b"{}"), dc=False)
        if rest == "attachment/meta" and method == "GET":
            return 200, {"enabled": True, "uploadLimit": self.upload_limit}, {}
        if rest == "issue" and method == "POST":
            return self.create(body)
        m = re.fullmatch(r"issue/([A-Z]+-\d+)(/comment|/attachments|/transitions)?", rest)
        if not m:
            return 404, "", {}
        with self.lock:
            issue = self.issues.get(m.group(1))
        if issue is None:
            return self.err(404, ["Issue does not exist or you do not have permission to see it."])
        what = m.group(2)
        if what == "/comment" and method == "POST":
            return self.comment(issue, body)
        if what == "/attachments" and method == "POST":
            return self.attach(issue, headers, body)
        if what == "/transitions" and method == "GET":
            ts = JIRA_TRANSITIONS[issue["status"]]
            return 200, {"transitions": [
                {"id": i, "name": n, "hasScreen": False,
                 "to": {"name": to, "statusCategory": {"key": JIRA_STATUSES[to]}}}
                for i, n, to in ts]}, {}
        if what == "/transitions" and method == "POST":
            tid = (json.loads(body or b"{}").get("transition") or {}).get("id")
            for i, n, to in JIRA_TRANSITIONS[issue["status"]]:
                if i == tid:
                    with self.lock:
                        issue["status"] = to
                        issue["history"].append(n)
                    return 204, b"", {}
            return self.err(400, [f"Transition id '{tid}' is not valid for this issue."])
        if what is None and method == "GET":
            return 200, self.view(issue, ["status", "labels", "summary"]), {}
        return 405, "", {}

    def text_ok(self, value, field):
        if self.mode == "cloud":
            if not isinstance(value, dict):
                return {field: "Operation value must be an Atlassian Document (see the "
                               "Atlassian Document Format)"}
            probs = adf_problems(value)
            if probs:
                return {field: "Invalid ADF: " + "; ".join(probs[:3])}
        elif not isinstance(value, str):
            return {field: "Operation value must be a string"}
        return None

    def create(self, body):
        try:
            f = json.loads(body)["fields"]
        except Exception:
            return self.err(400, ["Invalid request payload. Refer to the REST API "
                                  "documentation and try again."])
        errors = {}
        for req in ("project", "issuetype", "summary"):
            if req not in f:
                errors[req] = f"Field '{req}' is required"
        known = {"project", "issuetype", "summary", "description", "labels", "components",
                 "priority", "customfield_10050"}
        for k in f:
            if k not in known:
                errors[k] = (f"Field '{k}' cannot be set. It is not on the appropriate "
                             "screen, or unknown.")
        if len(f.get("summary", "")) > 255:
            errors["summary"] = "You must specify a summary of the issue that is less than 255 characters."
        for lab in f.get("labels", []):
            if " " in lab:
                errors["labels"] = f"The label '{lab}' contains spaces which is invalid."
            elif len(lab) > 255:
                errors["labels"] = (f"The label '{lab}' exceeds the maximum length for a "
                                    "single label of 255 characters")
        if "description" in f:
            e = self.text_ok(f["description"], "description")
            if e:
                errors.update(e)
            elif len(json.dumps(f["description"])) > 32767 and self.mode == "cloud":
                return self.err(400, ["CONTENT_LIMIT_EXCEEDED"])
        with self.lock:
            self.counter += 1   # a 400 consumes a number too, as in Jira
            n = self.counter
            if errors:
                return self.err(400, [], errors)
            key = f"{f['project']['key']}-{n}"
            self.issues[key] = {"id": str(10000 + n), "key": key, "fields": f,
                                "status": "To Do", "labels": f.get("labels", []),
                                "comments": [], "attachments": [], "history": [],
                                "created": time.time()}
        return 201, {"id": str(10000 + n), "key": key,
                     "self": f"{self.url}/rest/api/{3 if self.mode == 'cloud' else 2}/issue/{10000 + n}"}, {}

    def comment(self, issue, body):
        try:
            b = json.loads(body)["body"]
        except Exception:
            return self.err(400, ["Invalid request payload."])
        e = self.text_ok(b, "comment")
        if e:
            return self.err(400, [], e)
        with self.lock:
            if len(issue["comments"]) >= self.max_comments:
                return self.err(413, ["The number of comments on this issue exceeds the limit."])
            issue["comments"].append(b)
            cid = str(20000 + len(issue["comments"]))
        return 201, {"id": cid, "body": b, "created": "2026-01-01T00:00:00.000+0000"}, {}

    def attach(self, issue, headers, body):
        tok = headers.get("X-Atlassian-Token")
        if tok != "no-check" and not (self.mode == "dc" and tok == "nocheck"):
            return 403, "XSRF check failed", {"Content-Type": "text/plain"}
        parts = multipart(headers, body)
        if parts is None:
            return self.err(415, ["Content-Type must be multipart/form-data"])
        files = [p for p in parts if p[0] == "file" and p[1]]
        if not files or len(files) != len(parts):
            return self.err(400, ["Parts must be named 'file' and carry a filename"])
        if len(files) > 60:
            return self.err(413, ["Too many files"])
        out = []
        for name, fname, ctype, data in files:
            if len(data) > self.upload_limit:
                return self.err(413, ["The attachment exceeds the maximum size"])
            with self.lock:
                issue["attachments"].append((fname, ctype, data))
                aid = str(30000 + len(issue["attachments"]))
            out.append({"id": aid, "filename": fname, "mimeType": ctype, "size": len(data),
                        "content": f"{self.url}/attachment/content/{aid}"})
        return 200, out, {}

    def view(self, issue, fields):
        f = {}
        if "status" in fields:
            f["status"] = {"name": issue["status"],
                           "statusCategory": {"key": JIRA_STATUSES[issue["status"]]}}
        if "labels" in fields:
            f["labels"] = issue["labels"]
        if "summary" in fields:
            f["summary"] = issue["fields"].get("summary")
        return {"id": issue["id"], "key": issue["key"], "self": "", "fields": f}

    JQL = re.compile(r'^project\s*=\s*"?([A-Z]+)"?\s+AND\s+labels\s*=\s*"([^"]+)"'
                     r'(\s+AND\s+statusCategory\s*!=\s*Done)?'
                     r'(\s+ORDER\s+BY\s+\w+\s+(ASC|DESC))?$', re.I)

    def search(self, q, dc):
        jql = q.get("jql", "")
        if re.search(r"\bsummary\s*=", jql):
            return self.err(400, ["The operator '=' is not supported by the 'summary' field."])
        m = self.JQL.match(jql.strip())
        if not m:
            if re.fullmatch(r"\s*order\s+by.*", jql, re.I) or not jql.strip():
                return self.err(400, ["Unbounded JQL queries are not allowed here. Please add "
                                      "a search restriction to your query."])
            return self.err(400, [f"Error in the JQL Query: fake cannot parse '{jql}'"])
        proj, label, open_only = m.group(1), m.group(2), bool(m.group(3))
        now = time.time()
        reconcile = set(str(i) for i in q.get("reconcileIssues", []))
        with self.lock:
            hits = [i for i in self.issues.values()
                    if i["key"].startswith(proj + "-") and label in i["labels"]
                    and not (open_only and i["status"] == "Done")
                    and (now - i["created"] >= self.search_lag or i["id"] in reconcile)]
            hits.sort(key=lambda i: -i["created"])
            fields = q.get("fields") or ["id"]
            maxr = int(q.get("maxResults", 50))
            start = int(q.get("startAt", 0)) if dc else int(q.get("nextPageToken") or 0)
            page = [self.view(i, fields) for i in hits[start:start + maxr]]
        if dc:
            return 200, {"expand": "", "startAt": start, "maxResults": maxr,
                         "total": len(hits), "issues": page}, {}
        out = {"isLast": start + maxr >= len(hits), "issues": page}
        if not out["isLast"]:
            out["nextPageToken"] = str(start + maxr)
        return 200, out, {}

    def show(self, method, path, body):
        if method == "POST" and path.endswith("/issue"):
            f = json.loads(body)["fields"]
            print(f"\n[fake jira] created a ticket in {f['project']['key']}: {f['summary']}")
            print(f"            labels {f.get('labels')}, type {f['issuetype']['name']}")
        elif path.endswith("/attachments"):
            print(f"[fake jira] evidence file attached to {path.split('/')[-2]}")
        elif path.endswith("/comment"):
            print(f"[fake jira] comment on {path.split('/')[-2]}")
        elif path.endswith("/transitions") and method == "POST":
            with self.lock:
                st = self.issues[path.split('/')[-2]]["status"]
            print(f"[fake jira] {path.split('/')[-2]} transitioned to {st}")
        sys.stdout.flush()


# ---------------------------------------------------------- ServiceNow ----

class FakeServiceNow(Fake):
    name = "servicenow"

    def __init__(self, user="svc", password="pw", **kw):
        super().__init__(**kw)
        self.user, self.password = user, password
        self.records = []      # dicts, all values strings
        self.journal = []      # (sys_id, element, value)
        self.attachments = []  # (sys_id, file_name, content_type, bytes)
        self.require_close_fields = True
        self.hibernating = False
        self.counter = 10000

    def err(self, status, message, detail):
        return status, {"error": {"message": message, "detail": detail},
                        "status": "failure"}, {}

    def handle(self, method, path, headers, body):
        if basic_user(headers) != f"{self.user}:{self.password}":
            return self.err(401, "User Not Authenticated", "Required to provide Auth information")
        accept = headers.get("Accept", "*/*")
        if "json" not in accept and "*/*" not in accept:
            return self.err(406, "Not Acceptable", "Accept must allow application/json")
        u = urllib.parse.urlsplit(path)
        q = dict(urllib.parse.parse_qsl(u.query))
        m = re.fullmatch(r"/api/now/(v[12]/)?table/(\w+)(/([0-9a-f]{32}))?", u.path)
        if u.path == "/api/now/attachment/file" and method == "POST":
            return self.attach(q, headers, body)
        if not m:
            return self.err(400, "Invalid URI", u.path)
        v1, table, sys_id = m.group(1) == "v1/", m.group(2), m.group(4)
        if method == "GET" and sys_id is None:
            return self.query(q, v1)
        if method == "POST" and sys_id is None:
            if self.hibernating:
                return 200, "<html><body>Your instance is hibernating</body></html>", \
                    {"Content-Type": "text/html"}
            if "json" not in headers.get("Content-Type", ""):
                return self.err(415, "Unsupported Media Type", "Content-Type")
            return self.create(json.loads(body))
        if method in ("PATCH", "PUT") and sys_id:
            return self.update(sys_id, json.loads(body))
        return self.err(405, "Method not allowed", method)

    def create(self, f):
        with self.lock:
            self.counter += 1
            sys_id = secrets.token_hex(16)
            rec = {"sys_id": sys_id, "number": f"INC{self.counter:07d}", "state": "1",
                   "active": "true"}
            for k, v in f.items():
                if k.startswith("sys_") or k in ("number",):
                    continue  # silently ignored, as on a real instance
                if k in ("work_notes", "comments"):
                    self.journal.append((sys_id, k, str(v)))
                    continue
                rec[k] = str(v)
            self.records.append(rec)
            out = dict(rec, work_notes="", comments="")
        return 201, {"result": out}, {"Location": f"{self.url}/api/now/table/incident/{sys_id}"}

    def find(self, sys_id):
        return next((r for r in self.records if r["sys_id"] == sys_id), None)

    def update(self, sys_id, f):
        with self.lock:
            rec = self.find(sys_id)
            if rec is None:
                return self.err(404, "No Record found",
                                "Record doesn't exist or ACL restricts the record retrieval")
            if f.get("state") == "6" and self.require_close_fields and not (
                    f.get("close_code") and f.get("close_notes")):
                return self.err(403, "Data Policy Exception",
                                "The following fields are mandatory: Resolution code, "
                                "Resolution notes")
            for k, v in f.items():
                if k in ("work_notes", "comments"):
                    self.journal.append((sys_id, k, str(v)))
                elif not k.startswith("sys_"):
                    rec[k] = str(v)
            out = dict(rec, work_notes="", comments="")
        return 200, {"result": out}, {}

    def query(self, q, v1):
        terms = [t for t in q.get("sysparm_query", "").split("^") if t]
        order = None
        conds = []
        for t in terms:
            if t.startswith("ORDERBYDESC"):
                order = (t[11:], True)
            elif t.startswith("ORDERBY"):
                order = (t[7:], False)
            else:
                mm = re.fullmatch(r"(\w+)(!=|=|LIKE|STARTSWITH|ENDSWITH)(.*)", t)
                if mm:
                    conds.append(mm.groups())
        known = {"sys_id", "number", "state", "correlation_id", "short_description",
                 "category", "assignment_group", "active", "sys_created_on"}
        with self.lock:
            rows = list(self.records)
        for col, op, val in conds:
            if col not in known:
                continue  # the faithful quirk: an unknown field is ignored
            def ok(r, col=col, op=op, val=val):
                x = r.get(col, "")
                return {"=": x == val, "!=": x != val, "LIKE": val in x,
                        "STARTSWITH": x.startswith(val), "ENDSWITH": x.endswith(val)}[op]
            rows = [r for r in rows if ok(r)]
        if order:
            rows.reverse() if order[1] else None
        off = int(q.get("sysparm_offset", 0))
        lim = int(q.get("sysparm_limit", 10000))
        page = rows[off:off + lim]
        fields = q.get("sysparm_fields")
        if fields:
            page = [{k: r.get(k, "") for k in fields.split(",")} for r in page]
        if not page and v1:
            return self.err(404, "No Record found",
                            "Record doesn't exist or ACL restricts the record retrieval")
        return 200, {"result": page}, {"X-Total-Count": str(len(rows))}

    def attach(self, q, headers, body):
        for req in ("table_name", "table_sys_id", "file_name"):
            if not q.get(req):
                return self.err(400, "Bad request", f"missing {req}")
        if not headers.get("Content-Type"):
            return self.err(400, "Bad request", "Content-Type is mandatory")
        with self.lock:
            if self.find(q["table_sys_id"]) is None:
                return self.err(404, "No Record found", "Record doesn't exist")
            self.attachments.append((q["table_sys_id"], q["file_name"],
                                     headers["Content-Type"], body))
        return 201, {"result": {"sys_id": secrets.token_hex(16), "file_name": q["file_name"],
                                "table_name": q["table_name"],
                                "table_sys_id": q["table_sys_id"],
                                "size_bytes": str(len(body)),
                                "content_type": headers["Content-Type"]}}, {}


# --------------------------------------------------------------- Slack ----

def block_problems(msg):
    out = []
    blocks = msg.get("blocks")
    if blocks is None:
        return out
    if not isinstance(blocks, list) or len(blocks) > 50:
        return ["invalid_blocks: at most 50 blocks"]
    for i, b in enumerate(blocks):
        t = b.get("type")
        if t == "header":
            txt = b.get("text", {})
            if txt.get("type") != "plain_text" or not 1 <= len(txt.get("text", "")) <= 150:
                out.append(f"invalid_blocks: header {i} must be plain_text of 1-150 chars")
        elif t == "section":
            if "text" in b and not 1 <= len(b["text"].get("text", "")) <= 3000:
                out.append(f"invalid_blocks: section {i} text must be 1-3000 chars")
            fields = b.get("fields", [])
            if len(fields) > 10 or any(len(f.get("text", "")) > 2000 for f in fields):
                out.append(f"invalid_blocks: section {i} fields: at most 10 of 2000 chars")
            if "text" not in b and not fields:
                out.append(f"invalid_blocks: section {i} needs text or fields")
        elif t == "context":
            if not 1 <= len(b.get("elements", [])) <= 10:
                out.append(f"invalid_blocks: context {i} needs 1-10 elements")
        elif t not in ("divider", "image", "actions", "rich_text"):
            out.append(f"invalid_blocks: unknown block type {t}")
    return out


class FakeSlack(Fake):
    """Incoming webhooks and the Web API (chat.*, files v2) in one server."""
    name = "slack"

    def __init__(self, token="xoxb-fake-token", channels=("C0ALERTS",), hook="T000/B000/XXXX",
                 **kw):
        super().__init__(**kw)
        self.token, self.channels, self.hook = token, set(channels), hook
        self.messages = []     # dicts: channel, ts, text, blocks, thread_ts, via
        self.uploads = {}      # file_id -> {"length", "bytes", "done"}
        self.files = []        # completed: (file_id, channel, thread_ts, title)
        self.ts = 1767225600

    def next_ts(self):
        with self.lock:
            self.ts += 1
            return f"{self.ts}.{len(self.messages):06d}"

    def handle(self, method, path, headers, body):
        u = urllib.parse.urlsplit(path)
        if u.path.startswith("/services/"):
            return self.webhook(u.path, headers, body)
        if u.path.startswith("/upload/"):
            return self.upload(u.path, body)
        if not u.path.startswith("/api/"):
            return 404, "", {}
        api = u.path[5:]
        ct = headers.get("Content-Type", "")
        warning = None
        if ct.startswith("application/json"):
            if "charset" not in ct:
                warning = "missing_charset"
            try:
                args = json.loads(body)
            except Exception:
                return 200, {"ok": False, "error": "invalid_json"}, {}
            if "token" in args:
                return 200, {"ok": False, "error": "not_authed"}, {}
            tok = headers.get("Authorization", "")
        elif ct.startswith("application/x-www-form-urlencoded"):
            args = dict(urllib.parse.parse_qsl(body.decode()))
            tok = headers.get("Authorization") or ("Bearer " + args.pop("token", ""))
        else:
            return 200, {"ok": False, "error": "invalid_form_data"}, {}
        if tok != f"Bearer {self.token}":
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        fn = {"chat.postMessage": self.post, "chat.update": self.update,
              "files.getUploadURLExternal": self.get_upload_url,
              "files.completeUploadExternal": self.complete}.get(api)
        if api == "files.upload":
            return 200, {"ok": False, "error": "method_deprecated"}, {}
        if fn is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        out = fn(args)
        if warning and out.get("ok"):
            out["warning"] = warning
        return 200, out, {}

    def webhook(self, path, headers, body):
        if path != f"/services/{self.hook}":
            return 404, "no_service", {"Content-Type": "text/plain"}
        if not headers.get("Content-Type", "").startswith("application/json"):
            return 400, "invalid_payload", {"Content-Type": "text/plain"}
        try:
            msg = json.loads(body)
        except Exception:
            return 400, "invalid_payload", {"Content-Type": "text/plain"}
        if not isinstance(msg, dict) or not (msg.get("text") or msg.get("blocks")):
            return 400, "invalid_payload", {"Content-Type": "text/plain"}
        if block_problems(msg):
            return 400, "invalid_blocks", {"Content-Type": "text/plain"}
        with self.lock:
            self.messages.append({"channel": "webhook", "ts": self.next_ts(),
                                  "text": msg.get("text"), "blocks": msg.get("blocks"),
                                  "thread_ts": None, "via": "webhook"})
        return 200, "ok", {"Content-Type": "text/plain"}

    def post(self, a):
        ch = a.get("channel")
        if not ch:
            return {"ok": False, "error": "channel_not_found"}
        if ch not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        if not (a.get("text") or a.get("blocks") or a.get("attachments")):
            return {"ok": False, "error": "no_text"}
        probs = block_problems(a)
        if probs:
            return {"ok": False, "error": "invalid_blocks",
                    "response_metadata": {"messages": probs}}
        th = a.get("thread_ts")
        with self.lock:
            if th and not any(m["ts"] == th and m["channel"] == ch for m in self.messages):
                return {"ok": False, "error": "thread_not_found"}
            ts = self.next_ts()
            self.messages.append({"channel": ch, "ts": ts, "text": a.get("text"),
                                  "blocks": a.get("blocks"), "thread_ts": th, "via": "api"})
        out = {"ok": True, "channel": ch, "ts": ts, "message": {"text": a.get("text")}}
        if len(a.get("text") or "") > 40000:
            out["response_metadata"] = {"warnings": ["message_truncated"]}
        return out

    def update(self, a):
        with self.lock:
            for m in self.messages:
                if m["channel"] == a.get("channel") and m["ts"] == a.get("ts"):
                    m["text"], m["blocks"] = a.get("text"), a.get("blocks")
                    return {"ok": True, "channel": m["channel"], "ts": m["ts"]}
        return {"ok": False, "error": "message_not_found"}

    def get_upload_url(self, a):
        if not a.get("filename") or not str(a.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        fid = "F" + secrets.token_hex(5).upper()
        with self.lock:
            self.uploads[fid] = {"length": int(a["length"]), "bytes": None,
                                 "filename": a["filename"]}
        return {"ok": True, "upload_url": f"{self.url}/upload/v1/{fid}", "file_id": fid}

    def upload(self, path, body):
        fid = path.rsplit("/", 1)[-1]
        with self.lock:
            up = self.uploads.get(fid)
            if up is None:
                return 404, "", {}
            up["bytes"] = body
        return 200, "OK - " + str(len(body)), {"Content-Type": "text/plain"}

    def complete(self, a):
        try:
            files = json.loads(a["files"]) if isinstance(a.get("files"), str) else a.get("files")
            assert isinstance(files, list) and files
        except Exception:
            return {"ok": False, "error": "invalid_arguments"}
        ch = a.get("channel_id")
        if ch and ch[0] not in "CGD":
            return {"ok": False, "error": "invalid_arguments"}
        with self.lock:
            for f in files:
                up = self.uploads.get(f.get("id"))
                if up is None or up["bytes"] is None:
                    return {"ok": False, "error": "file_not_found"}
                if len(up["bytes"]) != up["length"]:
                    return {"ok": False, "error": "file_size_mismatch"}
            for f in files:
                self.files.append((f["id"], ch, a.get("thread_ts"), f.get("title")))
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}

    def show(self, method, path, body):
        if path.endswith("chat.postMessage") or path.startswith("/services/"):
            m = json.loads(body)
            if m.get("thread_ts"):
                print(f"[fake slack] reply in thread {m['thread_ts']}: {m.get('text')}")
                sys.stdout.flush()
                return
            print(f"\n[fake slack] message to {m.get('channel', 'the webhook channel')}:")
            for b in m.get("blocks", []):
                if b["type"] == "header":
                    print("  # " + b["text"]["text"])
                elif b["type"] == "section":
                    if "text" in b:
                        print("  " + b["text"]["text"].replace("\n", "\n  "))
                    for f in b.get("fields", []):
                        print("  | " + f["text"].replace("\n", ": ", 1))
                elif b["type"] == "context":
                    print("  (" + b["elements"][0]["text"] + ")")
        elif path.endswith("completeUploadExternal"):
            print("[fake slack] evidence file shared in the thread")
        sys.stdout.flush()


# --------------------------------------------------------------- Teams ----

class FakeTeams(Fake):
    """A Workflows HTTP trigger: 202 for well-formed JSON; the flow run's fate in `runs`."""
    name = "teams"

    def __init__(self, sig="fakesig", **kw):
        super().__init__(**kw)
        self.sig = sig
        self.runs = []   # {"ok": bool, "error": str|None, "card": dict}

    def path(self):
        return (f"/workflows/abc123/triggers/manual/paths/invoke?api-version=2016-06-01"
                f"&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={self.sig}")

    def handle(self, method, path, headers, body):
        u = urllib.parse.urlsplit(path)
        if u.path == "/_fake/runs":
            return 200, self.runs, {}
        if not re.fullmatch(r"(/powerautomate/automations/direct)?/workflows/\w+/triggers/"
                            r"manual/paths/invoke", u.path):
            return 404, {"error": {"code": "NotFound", "message": "no such workflow"}}, {}
        q = dict(urllib.parse.parse_qsl(u.query))
        if "api-version" not in q:
            return 400, {"error": {"code": "MissingApiVersionParameter",
                                   "message": "The api-version query parameter is required."}}, {}
        if not all(k in q for k in ("sp", "sv", "sig")) or q["sig"] != self.sig:
            return 401, {"error": {"code": "AuthorizationFailed",
                                   "message": "Required parameters for shared access URL are "
                                              "permissions ('sp'), version ('sv'), and "
                                              "signature ('sig')."}}, {}
        try:
            msg = json.loads(body)
        except Exception:
            return 400, {"error": {"code": "InvalidRequestContent",
                                   "message": "The request content is not valid JSON."}}, {}
        with self.lock:
            self.runs.append(self.validate(msg, len(body)))
        return 202, b"", {}

    def validate(self, msg, size):
        def run(err):
            return {"ok": err is None, "error": err, "card": msg}
        if size > 28 * 1024:
            return run("Request Entity too large")
        if "@type" in msg:
            return run("MessageCard is not supported")
        atts = msg.get("attachments")
        if msg.get("type") != "message" or not isinstance(atts, list) or not atts:
            return run("The execution of template action 'Send_each_adaptive_card' failed: the "
                       "result of the evaluation of 'foreach' expression "
                       "'@triggerOutputs()?['body']?['attachments']' is of type 'Null'.")
        for a in atts:
            c = a.get("content") or {}
            if a.get("contentType") != "application/vnd.microsoft.card.adaptive" \
                    or c.get("type") != "AdaptiveCard":
                return run("AdaptiveSerializationException: Property 'type' must be "
                           "'AdaptiveCard'")
            if "version" not in c or not isinstance(c.get("body"), list):
                return run("the card needs a version and a body list")
            if any(x.get("type") == "Action.Submit" for x in c.get("actions", [])):
                return run("Action.Submit is not supported by incoming webhooks")
        return run(None)

    def show(self, method, path, body):
        m = json.loads(body)
        c = m["attachments"][0]["content"]
        print("\n[fake teams] Adaptive Card posted:")
        for b in c["body"]:
            if b["type"] == "TextBlock":
                print("  " + b["text"])
            elif b["type"] == "FactSet":
                for f in b["facts"]:
                    print(f"  | {f['title']}: {f['value']}")
        sys.stdout.flush()


def main(argv):
    """fakes.py jira=PORT slack=PORT teams=PORT servicenow=PORT: serve until killed."""
    kinds = {"jira": FakeJira, "slack": FakeSlack, "teams": FakeTeams,
             "servicenow": FakeServiceNow}
    started = []
    for arg in argv:
        kind, port = arg.split("=")
        started.append(kinds[kind](port=int(port), verbose=True).start())
    print("fakes listening: " + ", ".join(f"{f.name} {f.url}" for f in started))
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
