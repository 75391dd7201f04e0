"""
A stand-in for Cloudflare's v4 API, which cannot be reached here: the endpoints outpost uses, with
state kept in memory, answering in Cloudflare's envelope ``{success, errors, messages, result,
result_info}`` and failing as Cloudflare does.

- Tunnels (remotely managed ``cfd_tunnel``), their configuration (a version that goes up on every
  PUT), token and connections; deleting a tunnel with live connections fails (code 1022), and a
  deleted tunnel stays listed with ``deleted_at`` set.
- DNS records of one zone with page/per_page pagination (at most 100 a page); a CNAME beside any
  record of that name is refused with 81053, an identical record with 81057.
- Access applications and reusable policies; a second application for a domain gets 409.
- Rulesets: the zone entrypoint of a phase (404 until created), its rules by id.
- ``/user/tokens/verify`` and ``/accounts/{id}/tokens/verify``; any other token gets 403, code
  10000 "Authentication error", on every endpoint.

Tests change state behind outpost's back through the ``CloudflareAPI`` object (``records``,
``policies``, ...), make listings repeat a page (``repeat_pages``), or run a hook between a read
and the next write of a tunnel configuration (``on_config_read``). ``requests`` logs every call.
"""

import base64
import copy
import datetime
import http.server
import json
import os
import re
import threading
import urllib.parse
import uuid

MAX_PER_PAGE = 100
TUNNEL_DOMAIN = "cfargotunnel.com"


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id():
    return uuid.uuid4().hex


class Failure(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_found(what, code=1001):
    return Failure(404, code, f"{what} not found")


class CloudflareAPI:
    """The state of one account with one zone, and the HTTP server that answers for it."""

    def __init__(self, api_token, account_id=None, zone_id=None, zone_name="outpost.test"):
        self.api_token = api_token
        self.account_id = account_id or new_id()
        self.zone_id = zone_id or new_id()
        self.zone_name = zone_name
        self.lock = threading.RLock()
        self.server = None
        self.reset()

    def reset(self):
        """Forget everything: an empty account and zone."""
        with self.lock:
            self.tunnels, self.configs, self.secrets = {}, {}, {}
            self.records, self.apps, self.policies, self.rulesets = {}, {}, {}, {}
            self.requests = []
            self.repeat_pages = False
            self.on_config_read = None
            self.before_request = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, port=0):
        handler = type("Handler", (Handler,), {"api": self})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # -- helpers for tests ----------------------------------------------------------------------

    def add_record(self, name, type_, content, proxied=False, ttl=1, **extra):
        record = self._record({"name": name, "type": type_, "content": content, "ttl": ttl})
        record.update(proxied=proxied, **extra)
        self.records[record["id"]] = record
        return record

    def connect(self, tunnel_id):
        """A connector comes up for the tunnel, as cloudflared on the client would."""
        tunnel = self.tunnels[tunnel_id]
        tunnel["connections"] = [
            {
                "id": str(uuid.uuid4()),
                "client_id": str(uuid.uuid4()),
                "client_version": "2025.8.1",
                "colo_name": "ams01",
                "is_pending_reconnect": False,
                "opened_at": now(),
                "origin_ip": "127.0.0.1",
                "uuid": str(uuid.uuid4()),
            }
        ]
        tunnel.update(status="healthy", conns_active_at=now())

    def entrypoint(self, phase):
        return next((r for r in self.rulesets.values() if r["phase"] == phase), None)

    def calls(self, method=None, path_prefix=""):
        return [
            r
            for r in self.requests
            if (method is None or r["method"] == method) and r["path"].startswith(path_prefix)
        ]

    # -- routing --------------------------------------------------------------------------------

    def handle(self, method, path, query, body):
        if self.before_request:
            self.before_request(self, method, path, body)
        routes = (
            (r"/user/tokens/verify", self.verify_token),
            (r"/accounts/(?P<account>[^/]+)/tokens/verify", self.verify_token),
            (r"/accounts/(?P<account>[^/]+)/cfd_tunnel", self.tunnels_root),
            (r"/accounts/(?P<account>[^/]+)/cfd_tunnel/(?P<tunnel>[^/]+)", self.tunnel_item),
            (
                r"/accounts/(?P<account>[^/]+)/cfd_tunnel/(?P<tunnel>[^/]+)/configurations",
                self.tunnel_config,
            ),
            (r"/accounts/(?P<account>[^/]+)/cfd_tunnel/(?P<tunnel>[^/]+)/token", self.token),
            (
                r"/accounts/(?P<account>[^/]+)/cfd_tunnel/(?P<tunnel>[^/]+)/connections",
                self.connections,
            ),
            (r"/zones/(?P<zone>[^/]+)/dns_records", self.records_root),
            (r"/zones/(?P<zone>[^/]+)/dns_records/(?P<record>[^/]+)", self.record_item),
            (r"/accounts/(?P<account>[^/]+)/access/apps", self.apps_root),
            (r"/accounts/(?P<account>[^/]+)/access/apps/(?P<app>[^/]+)", self.app_item),
            (r"/accounts/(?P<account>[^/]+)/access/policies", self.policies_root),
            (
                r"/accounts/(?P<account>[^/]+)/access/policies/(?P<policy>[^/]+)",
                self.policy_item,
            ),
            (
                r"/zones/(?P<zone>[^/]+)/rulesets/phases/(?P<phase>[^/]+)/entrypoint",
                self.entrypoint_item,
            ),
            (r"/zones/(?P<zone>[^/]+)/rulesets/(?P<ruleset>[^/]+)/rules", self.rules_root),
            (
                r"/zones/(?P<zone>[^/]+)/rulesets/(?P<ruleset>[^/]+)/rules/(?P<rule>[^/]+)",
                self.rule_item,
            ),
        )
        for pattern, route in routes:
            match = re.fullmatch(pattern, path)
            if match:
                params = match.groupdict()
                self._check_scope(params)
                return route(method, params, query, body)
        raise Failure(404, 7000, "No route for that URI")

    def _check_scope(self, params):
        if params.get("account", self.account_id) != self.account_id:
            raise Failure(403, 9109, "Unauthorized to access requested resource")
        if params.get("zone", self.zone_id) != self.zone_id:
            raise Failure(404, 1001, "Invalid zone identifier")

    def _page(self, items, query):
        """One page of a listing, as Cloudflare's page/per_page pagination gives it."""
        per_page = min(int(query.get("per_page", 100)), MAX_PER_PAGE)
        page = max(int(query.get("page", 1)), 1)
        if self.repeat_pages:
            page = 1
        total_pages = max((len(items) + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page : page * per_page]
        info = {
            "page": page,
            "per_page": per_page,
            "count": len(chunk),
            "total_count": len(items),
            "total_pages": total_pages,
        }
        return copy.deepcopy(chunk), info

    @staticmethod
    def _method(method, allowed):
        if method not in allowed:
            raise Failure(405, 10405, f"Method {method} not allowed")

    # -- tokens ---------------------------------------------------------------------------------

    def verify_token(self, method, params, query, body):
        self._method(method, ("GET",))
        return {"id": "ed17574386854bf78a67040be0a770b0", "status": "active"}, None

    # -- tunnels --------------------------------------------------------------------------------

    def tunnels_root(self, method, params, query, body):
        self._method(method, ("GET", "POST"))
        if method == "POST":
            return self._create_tunnel(body), None
        tunnels = sorted(self.tunnels.values(), key=lambda t: t["created_at"])
        if "name" in query:
            tunnels = [t for t in tunnels if t["name"] == query["name"]]
        if query.get("is_deleted") == "false":
            tunnels = [t for t in tunnels if not t["deleted_at"]]
        return self._page(tunnels, query)

    def _create_tunnel(self, body):
        name = body.get("name")
        if not name:
            raise Failure(400, 1003, "Missing tunnel name")
        if any(t["name"] == name and not t["deleted_at"] for t in self.tunnels.values()):
            raise Failure(409, 1013, "You already have a tunnel with this name")
        tunnel_id = str(uuid.uuid4())
        self.secrets[tunnel_id] = base64.b64encode(os.urandom(32)).decode()
        self.tunnels[tunnel_id] = {
            "id": tunnel_id,
            "account_tag": self.account_id,
            "name": name,
            "config_src": body.get("config_src", "local"),
            "remote_config": body.get("config_src") == "cloudflare",
            "created_at": now(),
            "deleted_at": None,
            "conns_active_at": None,
            "conns_inactive_at": now(),
            "connections": [],
            "metadata": {},
            "status": "inactive",
            "tun_type": "cfd_tunnel",
        }
        return copy.deepcopy(self.tunnels[tunnel_id])

    def _tunnel(self, params):
        tunnel = self.tunnels.get(params["tunnel"])
        if tunnel is None or tunnel["deleted_at"]:
            raise not_found("Tunnel", 1002)
        return tunnel

    def tunnel_item(self, method, params, query, body):
        self._method(method, ("GET", "DELETE"))
        tunnel = self._tunnel(params)
        if method == "DELETE":
            if tunnel["connections"]:
                raise Failure(400, 1022, "Cannot delete tunnel because it has active connections")
            tunnel.update(deleted_at=now(), status="inactive")
        return copy.deepcopy(tunnel), None

    def tunnel_config(self, method, params, query, body):
        self._method(method, ("GET", "PUT"))
        tunnel = self._tunnel(params)
        stored = self.configs.setdefault(
            tunnel["id"], {"version": 0, "config": {}, "created_at": now()}
        )
        if method == "PUT":
            config = body.get("config")
            if not isinstance(config, dict):
                raise Failure(400, 1056, "Bad configuration: config is required")
            stored.update(version=stored["version"] + 1, config=config, created_at=now())
        answer = {
            "account_id": self.account_id,
            "tunnel_id": tunnel["id"],
            "version": stored["version"],
            "config": copy.deepcopy(stored["config"]),
            "source": "cloudflare",
            "created_at": stored["created_at"],
        }
        if method == "GET" and self.on_config_read:
            hook, self.on_config_read = self.on_config_read, None
            hook(self, tunnel["id"])
        return answer, None

    def put_config(self, tunnel_id, config):
        """Someone else writes the tunnel's configuration (the dashboard, another master)."""
        stored = self.configs[tunnel_id]
        stored.update(version=stored["version"] + 1, config=config, created_at=now())

    def token(self, method, params, query, body):
        self._method(method, ("GET",))
        tunnel = self._tunnel(params)
        fields = {"a": self.account_id, "t": tunnel["id"], "s": self.secrets[tunnel["id"]]}
        return base64.b64encode(json.dumps(fields).encode()).decode(), None

    def connections(self, method, params, query, body):
        self._method(method, ("GET", "DELETE"))
        tunnel = self._tunnel(params)
        if method == "DELETE":
            tunnel.update(connections=[], status="inactive", conns_inactive_at=now())
            return None, None
        return [
            {
                "id": tunnel["id"],
                "conns": copy.deepcopy(tunnel["connections"]),
                "arch": "windows_amd64",
                "version": "2025.8.1",
            }
        ], None

    # -- DNS ------------------------------------------------------------------------------------

    def records_root(self, method, params, query, body):
        self._method(method, ("GET", "POST"))
        if method == "POST":
            record = self._record(body)
            self._refuse_conflicts(record)
            self.records[record["id"]] = record
            return copy.deepcopy(record), None
        records = list(self.records.values())
        if "type" in query:
            records = [r for r in records if r["type"] == query["type"]]
        for key in ("name", "name.exact"):
            if key in query:
                records = [r for r in records if r["name"] == query[key].lower()]
        return self._page(records, query)

    def _record(self, body, record_id=None):
        for field in ("name", "type", "content"):
            if not body.get(field):
                raise Failure(400, 9005 if field == "content" else 9000, f"DNS {field} is invalid")
        name = body["name"].lower().rstrip(".")
        if name != self.zone_name and not name.endswith("." + self.zone_name):
            name = f"{name}.{self.zone_name}"
        stamp = now()
        return {
            "id": record_id or new_id(),
            "name": name,
            "type": body["type"],
            "content": body["content"],
            "proxied": bool(body.get("proxied", False)),
            "proxiable": True,
            "ttl": body.get("ttl", 1),
            "comment": body.get("comment") or "",
            "tags": body.get("tags", []),
            "data": {},
            "settings": {},
            "meta": {},
            "created_on": stamp,
            "modified_on": stamp,
        }

    def _refuse_conflicts(self, record):
        for other in self.records.values():
            if other["id"] == record["id"] or other["name"] != record["name"]:
                continue
            if "CNAME" in (record["type"], other["type"]):
                raise Failure(
                    400, 81053, "An A, AAAA, or CNAME record with that host already exists."
                )
            if (other["type"], other["content"]) == (record["type"], record["content"]):
                raise Failure(400, 81057, "Record already exists.")

    def record_item(self, method, params, query, body):
        self._method(method, ("GET", "PUT", "PATCH", "DELETE"))
        current = self.records.get(params["record"])
        if current is None:
            raise not_found("Record", 81044)
        if method == "DELETE":
            del self.records[current["id"]]
            return {"id": current["id"]}, None
        if method in ("PUT", "PATCH"):
            fields = dict(current, **body) if method == "PATCH" else body
            record = self._record(fields, record_id=current["id"])
            record["created_on"] = current["created_on"]
            self._refuse_conflicts(record)
            self.records[current["id"]] = record
        return copy.deepcopy(self.records[current["id"]]), None

    # -- Access ---------------------------------------------------------------------------------

    def apps_root(self, method, params, query, body):
        self._method(method, ("GET", "POST"))
        if method == "POST":
            if any(a["domain"] == body.get("domain") for a in self.apps.values()):
                raise Failure(409, 12130, "access.api.error.conflict: application already exists")
            app = self._app(body, new_id())
            self.apps[app["id"]] = app
            return self._app_view(app), None
        apps = sorted(self.apps.values(), key=lambda a: a["created_at"])
        if "domain" in query:
            apps = [a for a in apps if a["domain"] == query["domain"]]
        page, info = self._page(apps, query)
        return [self._app_view(a) for a in page], info

    def _app(self, body, app_id, created_at=None):
        if body.get("type") != "self_hosted" or not body.get("domain"):
            raise Failure(400, 12000, "access.api.error.invalid_request: type and domain")
        policies = []
        for index, link in enumerate(body.get("policies", [])):
            policy_id = link["id"] if isinstance(link, dict) else link
            if policy_id not in self.policies:
                raise Failure(400, 12000, f"access.api.error.invalid_request: policy {policy_id}")
            policies.append({"id": policy_id, "precedence": link.get("precedence", index + 1)})
        stamp = now()
        return {
            "id": app_id,
            "aud": new_id() + new_id(),
            "uid": app_id,
            "type": "self_hosted",
            "name": body.get("name") or body["domain"],
            "domain": body["domain"],
            "self_hosted_domains": [body["domain"]],
            "destinations": [{"type": "public", "uri": body["domain"]}],
            "session_duration": body.get("session_duration", "24h"),
            "app_launcher_visible": body.get("app_launcher_visible", True),
            "auto_redirect_to_identity": body.get("auto_redirect_to_identity", False),
            "allowed_idps": body.get("allowed_idps", []),
            "enable_binding_cookie": False,
            "http_only_cookie_attribute": True,
            "options_preflight_bypass": False,
            "policies": policies,
            "tags": [],
            "created_at": created_at or stamp,
            "updated_at": stamp,
        }

    def _app_view(self, app):
        """Applications embed their policies in full, as Cloudflare answers."""
        view = copy.deepcopy(app)
        view["policies"] = [
            dict(self._policy_view(self.policies[link["id"]]), precedence=link["precedence"])
            for link in app["policies"]
            if link["id"] in self.policies
        ]
        return view

    def app_item(self, method, params, query, body):
        self._method(method, ("GET", "PUT", "DELETE"))
        app = self.apps.get(params["app"])
        if app is None:
            raise not_found("Application", 12404)
        if method == "DELETE":
            del self.apps[app["id"]]
            return {"id": app["id"]}, None
        if method == "PUT":
            updated = self._app(body, app["id"], app["created_at"])
            updated["aud"] = app["aud"]
            self.apps[app["id"]] = app = updated
        return self._app_view(app), None

    def policies_root(self, method, params, query, body):
        self._method(method, ("GET", "POST"))
        if method == "POST":
            policy = self._policy(body, new_id())
            self.policies[policy["id"]] = policy
            return self._policy_view(policy), None
        policies = sorted(self.policies.values(), key=lambda p: p["created_at"])
        page, info = self._page(policies, query)
        return [self._policy_view(p) for p in page], info

    @staticmethod
    def _policy(body, policy_id, created_at=None):
        if not body.get("name") or body.get("decision") not in ("allow", "deny", "bypass"):
            raise Failure(400, 12000, "access.api.error.invalid_request: name and decision")
        if not body.get("include"):
            raise Failure(400, 12000, "access.api.error.invalid_request: include is required")
        stamp = now()
        return {
            "id": policy_id,
            "name": body["name"],
            "decision": body["decision"],
            "include": body["include"],
            "require": body.get("require", []),
            "exclude": body.get("exclude", []),
            "session_duration": body.get("session_duration", "24h"),
            "approval_required": body.get("approval_required", False),
            "isolation_required": body.get("isolation_required", False),
            "purpose_justification_required": False,
            "reusable": True,
            "created_at": created_at or stamp,
            "updated_at": stamp,
        }

    def _policy_view(self, policy):
        used = sum(
            1 for a in self.apps.values() for link in a["policies"] if link["id"] == policy["id"]
        )
        return dict(copy.deepcopy(policy), app_count=used)

    def policy_item(self, method, params, query, body):
        self._method(method, ("GET", "PUT", "DELETE"))
        policy = self.policies.get(params["policy"])
        if policy is None:
            raise not_found("Policy", 12404)
        if method == "DELETE":
            if self._policy_view(policy)["app_count"]:
                raise Failure(400, 12000, "access.api.error.policy_in_use")
            del self.policies[policy["id"]]
            return {"id": policy["id"]}, None
        if method == "PUT":
            self.policies[policy["id"]] = policy = self._policy(
                body, policy["id"], policy["created_at"]
            )
        return self._policy_view(policy), None

    # -- rulesets -------------------------------------------------------------------------------

    def entrypoint_item(self, method, params, query, body):
        self._method(method, ("GET", "PUT"))
        ruleset = self.entrypoint(params["phase"])
        if method == "GET":
            if ruleset is None:
                raise Failure(404, 10003, "could not find entrypoint ruleset in the phase")
            return self._ruleset_view(ruleset), None
        if ruleset is None:
            ruleset = {
                "id": new_id(),
                "kind": "zone",
                "phase": params["phase"],
                "name": body.get("name", "default"),
                "description": body.get("description", ""),
                "version": "0",
                "rules": [],
            }
            self.rulesets[ruleset["id"]] = ruleset
        ruleset["rules"] = [self._rule(rule) for rule in body.get("rules", [])]
        self._bump(ruleset)
        return self._ruleset_view(ruleset), None

    @staticmethod
    def _rule(body, rule_id=None):
        if body.get("action") not in (
            "block",
            "challenge",
            "js_challenge",
            "managed_challenge",
            "log",
            "skip",
        ):
            raise Failure(400, 20021, "'action' is not a valid action")
        if not body.get("expression"):
            raise Failure(400, 20021, "'expression' is required")
        rule = {
            "id": rule_id or body.get("id") or new_id(),
            "action": body["action"],
            "expression": body["expression"],
            "description": body.get("description", ""),
            "enabled": body.get("enabled", True),
            "ref": body.get("ref") or new_id(),
            "last_updated": now(),
            "version": "1",
        }
        if "action_parameters" in body:
            rule["action_parameters"] = body["action_parameters"]
        return rule

    @staticmethod
    def _bump(ruleset):
        ruleset["version"] = str(int(ruleset["version"]) + 1)
        ruleset["last_updated"] = now()

    @staticmethod
    def _ruleset_view(ruleset):
        return copy.deepcopy(ruleset)

    def _ruleset(self, params):
        ruleset = self.rulesets.get(params["ruleset"])
        if ruleset is None:
            raise not_found("Ruleset", 10003)
        return ruleset

    def rules_root(self, method, params, query, body):
        self._method(method, ("POST",))
        ruleset = self._ruleset(params)
        ruleset["rules"].append(self._rule(body))
        self._bump(ruleset)
        return self._ruleset_view(ruleset), None

    def rule_item(self, method, params, query, body):
        self._method(method, ("PATCH", "DELETE"))
        ruleset = self._ruleset(params)
        index = next((i for i, r in enumerate(ruleset["rules"]) if r["id"] == params["rule"]), None)
        if index is None:
            raise not_found("Rule", 10003)
        if method == "DELETE":
            del ruleset["rules"][index]
        else:
            merged = dict(ruleset["rules"][index], **body)
            ruleset["rules"][index] = self._rule(merged, rule_id=params["rule"])
        self._bump(ruleset)
        return self._ruleset_view(ruleset), None


def drop_nulls(value):
    """Cloudflare's spec types these fields without ``nullable``: an unset one is left out."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def success_status(method, path):
    """Access answers a creation with 201 and a deletion with 202, as its spec says."""
    if "/access/" in path:
        return {"POST": 201, "DELETE": 202}.get(method, 200)
    return 200


class Handler(http.server.BaseHTTPRequestHandler):
    api = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _serve(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, payload = 200, None
        with self.api.lock:
            self.api.requests.append(
                {"method": self.command, "path": url.path, "query": query, "body": raw.decode()}
            )
            try:
                if self.headers.get("Authorization") != f"Bearer {self.api.api_token}":
                    raise Failure(403, 10000, "Authentication error")
                body = json.loads(raw) if raw else {}
                result, info = self.api.handle(self.command, url.path, query, body)
                status = success_status(self.command, url.path)
                payload = {
                    "success": True,
                    "errors": [],
                    "messages": [],
                    "result": drop_nulls(result),
                }
                if info is not None:
                    payload["result_info"] = info
            except Failure as failure:
                status = failure.status
                payload = {
                    "success": False,
                    "errors": [{"code": failure.code, "message": failure.message}],
                    "messages": [],
                    "result": None,
                }
            except (ValueError, KeyError, TypeError) as err:
                status = 400
                payload = {
                    "success": False,
                    "errors": [{"code": 6003, "message": f"Invalid request: {err}"}],
                    "messages": [],
                    "result": None,
                }
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve
