"""Which devices were in a deployment, and when: the keys the store's reads take."""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from sqlmodel import Session, col, select

from server.tables import DeploymentDeviceRow, DeviceRow, OrganisationRow

__all__ = ["DeviceSpan", "device_spans", "spans_of"]


class DeviceSpan(NamedTuple):
    """A device's time in a deployment, keyed as the store reads it: (org slug, device id)."""

    org: str
    device: str
    start: float
    end: float


def device_spans(session: Session, deployment_id: int) -> list[DeviceSpan]:
    """Return (org, device, from, to) of every device that was in the deployment.

    ``org`` is the slug of the device's organisation: the ``{org}`` of its topics, under which
    the store holds its readings.
    """
    return spans_of(session, [deployment_id]).get(deployment_id, [])


def spans_of(session: Session, deployment_ids: Collection[int]) -> dict[int, list[DeviceSpan]]:
    """:func:`device_spans` of each of ``deployment_ids`` (those with a device), in one query."""
    rows = session.exec(
        select(DeploymentDeviceRow, OrganisationRow.slug)
        .join(DeviceRow, col(DeviceRow.id) == DeploymentDeviceRow.device_id)
        .join(OrganisationRow, col(OrganisationRow.id) == DeviceRow.org_id)
        .where(col(DeploymentDeviceRow.deployment_id).in_(list(deployment_ids)))
        .order_by(col(DeploymentDeviceRow.id))
    ).all()
    out: dict[int, list[DeviceSpan]] = {}
    for link, slug in rows:
        end = link.to_t if link.to_t is not None else float("inf")
        out.setdefault(link.deployment_id, []).append(DeviceSpan(slug, link.device_id, link.from_t, end))
    return out
