"""Which department a report goes to: the most specific routing rule of the current catalogue."""

from dataclasses import dataclass

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.models import RoutingRule


@dataclass(frozen=True)
class RoutingDecision:
    department_code: str
    rule: str
    catalogue_version: str


def choose_rule(rules: list[RoutingRule], category_code: str | None, jurisdictions: list[str]) -> RoutingRule | None:
    """Pure rule: a category match beats a jurisdiction match; a ward beats its district; catch-all last.

    `jurisdictions` is the report's jurisdiction followed by its parents, nearest first.
    """

    def rank(rule: RoutingRule) -> tuple | None:
        if rule.category_code is not None and rule.category_code != category_code:
            return None
        if rule.jurisdiction_code is not None:
            if rule.jurisdiction_code not in jurisdictions:
                return None
            depth = jurisdictions.index(rule.jurisdiction_code)
        else:
            depth = len(jurisdictions) + 1
        return (rule.category_code is None, rule.jurisdiction_code is None, depth, rule.id or 0)

    ranked = [(key, rule) for rule in rules if (key := rank(rule)) is not None]
    return min(ranked, key=lambda pair: pair[0])[1] if ranked else None


async def route(session: AsyncSession, category_code: str | None, jurisdictions: list[str]) -> RoutingDecision | None:
    # Read on every call: a catalogue reload takes effect at once, with no restart.
    rules = list((await session.exec(select(RoutingRule))).all())
    return decide(rules, category_code, jurisdictions)


def decide(rules: list[RoutingRule], category_code: str | None, jurisdictions: list[str]) -> RoutingDecision | None:
    """The most specific rule's department; no category and no jurisdictions gives the catch-all, where triage goes."""
    rule = choose_rule(rules, category_code, jurisdictions)
    if rule is None:
        return None
    described = f"{rule.category_code or '*'} @ {rule.jurisdiction_code or '*'} → {rule.department_code}"
    return RoutingDecision(rule.department_code, described, rule.catalogue_version)
