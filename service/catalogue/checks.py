"""What is wrong with a catalogue file, every problem at once, each with its place in the file.

A rule naming a department, category or jurisdiction that does not exist would never match, and
nothing would say so until reports went to the wrong desk; so a catalogue with such a rule is not
loaded. `reference_problems` is pure (the jurisdictions are passed in); `with_lines` finds the YAML
line of each problem so a person can go straight to it.
"""

from dataclasses import dataclass, replace

import yaml
from pydantic import ValidationError

from service.catalogue.schemas import CatalogueFile

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    where: Path  # ("routing_rules", 3, "jurisdiction")
    message: str
    line: int | None = None

    def __str__(self) -> str:
        place = _dotted(self.where) or "(file)"
        return f"line {self.line}: {place}: {self.message}" if self.line else f"{place}: {self.message}"


class CatalogueError(ValueError):
    """A catalogue that may not be loaded, with every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


def _dotted(where: Path) -> str:
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def structure_problems(error: ValidationError) -> list[Problem]:
    return [Problem(tuple(item["loc"]), item["msg"].removeprefix("Value error, ")) for item in error.errors()]


def reference_problems(catalogue: CatalogueFile, jurisdictions: set[str]) -> list[Problem]:
    """Every reference to a department, category or jurisdiction the catalogue or the map does not have."""
    departments = {department.code for department in catalogue.departments}
    categories = {category.code for category in catalogue.categories}
    problems: list[Problem] = []
    for index, department in enumerate(catalogue.departments):
        if department.parent and department.parent not in departments:
            problems.append(Problem(("departments", index, "parent"), f"unknown department {department.parent!r}"))
    for index, rule in enumerate(catalogue.routing_rules):
        where = ("routing_rules", index)
        if rule.department not in departments:
            problems.append(Problem((*where, "department"), f"unknown department {rule.department!r}"))
        if rule.category is not None and rule.category not in categories:
            problems.append(Problem((*where, "category"), f"unknown category {rule.category!r}"))
        if rule.jurisdiction is not None and rule.jurisdiction not in jurisdictions:
            problems.append(
                Problem(
                    (*where, "jurisdiction"),
                    f"unknown jurisdiction {rule.jurisdiction!r} (not in the imported map; see `intake jurisdictions list`)",
                )
            )
    for index, policy in enumerate(catalogue.sla_policies):
        if policy.category is not None and policy.category not in categories:
            problems.append(Problem(("sla_policies", index, "category"), f"unknown category {policy.category!r}"))
    return problems


def with_lines(problems: list[Problem], text: str | bytes) -> list[Problem]:
    """The same problems, each with the line (1-based) of the deepest part of its path found in the YAML."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return problems
    return [replace(problem, line=_line_of(root, problem.where)) for problem in problems]


def _line_of(node: yaml.Node | None, where: Path) -> int | None:
    line = node.start_mark.line + 1 if node is not None else None
    for part in where:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((value for key, value in node.value if key.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line
