"""
The comparison, ingress merge and pagination rules of _utils/outpost_cloudflare.py, on plain
data and a fake listing (the SDK and the API stand-in are exercised in tests/functional).
"""

from types import SimpleNamespace
from unittest import mock

import pytest
from salt.exceptions import SaltInvocationError

import outpost_cloudflare as cf

CATCH_ALL = {"hostname": "*", "service": "http_status:404"}
HELLO = {"hostname": "hello.example.com", "service": "http://127.0.0.1:8080"}
SHOP = {"hostname": "shop.example.com", "service": "http://127.0.0.1:8081"}


def test_same_ignores_what_the_caller_did_not_set():
    current = {"content": "a.example.net", "ttl": 1, "settings": {"flatten_cname": False}}

    assert cf.same(current, {"content": "a.example.net"})
    assert cf.same(
        {"rules": [{"email": {"email": "x"}, "extra": 1}]}, {"rules": [{"email": {"email": "x"}}]}
    )
    assert not cf.same({"include": [1, 2]}, {"include": [1]})
    assert not cf.same(None, {"content": "a"})


def test_field_changes_name_old_and_new():
    changes = cf.field_changes({"proxied": False, "ttl": 300}, {"proxied": True})

    assert changes == {"proxied": {"old": False, "new": True}}


def test_list_fields_missing_on_the_server_equal_empty_lists():
    """An empty require list the API leaves out must not be a perpetual diff."""
    assert cf.field_changes({"name": "p"}, {"name": "p", "require": []}) == {}


def test_merge_keeps_other_rules_in_place_and_the_catch_all_last():
    current = [SHOP, {"hostname": "hello.example.com", "service": "http://127.0.0.1:9"}, CATCH_ALL]

    merged = cf.merge_ingress(current, [HELLO])

    assert merged == [SHOP, HELLO, CATCH_ALL]
    assert cf.ingress_changes(current, merged) == {
        "hello.example.com": {"old": current[1], "new": HELLO}
    }


def test_merge_into_nothing_adds_a_catch_all():
    merged = cf.merge_ingress([], [HELLO])

    assert merged == [HELLO, CATCH_ALL]
    assert set(cf.ingress_changes([], merged)) == {"hello.example.com", "catch-all"}


def test_merge_removes_only_the_named_hosts():
    assert cf.merge_ingress([HELLO, SHOP, CATCH_ALL], remove=["HELLO.example.com"]) == [
        SHOP,
        CATCH_ALL,
    ]


def test_a_catch_all_rule_cannot_be_owned_by_one_app():
    with pytest.raises(SaltInvocationError, match=r"rules\[0\]: every rule needs its own"):
        cf.check_rules([{"service": "http_status:404"}])


def fake_api(pages, max_pages=5):
    api = cf.API.__new__(cf.API)
    api.max_pages = max_pages
    api.call = lambda what, function, *args, **kwargs: function(*args, **kwargs)
    listing = mock.Mock(side_effect=pages)
    return api, listing


def page(ids, total_pages=None):
    info = {"total_pages": total_pages} if total_pages else {}
    return SimpleNamespace(result=[{"id": i} for i in ids], result_info=info)


def test_listing_reads_up_to_the_reported_page_count():
    api, listing = fake_api([page(["a"], 3), page(["b"], 3), page(["c"], 3)])

    assert [item["id"] for item in api.list_all("things", listing)] == ["a", "b", "c"]
    assert [c.kwargs["page"] for c in listing.call_args_list] == [1, 2, 3]


def test_listing_refuses_a_repeated_page():
    api, listing = fake_api([page(["a"], 9), page(["a"], 9)])

    with pytest.raises(cf.CloudflareError, match="page 2 repeats items already read"):
        api.list_all("things", listing)


def test_listing_stops_at_the_hard_cap():
    api, listing = fake_api([page([str(n)], 1000) for n in range(3)], max_pages=3)

    with pytest.raises(cf.CloudflareError, match="more than 3 pages"):
        api.list_all("things", listing)
    assert listing.call_count == 3


def test_policy_rules_for_groups_of_each_provider():
    rules = cf.policy_rules(
        emails=["Ops@Example.com"],
        groups=[
            {"provider": "azure", "idp": "i1", "name": "g-uuid"},
            {"provider": "saml", "idp": "i2", "name": "admins"},
        ],
    )

    assert rules == [
        {"email": {"email": "ops@example.com"}},
        {"azureAD": {"id": "g-uuid", "identity_provider_id": "i1"}},
        {
            "saml": {
                "attribute_value": "admins",
                "identity_provider_id": "i2",
                "attribute_name": "groups",
            }
        },
    ]
    with pytest.raises(SaltInvocationError, match=r"groups\[0\]: provider 'ldap'"):
        cf.policy_rules(groups=[{"provider": "ldap", "idp": "x", "name": "y"}])
    with pytest.raises(SaltInvocationError, match="allow: name at least one"):
        cf.policy_rules()


def test_waf_fields_name_the_bad_field():
    with pytest.raises(SaltInvocationError, match="action: 'deny'"):
        cf.waf_fields("r", "(true)", action="deny")
    with pytest.raises(SaltInvocationError, match="name: 'bad ref'"):
        cf.waf_fields("bad ref", "(true)")
