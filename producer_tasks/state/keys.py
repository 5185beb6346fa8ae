"""Redis key names of one producer fleet (everything fleet-wide lives in Redis).

All keys of a producer share the ``prod:{id}:`` prefix, so several producers can share
one Redis and ``producer status`` can find everything with one SCAN. Celery's broker and
result backend keys too: kombu's ``global_keyprefix`` puts them under ``prod:{id}:broker:``
(the ``openai`` queue of producer ``p1`` is the Redis list ``prod:p1:broker:openai``), so
the producers' workers, beats and remote-control commands never see each other's messages.
"""

from __future__ import annotations

from dataclasses import dataclass

STREAM_GROUP = "bridge"


@dataclass(frozen=True, slots=True)
class Keys:
    producer_id: str

    @property
    def prefix(self) -> str:
        return f"prod:{self.producer_id}:"

    @property
    def broker_prefix(self) -> str:
        """kombu's ``global_keyprefix`` for this producer's broker and result backend keys."""
        return f"{self.prefix}broker:"

    @property
    def state(self) -> str:
        """Hash: topic state (phase, epoch, data JSON)."""
        return f"{self.prefix}state"

    @property
    def lanes(self) -> str:
        """Hash: lane index -> lane JSON (token, provider, status, worker, ...)."""
        return f"{self.prefix}lanes"

    @property
    def workers(self) -> str:
        """Sorted set: worker name -> last heartbeat (unix ms)."""
        return f"{self.prefix}workers"

    @property
    def known(self) -> str:
        """Sorted set: the current topic's delivered items -> times they came back (novelty
        prompts' "already known" record; dropped with the topic)."""
        return f"{self.prefix}known"

    @property
    def facets(self) -> str:
        """Hash: the current topic's facets -> cycles that focused on each (novelty prompts;
        dropped with the topic)."""
        return f"{self.prefix}facets"

    @property
    def facet_yield(self) -> str:
        """Hash: the current topic's facets -> new attributes each brought."""
        return f"{self.prefix}facet_yield"

    @property
    def strategy_yield(self) -> str:
        """Hash: per provider and prompt strategy, what it brought for the current topic
        (``strategy.field_name``: discounted cycles, new attributes, cost, expected; tried)."""
        return f"{self.prefix}strategy_yield"

    @property
    def facets_asked(self) -> str:
        """String: the epoch whose facets one cycle is asking the model for (a lock with a TTL)."""
        return f"{self.prefix}facets_asked"

    @property
    def spend(self) -> str:
        """Hash: ``usd`` spent by every call of this producer id so far; ``reached_ms`` and
        ``budget`` once PRODUCER_BUDGET_USD was reached."""
        return f"{self.prefix}spend"

    @property
    def beat_lease(self) -> str:
        """String: the beat process that schedules now (its lease; others stand by)."""
        return f"{self.prefix}beat_lease"

    @property
    def worker_slots(self) -> str:
        """Hash: worker name -> its pool's slots (concurrency), for autoscaling."""
        return f"{self.prefix}worker_slots"

    def queue_workers(self, queue: str) -> str:
        """Sorted set: workers consuming a provider queue -> last heartbeat (unix ms)."""
        return f"{self.prefix}queue:{queue}:workers"

    def health(self, provider: str) -> str:
        return f"{self.prefix}health:{provider}"

    def stats(self, provider: str) -> str:
        return f"{self.prefix}stats:{provider}"

    def rate(self, provider: str, kind: str) -> str:
        return f"{self.prefix}rate:{provider}:{kind}"

    @property
    def history(self) -> str:
        """List: the last generation attempts, newest first (JSON)."""
        return f"{self.prefix}history"

    @property
    def batches(self) -> str:
        """Stream: batches waiting for the bridge."""
        return f"{self.prefix}batches"

    @property
    def window(self) -> str:
        """Stream: batches already written to the orchestrator, kept for the resend window."""
        return f"{self.prefix}window"

    @property
    def counters(self) -> str:
        """Hash: fleet-wide counters (batches appended / discarded, attributes appended)."""
        return f"{self.prefix}counters"

    @property
    def quota(self) -> str:
        """Hash with a TTL: ``target`` (the ``attributes_appended`` counter the run needs) and
        ``per_call`` (the most one call may append): no call starts that the target does not
        need (``producer run --count``; it renews the key while it runs)."""
        return f"{self.prefix}quota"

    @property
    def bloom(self) -> str:
        """Prefix of the bloom filter's bits: a string per generation, ``…:bloom:<generation>``
        (MSB first, as GETBIT/SETBIT)."""
        return f"{self.prefix}bloom"

    @property
    def bloom_meta(self) -> str:
        """Hash: num_bits, num_hashes, items, loaded_ms, source; plus fleet-wide counters."""
        return f"{self.prefix}bloom:meta"

    @property
    def journal(self) -> str:
        """Hash: call id -> ``<unix ms>:<batch JSON>`` of a cycle whose bloom bits are set but
        whose batch is not appended yet (recovered whole if the cycle dies in between)."""
        return f"{self.prefix}journal"

    def once(self, call_id: str, what: str) -> str:
        """String: the answer of an idempotent call (``what`` of call ``call_id``), kept briefly."""
        return f"{self.prefix}once:{call_id}:{what}"

    @property
    def reconcile_lock(self) -> str:
        return f"{self.prefix}reconcile:lock"

    @property
    def bridge(self) -> str:
        """Hash: the bridge's own status (connected, frames sent, last error)."""
        return f"{self.prefix}bridge"
