"""
Cloudflare's API for the tests: the stand-in (tests/standins/cloudflare_api.py) behind Prism,
which checks every request and answer against Cloudflare's OpenAPI spec. One of each per
session; every test starts from an empty account.
"""

import pytest

from tests.standins.cloudflare_api import CloudflareAPI
from tests.support.prism import Prism, free_port

API_TOKEN = "cf-test-token-7Hq2xV9pLm4Rz8Kd"  # noqa: S105 - the stand-in's, searched for in logs
ZONE = "outpost.test"


@pytest.fixture(scope="session")
def cloudflare_standin():
    standin = CloudflareAPI(API_TOKEN, zone_name=ZONE).start()
    yield standin
    standin.stop()


@pytest.fixture(scope="session")
def prism_port():
    """Chosen before Prism starts, so a master's configuration can name it without waiting."""
    return free_port()


@pytest.fixture(scope="session")
def prism(cloudflare_standin, prism_port, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("prism") / "prism.log"
    proxy = Prism(cloudflare_standin.url, log_path, port=prism_port).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def cloudflare_api(cloudflare_standin, prism):
    """The stand-in, emptied; the test fails if Prism found traffic the spec does not allow."""
    cloudflare_standin.reset()
    before = len(prism.violations())
    yield cloudflare_standin
    assert prism.violations()[before:] == []


def cloudflare_settings(standin, prism_port):
    """What a master's configuration says under outpost:cloudflare, pointed at Prism."""
    return {
        "api_token": API_TOKEN,
        "account_id": standin.account_id,
        "zones": {ZONE: standin.zone_id},
        "base_url": f"http://127.0.0.1:{prism_port}",
    }
