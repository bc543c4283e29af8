"""Pilot assessment and pilot report of a deployment.

The assessment follows the seed report's Tallinn project-assessment tool (seed lines 700-709):
potential benefits in eight areas (economy, governance, environment, people, living, energy
efficiency, mobility, ICT) and risks, as a score; a project moves on with at least 60 % both from
the tool and from the experts. How benefits and risks combine into one percentage is not in the
seed: here each benefit (0-5) counts as is and each risk (0-5) as 5 minus it, over the maximum.

The report follows the seed's Annex I template for pilot reports (lines 2479-2562, parts A-F),
with the deployment's facts and a summary of its data filled in; the rest is the team's text.
"""

from __future__ import annotations

import html
import math
from typing import Annotated, Literal

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from kits.quantities import QUANTITIES
from server.api.auth import AuthDep
from server.api.common import audit_change
from server.api.deps import ClockDep, SessionDep, StoreDep
from server.api.routes.deployments import get_deployment
from server.api.throttle import ExportSlotDep
from server.export import iter_readings
from server.models import UseCaseRow
from server.spans import device_spans
from server.tables import AssessmentRow, DeploymentRow, OrganisationRow
from server.timeutil import iso

__all__ = ["AREAS", "PASS_PCT", "SECTIONS", "router", "score"]

router = APIRouter(tags=["pilot reports"])

AREAS = ("economy", "governance", "environment", "people", "living", "energy_efficiency", "mobility", "ict")
RISKS = ("technical", "financial", "legal_privacy", "organisational")
PASS_PCT = 60.0
# Annex I, parts A-F (seed lines 2479-2562).
SECTIONS: dict[str, str] = {
    "a1_needs": "A.1 Needs and potentials identified",
    "a2_strategic_intent": "A.2 Strategic intent formulated",
    "a3_stakeholders": "A.3 Stakeholders, users and customers identified",
    "a4_activities": "A.4 Designed activities and offerings",
    "a5_value_network": "A.5 Value network engaged",
    "a6_ecosystem": "A.6 Ecosystem orchestration arranged",
    "b_involvement": "B. Involvement and participation processes",
    "c_activities": "C. Detailed pilot activities",
    "d_results": "D. Results",
    "e_perspectives": "E. Perspectives of outcomes",
    "f_summary": "F. Summary and future outlook",
}

Score = Annotated[int, Field(ge=0, le=5)]


class AssessmentSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    benefits: dict[
        Literal[
            "economy", "governance", "environment", "people", "living", "energy_efficiency", "mobility", "ict"
        ],
        Score,
    ] = Field(default_factory=dict)
    risks: dict[Literal["technical", "financial", "legal_privacy", "organisational"], Score] = Field(
        default_factory=dict
    )
    expert_score_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    report: dict[
        Literal[
            "a1_needs",
            "a2_strategic_intent",
            "a3_stakeholders",
            "a4_activities",
            "a5_value_network",
            "a6_ecosystem",
            "b_involvement",
            "c_activities",
            "d_results",
            "e_perspectives",
            "f_summary",
        ],
        Annotated[str, Field(max_length=20_000)],
    ] = Field(default_factory=dict)


class AssessmentPublic(BaseModel):
    deployment_id: int
    benefits: dict[str, int]
    risks: dict[str, int]
    tool_score_pct: float
    expert_score_pct: float | None
    passes: bool
    threshold_pct: float
    report: dict[str, str]
    updated_at: float
    updated_by: str


def score(benefits: dict[str, int], risks: dict[str, int]) -> float:
    """Return the tool score in percent (benefits as is, risks as 5 - risk, over the maximum)."""
    points = sum(benefits.get(a, 0) for a in AREAS) + sum(5 - risks.get(r, 5) for r in RISKS)
    return round(100.0 * points / (5 * (len(AREAS) + len(RISKS))), 1)


def _public(row: AssessmentRow) -> AssessmentPublic:
    tool = score(row.benefits, row.risks)
    return AssessmentPublic(
        deployment_id=row.deployment_id,
        benefits=row.benefits,
        risks=row.risks,
        tool_score_pct=tool,
        expert_score_pct=row.expert_score_pct,
        passes=tool >= PASS_PCT and row.expert_score_pct is not None and row.expert_score_pct >= PASS_PCT,
        threshold_pct=PASS_PCT,
        report=row.report,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


@router.put("/deployments/{deployment_id}/assessment")
def set_assessment(
    deployment_id: int, body: AssessmentSet, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> AssessmentPublic:
    """Score a deployment with the assessment form and store the report's text (operators)."""
    dep = get_deployment(session, principal, deployment_id, "operator")
    now = clock()
    row = session.get(AssessmentRow, deployment_id) or AssessmentRow(
        deployment_id=deployment_id, updated_at=now
    )
    row.benefits = {str(k): v for k, v in body.benefits.items()}
    row.risks = {str(k): v for k, v in body.risks.items()}
    row.expert_score_pct = body.expert_score_pct
    row.report = {str(k): v for k, v in body.report.items()}
    row.updated_at, row.updated_by = now, principal.label
    session.add(row)
    audit_change(
        session,
        principal,
        now,
        "assess",
        "deployment",
        deployment_id,
        dep.org_id,
        tool_score_pct=score(row.benefits, row.risks),
    )
    session.commit()
    return _public(row)


@router.get("/deployments/{deployment_id}/assessment")
def get_assessment(
    deployment_id: int, principal: AuthDep, session: SessionDep, clock: ClockDep
) -> AssessmentPublic:
    """Return a deployment's assessment (an empty one when not yet scored)."""
    get_deployment(session, principal, deployment_id)
    row = session.get(AssessmentRow, deployment_id) or AssessmentRow(
        deployment_id=deployment_id, updated_at=clock()
    )
    return _public(row)


def _add(
    stats: dict[str, list[float]], quantity: str, count: int, low: float, high: float, total: float
) -> None:
    s = stats.setdefault(quantity, [0, float("inf"), float("-inf"), 0.0])
    s[0] += count
    s[1], s[2], s[3] = min(s[1], low), max(s[2], high), s[3] + total


def _summary(session: Session, store: StoreDep, dep: DeploymentRow, now: float) -> list[str]:
    stats: dict[str, list[float]] = {}
    end = dep.ends_at if dep.ends_at is not None else now
    for org, device, span_from, span_to in device_spans(session, dep.id or 0):
        lo, hi = max(dep.starts_at, span_from), min(end, span_to)
        if hi <= lo:
            continue
        # Whole hours from the store's daily windows (its rollups), the partial hours at each
        # end from the raw readings: a year-long pilot costs a few hundred rows, and is exact.
        inner_lo, inner_hi = math.ceil(lo / 3600) * 3600.0, math.floor(hi / 3600) * 3600.0
        if inner_lo < inner_hi:
            for w in store.windows(org, device, inner_lo, inner_hi, 86400.0):
                _add(stats, w.quantity, w.count, w.min, w.max, w.mean * w.count)
            edges = [(lo, inner_lo), (inner_hi, hi)]
        else:
            edges = [(lo, hi)]
        for a, b in edges:
            for record in iter_readings(store, org, device, a, b):
                _add(stats, record.quantity, 1, record.value, record.value, record.value)
    lines = []
    for quantity, (count, low, high, total) in sorted(stats.items()):
        unit = QUANTITIES[quantity].unit if quantity in QUANTITIES else ""
        lines.append(
            f"| {quantity} | {int(count)} | {low:.2f} | {total / count:.2f} | {high:.2f} | {unit or ''} |"
        )
    return lines


def render_markdown(session: Session, store: StoreDep, dep: DeploymentRow, now: float) -> str:
    """Return the pilot report of ``dep`` in Markdown."""
    org = session.get(OrganisationRow, dep.org_id)
    case = session.get(UseCaseRow, dep.use_case_id) if dep.use_case_id else None
    row = session.get(AssessmentRow, dep.id) or AssessmentRow(deployment_id=dep.id or 0, updated_at=now)
    assessment = _public(row)
    devices = sorted({s.device for s in device_spans(session, dep.id or 0)})
    out = [
        f"# Pilot report: {dep.name}",
        "",
        f"- Organisation: {org.name if org else dep.org_id}",
        f"- Use-case: {case.title if case else dep.use_case_id or 'none'}",
        f"- Place: {dep.address or 'not given'} ({dep.environment}"
        + (f", {dep.height_m} m high" if dep.height_m is not None else "")
        + ")",
        f"- From {iso(dep.starts_at)} to {iso(dep.ends_at) if dep.ends_at else 'ongoing'}",
        f"- Devices: {', '.join(devices) or 'none claimed'}",
        f"- Public: {'yes' if dep.public else 'no'}",
        "",
        "## Assessment (project-assessment tool)",
        "",
        f"Tool score {assessment.tool_score_pct:.1f} %, experts "
        + (
            f"{assessment.expert_score_pct:.1f} %"
            if assessment.expert_score_pct is not None
            else "not scored"
        )
        + f"; moves on at {PASS_PCT:.0f} % on both: **{'yes' if assessment.passes else 'no'}**.",
        "",
        "| area | benefit (0-5) |",
        "|---|---|",
        *[f"| {a} | {assessment.benefits.get(a, '-')} |" for a in AREAS],
        "",
        "| risk | level (0-5) |",
        "|---|---|",
        *[f"| {r} | {assessment.risks.get(r, '-')} |" for r in RISKS],
        "",
    ]
    for key, title in SECTIONS.items():
        out += [f"## {title}", "", assessment.report.get(key, "").strip() or "_(to be written)_", ""]
        if key == "d_results":
            table = _summary(session, store, dep, now)
            out += [
                "Data collected:",
                "",
                "| quantity | readings | min | mean | max | unit |",
                "|---|---|---|---|---|---|",
                *(table or ["| - | 0 | | | | |"]),
                "",
            ]
    return "\n".join(out)


@router.get(
    "/deployments/{deployment_id}/report",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/markdown": {}, "text/html": {}}}},
)
def report(
    deployment_id: int,
    principal: AuthDep,
    session: SessionDep,
    store: StoreDep,
    clock: ClockDep,
    _slot: ExportSlotDep,
    format: Literal["md", "html"] = "md",
) -> Response:
    """Return the deployment's pilot report (Annex I template) as Markdown or printable HTML."""
    dep = get_deployment(session, principal, deployment_id)
    text = render_markdown(session, store, dep, clock())
    if format == "md":
        return Response(text, media_type="text/markdown; charset=utf-8")
    body = "\n".join(_md_line(line) for line in text.splitlines())
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(dep.name)}</title>"
        # A stylesheet, not an inline <style>: the pages' Content-Security-Policy refuses those.
        "<link rel='stylesheet' href='/static/report.css'></head><body>" + body + "</body></html>"
    )
    return Response(page, media_type="text/html; charset=utf-8")


def _md_line(line: str) -> str:
    if line.startswith("|---"):
        return ""
    if line.startswith("|"):
        cells = "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip("|").split("|"))
        return f"<table><tr>{cells}</tr></table>"
    if line.startswith("## "):
        return f"<h2>{html.escape(line[3:])}</h2>"
    if line.startswith("# "):
        return f"<h1>{html.escape(line[2:])}</h1>"
    if line.startswith("- "):
        return f"<li>{html.escape(line[2:])}</li>"
    return f"<p>{html.escape(line)}</p>" if line else ""
