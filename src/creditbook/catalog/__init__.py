"""The catalog as data: a TOML file validated by Pydantic into domain values.

``load_catalog()`` reads the default shipped with the package;
``load_catalog(path)`` reads an operator's file. Errors name the field and
what is valid (``InvalidCatalog``).
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from creditbook.domain.catalog import (
    Allowance,
    CallingRates,
    Catalog,
    Feature,
    Limits,
    Plan,
    Pricing,
)
from creditbook.domain.errors import InvalidCatalog
from creditbook.domain.money import Money

_KEY = r"^[a-z][a-z0-9_]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureModel(_Strict):
    name: str
    unit: str = "use"
    cost: int = Field(ge=0, le=1_000_000)
    outcomes: list[str] = Field(min_length=1)
    billable_outcomes: list[str]
    default_outcome: str
    metered_by_call: bool = False

    @model_validator(mode="after")
    def _outcomes_consistent(self) -> FeatureModel:
        unknown = set(self.billable_outcomes) - set(self.outcomes)
        if unknown:
            raise ValueError(f"billable_outcomes {sorted(unknown)} are not in outcomes")
        if self.default_outcome not in self.outcomes:
            raise ValueError(f"default_outcome {self.default_outcome!r} is not in outcomes")
        if len(set(self.outcomes)) != len(self.outcomes):
            raise ValueError("outcomes are listed more than once")
        return self


class CallingModel(_Strict):
    default_tier: str
    tiers: dict[str, int]
    destinations: dict[str, str] = {}

    @model_validator(mode="after")
    def _tiers_consistent(self) -> CallingModel:
        if self.default_tier not in self.tiers:
            raise ValueError(f"default_tier {self.default_tier!r} is not one of the tiers")
        bad = {d: t for d, t in self.destinations.items() if t not in self.tiers}
        if bad:
            raise ValueError(f"destinations name unknown tiers: {bad}")
        if any(m < 1 for m in self.tiers.values()):
            raise ValueError("tier multipliers are whole numbers >= 1")
        return self


class AllowanceModel(_Strict):
    credits_per_seat: int = Field(ge=0, le=100_000_000)
    bucket: Literal["subscription", "calling"] = "subscription"
    scope: list[str] | None = None


class PlanModel(_Strict):
    name: str
    rank: int = 0
    trial_credits: int = Field(default=0, ge=0)
    trial_days: int = Field(default=0, ge=0, le=3650)
    allowances: list[AllowanceModel] = []


class PricingModel(_Strict):
    price_per_credit: Decimal = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    custom_min: int = Field(ge=1)
    custom_max: int = Field(ge=1)
    packages: dict[str, int] = {}

    @model_validator(mode="after")
    def _bounds(self) -> PricingModel:
        if self.custom_min > self.custom_max:
            raise ValueError("custom_min is above custom_max")
        if any(v < 1 for v in self.packages.values()):
            raise ValueError("packages are whole numbers of credits >= 1")
        return self


class LimitsModel(_Strict):
    max_quantity: int = Field(default=100_000, ge=1)
    max_credits_per_operation: int = Field(default=100_000_000, ge=1)
    max_grant_credits: int = Field(default=1_000_000_000, ge=1)
    default_hold_ttl_seconds: int = Field(default=900, ge=1)
    max_hold_ttl_seconds: int = Field(default=86_400, ge=1)
    max_call_seconds: int = Field(default=86_400, ge=1)


class CatalogModel(_Strict):
    seat_policy: Literal["prorate", "full", "none"] = "prorate"
    downgrade_policy: Literal["next_period", "immediate"] = "next_period"
    pricing: PricingModel
    limits: LimitsModel = LimitsModel()
    features: dict[str, FeatureModel] = Field(min_length=1)
    calling: CallingModel
    plans: dict[str, PlanModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> CatalogModel:
        import re

        for key in [*self.features, *self.plans]:
            if not re.match(_KEY, key):
                raise ValueError(f"key {key!r} must match {_KEY}")
        for plan_key, plan in self.plans.items():
            for allowance in plan.allowances:
                unknown = set(allowance.scope or ()) - set(self.features)
                if unknown:
                    raise ValueError(f"plan {plan_key!r} scopes unknown features {sorted(unknown)}")
        return self

    def to_domain(self) -> Catalog:
        price = Money.of(self.pricing.price_per_credit, self.pricing.currency)
        return Catalog(
            features={
                key: Feature(
                    key=key,
                    name=f.name,
                    unit=f.unit,
                    cost=f.cost,
                    outcomes=tuple(f.outcomes),
                    billable_outcomes=frozenset(f.billable_outcomes),
                    default_outcome=f.default_outcome,
                    metered_by_call=f.metered_by_call,
                )
                for key, f in self.features.items()
            },
            plans={
                key: Plan(
                    key=key,
                    name=p.name,
                    rank=p.rank,
                    trial_credits=p.trial_credits,
                    trial_days=p.trial_days,
                    allowances=tuple(
                        Allowance(
                            credits_per_seat=a.credits_per_seat,
                            scope=frozenset(a.scope) if a.scope else None,
                            bucket=a.bucket,
                        )
                        for a in p.allowances
                    ),
                )
                for key, p in self.plans.items()
            },
            calling=CallingRates(
                tiers=dict(self.calling.tiers),
                destinations={k.upper(): v for k, v in self.calling.destinations.items()},
                default_tier=self.calling.default_tier,
            ),
            pricing=Pricing(
                price_per_credit=price,
                packages=dict(self.pricing.packages),
                custom_min=self.pricing.custom_min,
                custom_max=self.pricing.custom_max,
            ),
            limits=Limits(**self.limits.model_dump()),
            seat_policy=self.seat_policy,
            downgrade_policy=self.downgrade_policy,
        )


def default_catalog_text() -> str:
    return resources.files("creditbook.catalog").joinpath("default.toml").read_text("utf-8")


def parse_catalog(text: str, *, source: str = "<catalog>") -> Catalog:
    """Validate TOML text into a ``Catalog``; ``InvalidCatalog`` says what is wrong."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidCatalog(f"{source}: not valid TOML: {exc}") from exc
    try:
        return CatalogModel.model_validate(raw).to_domain()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidCatalog(
            f"{source}: invalid catalog: {problems}",
            errors=exc.errors(include_url=False, include_context=False),
        ) from exc


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The catalog at ``path``, or the default shipped with creditbook."""
    if path is None:
        return parse_catalog(default_catalog_text(), source="default.toml")
    file = Path(path)
    try:
        text = file.read_text("utf-8")
    except OSError as exc:
        raise InvalidCatalog(f"cannot read catalog {file}: {exc.strerror}") from exc
    return parse_catalog(text, source=str(file))
