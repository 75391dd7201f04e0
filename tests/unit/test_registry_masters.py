"""
The registry's part in several masters: claims (an event acted on once), rollout leases and
takeovers, on SQLite and on a real PostgreSQL shared by masters claiming at once.
"""

import time

from tests.unit.test_registry import (  # noqa: F401 (fixtures shared with the registry's tests)
    APP,
    MASTERS,
    on_every_master,
    open_registry,
    registry,
)


def test_claim_is_won_once_until_it_expires(registry):
    assert registry.claim("announcement:abc", "m1", ttl=60) is True
    assert registry.claim("announcement:abc", "m2", ttl=60) is False
    assert registry.claim_owner("announcement:abc") == "m1"

    assert registry.claim("converge:client-1", "m2", ttl=-1) is True
    assert registry.claim("converge:client-1", "m1", ttl=60) is True
    assert registry.claim_owner("converge:client-1") == "m1"


def test_masters_claiming_one_event_at_once_win_it_once(open_registry):
    """Every master hears each beacon event and each minion start; only one may act on it."""
    won = on_every_master(
        open_registry, lambda registry, index: registry.claim("event:x:1.5", f"m{index}", 60)
    )

    assert won.count(True) == 1
    assert len(won) == MASTERS


def test_consume_claim_succeeds_once_and_only_for_its_owner(registry):
    registry.claim("resume:7:1", "m2", ttl=60)

    assert registry.consume_claim("resume:7:1", "m1") is False
    assert registry.consume_claim("resume:7:1", "m2") is True
    assert registry.consume_claim("resume:7:1", "m2") is False


def test_the_same_release_announced_twice_is_one_rollout(registry):
    first = registry.claim_rollout(APP, "1.1.0", owner="m1", lease=60)
    again = registry.claim_rollout(APP, "1.1.0", owner="m2", lease=60)

    assert first[1] == "running"
    assert again == (first[0], "duplicate")
    assert registry.lease(first[0])["owner"] == "m1"


def test_a_lease_kept_renewed_is_never_taken_over(registry):
    rollout_id, _ = registry.claim_rollout(APP, "1.1.0", owner="m1", lease=60)

    assert registry.renew_leases("m1", lease=60) == [rollout_id]
    assert registry.take_over("m2", lease=60) == []
    assert registry.owns(rollout_id, "m1")
    assert not registry.owns(rollout_id, "m2")


def test_an_expired_lease_is_taken_over_by_exactly_one_master(open_registry):
    """Two masters that both found the lease expired must not both carry the rollout on."""
    rollout_id, _ = open_registry().claim_rollout(APP, "1.1.0", owner="gone", lease=-1)

    taken = on_every_master(
        open_registry, lambda registry, index: registry.take_over(f"m{index}", lease=60)
    )

    winners = [found for found in taken if found]
    assert len(winners) == 1
    assert winners[0][0]["id"] == rollout_id
    assert winners[0][0]["from"] == "gone"
    history = open_registry().history(rollout_id=rollout_id)
    assert [entry["event"] for entry in history] == ["takeover"]
    assert "its lease ran out" in history[0]["reason"]


def test_a_master_does_not_take_over_its_own_late_lease(registry):
    rollout_id, _ = registry.claim_rollout(APP, "1.1.0", owner="m1", lease=-1)

    assert registry.take_over("m1", lease=60) == []
    assert registry.take_over("m2", lease=60, now=time.time())[0]["id"] == rollout_id


def test_the_plan_is_saved_once_and_batches_done_counts_passed_gates(registry):
    rollout_id, _ = registry.claim_rollout(APP, "1.1.0", owner="m1", lease=60)
    plan = {"batches": [["c1"], ["c2", "c3"]]}

    assert registry.save_plan(rollout_id, plan) == plan
    assert registry.save_plan(rollout_id, {"batches": [["other"]]}) == plan
    registry.batch_passed(rollout_id, 0)
    registry.batch_passed(rollout_id, 0)

    lease = registry.lease(rollout_id)
    assert lease["plan"] == plan
    assert lease["batches_done"] == 1


def test_promote_only_changed_leaves_a_promoted_client_alone(registry):
    registry.set_desired(APP, ["c1"], "1.1.0", 5, "promote", only_changed=True)
    registry.set_desired(APP, ["c1", "c2"], "1.1.0", 5, "promote", only_changed=True)

    promoted = [entry["client"] for entry in registry.history(rollout_id=5)]
    assert promoted == ["c1", "c2"]


def test_a_queued_rollout_with_none_running_is_orphaned(registry):
    first, _ = registry.claim_rollout(APP, "1.1.0", owner="m1", lease=60)
    registry.claim_rollout(APP, "1.2.0", owner="m1", lease=60)
    assert registry.apps_with_orphaned_queue() == []

    registry.update_rollout(first, "succeeded", status="succeeded")

    assert registry.apps_with_orphaned_queue() == [APP]
    assert registry.promote_queued(APP, owner="m2", lease=60)["version"] == "1.2.0"
    assert registry.apps_with_orphaned_queue() == []
