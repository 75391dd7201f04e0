"""
External pillar: the releases the registry wants each client to run.

.. code-block:: yaml

    ext_pillar:
      - outpost_registry: {}

gives a client ``outpost:apps:<app>:version``, ``source`` and ``source_hash`` for every app the
registry has a release for, merged with the app settings (python, port, env) from the pillar tree.
"""

import logging

import outpost_registry

log = logging.getLogger(__name__)

__virtualname__ = "outpost_registry"


def __virtual__():
    return __virtualname__


def ext_pillar(minion_id, pillar, **kwargs):  # pylint: disable=unused-argument
    try:
        desired = outpost_registry.Registry.from_opts(__opts__).desired_for_client(minion_id)
    except outpost_registry.RegistryError as err:
        # Without the registry the client keeps what it runs: the formula skips apps with no
        # version, and nothing is removed.
        log.error("outpost registry unavailable for %s: %s", minion_id, err)
        return {}
    return {"outpost": {"apps": desired}} if desired else {}
