"""The shape of a catalogue file, validated before anything is written."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Priority = Literal["urgent", "normal", "low"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DepartmentEntry(_Strict):
    code: str = Field(min_length=1, max_length=64)
    name_vi: str
    name_en: str
    parent: str | None = None
    dispatch: bool = False


AttributeDatatype = Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
LIST_DATATYPES = ("singlevaluelist", "multivaluelist")


class AttributeValueEntry(_Strict):
    key: str = Field(min_length=1, max_length=64)
    name_vi: str
    name_en: str


class AttributeEntry(_Strict):
    """One extra question for a category (an Open311 service definition attribute)."""

    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    datatype: AttributeDatatype
    required: bool = False
    # False: not a question, only information shown to the citizen in `description`.
    variable: bool = True
    description_vi: str
    description_en: str
    datatype_description_vi: str = ""
    datatype_description_en: str = ""
    # Position shown to the citizen (1 first); defaults to the place in the list.
    order: int | None = Field(default=None, ge=1)
    values: list[AttributeValueEntry] = []

    @model_validator(mode="after")
    def _values_for_lists(self) -> "AttributeEntry":
        if (self.datatype in LIST_DATATYPES) != bool(self.values):
            raise ValueError(f"attribute {self.code}: values are given exactly for singlevaluelist and multivaluelist")
        if len({value.key for value in self.values}) != len(self.values):
            raise ValueError(f"attribute {self.code}: value keys must be unique")
        return self


class CategoryEntry(_Strict):
    code: str = Field(min_length=1, max_length=64)
    name_vi: str
    name_en: str
    description_vi: str = ""
    description_en: str = ""
    default_priority: Priority = "normal"
    attributes: list[AttributeEntry] = []

    @model_validator(mode="after")
    def _attribute_order(self) -> "CategoryEntry":
        codes = [attribute.code for attribute in self.attributes]
        if len(set(codes)) != len(codes):
            raise ValueError(f"category {self.code}: attribute codes must be unique")
        for position, attribute in enumerate(self.attributes, start=1):
            if attribute.order is None:
                attribute.order = position
        orders = [attribute.order for attribute in self.attributes]
        if len(set(orders)) != len(orders):
            raise ValueError(f"category {self.code}: attribute orders must be unique")
        return self


class RoutingRuleEntry(_Strict):
    category: str | None = None
    jurisdiction: str | None = None
    department: str


class SlaPolicyEntry(_Strict):
    category: str | None = None
    priority: Priority
    acknowledge_hours: float = Field(gt=0)
    resolve_hours: float | None = Field(default=None, gt=0)
    resolve_days: float | None = Field(default=None, gt=0)
    clock: Literal["working", "clock"] = "working"
    restart_on_transfer: bool = False

    @model_validator(mode="after")
    def _one_resolve_time(self) -> "SlaPolicyEntry":
        if (self.resolve_hours is None) == (self.resolve_days is None):
            raise ValueError("give exactly one of resolve_hours or resolve_days")
        return self


class CatalogueFile(_Strict):
    version: str = Field(min_length=1, max_length=40)
    departments: list[DepartmentEntry]
    categories: list[CategoryEntry]
    routing_rules: list[RoutingRuleEntry]
    sla_policies: list[SlaPolicyEntry]

    @model_validator(mode="after")
    def _references(self) -> "CatalogueFile":
        departments = {d.code for d in self.departments}
        categories = {c.code for c in self.categories}
        if len(departments) != len(self.departments) or len(categories) != len(self.categories):
            raise ValueError("department and category codes must be unique")
        # References to departments, categories and jurisdictions are checked with their place in the
        # file, all at once: service/catalogue/checks.py.
        if not any(rule.category is None and rule.jurisdiction is None for rule in self.routing_rules):
            raise ValueError("routing rules need a catch-all (no category, no jurisdiction) for the dispatch unit")
        return self


# --- What apps read: GET /v1/categories --------------------------------------------------------


class AttributeValuePublic(BaseModel):
    key: str = Field(description="What the app sends back")
    name_vi: str
    name_en: str


class AttributePublic(BaseModel):
    """One extra question of a category, for an app to draw as a form field."""

    code: str = Field(description="The key in `attributes` of POST /v1/reports")
    datatype: AttributeDatatype = Field(
        description="string (one line), text (several lines), number, datetime (ISO 8601; without an offset "
        "city time), singlevaluelist (one key), multivaluelist (a list of keys)"
    )
    required: bool = Field(description="A report in this category is refused (422) without an answer")
    variable: bool = Field(description="False: information to show, not a question")
    order: int = Field(description="Position in the form, 1 first")
    description_vi: str
    description_en: str
    datatype_description_vi: str
    datatype_description_en: str
    values: list[AttributeValuePublic] = Field(description="The choices of a list; empty otherwise")


class CategoryPublic(BaseModel):
    code: str = Field(description="The `service_code` of POST /v1/reports")
    name_vi: str
    name_en: str
    description_vi: str
    description_en: str
    attributes: list[AttributePublic]


class CataloguePublic(BaseModel):
    version: str | None = Field(description="The catalogue loaded now; it changes with every reload")
    categories: list[CategoryPublic] = Field(description="In the order a citizen should see them")
