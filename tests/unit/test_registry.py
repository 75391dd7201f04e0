"""
The release registry on both of its drivers: SQLite in the test's folder, and a real PostgreSQL
server (tests/support/fixtures_postgres.py) with a fresh database for each test.

Several ``Registry`` objects on one database, used from threads at once, stand for several
masters sharing the registry.
"""

import threading
import time

import pytest

import outpost_registry
from outpost_registry import Registry, RegistryError, StaleRelease

APP = "hello"
SOURCE = "salt://releases/hello/{version}/hello.pyz"
MASTERS = 6


@pytest.fixture(params=["sqlite", "postgres"])
def open_registry(request, tmp_path):
    """Opens a ``Registry`` on this test's own database, once for each master that shares it."""
    if request.param == "sqlite":
        path = str(tmp_path / "registry.sqlite")
        yield lambda: Registry(driver="sqlite", path=path)
        return
    with request.getfixturevalue("postgres").fresh_database() as dsn:
        yield lambda: Registry(driver="postgres", dsn=dsn)


@pytest.fixture
def registry(open_registry):
    return open_registry()


def sha(version):
    """A stand-in sha256 per version: 64 hex digits."""
    return version.replace(".", "").rjust(64, "0")


def register(registry, version, app=APP):
    manifest = {"app": app, "version": version, "sha256": sha(version)}
    source = SOURCE.replace("hello", app).format(version=version)
    return registry.register_release(app, version, sha(version), source, manifest)


def at_once(calls):
    """Run the calls in threads released together; returns their results, raises any error."""
    start = threading.Barrier(len(calls))
    results, errors = [None] * len(calls), []

    def run(index):
        start.wait()
        try:
            results[index] = calls[index]()
        except Exception as err:  # handed over to the test's thread below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a master hung"
    if errors:
        raise errors[0]
    return results


def on_every_master(open_registry, work):
    """``work(registry, index)`` on ``MASTERS`` registries of one database, all at once."""
    masters = [open_registry() for _ in range(MASTERS)]
    return at_once(
        [
            lambda master=master, index=index: work(master, index)
            for index, master in enumerate(masters)
        ]
    )


def statuses(registry, app=APP):
    return {rollout["id"]: rollout["status"] for rollout in registry.rollouts(app, limit=100)}


# -- releases ---------------------------------------------------------------------------------


def test_register_release_records_it_once(registry):
    assert register(registry, "1.0.0") is True
    assert register(registry, "1.0.0") is False

    release = registry.release(APP, "1.0.0")
    assert release["sha256"] == sha("1.0.0")
    assert release["source"] == "salt://releases/hello/1.0.0/hello.pyz"
    assert [entry["event"] for entry in registry.history(app=APP)] == ["registered"]
    assert registry.release(APP, "9.9.9") is None


def test_register_release_refuses_other_content_for_a_version(registry):
    register(registry, "1.0.0")

    with pytest.raises(RegistryError, match=r"^manifest\.sha256: hello 1\.0\.0"):
        registry.register_release(APP, "1.0.0", "f" * 64, "salt://elsewhere.pyz", {})
    assert registry.release(APP, "1.0.0")["sha256"] == sha("1.0.0")


# -- desired releases -------------------------------------------------------------------------


def test_set_desired_keeps_the_previous_release_in_history(registry):
    register(registry, "1.0.0")
    register(registry, "1.1.0")

    registry.set_desired(APP, ["client-1", "client-2"], "1.0.0", 1, "promote")
    registry.set_desired(APP, ["client-1"], "1.1.0", 2, "promote", reason="canary")

    assert registry.desired(APP) == {"client-1": "1.1.0", "client-2": "1.0.0"}
    steps = [
        (entry["version"], entry["previous"], entry["rollout_id"], entry["reason"])
        for entry in registry.history(app=APP, client="client-1")
    ]
    assert steps == [("1.0.0", None, 1, None), ("1.1.0", "1.0.0", 2, "canary")]
    assert [entry["client"] for entry in registry.history(rollout_id=1)] == [
        "client-1",
        "client-2",
    ]


def test_desired_for_client_names_source_and_hash_of_each_app(registry):
    register(registry, "1.0.0")
    register(registry, "2.0.0", app="shop")
    registry.set_desired(APP, ["client-1"], "1.0.0", 1, "promote")
    registry.set_desired("shop", ["client-1", "client-2"], "2.0.0", 2, "promote")

    assert registry.desired_for_client("client-1") == {
        "hello": {
            "version": "1.0.0",
            "source": "salt://releases/hello/1.0.0/hello.pyz",
            "source_hash": f"sha256={sha('1.0.0')}",
        },
        "shop": {
            "version": "2.0.0",
            "source": "salt://releases/shop/2.0.0/shop.pyz",
            "source_hash": f"sha256={sha('2.0.0')}",
        },
    }
    assert set(registry.desired_for_client("client-2")) == {"shop"}
    assert registry.desired_for_client("client-9") == {}


def test_desired_for_client_leaves_out_unregistered_releases(registry):
    registry.set_desired(APP, ["client-1"], "3.0.0", 1, "promote")

    assert registry.desired(APP) == {"client-1": "3.0.0"}
    assert registry.desired_for_client("client-1") == {}


def test_moved_in_rollout_keeps_the_first_move_of_each_client(registry):
    registry.set_desired(APP, ["client-1"], "1.0.0", 1, "promote")
    registry.set_desired(APP, ["client-1", "client-2"], "1.1.0", 2, "promote")
    # The same rollout promotes client-1 again, then a halt rolls it back: neither is a first move.
    registry.set_desired(APP, ["client-1"], "1.1.0", 2, "promote")
    registry.set_desired(APP, ["client-1"], "1.0.0", 2, "rollback", "canary unhealthy")
    registry.set_desired(APP, ["client-3"], "1.1.0", 2, "pending", "offline")

    assert registry.moved_in_rollout(2) == {"client-1": "1.0.0", "client-2": None}
    assert registry.moved_in_rollout(3) == {}


def test_forget_desired_drops_only_the_named_clients(registry):
    register(registry, "1.1.0")
    registry.set_desired(APP, ["client-1", "client-2"], "1.1.0", 4, "promote")

    registry.forget_desired(APP, ["client-2"], 4, "canary unhealthy")

    assert registry.desired(APP) == {"client-1": "1.1.0"}
    assert registry.desired_for_client("client-2") == {}
    last = registry.history(client="client-2")[-1]
    assert (last["event"], last["version"], last["rollout_id"], last["reason"]) == (
        "rollback",
        None,
        4,
        "canary unhealthy",
    )


def test_forget_desired_records_the_release_it_drops(registry):
    """History lost which release a forgotten client had pointed at: ``previous`` stayed empty."""
    registry.set_desired(APP, ["client-1"], "1.1.0", 4, "promote")

    registry.forget_desired(APP, ["client-1"], 4, "canary unhealthy")

    assert registry.history(client="client-1")[-1]["previous"] == "1.1.0"


# -- rollouts ---------------------------------------------------------------------------------


def test_claim_rollout_runs_one_per_app_and_queues_only_the_newest(registry):
    first = registry.claim_rollout(APP, "1.1.0")
    second = registry.claim_rollout(APP, "1.2.0")
    third = registry.claim_rollout(APP, "1.3.0")
    other_app = registry.claim_rollout("shop", "2.0.0")

    assert first[1] == "running"
    assert second[1] == "queued"
    assert third[1] == "queued"
    assert other_app[1] == "running"
    assert statuses(registry) == {first[0]: "running", second[0]: "superseded", third[0]: "queued"}
    assert registry.rollout(second[0])["reason"] == "a newer release (1.3.0) arrived"
    assert registry.rollout(other_app[0])["app"] == "shop"


def test_promote_queued_runs_the_waiting_rollout_once_the_running_one_ends(registry):
    running, _ = registry.claim_rollout(APP, "1.1.0")
    queued, _ = registry.claim_rollout(APP, "1.2.0")
    assert registry.promote_queued(APP) is None

    registry.update_rollout(running, "succeeded", status="succeeded")

    assert registry.promote_queued(APP) == {"id": queued, "version": "1.2.0"}
    assert registry.rollout(queued)["status"] == "running"
    assert registry.rollout(queued)["phase"] == "running"
    assert registry.promote_queued(APP) is None
    registry.update_rollout(queued, "halted", status="halted")
    assert registry.promote_queued(APP) is None


def test_claim_rollout_supersedes_a_queued_one_when_none_runs(registry):
    """A release arriving between the end of a rollout and ``promote_queued`` left the older
    queued release waiting, and ``promote_queued`` later rolled clients back to it."""
    running, _ = registry.claim_rollout(APP, "1.1.0")
    stale, _ = registry.claim_rollout(APP, "1.2.0")
    registry.update_rollout(running, "succeeded", status="succeeded")

    newest, status = registry.claim_rollout(APP, "1.3.0")
    registry.update_rollout(newest, "succeeded", status="succeeded")

    assert status == "running"
    assert registry.rollout(stale)["status"] == "superseded"
    assert registry.promote_queued(APP) is None


def test_update_rollout_sets_phase_counts_status_and_reason(registry):
    rollout_id, _ = registry.claim_rollout(APP, "1.1.0")

    registry.update_rollout(rollout_id, "canary", counts={"batch": 0, "clients": 1})
    registry.update_rollout(rollout_id, "halted", status="halted", reason="canary unhealthy")

    rollout = registry.rollout(rollout_id)
    assert (rollout["phase"], rollout["status"], rollout["reason"]) == (
        "halted",
        "halted",
        "canary unhealthy",
    )
    assert rollout["counts"] == {"batch": 0, "clients": 1}
    assert rollout["updated_at"] >= rollout["created_at"]
    with pytest.raises(RegistryError, match="^rollout_id: no rollout 999$"):
        registry.rollout(999)


def test_rollouts_lists_newest_first_by_app_and_limit(registry):
    claims = (("hello", "1.0.0"), ("shop", "1.0.0"), ("hello", "1.1.0"))
    ids = [registry.claim_rollout(app, version)[0] for app, version in claims]

    assert [rollout["id"] for rollout in registry.rollouts()] == ids[::-1]
    assert [rollout["id"] for rollout in registry.rollouts(APP)] == [ids[2], ids[0]]
    assert [rollout["id"] for rollout in registry.rollouts(limit=1)] == [ids[2]]
    assert registry.rollouts("nothing") == []
    assert registry.rollouts()[0]["counts"] == {}


def test_the_database_refuses_a_second_running_rollout_of_an_app(registry):
    """A constraint the database broke surfaced as the driver's own error, which neither the
    runners nor the pillar catch; it is a ``RegistryError`` now."""
    registry.claim_rollout(APP, "1.1.0")
    queued, _ = registry.claim_rollout(APP, "1.2.0")

    with pytest.raises(RegistryError, match="registry: "):
        registry.update_rollout(queued, "running", status="running")
    assert registry.rollout(queued)["status"] == "queued"


# -- several masters --------------------------------------------------------------------------


def test_masters_claiming_at_once_start_exactly_one_rollout(open_registry):
    """On PostgreSQL, masters claiming together each saw no running rollout: all but one failed on
    the unique index instead of queueing, or two queued releases both kept waiting."""
    claims = on_every_master(open_registry, lambda registry, index: claim_or_stale(registry, index))

    assert [status for _, status in claims].count("running") == 1
    found = statuses(open_registry())
    assert list(found.values()).count("running") == 1
    assert list(found.values()).count("queued") <= 1
    # A version lower than one already running or queued is refused, not recorded.
    assert len(found) == MASTERS - [status for _, status in claims].count("stale")


def claim_or_stale(registry, index):
    try:
        return registry.claim_rollout(APP, f"1.{index}.0")
    except outpost_registry.StaleRelease:
        return None, "stale"


def test_masters_promoting_at_once_run_the_queued_rollout_once(open_registry):
    """On PostgreSQL, every master promoting together got the same queued rollout to run."""
    registry = open_registry()
    running, _ = registry.claim_rollout(APP, "1.1.0")
    queued, _ = registry.claim_rollout(APP, "1.2.0")
    registry.update_rollout(running, "succeeded", status="succeeded")

    promoted = on_every_master(open_registry, lambda master, _: master.promote_queued(APP))

    assert [item for item in promoted if item] == [{"id": queued, "version": "1.2.0"}]


def test_masters_registering_one_release_at_once_record_it_once(open_registry):
    created = on_every_master(open_registry, lambda registry, _: register(registry, "1.0.0"))

    assert created.count(True) == 1
    assert len(open_registry().history(app=APP)) == 1


def test_masters_starting_at_once_on_an_empty_database_share_one_schema(open_registry):
    """Masters opening a new registry together failed: PostgreSQL's concurrent ``CREATE TABLE IF
    NOT EXISTS`` broke a catalog index, SQLite's switch to WAL answered "database is locked"."""
    masters = at_once([open_registry] * MASTERS)

    assert all(isinstance(master, Registry) for master in masters)


# -- configuration ----------------------------------------------------------------------------


# -- several masters: claims, leases, takeovers ---------------------------------------------


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


def test_from_opts_defaults_to_sqlite_in_the_master_cachedir(tmp_path):
    registry = Registry.from_opts({"cachedir": str(tmp_path)})

    assert registry.driver == "sqlite"
    assert registry.path == str(tmp_path / "outpost" / "registry.sqlite")
    assert (tmp_path / "outpost" / "registry.sqlite").exists()


def test_an_unknown_driver_is_refused():
    with pytest.raises(RegistryError, match="^registry:driver: 'mysql' is not sqlite or postgres$"):
        Registry(driver="mysql")


def test_registry_error_is_a_salt_command_error():
    from salt.exceptions import CommandExecutionError

    assert issubclass(outpost_registry.RegistryError, CommandExecutionError)


# -- versions only go forward ---------------------------------------------------------------


@pytest.mark.parametrize("older", ["1.0.0", "1.1.0", "1.2.1", "1.3.0-rc.1", "1.3.0+build.7"])
def test_an_older_release_never_supersedes_a_newer_queued_one(registry, older):
    """With 1.2.0 running and 1.3.0 queued, a replayed older announcement superseded 1.3.0 and
    queued a downgrade."""
    done, _ = registry.claim_rollout(APP, "1.1.0")
    registry.update_rollout(done, "succeeded", status="succeeded")
    running, _ = registry.claim_rollout(APP, "1.2.0")
    queued, _ = registry.claim_rollout(APP, "1.3.0")

    with pytest.raises(StaleRelease, match=r"version: .* is not newer than 1\.3\.0 \(queued\)"):
        registry.claim_rollout(APP, older)

    assert statuses(registry) == {done: "succeeded", running: "running", queued: "queued"}


def test_an_exact_replay_of_a_running_or_queued_release_is_a_duplicate(registry):
    """A replayed announcement of the release that runs or waits must be that same rollout."""
    running, _ = registry.claim_rollout(APP, "1.2.0")
    queued, _ = registry.claim_rollout(APP, "1.3.0")

    assert registry.claim_rollout(APP, "1.2.0") == (running, "duplicate")
    assert registry.claim_rollout(APP, "1.3.0") == (queued, "duplicate")
    assert statuses(registry) == {running: "running", queued: "queued"}


def test_a_release_at_or_below_the_newest_succeeded_one_is_refused(registry):
    """After 1.2.0 succeeded, a re-sent 1.1.0 (or 1.2.0) announcement started a downgrade."""
    done, _ = registry.claim_rollout(APP, "1.2.0")
    registry.update_rollout(done, "succeeded", status="succeeded")

    for version in ("1.1.0", "1.2.0", "1.2.0-rc.2"):
        with pytest.raises(StaleRelease, match=f"version: {version} of hello .* 1.2.0 .succeeded"):
            registry.claim_rollout(APP, version)
    assert registry.claim_rollout(APP, "1.10.0")[1] == "running"


def test_a_halted_release_does_not_block_a_newer_or_a_retried_one(registry):
    halted, _ = registry.claim_rollout(APP, "2.0.0")
    registry.update_rollout(halted, "halted", status="halted")

    assert registry.claim_rollout(APP, "2.0.0")[1] == "running"


def test_version_key_follows_semantic_version_precedence():
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.9.0",
        "1.10.0",
        "2.0.0",
    ]
    assert sorted(reversed(ordered), key=outpost_registry.version_key) == ordered
    assert outpost_registry.version_key("1.0.0+b1") == outpost_registry.version_key("1.0.0")


# -- remediation claims ---------------------------------------------------------------------


def age_claims(registry, seconds):
    """Backdate every running remediation, as if its master had stopped ``seconds`` ago."""
    moment = time.time() - seconds
    stamp = outpost_registry.datetime.datetime.fromtimestamp(
        moment, outpost_registry.datetime.timezone.utc
    ).isoformat(timespec="milliseconds")
    with registry._transaction() as cursor:
        cursor.execute("UPDATE remediations SET started_at = ? WHERE status = 'running'", (stamp,))


def test_a_running_remediation_merges_repeats(registry):
    claimed = registry.claim_remediation("client-1", APP, abandon_after=300)

    assert claimed is not None
    assert registry.claim_remediation("client-1", APP, abandon_after=300) is None
    assert registry.claim_remediation("client-2", APP, abandon_after=300) is not None


def test_a_claim_left_by_a_stopped_master_is_abandoned_and_taken_again(registry):
    """A master restarted mid-remediation left its claim running for ever: every later
    unhealthy event was merged and self-healing of that app stopped for good."""
    left = registry.claim_remediation("client-1", APP, abandon_after=300)
    age_claims(registry, 299)
    assert registry.claim_remediation("client-1", APP, abandon_after=300) is None

    age_claims(registry, 301)
    taken = registry.claim_remediation("client-1", APP, abandon_after=300)

    assert taken not in (None, left)
    (abandoned,) = registry.remediations("client-1", "1970-01-01")
    assert abandoned["id"] == left
    assert abandoned["decision"] == "abandoned"
    assert "300 s" in abandoned["reason"]
    assert registry.claim_remediation("client-1", APP, abandon_after=300) is None
    registry.finish_remediation(taken, "restart", "unhealthy", "restarted, healthy")
    assert [entry["decision"] for entry in registry.remediations("client-1", "1970-01-01")] == [
        "abandoned",
        "restart",
    ]
