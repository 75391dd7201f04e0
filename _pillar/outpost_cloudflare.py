"""
Give each client the token of its Cloudflare tunnel, as stored by ``cloudflare_zt.tunnel_present``
with ``client: <minion id>``: pillar ``outpost:cloudflared:token``, read by the client's
``cloudflared.running``. Pillar reaches only the minion it is compiled for, encrypted; the
token is never logged here.

.. code-block:: yaml

    ext_pillar:
      - outpost_cloudflare: {}
"""

import logging

from salt.exceptions import SaltException

import outpost_cloudflare

log = logging.getLogger(__name__)

__virtualname__ = "outpost_cloudflare"


def __virtual__():
    return __virtualname__


def ext_pillar(minion_id, pillar, **kwargs):  # noqa: ARG001 - the ext_pillar signature
    try:
        token = outpost_cloudflare.TunnelTokens(__opts__).read(minion_id)
    except SaltException as err:
        # A pillar error would fail every state run of the client: log it and give nothing.
        log.error("outpost_cloudflare pillar for %s: %s", minion_id, err)
        return {}
    if not token:
        return {}
    return {"outpost": {"cloudflared": {"token": token}}}
