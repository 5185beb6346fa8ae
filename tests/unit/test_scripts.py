"""Every Lua script names its KEYS and ARGV exactly as its typed wrapper's fields."""

from __future__ import annotations

import re

import pytest

from producer_tasks.state.scripts import WRAPPERS, Assign, Script, Transition, script_files

_UNPACK = re.compile(r"^local\s+([\w\s,]+?)\s*=\s*unpack\((KEYS|ARGV)\)", re.M)


def declared(source: str) -> dict[str, tuple[str, ...]]:
    return {kind: tuple(n.strip() for n in names.split(",")) for names, kind in _UNPACK.findall(source)}


def test_every_script_has_one_wrapper() -> None:
    assert sorted(script_files()) == sorted(w.file_name().removesuffix(".lua") for w in WRAPPERS)


@pytest.mark.parametrize("wrapper", WRAPPERS, ids=lambda w: w.__name__)
def test_keys_and_argv_are_named_in_the_wrappers_order(wrapper: type[Script]) -> None:
    source = script_files()[wrapper.file_name().removesuffix(".lua")]
    keys, args = wrapper.layout()
    assert declared(source) == {"KEYS": keys, "ARGV": args}
    assert "ARGV[" not in source and "KEYS[" not in source  # only the names are used


def test_includes_are_pasted_in() -> None:
    for wrapper in (Assign, Transition):
        source = script_files()[wrapper.file_name().removesuffix(".lua")]
        assert "local function release_lane" in source and "--!include" not in source


def test_a_call_carries_keys_and_typed_arguments_in_order() -> None:
    call = Transition(
        state_key="s",
        lanes_key="l",
        spend_key="$",
        health_key="h",
        quota_key="q",
        counters_key="c",
        lane=3,
        token="t",
        status="running",
        worker="w",
        now_ms=5,
        until_ms=0,
        reason="",
        failures=-1,
        epoch=None,
        budget_usd=2.5,
    ).call()
    assert call.name == "transition"
    assert call.keys == ("s", "l", "$", "h", "q", "c")
    assert call.args == (3, "t", "running", "w", 5, 0, "", -1, "", 2.5)
