"""
A stand-in for HashiCorp Vault, which cannot be installed here, speaking Vault's HTTP API to the
real ``hvac`` client for what outpost uses:

- ``sys/mounts``: list, enable (``kv`` with ``options.version`` 1 or 2) and disable engines;
- KV version 1 (``<mount>/<path>``) and version 2 (``<mount>/data|metadata|delete|undelete|
  destroy/<path>``, ``<mount>/config``): read, write, list, versions, metadata, soft delete;
- AppRole login at any mount (``auth/<mount>/login``), and the token endpoints ``lookup-self``,
  ``renew-self`` and ``revoke-self``; tokens have real TTLs, in wall-clock seconds, that run out,
  and a ``max_ttl`` renewal cannot pass;
- ACL policies as Vault writes them (path globs with ``*`` and ``+``, capabilities);
- errors as Vault answers them: ``{"errors": [...]}`` with 400, 403 (``permission denied``),
  404 (``{"errors": []}``, or a deleted KV v2 version's metadata), 405 and 503 while sealed.

It runs in a thread of the test process (``VaultStandin(...).start()``) or on its own
(``python tests/standins/vault.py --port 8200``). Tests steer it from Python: ``stop()`` and
``start()`` again on the same port play an outage, ``seal()`` a sealed Vault, ``expire_tokens()``
a token that runs out behind the client's back. ``requests`` records what the client asked
(method, path and status, never a body), so a test can count logins, renewals and reads.
"""

import argparse
import contextlib
import http.server
import json
import secrets
import socket
import threading
import time
import urllib.parse
import uuid

ROOT_POLICY = "root"
KV2_DEFAULT_MAX_VERSIONS = 0  # Vault's default: keep 10 versions; 0 in the config means that
KEEP_VERSIONS = 10


def _now_rfc3339():
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        + f".{int(time.time() * 1e6) % 1000000:06d}Z"
    )


class VaultResponse(Exception):
    """An answer other than 200 with a body: raised inside a handler, sent as Vault sends it."""

    def __init__(self, status, errors=None, body=None):
        super().__init__(status)
        self.status = status
        self.body = body if body is not None else {"errors": list(errors or [])}


def permission_denied():
    return VaultResponse(403, ["1 error occurred:\n\t* permission denied\n\n"])


def not_found():
    return VaultResponse(404, [])


class Token:
    def __init__(self, policies, ttl, max_ttl, renewable=True, meta=None, display_name="token"):
        self.id = "hvs." + secrets.token_urlsafe(24)
        self.accessor = secrets.token_urlsafe(18)
        self.policies = sorted(set(policies))
        self.creation_time = time.time()
        self.creation_ttl = ttl
        self.max_ttl = max_ttl
        self.renewable = renewable and ttl > 0
        self.meta = meta or {}
        self.display_name = display_name
        self.expires = self.creation_time + ttl if ttl else None

    def ttl(self):
        if self.expires is None:
            return 0
        return max(0, int(round(self.expires - time.time())))

    def alive(self):
        return self.expires is None or time.time() < self.expires

    def lookup(self):
        return {
            "accessor": self.accessor,
            "creation_time": int(self.creation_time),
            "creation_ttl": self.creation_ttl,
            "display_name": self.display_name,
            "entity_id": "",
            "expire_time": (
                None
                if self.expires is None
                else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expires))
            ),
            "explicit_max_ttl": 0,
            "id": self.id,
            "issue_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.creation_time)),
            "meta": self.meta,
            "num_uses": 0,
            "orphan": True,
            "path": "auth/token/create" if not self.meta else "auth/approle/login",
            "policies": self.policies,
            "renewable": self.renewable,
            "ttl": self.ttl(),
            "type": "service",
        }

    def auth(self, warnings=None):
        body = {
            "auth": {
                "client_token": self.id,
                "accessor": self.accessor,
                "policies": self.policies,
                "token_policies": self.policies,
                "metadata": self.meta,
                "lease_duration": self.ttl(),
                "renewable": self.renewable,
                "entity_id": "",
                "token_type": "service",
                "orphan": True,
                "mfa_requirement": None,
                "num_uses": 0,
            },
            "data": None,
            "lease_duration": 0,
            "lease_id": "",
            "renewable": False,
            "request_id": str(uuid.uuid4()),
            "warnings": warnings,
            "wrap_info": None,
        }
        return body


class Role:
    def __init__(self, name, policies, token_ttl, token_max_ttl):
        self.name = name
        self.role_id = str(uuid.uuid4())
        self.secret_ids = {}
        self.policies = list(policies)
        self.token_ttl = token_ttl
        self.token_max_ttl = token_max_ttl


class VaultState:
    """Everything the stand-in holds: mounts and their data, auth methods, tokens, policies."""

    def __init__(self):
        self.lock = threading.RLock()
        self.sealed = False
        self.mounts = {}
        self.approle_mounts = {}
        self.tokens = {}
        self.policies = {}
        root = Token([ROOT_POLICY], ttl=0, max_ttl=0, renewable=False, display_name="root")
        self.root_token = root.id
        self.tokens[root.id] = root
        self.mount_kv("secret", version=2)

    # -- engines ----------------------------------------------------------------------------

    def mount_kv(self, path, version=2):
        path = path.strip("/")
        with self.lock:
            if path in self.mounts:
                raise VaultResponse(400, [f"path is already in use at {path}/"])
            self.mounts[path] = {
                "type": "kv",
                "version": int(version),
                "accessor": f"kv_{secrets.token_hex(4)}",
                "uuid": str(uuid.uuid4()),
                "data": {},
                "max_versions": KV2_DEFAULT_MAX_VERSIONS,
                "cas_required": False,
            }

    def find_mount(self, api_path):
        """The longest mount that ``api_path`` (no leading slash) lies under, and the rest."""
        under = [m for m in self.mounts if api_path == m or api_path.startswith(m + "/")]
        best = max(under, key=len, default=None)
        if best is None:
            return None, api_path
        return best, api_path[len(best) + 1 :]

    # -- auth -------------------------------------------------------------------------------

    def enable_approle(self, mount="approle"):
        with self.lock:
            self.approle_mounts.setdefault(mount.strip("/"), {})

    def add_role(self, name, policies, mount="approle", token_ttl=3600, token_max_ttl=86400):
        self.enable_approle(mount)
        role = Role(name, policies, token_ttl, token_max_ttl)
        secret_id = str(uuid.uuid4())
        role.secret_ids[secret_id] = True
        with self.lock:
            self.approle_mounts[mount.strip("/")][name] = role
        return role, secret_id

    def login_approle(self, mount, role_id, secret_id):
        roles = self.approle_mounts.get(mount)
        if roles is None:
            raise permission_denied()
        for role in roles.values():
            if role.role_id == role_id:
                if not role.secret_ids.get(secret_id):
                    raise VaultResponse(400, ["invalid role or secret ID"])
                token = Token(
                    role.policies,
                    role.token_ttl,
                    role.token_max_ttl,
                    meta={"role_name": role.name},
                    display_name=f"approle-{role.name}",
                )
                self.tokens[token.id] = token
                return token
        raise VaultResponse(400, ["invalid role or secret ID"])

    def token_for(self, header):
        token = self.tokens.get(header or "")
        if token is None or not token.alive():
            raise permission_denied()
        return token

    def expire_tokens(self):
        """Every token but root runs out now, as if its TTL had passed."""
        with self.lock:
            for token in self.tokens.values():
                if token.expires is not None:
                    token.expires = time.time() - 1

    # -- policies ---------------------------------------------------------------------------

    def allowed(self, token, path, capability):
        if ROOT_POLICY in token.policies:
            return True
        for name in token.policies:
            for pattern, capabilities in self.policies.get(name, {}).items():
                if capability in capabilities and _glob_matches(pattern, path):
                    return True
        return False


def _glob_matches(pattern, path):
    """Vault's policy paths: ``+`` is one segment, a trailing ``*`` any rest."""
    parts = pattern.split("/")
    rest = path.split("/")
    for index, part in enumerate(parts):
        if part.endswith("*") and index == len(parts) - 1:
            return (
                "/".join(rest[index:]).startswith(part[:-1]) if len(rest) > index else part == "*"
            )
        if index >= len(rest):
            return False
        if part == "+":
            continue
        if part != rest[index]:
            return False
    return len(rest) == len(parts)


# -- KV ----------------------------------------------------------------------------------------


class KV1:
    def __init__(self, mount):
        self.mount = mount

    def handle(self, method, path, body, query):
        data = self.mount["data"]
        if method == "LIST" or (method == "GET" and query.get("list") == ["true"]):
            return {"data": {"keys": _list_keys(data, path)}}
        if not path:
            raise VaultResponse(405, ["1 error occurred:\n\t* unsupported operation\n\n"])
        if method == "GET":
            if path not in data:
                raise not_found()
            return _lease_body(dict(data[path]))
        if method in ("POST", "PUT"):
            if not isinstance(body, dict) or not body:
                raise VaultResponse(400, ["missing data fields"])
            data[path] = dict(body)
            return None
        if method == "DELETE":
            data.pop(path, None)
            return None
        raise VaultResponse(405, ["1 error occurred:\n\t* unsupported operation\n\n"])


class KV2:
    def __init__(self, mount):
        self.mount = mount

    def handle(self, method, path, body, query):
        if path == "config":
            return self._config(method, body)
        kind, _, rest = path.partition("/")
        handler = {
            "data": self._data,
            "metadata": self._metadata,
            "delete": self._delete_versions,
            "undelete": self._undelete,
            "destroy": self._destroy,
        }.get(kind)
        if handler is None:
            # What Vault says to a KV v2 path written without data/ (e.g. by a KV v1 client).
            raise VaultResponse(
                404 if method == "GET" else 405,
                [] if method == "GET" else ["1 error occurred:\n\t* unsupported path\n\n"],
            )
        return handler(method, rest, body or {}, query)

    def _config(self, method, body):
        if method == "GET":
            return _lease_body(
                {
                    "max_versions": self.mount["max_versions"],
                    "cas_required": self.mount["cas_required"],
                    "delete_version_after": "0s",
                }
            )
        self.mount["max_versions"] = int(body.get("max_versions", self.mount["max_versions"]))
        self.mount["cas_required"] = bool(body.get("cas_required", self.mount["cas_required"]))
        return None

    def _secret(self, path):
        return self.mount["data"].get(path)

    def _data(self, method, path, body, query):
        secret = self._secret(path)
        if method == "GET":
            if secret is None:
                raise not_found()
            number = int(query.get("version", ["0"])[0]) or secret["current_version"]
            version = secret["versions"].get(number)
            if version is None:
                raise not_found()
            metadata = _version_metadata(number, version)
            if version["deletion_time"] or version["destroyed"]:
                raise VaultResponse(404, body={"data": {"data": None, "metadata": metadata}})
            return _lease_body({"data": dict(version["data"]), "metadata": metadata})
        if method in ("POST", "PUT"):
            if "data" not in body or not isinstance(body["data"], dict):
                raise VaultResponse(400, ["no data provided"])
            return _lease_body(self._write(path, secret, body["data"], body.get("options") or {}))
        if method == "DELETE":
            if secret is not None:
                latest = secret["versions"][secret["current_version"]]
                latest["deletion_time"] = latest["deletion_time"] or _now_rfc3339()
            return None
        raise VaultResponse(405, ["1 error occurred:\n\t* unsupported operation\n\n"])

    def _write(self, path, secret, data, options):
        current = secret["current_version"] if secret else 0
        cas = options.get("cas")
        if (cas is not None or self.mount["cas_required"]) and cas != current:
            raise VaultResponse(400, ["check-and-set parameter did not match the current version"])
        if secret is None:
            secret = {
                "versions": {},
                "current_version": 0,
                "oldest_version": 1,
                "created_time": _now_rfc3339(),
                "custom_metadata": None,
                "max_versions": 0,
            }
            self.mount["data"][path] = secret
        number = current + 1
        created = _now_rfc3339()
        secret["versions"][number] = {
            "data": dict(data),
            "created_time": created,
            "deletion_time": "",
            "destroyed": False,
        }
        secret["current_version"] = number
        secret["updated_time"] = created
        keep = secret["max_versions"] or self.mount["max_versions"] or KEEP_VERSIONS
        for old in sorted(secret["versions"])[:-keep]:
            del secret["versions"][old]
        secret["oldest_version"] = min(secret["versions"])
        return _version_metadata(number, secret["versions"][number])

    def _metadata(self, method, path, body, query):
        secret = self._secret(path)
        if method == "LIST" or (method == "GET" and query.get("list") == ["true"]):
            keys = _list_keys(self.mount["data"], path)
            if not keys:
                raise not_found()
            return _lease_body({"keys": keys})
        if method == "GET":
            if secret is None:
                raise not_found()
            return _lease_body(
                {
                    "cas_required": False,
                    "created_time": secret["created_time"],
                    "current_version": secret["current_version"],
                    "custom_metadata": secret["custom_metadata"],
                    "delete_version_after": "0s",
                    "max_versions": secret["max_versions"],
                    "oldest_version": secret["oldest_version"],
                    "updated_time": secret.get("updated_time", secret["created_time"]),
                    "versions": {
                        str(number): {key: value for key, value in version.items() if key != "data"}
                        for number, version in secret["versions"].items()
                    },
                }
            )
        if method in ("POST", "PUT"):
            if secret is None:
                raise not_found()
            if "max_versions" in body:
                secret["max_versions"] = int(body["max_versions"])
            if "custom_metadata" in body:
                secret["custom_metadata"] = body["custom_metadata"]
            return None
        if method == "DELETE":
            self.mount["data"].pop(path, None)
            return None
        raise VaultResponse(405, ["1 error occurred:\n\t* unsupported operation\n\n"])

    def _versions_of(self, path, body):
        secret = self._secret(path)
        if not body.get("versions"):
            raise VaultResponse(400, ["no version number provided"])
        if secret is None:
            return []
        return [secret["versions"][n] for n in body["versions"] if n in secret["versions"]]

    def _delete_versions(self, method, path, body, query):
        for version in self._versions_of(path, body):
            version["deletion_time"] = version["deletion_time"] or _now_rfc3339()

    def _undelete(self, method, path, body, query):
        for version in self._versions_of(path, body):
            version["deletion_time"] = ""

    def _destroy(self, method, path, body, query):
        for version in self._versions_of(path, body):
            version.update(destroyed=True, data={})


def _version_metadata(number, version):
    return {
        "created_time": version["created_time"],
        "custom_metadata": None,
        "deletion_time": version["deletion_time"],
        "destroyed": version["destroyed"],
        "version": number,
    }


def _list_keys(data, folder):
    prefix = folder.strip("/") + "/" if folder.strip("/") else ""
    keys = set()
    for path in data:
        if path.startswith(prefix):
            head, slash, _ = path[len(prefix) :].partition("/")
            keys.add(head + slash)
    if not keys:
        raise not_found()
    return sorted(keys)


def _lease_body(data):
    return {
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": None,
        "auth": None,
    }


# -- HTTP --------------------------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vault-standin"

    def log_message(self, format, *args):  # noqa: A002 - the base class names it so
        pass

    def setup(self):
        super().setup()
        self.server.standin.connections.add(self.connection)

    def finish(self):
        self.server.standin.connections.discard(self.connection)
        super().finish()

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_DELETE(self):
        self._serve("DELETE")

    def do_LIST(self):
        self._serve("LIST")

    def _serve(self, method):
        standin = self.server.standin
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
            status, answer = 200, standin.route(method, url.path, body, url.query, self.headers)
            if answer is None:
                status = 204
        except VaultResponse as err:
            status, answer = err.status, err.body
        except ValueError:
            status, answer = 400, {"errors": ["failed to parse JSON input"]}
        standin.record(method, url.path, status)
        self._send(status, answer)

    def _send(self, status, answer):
        payload = b"" if status == 204 else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Cache-Control", "no-store")
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class VaultStandin:
    """The stand-in's server and state. ``url`` is where hvac reaches it."""

    def __init__(self, host="127.0.0.1", port=0):
        self.state = VaultState()
        self.host = host
        self.port = port
        self.requests = []
        self.connections = set()
        self._server = None
        self._thread = None

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def root_token(self):
        return self.state.root_token

    # -- lifecycle: start, an outage, back again --------------------------------------------

    def start(self):
        server = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        server.standin = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="vault-standin")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self):
        """Nobody answers on the port any more: connections are refused, the state is kept."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None
        # Kept-alive connections would go on being served: a real outage cuts them too.
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.connections.clear()

    def seal(self):
        self.state.sealed = True

    def unseal(self):
        self.state.sealed = False

    def expire_tokens(self):
        self.state.expire_tokens()

    # -- what tests set up ------------------------------------------------------------------

    def mount_kv(self, path, version=2):
        self.state.mount_kv(path, version)

    def add_approle(self, name, policies, mount="approle", token_ttl=3600, token_max_ttl=86400):
        """A role at AppRole mount ``mount``; returns ``(role_id, secret_id)``."""
        role, secret_id = self.state.add_role(name, policies, mount, token_ttl, token_max_ttl)
        return role.role_id, secret_id

    def set_role_ttl(self, name, mount="approle", token_ttl=None, token_max_ttl=None):
        role = self.state.approle_mounts[mount][name]
        if token_ttl is not None:
            role.token_ttl = token_ttl
        if token_max_ttl is not None:
            role.token_max_ttl = token_max_ttl

    def add_policy(self, name, paths):
        """``paths``: {glob: [capabilities]}, as in a Vault policy's ``path`` blocks."""
        self.state.policies[name] = {glob: list(caps) for glob, caps in paths.items()}

    def put(self, mount, path, data):
        """Write a secret straight into the state, as another Vault client would."""
        mount = mount.strip("/")
        with self.state.lock:
            engine = self.state.mounts[mount]
            if engine["version"] == 1:
                engine["data"][path] = dict(data)
            else:
                KV2(engine)._write(path, engine["data"].get(path), data, {})

    def get(self, mount, path):
        """The latest live data at ``mount``/``path``, or None."""
        with self.state.lock:
            engine = self.state.mounts[mount.strip("/")]
            secret = engine["data"].get(path)
            if secret is None or engine["version"] == 1:
                return None if secret is None else dict(secret)
            latest = secret["versions"][secret["current_version"]]
            if latest["deletion_time"] or latest["destroyed"]:
                return None
            return dict(latest["data"])

    def versions(self, mount, path):
        with self.state.lock:
            secret = self.state.mounts[mount.strip("/")]["data"].get(path)
            return sorted(secret["versions"]) if secret else []

    def record(self, method, path, status):
        with self.state.lock:
            self.requests.append((method, path, status))

    def count(self, method, path_suffix):
        with self.state.lock:
            return sum(1 for m, p, _ in self.requests if m == method and p.endswith(path_suffix))

    # -- routing ----------------------------------------------------------------------------

    def route(self, method, path, body, query, headers):
        if not path.startswith("/v1/"):
            raise not_found()
        api_path = path[len("/v1/") :].strip("/")
        query = urllib.parse.parse_qs(query)
        state = self.state
        with state.lock:
            if api_path == "sys/health":
                return self._health()
            if state.sealed:
                raise VaultResponse(503, ["Vault is sealed"])
            if api_path.startswith("auth/") and api_path.endswith("/login"):
                mount = api_path[len("auth/") : -len("/login")]
                return self._login(mount, body)
            token = state.token_for(headers.get("X-Vault-Token"))
            if api_path.startswith("auth/token/"):
                return self._token(method, api_path[len("auth/token/") :], token, body)
            if api_path == "sys/mounts" or api_path.startswith("sys/mounts/"):
                return self._mounts(method, api_path, token, body)
            mount, rest = state.find_mount(api_path)
            if mount is None:
                if not state.allowed(token, api_path, "read"):
                    raise permission_denied()
                raise VaultResponse(
                    404, [f'no handler for route "{api_path}". route entry not found.']
                )
            capability = _capability(method, body, state.mounts[mount], rest)
            if not state.allowed(token, api_path, capability):
                raise permission_denied()
            engine = state.mounts[mount]
            kv = KV1(engine) if engine["version"] == 1 else KV2(engine)
            return kv.handle(method, rest, body, query)

    def _health(self):
        return {
            "initialized": True,
            "sealed": self.state.sealed,
            "standby": False,
            "version": "1.17.2",
            "cluster_name": "vault-standin",
        }

    def _login(self, mount, body):
        if mount not in self.state.approle_mounts:
            raise permission_denied()
        if not body.get("role_id"):
            raise VaultResponse(400, ["missing role_id"])
        token = self.state.login_approle(mount, body.get("role_id"), body.get("secret_id"))
        return token.auth()

    def _token(self, method, action, token, body):
        if action == "lookup-self" and method == "GET":
            return _lease_body(token.lookup())
        if action == "renew-self" and method in ("POST", "PUT"):
            return self._renew(token, body)
        if action == "revoke-self" and method in ("POST", "PUT"):
            self.state.tokens.pop(token.id, None)
            return None
        raise VaultResponse(405, ["1 error occurred:\n\t* unsupported operation\n\n"])

    def _renew(self, token, body):
        if not token.renewable:
            raise VaultResponse(400, ["lease is not renewable"])
        wanted = _seconds(body.get("increment")) or token.creation_ttl
        limit = token.creation_time + token.max_ttl - time.time() if token.max_ttl else wanted
        warnings = None
        if wanted > limit:
            wanted = max(0, int(limit))
            warnings = [
                f'TTL of "{body.get("increment") or token.creation_ttl}s" exceeded the '
                f'effective max_ttl of "{wanted}s"; TTL value is capped accordingly'
            ]
        token.expires = time.time() + wanted
        return token.auth(warnings)

    def _mounts(self, method, api_path, token, body):
        if not self.state.allowed(token, api_path, "read" if method == "GET" else "update"):
            raise permission_denied()
        if api_path == "sys/mounts" and method == "GET":
            listed = {
                f"{path}/": _describe_mount(engine) for path, engine in self.state.mounts.items()
            }
            listed["sys/"] = {"type": "system", "options": None, "description": "system endpoints"}
            return dict(_lease_body(listed), **listed)
        target = api_path[len("sys/mounts/") :]
        if method in ("POST", "PUT"):
            if body.get("type") not in ("kv", "kv-v2"):
                raise VaultResponse(400, [f"plugin not found in the catalog: {body.get('type')}"])
            version = (
                2 if body["type"] == "kv-v2" else (body.get("options") or {}).get("version", 1)
            )
            self.state.mount_kv(target, version)
            return None
        if method == "DELETE":
            self.state.mounts.pop(target.strip("/"), None)
            return None
        raise VaultResponse(405, ["1 error occurred:\n\t* unsupported operation\n\n"])


def _describe_mount(engine):
    return {
        "accessor": engine["accessor"],
        "config": {"default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0},
        "description": "",
        "external_entropy_access": False,
        "local": False,
        "options": {"version": str(engine["version"])},
        "plugin_version": "",
        "running_plugin_version": "v0.18.0+builtin",
        "seal_wrap": False,
        "type": "kv",
        "uuid": engine["uuid"],
    }


def _capability(method, body, engine, rest):
    if method == "LIST" or (method == "GET" and rest.startswith("metadata/") and not rest[9:]):
        return "list"
    if method == "GET":
        return "read"
    if method == "DELETE":
        return "delete"
    if engine["version"] == 1:
        return "update" if rest in engine["data"] else "create"
    _, _, path = rest.partition("/")
    return "update" if path in engine["data"] else "create"


def _seconds(value):
    if value in (None, "", 0):
        return 0
    if isinstance(value, (int, float)):
        return int(value)
    units = {"s": 1, "m": 60, "h": 3600}
    if value[-1] in units:
        return int(float(value[:-1]) * units[value[-1]])
    return int(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--port", type=int, default=8200)
    args = parser.parse_args()
    standin = VaultStandin(port=args.port).start()
    print(f"vault stand-in on {standin.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        standin.stop()


if __name__ == "__main__":
    main()
