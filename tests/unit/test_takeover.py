"""
A master takes over the rollout of a master that is gone (its lease ran out) with
``outpost:masters:takeover: halt``: the rollout halts from the registry, every client it had
moved goes back to its previous release, and nothing is left between releases.
"""

import time

from tests.unit.test_release_runner import registry, runner  # noqa: F401 (a fixture)


def moved_by_a_master_that_is_gone(runner):  # noqa: F811 (the fixture's name)
    """Rollout of hello 1.1.0 by master-1 whose canary (client-1, on 1.0.0 before) was promoted,
    and whose lease has run out."""
    kept = registry(runner)
    kept.register_release("hello", "1.0.0", "a" * 64, "salt://releases/hello/h-1.0.0.pyz", {})
    kept.register_release("hello", "1.1.0", "b" * 64, "salt://releases/hello/h-1.1.0.pyz", {})
    kept.set_desired("hello", ["client-1", "client-2"], "1.0.0", None, "promote")
    rollout_id, status = kept.claim_rollout("hello", "1.1.0", owner="master-1", lease=0.05)
    assert status == "running"
    kept.set_desired("hello", ["client-1"], "1.1.0", rollout_id, "promote")
    time.sleep(0.1)
    return rollout_id


def test_a_takeover_in_halt_mode_puts_the_moved_clients_back(runner):  # noqa: F811
    rollout_id = moved_by_a_master_that_is_gone(runner)
    runner.__opts__["id"] = "master-2"
    runner.__opts__["outpost"]["masters"] = {"takeover": "halt", "lease": 60}
    runner.local.cmd.return_value = {"client-1": {"state-id": {"result": True}}}

    done = runner.resume()

    kept = registry(runner)
    assert done["taken"] == [rollout_id]
    assert kept.rollout(rollout_id)["status"] == "halted"
    assert "outpost:masters:takeover is halt" in kept.rollout(rollout_id)["reason"]
    assert kept.desired("hello") == {"client-1": "1.0.0", "client-2": "1.0.0"}
    (args, kwargs), *_ = runner.local.cmd.call_args_list
    assert (args[0], args[1], kwargs["tgt_type"]) == (["client-1"], "state.apply", "list")
    tags = [tag for tag, _ in runner.emitted]
    assert "outpost/release/hello/1.1.0/takeover" in tags
    assert "outpost/release/hello/1.1.0/halted" in tags
    assert not any(tag.startswith("outpost/rollout/") for tag in tags)


def test_a_takeover_in_resume_mode_hands_the_rollout_to_this_masters_reactor(runner):  # noqa: F811
    rollout_id = moved_by_a_master_that_is_gone(runner)
    runner.__opts__["id"] = "master-2"

    done = runner.resume()

    assert done["taken"] == [rollout_id]
    assert registry(runner).rollout(rollout_id)["status"] == "running"
    assert registry(runner).owns(rollout_id, "master-2")
    resumed = [
        data for tag, data in runner.emitted if tag == f"outpost/rollout/{rollout_id}/resume"
    ]
    assert len(resumed) == 1
    runner.local.cmd.assert_not_called()


def test_a_master_never_takes_over_its_own_rollout(runner):  # noqa: F811
    rollout_id = moved_by_a_master_that_is_gone(runner)

    done = runner.resume()

    assert done["taken"] == []
    assert registry(runner).rollout(rollout_id)["status"] == "running"


def test_a_batch_its_predecessor_promoted_but_never_announced_is_announced_once(runner):  # noqa: F811
    """The owner stopped between promoting batch 1 in the registry and its event: the survivor
    found the batch promoted and announced nothing, so the trail missed batch-1."""
    rollout_id = moved_by_a_master_that_is_gone(runner)
    registry(runner).set_desired("hello", ["client-2"], "1.1.0", rollout_id, "promote")
    runner.__opts__["id"] = "master-2"
    runner.resume()

    first = runner.promote(rollout_id, 1, ["client-2"])
    again = runner.promote(rollout_id, 1, ["client-2"])

    assert first == again == {"promoted": [], "already": ["client-2"]}
    tags = [tag for tag, _ in runner.emitted]
    assert tags.count("outpost/release/hello/1.1.0/batch-1") == 1
