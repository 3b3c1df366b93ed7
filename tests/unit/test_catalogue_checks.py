"""Catalogue checks: every wrong reference at once, each with its line in the file."""

from pathlib import Path

import pytest
import yaml

from service.catalogue.checks import CatalogueError, reference_problems, with_lines
from service.catalogue.schemas import CatalogueFile
from service.catalogue.service import read_file

CATALOGUE = """\
version: "t.1"
departments:
  - {code: city, name_vi: "TP", name_en: "City"}
  - {code: ward-a, name_vi: "Phường A", name_en: "Ward A", parent: town}
categories:
  - {code: lights, name_vi: "Đèn", name_en: "Lights"}
routing_rules:
  - {category: lights, jurisdiction: A, department: ward-a}
  - {category: lights, jurisdiction: Q1, department: ward-a}
  - {category: potholes,
     department: roads}
  - {department: city}
sla_policies:
  - {category: trees, priority: normal, acknowledge_hours: 8, resolve_days: 5}
"""


def problems(text: str, jurisdictions: set[str]) -> list[str]:
    catalogue = CatalogueFile.model_validate(yaml.safe_load(text))
    return [str(problem) for problem in with_lines(reference_problems(catalogue, jurisdictions), text)]


def test_every_unknown_reference_is_reported_with_its_line():
    assert problems(CATALOGUE, {"A", "HCM"}) == [
        "line 4: departments[1].parent: unknown department 'town'",
        "line 9: routing_rules[1].jurisdiction: unknown jurisdiction 'Q1' (not in the imported map; see `intake jurisdictions list`)",
        "line 11: routing_rules[2].department: unknown department 'roads'",
        "line 10: routing_rules[2].category: unknown category 'potholes'",
        "line 14: sla_policies[0].category: unknown category 'trees'",
    ]


def test_a_rule_naming_a_parent_jurisdiction_is_known():
    text = CATALOGUE.replace("jurisdiction: Q1", "jurisdiction: HCM")
    assert not any("jurisdiction" in problem for problem in problems(text, {"A", "HCM"}))


def test_a_misshapen_file_is_refused_with_the_line_of_the_bad_field(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text(CATALOGUE.replace("resolve_days: 5", "resolve_days: -5"))
    with pytest.raises(CatalogueError) as raised:
        read_file(path)
    assert str(raised.value.problems[0]).startswith("line 14: sla_policies[0].resolve_days:")


def test_the_demo_catalogue_names_only_the_demo_map():
    from service.jurisdictions.service import demo_shapes

    city, wards = demo_shapes()
    catalogue, _ = read_file(Path(__file__).resolve().parents[2] / "service/catalogue/catalogue.yaml")
    assert reference_problems(catalogue, {shape.code for shape in city + wards}) == []
