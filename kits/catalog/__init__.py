"""The catalogue: kit profiles (``kits/*.yaml``) and use-cases (``usecases/*.yaml``).

The one place the contents of a suitcase and the use-cases are defined; the server loads it into
its registry, ``hardware/`` is generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kits.config_file import load_yaml_model
from kits.errors import CatalogError
from kits.models import KitProfile, UseCase

__all__ = ["CATALOG_DIR", "Catalog", "load_catalog"]

CATALOG_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Catalog:
    kit_profiles: dict[str, KitProfile]
    use_cases: dict[str, UseCase]


def load_catalog(root: Path = CATALOG_DIR) -> Catalog:
    """Load and cross-check every kit profile and use-case under ``root``.

    Raises:
        CatalogError: a file is invalid, an id repeats or does not match its file name, or a
            use-case names a kit profile or part that the catalogue does not have.
    """
    profiles = {p.id: p for p in _load_all(root / "kits", KitProfile).values()}
    use_cases = _load_all(root / "usecases", UseCase)
    for path, case in use_cases.items():
        if case.kit_profile not in profiles:
            raise CatalogError(
                f"{path}: kit_profile {case.kit_profile!r} is not in {root / 'kits'}: "
                f"use one of {', '.join(sorted(profiles))}"
            )
    return Catalog(
        kit_profiles=profiles,
        use_cases={u.id: u for u in use_cases.values()},
    )


def _load_all(folder: Path, model: type[KitProfile] | type[UseCase]) -> dict[Path, Any]:
    found: dict[Path, Any] = {}
    for path in sorted(folder.glob("*.yaml")):
        item = load_yaml_model(path, model, error=CatalogError)
        if item.id != path.stem:
            raise CatalogError(
                f"{path}: id {item.id!r} differs from the file name: rename the file to {item.id}.yaml "
                "or change the id"
            )
        found[path] = item
    return found
