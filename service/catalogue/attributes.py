"""Checking a citizen's answers to a category's attributes (pure: no I/O).

A category's attributes are stored as the dicts of schemas.AttributeEntry. Answers arrive as
strings (form fields), or lists of strings for a multivaluelist, keyed by attribute code.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from service.errors import Unprocessable

MAX_STRING = 500
MAX_TEXT = 5000

Answer = str | list[str]


@dataclass(frozen=True)
class AttributeProblem:
    code: str  # error code: attribute_required, attribute_invalid, unknown_attribute
    attribute: str
    message: str

    @property
    def field(self) -> str:
        return f"attribute[{self.attribute}]"


class InvalidAttributes(Unprocessable):
    """All the problems with the answers at once, so a form can be fixed in one go."""

    def __init__(self, problems: list[AttributeProblem]):
        first = problems[0]
        super().__init__(first.code, first.field, "; ".join(problem.message for problem in problems))
        self.problems = problems


def definitions_of(category) -> list[dict]:
    """A category's attributes in the order a citizen sees them."""
    return sorted(category.attributes or [], key=lambda attribute: attribute["order"]) if category else []


def check_answers(definitions: list[dict], answers: dict[str, Answer]) -> dict[str, object]:
    """The answers normalised (numbers as numbers, datetimes in UTC), or InvalidAttributes."""
    by_code = {definition["code"]: definition for definition in definitions}
    problems: list[AttributeProblem] = []
    checked: dict[str, object] = {}
    for code, raw in answers.items():
        definition = by_code.get(code)
        if definition is None:
            problems.append(
                AttributeProblem("unknown_attribute", code, f"'{code}' is not an attribute of this service.")
            )
            continue
        if not definition.get("variable", True):
            continue  # information only: nothing to answer
        values = [value.strip() for value in (raw if isinstance(raw, list) else [raw]) if value and value.strip()]
        if not values:
            continue  # an empty answer is no answer
        try:
            checked[code] = _check_one(definition, values)
        except ValueError as exc:
            problems.append(AttributeProblem("attribute_invalid", code, f"attribute[{code}]: {exc}"))
    for definition in definitions:
        if (
            definition["required"]
            and definition.get("variable", True)
            and definition["code"] not in checked
            and not any(problem.attribute == definition["code"] for problem in problems)
        ):
            problems.append(
                AttributeProblem(
                    "attribute_required",
                    definition["code"],
                    f"attribute[{definition['code']}] is required: {definition['description_en']}",
                )
            )
    if problems:
        raise InvalidAttributes(problems)
    return checked


def _check_one(definition: dict, values: list[str]) -> object:
    datatype = definition["datatype"]
    if datatype == "multivaluelist":
        keys = {value["key"] for value in definition["values"]}
        unknown = [value for value in values if value not in keys]
        if unknown:
            raise ValueError(f"{', '.join(unknown)} not among the allowed keys ({', '.join(sorted(keys))})")
        return list(dict.fromkeys(values))
    if len(values) > 1:
        raise ValueError("takes a single value")
    value = values[0]
    if datatype == "singlevaluelist":
        keys = {item["key"] for item in definition["values"]}
        if value not in keys:
            raise ValueError(f"'{value}' is not among the allowed keys ({', '.join(sorted(keys))})")
        return value
    if datatype == "number":
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"'{value}' is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"'{value}' is not a number")
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if datatype == "datetime":
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"'{value}' is not an ISO 8601 date or datetime") from None
        return moment.astimezone(UTC).isoformat() if moment.tzinfo else moment.isoformat()
    if datatype == "string":
        if "\n" in value or "\r" in value:
            raise ValueError("takes a single line (use a text attribute for several lines)")
        if len(value) > MAX_STRING:
            raise ValueError(f"at most {MAX_STRING} characters")
        return value
    if datatype == "text":
        if len(value) > MAX_TEXT:
            raise ValueError(f"at most {MAX_TEXT} characters")
        return value
    raise ValueError(f"unsupported datatype {datatype}")  # the catalogue schema never lets one in
