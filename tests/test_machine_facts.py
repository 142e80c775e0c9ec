"""toolkit.precision.add_machine_fact: plugins add entries to every machine_info, read when it is."""
from __future__ import annotations

import pytest

from toolkit import precision


@pytest.fixture
def facts(monkeypatch):
    monkeypatch.setattr(precision, "_FACTS", {})
    return precision


def test_a_fact_is_read_each_time(facts):
    state = {"value": "before"}
    facts.add_machine_fact("kernels", lambda: state["value"])
    assert facts.machine_info()["kernels"] == "before"
    state["value"] = "after"
    assert facts.machine_info()["kernels"] == "after" and facts.machine_facts() == {"kernels": "after"}


def test_a_fact_that_raises_is_logged_not_raised(facts):
    def broken():
        raise OSError("no such file")

    facts.add_machine_fact("broken", broken)
    assert facts.machine_info()["broken"] == "unavailable (OSError: no such file)"


def test_the_compiled_kernels_register_theirs():
    from plugins import cpu_kernels

    assert precision.machine_facts()["cpu_kernels"] == cpu_kernels.state()
