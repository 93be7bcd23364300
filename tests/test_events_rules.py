"""The ``events:`` section: typed, checked, and a bad entry named by file, line and path."""
from __future__ import annotations

import pytest

from rules import DEFAULT_RULES_PATH, ConfigError, parse_rules

GOOD = DEFAULT_RULES_PATH.read_text(encoding="utf-8")


def _line_of(text: str, needle: str) -> int:
    return text.count("\n", 0, text.index(needle)) + 1


def test_the_shipped_events_are_the_2014_plan_in_2027(base_rules):
    catalogue = {e.id: e for e in base_rules.events.catalogue}
    fashion = catalogue["spring-fashion"]
    assert fashion.title == "春季时尚发布会" and [s.capacity for s in fashion.sessions] == [30, 30]
    assert catalogue["jade"].sessions[0].capacity == 30
    assert catalogue["parent-child"].sessions[0].capacity == 100
    assert catalogue["thanks"].sessions[0].capacity == 150 and catalogue["thanks"].tiers == ["B", "A"]
    assert {e.form for e in catalogue.values()} >= {"沙龙", "旅游", "讲座", "店面拜访", "聚餐"}
    assert all(s.starts.year == 2027 for e in catalogue.values() for s in e.sessions)
    assert base_rules.events.event("SPRING-FASHION") is fashion  # members may type ids in any case


@pytest.mark.parametrize("old,new,where,message", [
    ("ends: 2027-05-15 16:00", "ends: 2027-05-15 13:00", "events.catalogue[2].sessions[0]", "must be after starts"),
    ("tiers: [B, A]\n      signup_opens: 2027-02-15", "tiers: [B, Z]\n      signup_opens: 2027-02-15", "events",
     "events name unknown tier(s): Z"),
    ("capacity: 150}", "capacity: 0}", "events.catalogue[6].sessions[0].capacity", "greater than or equal to 1"),
    ("signup_closes: 2027-04-10 18:00", "signup_closes: 2027-04-20 18:00", "events.catalogue[1]",
     "must not be after the first session starts"),
    ("guests_allowed: 2", "guests_allowed: -1", "events.catalogue[4].guests_allowed", "greater than or equal to 0"),
    ("- id: jade", "- id: spring-trip", "events.catalogue", "event ids must be unique"),
    ("promoted: event_promoted", "promoted: event_lucky", "events", "push message(s) not in pushes.messages: event_lucky"),
    ("checkin_opens_hours_before: 2", "checkin_opens_hours_before: -1", "events.checkin_opens_hours_before",
     "greater than or equal to 0"),
    ("checkin_closes_hours_after: 2", "checkin_closes_hours_after: 48", "events.checkin_closes_hours_after",
     "less than or equal to 24"),
], ids=["ends-before-start", "unknown-tier", "no-seats", "closes-late", "negative-guests", "repeated-id", "push",
        "checkin-opens-negative", "checkin-closes-days-later"])
def test_a_bad_event_names_file_line_and_path(old, new, where, message):
    assert old in GOOD
    bad = GOOD.replace(old, new, 1)
    with pytest.raises(ConfigError) as caught:
        parse_rules(bad, source="config.yaml")
    text = str(caught.value)
    assert f": {where}: " in text and message in text, text
    assert text.startswith("config.yaml, line ")
    if where.endswith(("capacity", "guests_allowed", "hours_before", "hours_after")):
        assert text.startswith(f"config.yaml, line {_line_of(bad, new.splitlines()[0])}: ")
