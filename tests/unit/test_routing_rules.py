"""The most specific routing rule wins."""

from service.models import RoutingRule
from service.pipeline.routing import choose_rule


def rule(id_, department, category=None, jurisdiction=None):
    return RoutingRule(
        id=id_,
        category_code=category,
        jurisdiction_code=jurisdiction,
        department_code=department,
        catalogue_version="t",
    )


RULES = [
    rule(1, "dispatch"),
    rule(2, "lighting", category="street_lighting"),
    rule(3, "district-1", category="urban_order", jurisdiction="Q1"),
    rule(4, "ward-ben-nghe", category="urban_order", jurisdiction="Q1-BEN-NGHE"),
    rule(5, "city-order", category="urban_order"),
    rule(6, "district-3-anything", jurisdiction="Q3"),
]


def test_category_rule_beats_catch_all():
    assert choose_rule(RULES, "street_lighting", ["Q1-BEN-THANH", "Q1"]).department_code == "lighting"


def test_ward_rule_beats_district_rule_beats_city_rule():
    assert choose_rule(RULES, "urban_order", ["Q1-BEN-NGHE", "Q1"]).department_code == "ward-ben-nghe"
    assert choose_rule(RULES, "urban_order", ["Q1-BEN-THANH", "Q1"]).department_code == "district-1"
    assert choose_rule(RULES, "urban_order", ["Q3-VO-THI-SAU", "Q3"]).department_code == "city-order"


def test_jurisdiction_only_rule_beats_catch_all_for_unmatched_category():
    assert choose_rule(RULES, "health", ["Q3-VO-THI-SAU", "Q3"]).department_code == "district-3-anything"


def test_no_location_and_unknown_category_falls_to_catch_all():
    assert choose_rule(RULES, None, []).department_code == "dispatch"


def test_order_of_rules_does_not_matter():
    assert choose_rule(list(reversed(RULES)), "urban_order", ["Q1-BEN-NGHE", "Q1"]).department_code == "ward-ben-nghe"
