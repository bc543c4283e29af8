"""Registry tables and API models (full-stack-fastapi-template families: Base, table, Public).

The catalogue's kit profiles and use-cases are stored as their validated ``kits.models`` JSON
(``spec``) plus the key columns that queries and joins need.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from kits.models import KitPart, KitProfile, KitSensor, Threshold, UseCase

__all__ = [
    "KitProfileBase",
    "KitProfilePublic",
    "KitProfileRow",
    "KitProfilesPublic",
    "UseCaseBase",
    "UseCasePublic",
    "UseCaseRow",
    "UseCasesPublic",
]


# --------------------------------------------------------------------------- kit profiles


class KitProfileBase(SQLModel):
    """The key columns of a kit profile."""

    id: str = Field(primary_key=True, max_length=64)
    name: str
    pis: int


class KitProfileRow(KitProfileBase, table=True):
    """A kit profile: from the catalogue (``kits/catalog/kits/{id}.yaml``, ``org_id`` None,
    read-only, updated by a re-import) or an organisation's own (editable)."""

    __tablename__ = "kit_profiles"

    org_id: int | None = Field(default=None, foreign_key="organisations.id", index=True)

    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))

    def profile(self) -> KitProfile:
        """Return the stored profile as the contract model."""
        return KitProfile.model_validate(self.spec)


class KitProfilePublic(KitProfileBase):
    """A kit profile as the API returns it, with the use-cases that recommend it."""

    description: str
    sensors: list[KitSensor]
    bill_of_materials: list[KitPart]
    use_cases: list[str]

    @classmethod
    def from_row(cls, row: KitProfileRow, use_cases: list[str]) -> KitProfilePublic:
        """Build the public model of ``row``."""
        profile = row.profile()
        return cls(
            id=profile.id,
            name=profile.name,
            pis=profile.pis,
            description=profile.description,
            sensors=profile.sensors,
            bill_of_materials=profile.bill_of_materials,
            use_cases=use_cases,
        )


class KitProfilesPublic(SQLModel):
    """A list of kit profiles."""

    data: list[KitProfilePublic]
    count: int


# --------------------------------------------------------------------------- use-cases


class UseCaseBase(SQLModel):
    """The key columns of a use-case."""

    id: str = Field(primary_key=True, max_length=64)
    title: str
    kit_profile: str = Field(index=True, max_length=64)
    dashboard: str


class UseCaseRow(UseCaseBase, table=True):
    """A use-case: from the catalogue (``kits/catalog/usecases/{id}.yaml``, ``org_id`` None,
    read-only, updated by a re-import) or an organisation's own (editable)."""

    __tablename__ = "use_cases"

    org_id: int | None = Field(default=None, foreign_key="organisations.id", index=True)

    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))

    def use_case(self) -> UseCase:
        """Return the stored use-case as the contract model."""
        return UseCase.model_validate(self.spec)


class UseCasePublic(UseCaseBase):
    """A use-case as the API returns it."""

    summary: str
    sensors: list[str]
    quantities: list[str]
    placement: list[str]
    best_practices: list[str]
    thresholds: list[Threshold]
    seed_lines: list[str]
    themes: list[str] = []
    problem: str = ""
    who_asked: str = ""
    sampling_interval_s: float | None = None
    privacy: list[str] = []
    pitfalls: list[str] = []
    examples: list[str] = []
    sources: list[str] = []
    derived: list[str] = []
    headline: list[str] = []
    org_id: int | None = None
    read_only: bool = True

    @classmethod
    def from_row(cls, row: UseCaseRow) -> UseCasePublic:
        """Build the public model of ``row``."""
        case = row.use_case()
        return cls.model_validate(
            {**case.model_dump(), "org_id": row.org_id, "read_only": row.org_id is None}
        )


class UseCasesPublic(SQLModel):
    """A list of use-cases."""

    data: list[UseCasePublic]
    count: int
