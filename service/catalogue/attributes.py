"""Checking a citizen's answers to a category's attributes (pure: no I/O): one rule for every channel.

A category's attributes are stored as the dicts of schemas.AttributeEntry. Answers arrive keyed by
attribute code: strings from a form (a list of strings for a multivaluelist), or JSON values from an
app (numbers may be numbers). Open311 ignores codes the category does not have, as the spec says;
the native API refuses them, since an app builds its form from the catalogue and a code it does not
know there is a bug worth seeing.

A datetime answer without an offset is the city's wall clock, as everywhere in the API
(service/city_time.py); a bare date stays a day.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from service import city_time
from service.errors import Unprocessable

MAX_STRING = 500
MAX_TEXT = 5000
MAX_KEYS = 50  # keys chosen in one multivaluelist answer

Answer = str | int | float | list[str]
UnknownCodes = Literal["refuse", "ignore"]


@dataclass(frozen=True)
class AttributeProblem:
    code: str  # error code: attribute_required, attribute_invalid, unknown_attribute
    attribute: str
    reason: str  # in English, without the attribute's name

    @property
    def field(self) -> str:
        """The attribute as an Open311 form names it."""
        return f"attribute[{self.attribute}]"

    @property
    def message(self) -> str:
        return f"{self.field}: {self.reason}"


class InvalidAttributes(Unprocessable):
    """All the problems with the answers at once, so a form can be fixed in one go.

    As problem details each is a field error named `attributes.<code>` (the JSON body's own path)."""

    def __init__(self, problems: list[AttributeProblem]):
        first = problems[0]
        super().__init__(
            first.code,
            f"attributes.{first.attribute}",
            "; ".join(f"attributes.{problem.attribute}: {problem.reason}" for problem in problems),
            fields=[(f"attributes.{problem.attribute}", problem.code, problem.reason) for problem in problems],
        )
        self.problems = problems


def definitions_of(category) -> list[dict]:
    """A category's attributes in the order a citizen sees them."""
    return sorted(category.attributes or [], key=lambda attribute: attribute["order"]) if category else []


def check_answers(
    definitions: list[dict], answers: dict[str, Answer], *, zone: ZoneInfo, unknown: UnknownCodes = "refuse"
) -> dict[str, object]:
    """The answers normalised (numbers as numbers, datetimes in UTC), or InvalidAttributes.

    Required attributes are enforced: call this whenever the citizen picked a category, with `{}`
    when nothing was answered."""
    by_code = {definition["code"]: definition for definition in definitions}
    problems: list[AttributeProblem] = []
    checked: dict[str, object] = {}
    for code, raw in answers.items():
        definition = by_code.get(code)
        if definition is None:
            if unknown == "refuse":
                problems.append(AttributeProblem("unknown_attribute", code, "not an attribute of this service"))
            continue
        if not definition.get("variable", True):
            continue  # information only: nothing to answer
        try:
            if isinstance(raw, list) and definition["datatype"] != "multivaluelist":
                raise ValueError("takes a single value, not a list")
            values = _texts(raw)
            if values:  # an empty answer is no answer
                checked[code] = _check_one(definition, values, zone)
        except ValueError as exc:
            problems.append(AttributeProblem("attribute_invalid", code, str(exc)))
    for definition in definitions:
        if (
            definition["required"]
            and definition.get("variable", True)
            and definition["code"] not in checked
            and not any(problem.attribute == definition["code"] for problem in problems)
        ):
            problems.append(
                AttributeProblem(
                    "attribute_required", definition["code"], f"is required: {definition['description_en']}"
                )
            )
    if problems:
        raise InvalidAttributes(problems)
    return checked


def _texts(raw: object) -> list[str]:
    """An answer as its non-blank strings; a JSON number counts as the number it writes."""
    items = raw if isinstance(raw, list) else [raw]
    if len(items) > MAX_KEYS:
        raise ValueError(f"at most {MAX_KEYS} keys")
    values = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ValueError("takes text, a number, or a list of keys (not true/false, null or an object)")
        text = item if isinstance(item, str) else repr(item)
        if "\x00" in text:
            raise ValueError("text may not contain NUL (\\u0000)")
        if text.strip():
            values.append(text.strip())
    return values


def _check_one(definition: dict, values: list[str], zone: ZoneInfo) -> object:
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
        return _moment(value, zone)
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


def _moment(value: str, zone: ZoneInfo) -> str:
    """A datetime as UTC ISO 8601 (without an offset: city time); a bare date as that date."""
    try:
        parsed = city_time.parse(value)
    except ValueError:
        raise ValueError(f"'{value}' is not an ISO 8601 date or datetime") from None
    if not isinstance(parsed, datetime):
        return parsed.isoformat()
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)).astimezone(UTC).isoformat()


def describe_answers(category, answers: dict | None, *, vietnamese: bool) -> list[dict]:
    """Stored answers as a reader sees them: the question, the value, and the names of chosen keys,
    in the category's order (answers to attributes the catalogue has since dropped come last)."""
    if not answers:
        return []
    definitions = {definition["code"]: definition for definition in definitions_of(category)}
    ordered = [code for code in definitions if code in answers] + [code for code in answers if code not in definitions]
    described = []
    for code in ordered:
        definition, value = definitions.get(code), answers[code]
        names = {
            item["key"]: item["name_vi" if vietnamese else "name_en"] for item in (definition or {}).get("values", [])
        }
        keys = value if isinstance(value, list) else [value]
        described.append(
            {
                "code": code,
                "question": definition["description_vi" if vietnamese else "description_en"] if definition else None,
                "value": value,
                "value_names": [names[key] for key in keys if isinstance(key, str) and key in names] or None,
            }
        )
    return described
