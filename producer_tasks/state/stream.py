"""The batch stream: cycles append, the bridge drains through a consumer group.

An entry is acknowledged only after the bridge wrote its frame to the orchestrator's
socket; a restarted bridge first re-reads what it had read but not acknowledged. Written
entries move, in the same transaction, to the resend window (a second stream, trimmed by
age and size): the kernel taking the bytes is not the orchestrator reading them, so after
a reconnect the window is re-sent, oldest first.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import redis
from redis.exceptions import NoScriptError

from producer_tasks.clock import now_ms
from producer_tasks.records import BatchRecord, Phase
from producer_tasks.state.client import redis_errors
from producer_tasks.state.decode import phase_of
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.keys import STREAM_GROUP
from producer_tasks.state.scripts import ONCE_TTL_MS, CommandCall, Deliver, ScriptCall, Settle

log = logging.getLogger(__name__)


def append_call(
    fleet: Fleet, batch: BatchRecord, *, call_id: str | None = None, checked: int = 0, filtered: int = 0
) -> ScriptCall:
    """Append if the batch's epoch is still current: the script returns the entry id, ""
    for a batch without attributes (only its bloom counts and journal entry are written),
    or nothing when the topic changed meanwhile. The same ``call_id`` (a cycle's lane
    token) appends and counts once, however often the call is sent, and closes the
    cycle's journal entry. ``checked``/``filtered``: the batch's bloom check, counted here."""
    return Deliver(
        state_key=fleet.keys.state,
        batches_key=fleet.keys.batches,
        counters_key=fleet.keys.counters,
        once_key=fleet.keys.once(call_id or uuid.uuid4().hex, "deliver"),
        journal_key=fleet.keys.journal,
        bloom_meta_key=fleet.keys.bloom_meta,
        epoch=batch.epoch,
        batch_json=batch.model_dump_json() if batch.attributes else "",
        attributes=len(batch.attributes),
        call_id=call_id or "",
        checked=checked,
        filtered=filtered,
        once_ttl_ms=ONCE_TTL_MS,
    ).call()


def append(fleet: Fleet, batch: BatchRecord, *, call_id: str | None = None) -> str | None:
    (entry,) = fleet.run(append_call(fleet, batch, call_id=call_id))
    return str(entry) if entry else None


def journal_entry(batch_json: str) -> str:
    """A journal entry: when it was written, and the whole batch (every candidate)."""
    return f"{now_ms()}:{batch_json}"


def recover_journal(fleet: Fleet, *, older_than_ms: int) -> int:
    """Append the batches of cycles that set their bloom bits but died before appending.

    Which candidates were new is lost with the cycle (its bits are set now), so the batch
    is appended whole: at least once, never lost; the orchestrator de-duplicates. The
    cycle's own ``call_id`` keeps this from appending what the cycle did deliver. Entries
    younger than ``older_than_ms`` may belong to a cycle still retrying. Returns how many
    batches were appended.
    """
    with redis_errors("read journal"):
        entries = fleet.redis.hgetall(fleet.keys.journal)
    cutoff = now_ms() - older_than_ms
    calls: list[ScriptCall] = []
    for call_id, value in entries.items():
        written, _, data = value.partition(":")
        if written.isdigit() and int(written) > cutoff:
            continue
        try:
            batch = BatchRecord.model_validate_json(data)
        except ValueError as exc:
            log.error("journal entry %s is unreadable, dropped: %s", call_id, exc)
            fleet.run(CommandCall(("HDEL", fleet.keys.journal, call_id)))
            continue
        calls.append(append_call(fleet, batch, call_id=call_id))
    if not calls:
        return 0
    appended = sum(1 for entry in fleet.run(*calls) if entry)
    log.warning(
        "recovered %d journalled batch(es) of cycles that died between their bloom check and "
        "their append (%d appended whole, the rest had been delivered or were for an old topic)",
        len(calls),
        appended,
    )
    return appended


@dataclass(frozen=True)
class Entry:
    id: str
    epoch: int
    batch: BatchRecord | None  # None when the entry could not be read (reported, then dropped)
    error: str = ""
    data: str = ""  # the batch as stored


def ensure_group(fleet: Fleet) -> None:
    with redis_errors("create consumer group"):
        try:
            fleet.redis.xgroup_create(fleet.keys.batches, STREAM_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def _entries(raw: list[tuple[str, dict[str, str]]]) -> list[Entry]:
    entries = []
    for entry_id, fields in raw:
        if not fields:  # deleted meanwhile
            entries.append(Entry(entry_id, -1, None, "entry was deleted"))
            continue
        try:
            batch = BatchRecord.model_validate_json(fields.get("data", ""))
            entries.append(Entry(entry_id, int(fields.get("epoch", -1)), batch, data=fields["data"]))
        except ValueError as exc:
            entries.append(Entry(entry_id, -1, None, f"unreadable batch: {exc}"))
    return entries


@dataclass(frozen=True)
class StreamRead:
    """One read of the bridge: the entries, and the topic's epoch and phase read just after
    them in the same round trip (what each entry's epoch is compared with; the phase spares
    the bridge a poll of its own); ``settled``: the reply of the settle call it ran first."""

    entries: list[Entry]
    epoch: int
    phase: Phase
    settled: list[str] = field(default_factory=list)


def read(
    fleet: Fleet, consumer: str, *, pending: bool, count: int = 100, block_ms: int | None = None
) -> list[Entry]:
    """Pending entries of this consumer (``pending=True``), or new ones."""
    return read_with_state(fleet, consumer, pending=pending, count=count, block_ms=block_ms).entries


def read_with_state(
    fleet: Fleet,
    consumer: str,
    *,
    pending: bool,
    count: int = 100,
    block_ms: int | None = None,
    settle: ScriptCall | None = None,
) -> StreamRead:
    """``read``, and the topic's epoch and phase read after the entries; first, in the same
    round trip, ``settle`` (``settle_call``: what the previous read brought and the bridge
    handled), so that a pending read never brings those again."""
    with redis_errors("read stream"):
        pipe = fleet.redis.pipeline(transaction=False)
        if settle is not None:
            fleet.queue(pipe, settle)
        pipe.xreadgroup(
            STREAM_GROUP,
            consumer,
            {fleet.keys.batches: "0" if pending else ">"},
            count=count,
            block=None if pending else block_ms,
        )
        pipe.hmget(fleet.keys.state, ["epoch", "phase"])
        pipe.hstrlen(fleet.keys.state, "data")
        replies = pipe.execute(raise_on_error=False)
        settled = replies.pop(0) if settle is not None else []
        unloaded = isinstance(settled, NoScriptError)  # not loaded yet (a new server, a restart)
        if unloaded:
            assert settle is not None
            (settled,) = fleet.run(settle)  # loads it
        result, state_fields, data_length = replies
        gone = any(_no_group(reply) for reply in (settled, *replies))
        if gone:
            log.warning("the batch stream's consumer group was gone (Redis lost its data?): recreated")
            ensure_group(fleet)
        if isinstance(settled, Exception):
            raise settled  # nothing was settled: the same call goes with a later read
        window_ids = [str(i) for i in settled]
        if gone:
            return StreamRead([], 0, fleet.read_phase(), window_ids)  # what the settle did stands
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
    epoch, phase = state_fields
    known = phase_of(phase, data_length)
    state = StreamRead([], int(epoch or 0), fleet.read_phase() if known is None else known, window_ids)
    if unloaded and pending:  # this read came before the settle: it may bring what is settled now
        return replace(read_with_state(fleet, consumer, pending=True, count=count), settled=state.settled)
    if not result:
        return state
    ((_, raw),) = result
    return replace(state, entries=_entries(raw))


def _no_group(reply: object) -> bool:
    return isinstance(reply, redis.ResponseError) and "NOGROUP" in str(reply)


def claim_orphans(fleet: Fleet, consumer: str, *, idle_ms: int, count: int = 100) -> list[Entry]:
    """Take over entries another (dead) bridge consumer read but never acknowledged."""
    with redis_errors("claim stream entries"):
        result = fleet.redis.xautoclaim(
            fleet.keys.batches, STREAM_GROUP, consumer, min_idle_time=idle_ms, start_id="0-0", count=count
        )
    return _entries(result[1])


def settle_call(
    fleet: Fleet, entry_ids: Sequence[str], *, written: Sequence[Entry] = (), trim_to: str | None = None
) -> ScriptCall:
    """Acknowledge and delete handled entries; those ``written`` to the orchestrator move to
    the resend window in the same script (Redis copies them: their data does not travel
    back), which also forgets window entries older than ``trim_to``. The script returns the
    window ids of the written ones, in order."""
    return Settle(
        batches_key=fleet.keys.batches,
        window_key=fleet.keys.window,
        group=STREAM_GROUP,
        written_json=json.dumps([entry.id for entry in written]),
        done_json=json.dumps(list(entry_ids)),
        trim_to=trim_to or "",
    ).call()


def window(fleet: Fleet) -> list[Entry]:
    """The resend window, oldest first."""
    with redis_errors("read resend window"):
        raw = fleet.redis.xrange(fleet.keys.window)
    return _entries(raw)
