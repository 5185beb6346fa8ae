"""The batch stream against a real redis-server: epoch-checked appends, the consumer
group's pending and new entries, orphan claims, acknowledgement."""

from __future__ import annotations

from producer_tasks.records import BatchRecord, MetadataRecord, Phase, ProviderStatus
from producer_tasks.settings import load_settings
from producer_tasks.state import bloom, control, stream
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.keys import STREAM_GROUP
from producer_tasks.state.scripts import Deliver, ScriptCall
from tests.conftest import open_fleet, start_topic


def fleet_for(redis_url: str) -> Fleet:
    settings = load_settings({"REDIS_URL": redis_url})
    fleet = open_fleet(settings)
    start_topic(fleet, settings)
    stream.ensure_group(fleet)
    return fleet


def batch(epoch: int, *attributes: str) -> BatchRecord:
    return BatchRecord(
        epoch=epoch,
        topic="cheese",
        attributes=list(attributes),
        provider_used="mock",
        metadata=MetadataRecord(
            response_time_ms=5, prompt_tokens=1, completion_tokens=2, provider_status=ProviderStatus.HEALTHY
        ),
    )


def test_an_append_for_an_old_epoch_is_discarded_and_counted(redis_url: str) -> None:
    fleet = fleet_for(redis_url)
    epoch = fleet.read_state().epoch
    assert stream.append(fleet, batch(epoch, "Brie", "Comté")) is not None
    assert stream.append(fleet, batch(epoch - 1, "Old")) is None
    counters = fleet.read_counters()
    assert (counters["batches_appended"], counters["attributes_appended"], counters["batches_discarded"]) == (
        1,
        2,
        1,
    )
    assert fleet.backlog() == 1


def test_read_entries_stay_pending_until_acknowledged_then_are_deleted(redis_url: str) -> None:
    fleet = fleet_for(redis_url)
    epoch = fleet.read_state().epoch
    ids = [stream.append(fleet, batch(epoch, f"Cheese {i}")) for i in range(3)]
    fresh = stream.read(fleet, "bridge-a", pending=False, block_ms=10)
    assert [e.id for e in fresh] == ids and all(e.batch is not None for e in fresh)
    assert stream.read(fleet, "bridge-a", pending=False, block_ms=10) == []  # nothing new
    assert [e.id for e in stream.read(fleet, "bridge-a", pending=True)] == ids  # a restart re-reads
    # the bridge's read: the entries and the topic's epoch, read after them in the same trip
    assert epoch > 0 and stream.read_with_state(fleet, "bridge-a", pending=True).epoch == epoch
    assert stream.read_with_state(fleet, "bridge-a", pending=False, block_ms=10) == stream.StreamRead(
        [], epoch, Phase.RUNNING
    )
    # the next read settles what the bridge handled first: a pending read no longer brings it,
    # also when the server has not loaded the script yet (a new or restarted server)
    fleet.redis.script_flush()
    settle = stream.settle_call(fleet, [e.id for e in fresh[:2]], written=fresh[:2])
    read = stream.read_with_state(fleet, "bridge-a", pending=True, settle=settle)
    assert [e.id for e in read.entries] == ids[2:]
    assert fleet.backlog() == 1  # acknowledged entries are deleted
    kept = read.settled
    assert [e.id for e in stream.window(fleet)] == kept  # written: moved to the resend window
    # the window is trimmed in the settle script (XTRIM MINID keeps ids >= it)
    (last,) = settle_alone(
        fleet, stream.settle_call(fleet, [fresh[2].id], written=fresh[2:], trim_to=kept[1])
    )
    assert [e.id for e in stream.window(fleet)] == [kept[1], last]
    assert [e.batch for e in stream.window(fleet)] == [e.batch for e in fresh[1:]]


def settle_alone(fleet: Fleet, call: ScriptCall) -> list[str]:
    (ids,) = fleet.run(call)
    return [str(i) for i in ids]


def test_settling_copies_what_is_left_and_skips_an_entry_deleted_meanwhile(redis_url: str) -> None:
    fleet = fleet_for(redis_url)
    epoch = fleet.read_state().epoch
    ids = [stream.append(fleet, batch(epoch, f"Cheese {i}")) for i in range(3)]
    fresh = stream.read(fleet, "bridge-a", pending=False, block_ms=10)
    fleet.redis.xdel(fleet.keys.batches, ids[1])  # e.g. trimmed by hand while in flight
    kept = settle_alone(fleet, stream.settle_call(fleet, [e.id for e in fresh], written=fresh))
    assert kept[1] == "" and all(kept[::2])
    window = stream.window(fleet)
    assert [e.id for e in window] == [kept[0], kept[2]]
    assert [e.batch.attributes for e in window if e.batch] == [["Cheese 0"], ["Cheese 2"]]
    assert stream.read(fleet, "bridge-a", pending=True) == [] and fleet.backlog() == 0


def test_a_settle_sent_after_redis_lost_everything_still_answers_for_each_written_entry(
    redis_url: str,
) -> None:
    """Redis restarted empty between a read and the settle of what it brought (no stream,
    no group, no scripts): the read recreates the group and still says, for each written
    entry, that it is gone (the bridge pairs them one to one)."""
    fleet = fleet_for(redis_url)
    epoch = fleet.read_state().epoch
    for i in range(3):
        stream.append(fleet, batch(epoch, f"Cheese {i}"))
    fresh = stream.read(fleet, "bridge-a", pending=False, block_ms=10)
    settle = stream.settle_call(fleet, [e.id for e in fresh], written=fresh)
    for pending in (False, True):  # the forward loop's next read, and a reconnected bridge's first
        fleet.redis.flushall()
        fleet.redis.script_flush()
        read = stream.read_with_state(fleet, "bridge-a", pending=pending, block_ms=10, settle=settle)
        assert (read.entries, read.settled) == ([], ["", "", ""])
        assert [g["name"] for g in fleet.redis.xinfo_groups(fleet.keys.batches)] == [STREAM_GROUP]


def test_the_read_brings_the_phase_so_the_bridge_need_not_poll_it(redis_url: str) -> None:
    fleet = fleet_for(redis_url)
    assert stream.read_with_state(fleet, "bridge-a", pending=False, block_ms=10).phase is Phase.RUNNING
    control.stop(fleet)
    assert stream.read_with_state(fleet, "bridge-a", pending=False, block_ms=10).phase is fleet.read_phase()
    fleet.redis.delete(fleet.keys.state)
    assert stream.read_with_state(fleet, "bridge-a", pending=False, block_ms=10).phase is Phase.IDLE


def test_another_consumer_claims_what_a_dead_one_left_pending(redis_url: str) -> None:
    fleet = fleet_for(redis_url)
    entry = stream.append(fleet, batch(fleet.read_state().epoch, "Gouda"))
    assert [e.id for e in stream.read(fleet, "bridge-dead", pending=False, block_ms=10)] == [entry]
    claimed = stream.claim_orphans(fleet, "bridge-new", idle_ms=0)
    assert [e.id for e in claimed] == [entry]
    assert claimed[0].batch is not None and claimed[0].batch.attributes == ["Gouda"]


def test_an_unreadable_entry_is_reported_not_raised(redis_url: str) -> None:
    fleet = fleet_for(redis_url)
    fleet.run(
        Deliver(
            state_key=fleet.keys.state,
            batches_key=fleet.keys.batches,
            counters_key=fleet.keys.counters,
            once_key=fleet.keys.once("t1", "deliver"),
            journal_key=fleet.keys.journal,
            bloom_meta_key=fleet.keys.bloom_meta,
            once_ttl_ms=1000,
            epoch=fleet.read_state().epoch,
            batch_json="{not json",
            attributes=1,
            call_id="",
            checked=0,
            filtered=0,
        ).call()
    )
    (entry,) = stream.read(fleet, "bridge-a", pending=False, block_ms=10)
    assert entry.batch is None and "unreadable batch" in entry.error


def test_a_resent_delivery_appends_once(redis_url: str) -> None:
    fleet = fleet_for(redis_url)
    epoch = fleet.read_state().epoch
    first = stream.append(fleet, batch(epoch, "Brie"), call_id="lane-token-1")
    again = stream.append(fleet, batch(epoch, "Brie"), call_id="lane-token-1")  # a resent pipeline
    assert first is not None and again == first
    assert fleet.backlog() == 1 and fleet.read_counters()["batches_appended"] == 1
    assert stream.append(fleet, batch(epoch, "Brie"), call_id="lane-token-2") not in (None, first)


def test_a_journalled_batch_of_a_dead_cycle_is_appended_whole_once(redis_url: str) -> None:
    """A cycle that set its bloom bits and died before appending: the batch, with every
    candidate, is appended by the recovery; a cycle that did deliver leaves nothing."""
    settings = load_settings({"REDIS_URL": redis_url})
    fleet = fleet_for(redis_url)
    epoch = fleet.read_state().epoch
    dead = batch(epoch, "Brie", "Comté", "Gouda")
    journal = bloom.Journal("lane-token-dead", epoch, stream.journal_entry(dead.model_dump_json()))
    checked = bloom.check_and_add(
        fleet, settings, ["Brie", "Comté", "Gouda"], journal=journal, defer_counters=True
    )
    assert checked.passed == ["Brie", "Comté", "Gouda"]  # ...and the cycle dies here
    alive = batch(epoch, "Emmental")
    journal = bloom.Journal("lane-token-alive", epoch, stream.journal_entry(alive.model_dump_json()))
    checked = bloom.check_and_add(fleet, settings, ["Emmental"], journal=journal, defer_counters=True)
    fleet.run(stream.append_call(fleet, alive, call_id="lane-token-alive", checked=1, filtered=0))
    assert fleet.redis.hkeys(fleet.keys.journal) == ["lane-token-dead"]
    assert stream.recover_journal(fleet, older_than_ms=60_000) == 0  # may still be retrying
    assert stream.recover_journal(fleet, older_than_ms=0) == 1
    assert stream.recover_journal(fleet, older_than_ms=0) == 0
    entries = stream.read(fleet, "bridge-a", pending=False, block_ms=10)
    assert [e.batch.attributes for e in entries if e.batch] == [["Emmental"], ["Brie", "Comté", "Gouda"]]
    assert bloom.contains(fleet, ["Brie", "Comté", "Gouda", "Emmental"]) == [True] * 4
    assert fleet.read_counters()["batches_appended"] == 2


def test_a_journalled_batch_of_an_old_topic_is_dropped(redis_url: str) -> None:
    settings = load_settings({"REDIS_URL": redis_url})
    fleet = fleet_for(redis_url)
    old = batch(fleet.read_state().epoch, "Brie")
    journal = bloom.Journal("lane-token-old", old.epoch, stream.journal_entry(old.model_dump_json()))
    bloom.check_and_add(fleet, settings, ["Brie"], journal=journal, defer_counters=True)
    start_topic(fleet, settings, "towns")
    assert stream.recover_journal(fleet, older_than_ms=0) == 0
    assert fleet.backlog() == 0 and fleet.redis.hlen(fleet.keys.journal) == 0
    assert fleet.read_counters()["batches_discarded"] == 1
    assert bloom.contains(fleet, ["Brie"]) == [False]  # the new topic's filter never saw it
