"""
Cloudflare's API for the tests: the stand-in (tests/standins/cloudflare_api.py) behind Prism,
which checks every request and answer against Cloudflare's OpenAPI spec. One of each per
session; every test starts from an empty account.
"""

import pytest

from tests.standins.cloudflare_api import CloudflareAPI
from tests.support.prism import Prism

API_TOKEN = "cf-test-token-7Hq2xV9pLm4Rz8Kd"  # noqa: S105 - the stand-in's, searched for in logs
ZONE = "outpost.test"


@pytest.fixture(scope="session")
def cloudflare_standin():
    standin = CloudflareAPI(API_TOKEN, zone_name=ZONE).start()
    yield standin
    standin.stop()


@pytest.fixture(scope="session")
def prism(cloudflare_standin, tmp_path_factory):
    proxy = Prism(cloudflare_standin.url, tmp_path_factory.mktemp("prism") / "prism.log").start()
    yield proxy
    proxy.stop()


@pytest.fixture
def cloudflare_api(cloudflare_standin, prism):
    """The stand-in, emptied; the test fails if Prism found traffic the spec does not allow."""
    cloudflare_standin.reset()
    before = len(prism.violations())
    yield cloudflare_standin
    assert prism.violations()[before:] == []


def cloudflare_settings(standin, prism):
    """What a master's configuration says under outpost:cloudflare, pointed at Prism."""
    return {
        "api_token": API_TOKEN,
        "account_id": standin.account_id,
        "zones": {ZONE: standin.zone_id},
        "base_url": prism.url,
    }
