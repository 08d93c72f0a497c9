"""The flows the simulator plays: what a browser sends, what Persona sends, what must come out.

Pure data and a planner: :func:`plan_inquiry` turns a flow, an inquiry number and a seed into the
exact frames and webhook bodies of one inquiry, and the trusted status it must end with. With
``chaos`` the webhooks are delivered out of order, some twice, and the browser's connection drops
mid-flow (the simulator then resends what was not acknowledged, as the browser bridge does).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from persona_stream.webhook_bodies import body, inquiry_event

TEMPLATE_ID = "itmpl_simulatedTemplate0001"

LOAD: list[dict[str, Any]] = [{"kind": "onLoad"}, {"kind": "onReady"}]


def start(inquiry: str) -> dict[str, Any]:
    return {"kind": "onEvent", "name": "start", "metadata": {"inquiryId": inquiry}}


def event(name: str, **metadata: Any) -> dict[str, Any]:
    return {"kind": "onEvent", "name": name, "metadata": metadata or None}


def complete(inquiry: str, status: str) -> dict[str, Any]:
    return {
        "kind": "onComplete",
        "inquiryId": inquiry,
        "status": status,
        "fields": {
            "name-first": {"type": "string", "value": "Jane"},
            "birthdate": {"type": "date", "value": "1990-01-01"},
        },
    }


def documents() -> list[dict[str, Any]]:
    return [
        event("document-camera-select"),
        event("document-camera-capture"),
        event("document-upload", side="front"),
        event("selfie-camera-select"),
        event("selfie-camera-capture"),
        event("selfie-record-upload"),
    ]


@dataclass(frozen=True)
class Flow:
    """One way an inquiry goes: its browser sessions, its webhooks, its final trusted status."""

    name: str
    weight: int
    webhooks: tuple[tuple[str, str], ...]  # (event name, inquiry status), in the order they happened
    expected: str | None  # None: no inquiry ever exists (no trusted status)

    def sessions(self, inquiry: str) -> list[tuple[list[dict[str, Any]], str | None]]:
        """Each browser session: its callbacks, and the inquiry it was opened with (if resumed)."""
        full = [*LOAD, start(inquiry), *documents()]
        if self.name == "failed":
            return [([*full, complete(inquiry, "failed")], None)]
        if self.name == "expired":
            return [([*LOAD, start(inquiry), event("document-camera-select")], None)]
        if self.name == "camera-abandoned":
            return [
                (
                    [
                        *LOAD,
                        start(inquiry),
                        event("document-camera-select"),
                        event("load-camera-failed"),
                        {"kind": "onCancel", "inquiryId": inquiry, "sessionToken": "sess-tok-secret"},
                    ],
                    None,
                )
            ]
        if self.name == "load-error":
            return [
                (
                    [
                        {"kind": "onLoad"},
                        {"kind": "onError", "status": 422, "code": "inactive_template", "message": "template inactive"},
                    ],
                    None,
                )
            ]
        if self.name == "cancelled-resumed":
            first = [*LOAD, start(inquiry), event("document-camera-select"), {"kind": "onCancel", "inquiryId": inquiry}]
            resumed = [*LOAD, *documents(), complete(inquiry, "completed")]
            return [(first, None), (resumed, inquiry)]
        return [([*full, complete(inquiry, "completed")], None)]


CREATED, STARTED, COMPLETED = (
    ("inquiry.created", "created"),
    ("inquiry.started", "pending"),
    ("inquiry.completed", "completed"),
)

FLOWS: tuple[Flow, ...] = (
    Flow("approved", 30, (CREATED, STARTED, COMPLETED, ("inquiry.approved", "approved")), "approved"),
    Flow("declined", 10, (CREATED, STARTED, COMPLETED, ("inquiry.declined", "declined")), "declined"),
    Flow(
        "review-approved",
        6,
        (CREATED, STARTED, COMPLETED, ("inquiry.marked-for-review", "needs_review"), ("inquiry.approved", "approved")),
        "approved",
    ),
    Flow(
        "review-declined",
        4,
        (CREATED, STARTED, COMPLETED, ("inquiry.marked-for-review", "needs_review"), ("inquiry.declined", "declined")),
        "declined",
    ),
    Flow("failed", 8, (CREATED, STARTED, ("inquiry.failed", "failed")), "failed"),
    Flow("expired", 8, (CREATED, STARTED, ("inquiry.expired", "expired")), "expired"),
    Flow("camera-abandoned", 10, (CREATED, STARTED), "pending"),
    Flow("load-error", 6, (), None),
    Flow("cancelled-resumed", 8, (CREATED, STARTED, COMPLETED, ("inquiry.approved", "approved")), "approved"),
)


@dataclass
class InquiryPlan:
    number: int
    flow: Flow
    inquiry_id: str
    reference_id: str
    sessions: list[tuple[str, list[dict[str, Any]], str | None]]  # (session id, callbacks, opened with)
    webhooks: list[bytes]  # in delivery order (shuffled and repeated under chaos)
    drop_after: dict[str, int] = field(default_factory=dict)  # session id -> frames sent before a drop

    @property
    def expected(self) -> str | None:
        return self.flow.expected


def pick_flow(rng: random.Random) -> Flow:
    return rng.choices(FLOWS, weights=[flow.weight for flow in FLOWS])[0]


def plan_inquiry(number: int, run: str, seed: int, *, chaos: bool, users: int) -> InquiryPlan:
    rng = random.Random(f"{seed}-{number}")
    flow = pick_flow(rng)
    inquiry = f"inq_sim{run}{number:06d}"
    reference = f"user-{number % users:05d}"
    sessions = []
    for index, (callbacks, opened_with) in enumerate(flow.sessions(inquiry)):
        sessions.append((f"s{run}{number:06d}x{index}", callbacks, opened_with))
    began = datetime.now(UTC)  # Persona's clock: the inquiry is created as the flow starts
    bodies = [
        webhook_body(f"evt_{run}{number:06d}_{step}", name, status, began + timedelta(seconds=step), inquiry, reference)
        for step, (name, status) in enumerate(flow.webhooks)
    ]
    delivered = list(bodies)
    drops: dict[str, int] = {}
    if chaos and bodies:
        delivered += [rng.choice(bodies) for _ in range(rng.randint(0, 2))]
        rng.shuffle(delivered)
        for session, callbacks, _ in sessions:
            if rng.random() < 0.3 and len(callbacks) > 2:
                drops[session] = rng.randint(1, len(callbacks) - 1)
    return InquiryPlan(number, flow, inquiry, reference, sessions, delivered, drops)


def webhook_body(event_id: str, name: str, status: str, at: datetime, inquiry: str, reference: str) -> bytes:
    """A webhook as Persona sends it (JSON:API, the whole inquiry in the payload), stamped ``at``."""
    stamp = at.isoformat().replace("+00:00", "Z")
    times = {"created-at": stamp, "updated-at": stamp, "started-at": None}
    times["completed-at"] = stamp if status in ("completed", "approved", "declined") else None
    event = inquiry_event(
        event_id, name, status, stamp, inquiry_id=inquiry, reference_id=reference, template_id=TEMPLATE_ID, **times
    )
    return body(event)
