"""
External pillar: secret references in a client's pillar replaced by the secrets, read by the
master from Vault (or from the local secrets file of the demo), so that only the values reach
the client, encrypted by Salt's transport for that client alone.

.. code-block:: yaml

    # master
    ext_pillar:
      - outpost_registry: {}
      - outpost_vault:
          per_client: clients/{minion_id}     # the default

    # pillar tree, for every client
    outpost:
      apps:
        hello:
          env:
            DATABASE_PASSWORD:
              vault: {mount: secret, path: "clients/{minion_id}/hello", key: db_password}

``{minion_id}`` in a path becomes the id of the client whose pillar is compiled, as Salt
authenticated it. A path under the ``per_client`` folder of any other client is refused, so a
pillar file cannot hand client A a secret of client B.

A reference that cannot be resolved (missing secret, Vault down, malformed) becomes
``{"vault_error": "<why, naming mount and path>"}`` in the pillar; the rest of the pillar renders
as usual, and a state that uses the value fails with that message (``shiv_app`` does, before it
changes anything). Keep ``ext_pillar_first`` at its default, False: the references are read from
the pillar compiled before this ext_pillar runs.
"""

import logging

import outpost_vault

log = logging.getLogger(__name__)

__virtualname__ = "outpost_vault"

DEFAULT_PER_CLIENT = "clients/{minion_id}"
ERROR_KEY = "vault_error"


def __virtual__():
    return __virtualname__


def ext_pillar(minion_id, pillar, per_client=DEFAULT_PER_CLIENT, **kwargs):
    resolver = _Resolver(__opts__, minion_id, per_client)
    resolved, changed = resolver.substitute(pillar, ())
    if resolver.failures:
        log.error(
            "outpost_vault: %s of %s secret references for %s could not be resolved",
            resolver.failures,
            resolver.references,
            minion_id,
        )
    return resolved if changed else {}


class _Resolver:
    """Walks a pillar and replaces every reference, remembering Vault being down for the rest
    of this render so that each further reference does not wait for its own time-out."""

    def __init__(self, opts, minion_id, per_client):
        self.opts = opts
        self.minion_id = minion_id
        self.own_prefix, self.clients_root = _client_folders(per_client, minion_id)
        self.unavailable = None
        self.references = 0
        self.failures = 0

    def substitute(self, node, where):
        """(what to merge over ``node``, whether anything changed). Dicts give only their
        changed keys; a list with a reference in it is given whole."""
        if outpost_vault.is_reference(node):
            return self.resolve(node, where), True
        if isinstance(node, dict):
            merged = {}
            for key, value in node.items():
                new, changed = self.substitute(value, (*where, str(key)))
                if changed:
                    merged[key] = new
            return merged, bool(merged)
        if isinstance(node, list):
            items = [self.substitute(item, (*where, str(index))) for index, item in enumerate(node)]
            if any(changed for _, changed in items):
                return [
                    new if changed else original
                    for (new, changed), original in zip(items, node, strict=True)
                ], True
        return node, False

    def resolve(self, reference, where):
        self.references += 1
        try:
            ref = outpost_vault.parse_reference(reference, self.minion_id)
            self._check_own(ref)
            if self.unavailable is not None:
                raise outpost_vault.VaultUnavailable(
                    f"{outpost_vault.describe(ref.mount, ref.path)}: not asked, since earlier in "
                    f"this render {self.unavailable}"
                )
            return outpost_vault.resolve(self.opts, reference, self.minion_id)
        except outpost_vault.VaultUnavailable as err:
            if self.unavailable is None:
                self.unavailable = str(err)
            return self._failed(where, err)
        except (
            outpost_vault.VaultError,
            outpost_vault.BadReference,
            outpost_vault.BadConfig,
        ) as err:
            return self._failed(where, err)

    def _check_own(self, ref):
        if not self.clients_root:
            return
        path = ref.path + "/"
        if path.startswith(self.clients_root) and not path.startswith(self.own_prefix):
            raise outpost_vault.BadReference(
                f"vault.path: {ref.path} is another client's; {self.minion_id} reads only its "
                f"own secrets, under {self.own_prefix} (write the path with {{minion_id}})"
            )

    def _failed(self, where, err):
        self.failures += 1
        log.error("outpost_vault: %s: pillar %s: %s", self.minion_id, ":".join(where), err)
        return {ERROR_KEY: str(err)}


def _client_folders(per_client, minion_id):
    """This client's own folder and the folder holding every client's, both ending in '/'."""
    if not per_client:
        return None, None
    template = str(per_client).strip("/")
    if "{minion_id}" not in template:
        log.warning("outpost_vault: per_client %r has no {minion_id}; not enforced", per_client)
        return None, None
    root = template.split("{minion_id}", 1)[0]
    own = template.replace("{minion_id}", minion_id).strip("/") + "/"
    return own, root
