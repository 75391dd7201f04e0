"""
Secrets for outpost's master side: HashiCorp Vault through ``hvac``, or a local file for the demo.

.. code-block:: python

    import outpost_vault

    client = outpost_vault.client_from_opts(__opts__)  # opts["outpost"]["vault"]; one per process
    client.read_secret("secret", "clients/client-1/hello")  # -> dict
    client.write_secret("secret", "cloudflare/api", {"token": "..."})
    client.delete_secret("secret", "cloudflare/api")
    outpost_vault.resolve(__opts__, {"vault": {"mount": "secret", "path": "cloudflare/api",
                                               "key": "token"}})  # -> str

Master configuration:

.. code-block:: yaml

    outpost:
      vault:
        url: https://vault.example.com:8200
        verify: /etc/pki/tls/certs/vault-ca.pem   # or true (the system's CAs)
        auth:
          method: approle                          # or token
          mount: approle                           # where AppRole is enabled
          role_id: 4f1c...
          secret_id_file: /etc/salt/vault-secret-id   # or secret_id: ...
        mounts:                                    # KV version per mount; others: sys/mounts
          secret: {version: 2}
          legacy: {version: 1}
        cache_ttl: 30        # seconds a secret read is reused
        renew_before: null   # seconds of TTL left that trigger a renewal; null: half the TTL
        timeout: 5

Without ``url`` (or with ``driver: file``) secrets come from the YAML file ``file`` (default
``outpost-secrets.yaml`` beside the master's configuration), laid out ``{mount: {path: {key:
value}}}``: the embedded default for the demo and development, not for production.

Every error names the mount and path, never a value. All of them derive from Salt's
``CommandExecutionError`` (a malformed reference or configuration: ``SaltInvocationError``).
"""

import copy
import json
import logging
import os
import tempfile
import threading
import time
from collections import namedtuple

import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import hvac
    import hvac.exceptions
    import requests

    HAS_HVAC = True
except ImportError:  # minions never need this module; the master has hvac pinned
    HAS_HVAC = False

log = logging.getLogger(__name__)

DEFAULT_CACHE_TTL = 30
DEFAULT_TIMEOUT = 5
DEFAULT_AUTH_MOUNT = "approle"
SECRETS_FILE = "outpost-secrets.yaml"
# Path segments that hvac adds for KV version 2; written by hand they double up.
KV2_SEGMENTS = ("data", "metadata")

Reference = namedtuple("Reference", "mount path key")

_clients = {}
_clients_lock = threading.Lock()
_warned_file = set()


class VaultError(CommandExecutionError):
    """A secret could not be read or written. The message names mount and path only."""


class SecretNotFound(VaultError):
    """Nothing at that mount and path (or no such key in it)."""


class VaultUnavailable(VaultError):
    """Vault did not answer, is sealed, or refused us: try again once it is back."""


class AccessDenied(VaultUnavailable):
    """Vault answered 403 even to a fresh login: the policy does not grant this path."""


class BadReference(SaltInvocationError):
    """A secret reference that is not written ``{vault: {mount: M, path: P, key: K}}``."""


class BadConfig(SaltInvocationError):
    """``outpost:vault`` in the master configuration is incomplete or wrong."""


# -- references ---------------------------------------------------------------------------------


def is_reference(value):
    """Whether ``value`` is a secret reference, ``{vault: {mount, path, key}}``."""
    return isinstance(value, dict) and isinstance(value.get("vault"), dict)


def parse_reference(value, minion_id=None):
    """A checked ``Reference`` from ``{vault: {mount, path, key}}``; ``{minion_id}`` in the path
    becomes ``minion_id``."""
    if not is_reference(value):
        raise BadReference(
            "vault: a secret reference is written {vault: {mount: M, path: P, key: K}}"
        )
    fields = value["vault"]
    unknown = sorted(set(fields) - {"mount", "path", "key"})
    if unknown:
        raise BadReference(f"vault: {unknown[0]!r} is not a field of a secret reference")
    for field in ("mount", "path"):
        if not isinstance(fields.get(field), str) or not fields[field].strip("/"):
            raise BadReference(f"vault.{field}: required, a non-empty string")
    key = fields.get("key")
    if key is not None and (not isinstance(key, str) or not key):
        raise BadReference("vault.key: a non-empty string, the key inside the secret")
    path = fields["path"]
    if "{minion_id}" in path:
        path = path.replace("{minion_id}", _safe_minion_id(minion_id))
    mount, path = check_location(fields["mount"], path)
    return Reference(mount, path, key)


def _safe_minion_id(minion_id):
    if not minion_id or "/" in minion_id or minion_id in (".", "..") or "{" in minion_id:
        raise BadReference(
            f"vault.path: {{minion_id}} needs a minion id without '/', got {minion_id!r}"
        )
    return minion_id


def check_location(mount, path):
    """``(mount, path)`` without surrounding slashes; API URLs and hvac's own segments refused
    with a message that says how to write the reference instead."""
    raw_mount, raw_path = mount, path
    mount, path = mount.strip("/"), path.strip("/")
    for field, text in (("mount", raw_mount), ("path", raw_path)):
        if text.lstrip("/").startswith("v1/"):
            raise BadReference(
                f"vault.{field}: {text!r} is an API URL; {_suggest(raw_mount, raw_path)}"
            )
    if mount.split("/")[-1] in KV2_SEGMENTS:
        raise BadReference(
            f"vault.mount: {raw_mount!r} carries the {mount.split('/')[-1]}/ segment, which hvac "
            f"adds itself for KV version 2; {_suggest(raw_mount, raw_path)}"
        )
    segments = path.split("/")
    if segments[0] in KV2_SEGMENTS or (segments[0] == mount and segments[1:2] == ["data"]):
        segment = segments[0] if segments[0] in KV2_SEGMENTS else "data"
        raise BadReference(
            f"vault.path: {raw_path!r} carries the {segment}/ segment, which hvac adds itself "
            f"for KV version 2; {_suggest(raw_mount, raw_path)}"
        )
    if any(segment in ("", ".", "..") for segment in segments):
        raise BadReference(f"vault.path: {raw_path!r} has an empty, '.' or '..' segment")
    return mount, path


def _suggest(mount, path):
    """The reference as it should have been written, best guessed from what was."""
    mount, path = mount.strip("/"), path.strip("/")
    if mount.startswith("v1/"):
        mount = mount[3:]
    if path.startswith("v1/"):
        path = path[3:]
    if mount.split("/")[-1] in KV2_SEGMENTS:
        mount = "/".join(mount.split("/")[:-1])
    if mount and (path == mount or path.startswith(mount + "/")):
        path = path[len(mount) + 1 :]
    elif not mount or "/" in path and path.split("/")[1] in KV2_SEGMENTS:
        mount, _, path = path.partition("/")
    if path.split("/")[0] in KV2_SEGMENTS:
        path = path.partition("/")[2]
    return f"write {{mount: {mount}, path: {path}}} (mount and path apart, no /v1/, no data/)"


def resolve(opts, value, minion_id=None):
    """A plain value unchanged; a reference looked up and returned as a string.

    Raises ``SecretNotFound`` when the secret or its key is missing, ``VaultUnavailable`` when
    Vault cannot be asked, ``BadReference`` when the reference is malformed.
    """
    if not is_reference(value):
        return value
    ref = parse_reference(value, minion_id)
    if ref.key is None:
        raise BadReference(
            f"vault.key: required here (mount {ref.mount}, path {ref.path}): a single value is "
            "wanted, so name the key inside the secret"
        )
    data = client_from_opts(opts).read_secret(ref.mount, ref.path)
    if ref.key not in data:
        raise SecretNotFound(
            f"mount {ref.mount}, path {ref.path}: the secret has no key {ref.key!r}"
        )
    return str(data[ref.key])


def describe(mount, path):
    return f"mount {mount}, path {path}"


# -- clients ------------------------------------------------------------------------------------


def client_from_opts(opts):
    """The secrets client ``opts["outpost"]["vault"]`` asks for, one per process and setting."""
    config = (opts.get("outpost") or {}).get("vault") or {}
    if not isinstance(config, dict):
        raise BadConfig("outpost:vault: expected a mapping")
    cache_key = (os.getpid(), json.dumps(config, sort_keys=True, default=str))
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            client = _make_client(opts, config)
            _clients[cache_key] = client
    return client


def _make_client(opts, config):
    driver = config.get("driver") or ("vault" if config.get("url") else "file")
    if driver == "file":
        default = os.path.join(os.path.dirname(opts.get("conf_file") or "/etc/salt/"), SECRETS_FILE)
        return FileSecrets(config.get("file") or default, cache_ttl=_cache_ttl(config))
    if driver != "vault":
        raise BadConfig(f"outpost:vault:driver: {driver!r} is neither vault nor file")
    if not HAS_HVAC:
        raise BadConfig("outpost:vault: the hvac library is not installed on this master")
    return VaultClient(config)


def _cache_ttl(config):
    try:
        seconds = float(config.get("cache_ttl", DEFAULT_CACHE_TTL))
    except (TypeError, ValueError):
        seconds = -1
    if seconds < 0:
        raise BadConfig(f"outpost:vault:cache_ttl: {config.get('cache_ttl')!r} is not seconds")
    return seconds


class _Cache:
    """Secrets read in the last ``ttl`` seconds, so one pillar render asks Vault once."""

    def __init__(self, ttl):
        self.ttl = ttl
        self._entries = {}
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            entry = self._entries.get(key)
            if entry and entry[0] > time.monotonic():
                return copy.deepcopy(entry[1])
            self._entries.pop(key, None)
            return None

    def put(self, key, data):
        if self.ttl:
            with self._lock:
                self._entries[key] = (time.monotonic() + self.ttl, copy.deepcopy(data))

    def drop(self, key):
        with self._lock:
            self._entries.pop(key, None)


class VaultClient:
    """Vault through hvac: logs in, keeps its token alive, reads KV version 1 and 2."""

    def __init__(self, config):
        self.url = config["url"]
        self.auth = self._auth_settings(config.get("auth") or {})
        self.mount_versions = self._mount_versions(config.get("mounts") or {})
        self.renew_before = config.get("renew_before")
        self.cache = _Cache(_cache_ttl(config))
        self._lock = threading.RLock()
        self._hvac = hvac.Client(
            url=self.url,
            token="",
            verify=config.get("verify", True),
            timeout=config.get("timeout", DEFAULT_TIMEOUT),
            namespace=config.get("namespace"),
        )
        self._expires = None
        self._granted = 0

    @staticmethod
    def _auth_settings(auth):
        method = auth.get("method", "approle")
        if method == "approle":
            if not auth.get("role_id"):
                raise BadConfig("outpost:vault:auth:role_id: required for AppRole login")
            if not auth.get("secret_id") and not auth.get("secret_id_file"):
                raise BadConfig("outpost:vault:auth:secret_id_file (or secret_id): required")
        elif method == "token":
            if not auth.get("token") and not auth.get("token_file"):
                raise BadConfig("outpost:vault:auth:token_file (or token): required")
        else:
            raise BadConfig(f"outpost:vault:auth:method: {method!r} is neither approle nor token")
        return dict(
            auth, method=method, mount=str(auth.get("mount", DEFAULT_AUTH_MOUNT)).strip("/")
        )

    @staticmethod
    def _mount_versions(mounts):
        versions = {}
        for mount, settings in mounts.items():
            version = (settings or {}).get("version", 2)
            if str(version) not in ("1", "2"):
                raise BadConfig(f"outpost:vault:mounts:{mount}:version: {version!r} is not 1 or 2")
            versions[mount.strip("/")] = int(version)
        return versions

    # -- the public interface ---------------------------------------------------------------

    def read_secret(self, mount, path):
        """The data at ``mount``/``path`` as a dict (KV v2: its latest version)."""
        mount, path = check_location(mount, path)
        cached = self.cache.get((mount, path))
        if cached is not None:
            return cached
        log.debug("vault: reading %s", describe(mount, path))
        if self.kv_version(mount) == 2:
            answer = self._call(
                mount,
                path,
                lambda kv: kv.v2.read_secret_version(
                    path=path, mount_point=mount, raise_on_deleted_version=True
                ),
            )
            data = answer["data"]["data"]
        else:
            data = self._call(
                mount, path, lambda kv: kv.v1.read_secret(path=path, mount_point=mount)
            )["data"]
        self.cache.put((mount, path), data)
        return copy.deepcopy(data)

    def write_secret(self, mount, path, data):
        """Create or replace the secret at ``mount``/``path`` (KV v2: a new version)."""
        mount, path = check_location(mount, path)
        if not isinstance(data, dict) or not data:
            raise SaltInvocationError(
                f"data: a non-empty mapping to store at {describe(mount, path)}"
            )
        if self.kv_version(mount) == 2:
            self._call(
                mount,
                path,
                lambda kv: kv.v2.create_or_update_secret(path=path, secret=data, mount_point=mount),
            )
        else:
            self._call(
                mount,
                path,
                lambda kv: kv.v1.create_or_update_secret(
                    path=path, secret=data, method="PUT", mount_point=mount
                ),
            )
        self.cache.drop((mount, path))
        log.info("vault: wrote the secret at %s", describe(mount, path))

    def delete_secret(self, mount, path):
        """Delete the secret at ``mount``/``path``; KV v2 deletes its latest version (which
        ``vault kv undelete`` can bring back). Deleting what is not there is no error."""
        mount, path = check_location(mount, path)
        if self.kv_version(mount) == 2:
            self._call(
                mount,
                path,
                lambda kv: kv.v2.delete_latest_version_of_secret(path=path, mount_point=mount),
            )
        else:
            self._call(mount, path, lambda kv: kv.v1.delete_secret(path=path, mount_point=mount))
        self.cache.drop((mount, path))
        log.info("vault: deleted the secret at %s", describe(mount, path))

    def kv_version(self, mount):
        """1 or 2: from ``outpost:vault:mounts``, else from Vault's sys/mounts, once."""
        if mount in self.mount_versions:
            return self.mount_versions[mount]
        mounts = self._call(mount, "", lambda kv: self._hvac.sys.list_mounted_secrets_engines())
        engine = (mounts.get("data") or mounts).get(mount + "/")
        if not engine or engine.get("type") not in ("kv", "generic"):
            raise SecretNotFound(f"mount {mount}: no KV secrets engine is mounted there")
        version = int((engine.get("options") or {}).get("version") or 1)
        self.mount_versions[mount] = version
        return version

    def token_ttl(self):
        """Seconds the current token has left by our clock, or None before the first login."""
        if self._expires is None:
            return None
        return max(0.0, self._expires - time.monotonic())

    # -- talking to Vault -------------------------------------------------------------------

    def _call(self, mount, path, request):
        """Run ``request(kv)`` with a live token; a token Vault no longer takes gets one fresh
        login and one retry."""
        where = describe(mount, path) if path else f"mount {mount}"
        self._authenticate(where)
        try:
            try:
                return request(self._hvac.secrets.kv)
            except hvac.exceptions.Forbidden:
                if self.auth["method"] != "approle":
                    raise
                log.info("vault: token refused at %s; logging in again", where)
                with self._lock:
                    self._login(where)
                return request(self._hvac.secrets.kv)
        except hvac.exceptions.InvalidPath as err:
            raise SecretNotFound(f"{where}: no secret there") from err
        except hvac.exceptions.Forbidden as err:
            raise AccessDenied(f"{where}: Vault denies access (403); check the policy") from err
        except hvac.exceptions.VaultDown as err:
            raise VaultUnavailable(f"{where}: Vault at {self.url} is sealed or down") from err
        except hvac.exceptions.VaultError as err:
            raise VaultUnavailable(
                f"{where}: Vault at {self.url} answered {type(err).__name__}"
            ) from err
        except requests.exceptions.RequestException as err:
            raise VaultUnavailable(
                f"{where}: Vault at {self.url} is unreachable ({type(err).__name__})"
            ) from err

    def _authenticate(self, where):
        try:
            with self._lock:
                self._ensure_token(where)
        except hvac.exceptions.VaultDown as err:
            raise VaultUnavailable(f"{where}: Vault at {self.url} is sealed or down") from err
        except hvac.exceptions.VaultError as err:
            raise VaultUnavailable(
                f"{where}: {self._auth_name()} at {self.url} failed ({type(err).__name__}: "
                f"{_first_error(err)})"
            ) from err
        except requests.exceptions.RequestException as err:
            raise VaultUnavailable(
                f"{where}: Vault at {self.url} is unreachable ({type(err).__name__})"
            ) from err

    def _auth_name(self):
        if self.auth["method"] == "token":
            return "the token lookup"
        return f"AppRole login at auth/{self.auth['mount']}"

    def _ensure_token(self, where):
        if self._expires is None:
            self._login(where)
            return
        left = self.token_ttl()
        if self._granted and left <= self._threshold():
            self._renew_or_login(where, left)

    def _threshold(self):
        if self.renew_before is not None:
            return float(self.renew_before)
        return self._granted / 2

    def _renew_or_login(self, where, left):
        try:
            answer = self._hvac.auth.token.renew_self()
            granted = answer["auth"]["lease_duration"]
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as err:
            if self.auth["method"] != "approle":
                raise
            log.info("vault: renewing the token failed (%s); logging in again", type(err).__name__)
            self._login(where)
            return
        if granted <= self._threshold() and self.auth["method"] == "approle":
            # The token reached its max_ttl: renewal cannot keep it alive any longer.
            log.info("vault: the token is at its max TTL (%ss left); logging in again", granted)
            self._login(where)
            return
        log.debug("vault: token renewed with %s s left, now %s s", round(left), granted)
        self._set_expiry(granted, keep_granted=True)

    def _login(self, where):
        auth = self.auth
        if auth["method"] == "token":
            self._hvac.token = auth.get("token") or _read_file(auth["token_file"], "token_file")
            data = self._hvac.auth.token.lookup_self()["data"]
            self._set_expiry(data.get("ttl") or 0)
            return
        secret_id = auth.get("secret_id") or _read_file(auth["secret_id_file"], "secret_id_file")
        answer = self._hvac.auth.approle.login(
            role_id=auth["role_id"], secret_id=secret_id, mount_point=auth["mount"]
        )
        self._set_expiry(answer["auth"]["lease_duration"])
        log.info("vault: logged in with AppRole at auth/%s (for %s)", auth["mount"], where)

    def _set_expiry(self, seconds, keep_granted=False):
        seconds = float(seconds or 0)
        if not keep_granted or not self._granted:
            self._granted = seconds
        # A TTL of 0 never runs out (a root or periodic token).
        self._expires = time.monotonic() + seconds if seconds else float("inf")


def _first_error(err):
    """Vault's own words (``errors`` of its answer), which never hold a secret."""
    errors = getattr(err, "errors", None) or []
    return str(errors[0]).strip().splitlines()[-1].strip("\t* ") if errors else "no detail"


def _read_file(path, field):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as err:
        raise BadConfig(f"outpost:vault:auth:{field}: cannot read {path}: {err.strerror}") from err


class FileSecrets:
    """Secrets from a local YAML file ``{mount: {path: {key: value}}}``. For the demo and
    development only: the file is plain text on the master's disk."""

    def __init__(self, path, cache_ttl=DEFAULT_CACHE_TTL):
        self.path = path
        self.cache = _Cache(cache_ttl)
        self._lock = threading.Lock()
        if path not in _warned_file:
            _warned_file.add(path)
            log.warning("outpost secrets come from the local file %s: not for production", path)

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as handle:
                tree = yaml.safe_load(handle) or {}
        except FileNotFoundError:
            return {}
        except (OSError, yaml.YAMLError) as err:
            raise VaultUnavailable(f"the secrets file {self.path} cannot be read") from err
        if not isinstance(tree, dict):
            raise VaultUnavailable(f"the secrets file {self.path} is not a mapping of mounts")
        return tree

    def read_secret(self, mount, path):
        mount, path = check_location(mount, path)
        data = (self._load().get(mount) or {}).get(path)
        if not isinstance(data, dict):
            raise SecretNotFound(f"{describe(mount, path)}: no secret there (file {self.path})")
        return copy.deepcopy(data)

    def write_secret(self, mount, path, data):
        mount, path = check_location(mount, path)
        if not isinstance(data, dict) or not data:
            raise SaltInvocationError(
                f"data: a non-empty mapping to store at {describe(mount, path)}"
            )
        with self._lock:
            tree = self._load()
            tree.setdefault(mount, {})[path] = dict(data)
            self._save(tree)
        log.info("secrets file: wrote the secret at %s", describe(mount, path))

    def delete_secret(self, mount, path):
        mount, path = check_location(mount, path)
        with self._lock:
            tree = self._load()
            if (tree.get(mount) or {}).pop(path, None) is not None:
                self._save(tree)
        log.info("secrets file: deleted the secret at %s", describe(mount, path))

    def kv_version(self, mount):  # pylint: disable=unused-argument
        return 1

    def _save(self, tree):
        folder = os.path.dirname(os.path.abspath(self.path))
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".outpost-secrets-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                yaml.safe_dump(tree, out, default_flow_style=False)
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            os.unlink(temporary)
            raise
