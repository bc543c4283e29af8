"""The facts of a part (``edge/parts/<part>/facts.yaml``): the one place each fact lives.

The driver builds its :class:`~edge.drivers.base.DriverInfo` from them (:meth:`PartFacts.info`),
the emulator and scan read the addresses and chip id from there, ``suitcase kit docs`` writes the
part's page of the hardware guide from them, and the ``edge`` extra installs what ``requires``
names. A file with a missing, unknown or contradictory fact is refused at load with the file, the
field and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field

from kits.config_file import load_yaml_model
from kits.errors import ConfigError
from kits.quantities import QUANTITIES, quantity

if TYPE_CHECKING:  # the driver contract imports the registry, which imports this module
    from edge.drivers.base import DriverInfo, I2CBus

__all__ = ["FACTS_FILE", "PartFacts", "driver_info", "load_facts"]

FACTS_FILE = "facts.yaml"

Address = Annotated[int, Field(ge=0x03, le=0x77)]
Byte = Annotated[int, Field(ge=0x00, le=0xFF)]
# a PEP 508 requirement of a plain distribution name with optional version bounds
_REQUIREMENT = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9_,-]+\])?\s*((~=|==|!=|<=|>=|<|>)\s*[\w.*]+\s*,?\s*)*$"
)
_PRODUCT = re.compile(r"adafruit\.com/product/(\d+)")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PartFacts(_Model):
    """Everything known about one part, for the agent and for people."""

    part: str = Field(description="the part's name: its folder and its line in edge.parts.PARTS")
    title: str = Field(description="a one-line name for logs and scans")
    name: str = Field(description="the name people know it by, e.g. BME280")
    maker: str
    requires: list[str] = Field(min_length=1, description="pip requirements of the library the driver wraps")
    addresses: dict[Address, str] = Field(
        min_length=1, description="every I2C address the part can have, default first -> how to set it"
    )
    chip_id_register: Byte | None = Field(default=None, description="the register that tells the chip apart")
    chip_id: Byte | None = Field(default=None, description="this part's value at chip_id_register")
    look_alikes: dict[Byte, str] = Field(
        default_factory=dict, description="other chips' ids at the chip-id register -> what they are"
    )
    quantities: list[str] = Field(min_length=1, description="what one read returns, in this order")
    min_interval_s: float = Field(gt=0, description="the shortest interval between reads it supports well")
    warmup_s: float = Field(ge=0, description="how long after power-up readings are not yet valid")
    burst: str | None = Field(default=None, description="for parts sampled in a burst: rate and count")
    board: str = Field(description="the breakout board the kit uses, with its product number")
    product_url: str = Field(pattern=r"^https://")
    price_eur: float = Field(ge=0, description="indicative, per board, without VAT or shipping")
    supplier: str
    datasheet_url: str = Field(pattern=r"^https://")
    measures: str
    accuracy: list[str] = Field(min_length=1)
    warmup: str
    placement: list[str] = Field(min_length=1)
    calibration: list[str] = Field(min_length=1)
    cable_label: str = Field(pattern=r"^[A-Z0-9 ]{2,12}$", description="printed on the cable's tag")

    @property
    def default_address(self) -> int:
        """The address the board comes with."""
        return next(iter(self.addresses))

    def info(self, *, probe: Callable[[I2CBus, int], str | None] | None = None) -> DriverInfo:
        """The driver's contract, from these facts and the driver's ``probe`` (if it has one)."""
        from edge.drivers.base import DriverInfo

        return DriverInfo(
            part=self.part,
            title=self.title,
            addresses=tuple(self.addresses),
            quantities=tuple(quantity(q) for q in self.quantities),
            chip_id_register=self.chip_id_register,
            chip_id=self.chip_id,
            look_alikes=dict(self.look_alikes),
            min_interval_s=self.min_interval_s,
            warmup_s=self.warmup_s,
            probe=probe,
            burst=self.burst,
        )


def load_facts(path: Path, *, part: str) -> PartFacts:
    """Read the facts of ``part`` from ``path`` and check that they agree with each other.

    Raises:
        ConfigError: the file is missing or not valid, or two facts contradict each other; the
            message names the file, the field and the fix.
    """
    facts = load_yaml_model(path, PartFacts)
    problems = [f"{path}, field {field}: {problem}" for field, problem in _contradictions(facts, part)]
    if problems:
        raise ConfigError("\n".join(problems))
    return facts


def _contradictions(facts: PartFacts, part: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if facts.part != part:
        out.append(
            (
                "part",
                f"says {facts.part!r}, but the folder and its line in edge.parts.PARTS say {part!r}: "
                "make the three the same",
            )
        )
    unknown = [q for q in facts.quantities if q not in QUANTITIES]
    if unknown:
        out.append(("quantities", f"unknown quantities {unknown}: use names from kits/quantities.py"))
    if len(set(facts.quantities)) != len(facts.quantities):
        out.append(("quantities", f"{facts.quantities} names a quantity twice: list each once"))
    if (facts.chip_id is None) != (facts.chip_id_register is None):
        field, other = (
            ("chip_id", "chip_id_register") if facts.chip_id is None else ("chip_id_register", "chip_id")
        )
        out.append(
            (
                field,
                f"is missing, but {other} is given: give both (the register and this part's value "
                "there) or neither",
            )
        )
    if facts.look_alikes and facts.chip_id is None:
        out.append(
            (
                "look_alikes",
                "look-alikes are told apart at the chip-id register, but there is no chip_id: add "
                "chip_id_register and chip_id, or remove look_alikes",
            )
        )
    if facts.chip_id is not None and facts.chip_id in facts.look_alikes:
        out.append(
            (
                "look_alikes",
                f"{facts.chip_id:#04x} is this part's own chip_id, also listed as "
                f"{facts.look_alikes[facts.chip_id]!r}: remove it from look_alikes",
            )
        )
    bad = [r for r in facts.requires if not _REQUIREMENT.match(r)]
    if bad:
        out.append(
            ("requires", f"{bad} are not pip requirements: write e.g. adafruit-circuitpython-bme280>=2.6")
        )
    match = _PRODUCT.search(facts.product_url)
    if match and match.group(1) not in re.findall(r"\d+", facts.board):
        out.append(
            (
                "product_url",
                f"is Adafruit product {match.group(1)}, but board says {facts.board!r}: name the same "
                "product in both",
            )
        )
    return out


def driver_info(driver_file: str, *, probe: Callable[[I2CBus, int], str | None] | None = None) -> DriverInfo:
    """The ``INFO`` of the driver at ``driver_file``, from the ``facts.yaml`` beside it.

    Raises:
        ConfigError: the facts are missing, invalid or contradictory.
    """
    folder = Path(driver_file).parent
    return load_facts(folder / FACTS_FILE, part=folder.name).info(probe=probe)
