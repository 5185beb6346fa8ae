"""The novelty prompts' record, in Redis: per topic, what was delivered and what came back.

A model keeps returning its favourites; the bloom filter stops them from reaching the
orchestrator, but the tokens are spent. So each cycle records what it delivered and which
of its candidates were already known (``remember_call``, in the delivery's round trip),
and the next prompts list a sample of that record to avoid (``avoid_sample``): the most
repeated items first, then a rotating random draw from the rest. The record is bounded
(``CAP`` items) and dropped with the topic (``control``'s new-topic transaction).
"""

from __future__ import annotations

import json

from producer_tasks.state.client import translated
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.scripts import Remember, ScriptCall

CAP = 5000  # items kept per topic
TTL_MS = 7 * 24 * 3600 * 1000  # an abandoned topic's record goes away by itself
TOP = 40  # most repeated items read per sample
RANDOM = 80  # random items read per sample (the rotating part)


def remember_call(fleet: Fleet, *, epoch: int, delivered: list[str], repeated: list[str]) -> ScriptCall:
    return Remember(
        state_key=fleet.keys.state,
        known_key=fleet.keys.known,
        epoch=epoch,
        delivered_json=json.dumps(delivered),
        repeated_json=json.dumps(repeated),
        cap=CAP,
        ttl_ms=TTL_MS,
    ).call()


@translated("read novelty record")
def avoid_candidates(fleet: Fleet) -> tuple[list[str], list[str]]:
    """(most repeated first, a random draw of the others) from the current topic's record."""
    pipe = fleet.redis.pipeline(transaction=False)
    pipe.zrevrangebyscore(fleet.keys.known, "+inf", 1, start=0, num=TOP)
    pipe.zrandmember(fleet.keys.known, RANDOM)
    top, drawn = pipe.execute()
    return list(top), list(drawn or [])
