"""Persona's webhook envelope: a JSON:API ``event`` whose payload is a REST object.

Strict on what the pipeline relies on -- the event's ``type`` ("event"), ``id``, ``name`` and
``created-at``, the payload object's ``type`` and ``id``, and for an inquiry its ``status`` --
and tolerant of everything else: extra attributes are kept, unknown event names are kept, and
lifecycle timestamps are carried as the strings Persona sent (samples leave them null even when
the status implies them, so nothing depends on them).

Which inquiry an event is about (:meth:`WebhookEvent.inquiry_id`): the object itself when it is an
inquiry; otherwise the inquiry its relationships name (a verification, report or document points
at its inquiry); otherwise the object's own id, so that the event still has a stable key.
An object linked to several inquiries (a case) is about each of them
(:meth:`WebhookEvent.inquiry_ids`): the gateway writes it once per inquiry, keyed by each.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    StringConstraints,
    Tag,
)

from schemas.callbacks import InquiryId, is_inquiry_id

ObjectId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class _Tolerant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class ResourceRef(_Tolerant):
    """A JSON:API resource identifier (``{id, type}``)."""

    id: ObjectId
    type: Name


class Relationship(_Tolerant):
    data: ResourceRef | list[ResourceRef] | None = None

    def refs(self) -> list[ResourceRef]:
        if self.data is None:
            return []
        return self.data if isinstance(self.data, list) else [self.data]


class InquiryAttributes(_Tolerant):
    """The inquiry attributes the pipeline reads; every other attribute is kept as an extra."""

    status: Name
    reference_id: str | None = Field(default=None, alias="reference-id")
    note: str | None = None
    tags: list[str] = Field(default_factory=list)
    created_at: str | None = Field(default=None, alias="created-at")
    updated_at: str | None = Field(default=None, alias="updated-at")
    started_at: str | None = Field(default=None, alias="started-at")
    expires_at: str | None = Field(default=None, alias="expires-at")
    completed_at: str | None = Field(default=None, alias="completed-at")
    failed_at: str | None = Field(default=None, alias="failed-at")
    marked_for_review_at: str | None = Field(default=None, alias="marked-for-review-at")
    decisioned_at: str | None = Field(default=None, alias="decisioned-at")
    expired_at: str | None = Field(default=None, alias="expired-at")
    redacted_at: str | None = Field(default=None, alias="redacted-at")
    previous_step_name: str | None = Field(default=None, alias="previous-step-name")
    next_step_name: str | None = Field(default=None, alias="next-step-name")
    fields: dict[str, JsonValue] = Field(default_factory=dict)


class InquiryObject(_Tolerant):
    """An inquiry, as every ``inquiry.*`` event carries it: the whole object when the event was made."""

    type: Literal["inquiry"]
    id: InquiryId
    attributes: InquiryAttributes
    relationships: dict[str, Relationship] = Field(default_factory=dict)

    def template_id(self) -> str | None:
        for name in ("inquiry-template", "template", "inquiry-template-version"):
            refs = self.relationships.get(name)
            if refs is not None and refs.refs():
                return refs.refs()[0].id
        return None


class OtherObject(_Tolerant):
    """Any other object (verification, report, case, document, account, ...)."""

    type: Name = Field(
        description="Any type but `inquiry`: an inquiry is an InquiryObject, so a payload matches one branch only.",
        json_schema_extra={"not": {"const": "inquiry"}},
    )
    id: ObjectId
    attributes: dict[str, JsonValue] = Field(default_factory=dict)
    relationships: dict[str, Relationship] = Field(default_factory=dict)


def _object_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "inquiry" if kind == "inquiry" else "other"


PayloadObject = Annotated[
    Annotated[InquiryObject, Tag("inquiry")] | Annotated[OtherObject, Tag("other")],
    Discriminator(_object_kind),
]


class EventPayload(_Tolerant):
    data: PayloadObject
    included: list[dict[str, JsonValue]] = Field(default_factory=list)


class EventAttributes(_Tolerant):
    name: Name
    created_at: AwareDatetime = Field(alias="created-at")
    payload: EventPayload


class EventData(_Tolerant):
    type: Literal["event"]
    id: ObjectId
    attributes: EventAttributes


class WebhookEvent(_Tolerant):
    """One Persona webhook delivery body."""

    data: EventData

    @property
    def event_id(self) -> str:
        return self.data.id

    @property
    def name(self) -> str:
        return self.data.attributes.name

    @property
    def object(self) -> InquiryObject | OtherObject:
        return self.data.attributes.payload.data

    def inquiry_id(self) -> str:
        """The (first) inquiry this event is about (see the module docstring)."""
        return self.inquiry_ids()[0]

    def inquiry_ids(self) -> list[str]:
        """Every inquiry this event is about, in the order its relationships name them (no repeats);
        the object's own id when it names none. Each is a Kafka key the event is written under."""
        obj = self.object
        if isinstance(obj, InquiryObject):
            return [obj.id]
        found: list[str] = []
        for name in ("inquiry", "inquiries"):
            relationship = obj.relationships.get(name)
            if relationship is not None:
                for ref in relationship.refs():
                    if ref.type == "inquiry" and is_inquiry_id(ref.id) and ref.id not in found:
                        found.append(ref.id)
        return found or [obj.id]
