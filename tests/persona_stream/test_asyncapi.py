from __future__ import annotations

from pathlib import Path

from core.settings import Settings
from core.topics import TopicPlan
from persona_stream.asyncapi import document, render
from tests.nodejs import run_node

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def test_the_committed_asyncapi_document_is_current() -> None:
    assert DOC.read_text() == render(Settings.model_construct()), "run: persona-stream schemas export"


def test_every_topic_of_the_plan_with_readers_outside_is_a_channel() -> None:
    defaults = Settings.model_construct()
    addresses = {channel["address"] for channel in document(defaults)["channels"].values()}
    plan = TopicPlan.from_settings(defaults)
    assert {spec.name for spec in plan.all() if not spec.internal} <= addresses
    assert {"/v1/client", "/v1/subscribe", "/v1/analytics"} <= addresses


def test_the_asyncapi_parser_accepts_it() -> None:
    code, output = run_node("validate-asyncapi.mjs", str(DOC))
    assert code == 0, output
