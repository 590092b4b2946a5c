"""docs/nbws.v1.schema.json: generated from nbws.protocol.messages, kept current, and
true of every example in docs/protocol.md."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
from typing import Any

import jsonschema
import pytest

from nbws.protocol import messages as m

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
SCHEMA_PATH = ROOT / "docs" / "nbws.v1.schema.json"
PROTOCOL_MD = ROOT / "docs" / "protocol.md"
VECTORS = ROOT / "tests" / "vectors"

# Examples in docs/protocol.md that are wrong against the schema, with why; each is an
# xfail(strict) so it fails loudly once the page is fixed.
KNOWN_WRONG: dict[str, str] = {}


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validator(direction: str) -> jsonschema.Draft202012Validator:
    schema = load_schema()
    return jsonschema.Draft202012Validator({**schema, "$ref": f"#/$defs/{direction}"})


def direction_of(obj: dict[str, Any]) -> str:
    kind = obj["type"]
    if kind in m.REQUESTS and kind in m.EVENTS:
        return "event" if "ref" in obj else "request"
    return "request" if kind in m.REQUESTS else "event"


def doc_examples() -> list[tuple[str, dict[str, Any]]]:
    """Every nbws.v1 message in a ```json block of docs/protocol.md, named by type (and ref/id)."""
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    found: list[tuple[str, dict[str, Any]]] = []
    for block in re.findall(r"```json\n(.*?)```", text, flags=re.S):
        at = 0
        while True:
            while at < len(block) and block[at].isspace():
                at += 1
            if at >= len(block):
                break
            obj, at = decoder.raw_decode(block, at)
            if not isinstance(obj, dict) or "type" not in obj:
                continue  # a REST body or response, not an nbws.v1 message
            name = obj["type"]
            for marker in ("ref", "id"):
                if marker in obj:
                    name += f"#{marker}={obj[marker]}"
                    break
            if obj["type"] == "status":
                name += f"#{obj['state']}"
            found.append((name, obj))
    return found


EXAMPLES = doc_examples()


def example_params() -> list[Any]:
    params = []
    for name, obj in EXAMPLES:
        marks = []
        if name in KNOWN_WRONG:
            marks.append(pytest.mark.xfail(reason=KNOWN_WRONG[name], strict=True))
        params.append(pytest.param(obj, id=name, marks=marks))
    return params


def test_checked_in_schema_is_current():
    """Regenerate with ``python -m nbws.protocol.messages --schema docs/nbws.v1.schema.json``."""
    assert SCHEMA_PATH.read_text(encoding="utf-8") == m.schema_text()


def test_schema_command_writes_the_file(tmp_path):
    out = tmp_path / "schema.json"
    result = subprocess.run(
        [sys.executable, "-m", "nbws.protocol.messages", "--schema", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text(encoding="utf-8") == m.schema_text()


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(load_schema())


def test_schema_names_every_field_of_every_message():
    defs = load_schema()["$defs"]
    for direction, registry in (("request", m.REQUESTS), ("event", m.EVENTS)):
        for kind, cls in registry.items():
            schema = defs[f"{direction}.{kind}"]
            wire = {"type"} | {c.wire for c in cls.COLUMNS}
            if cls is m.Message:
                wire.add("binary")
            assert set(schema["properties"]) == wire
            assert set(schema["required"]) == {"type"} | {
                c.wire for c in cls.COLUMNS if c.spec.required
            }


def test_docs_have_an_example_of_every_message():
    seen = {(direction_of(obj), obj["type"]) for _, obj in EXAMPLES}
    assert seen == {("request", k) for k in m.REQUESTS} | {("event", k) for k in m.EVENTS}


@pytest.mark.parametrize("obj", example_params())
def test_doc_example_matches_the_schema(obj):
    errors = [e.message for e in validator(direction_of(obj)).iter_errors(obj)]
    assert errors == []


@pytest.mark.parametrize("obj", example_params())
def test_doc_example_decodes(obj):
    decode = m.decode_request if direction_of(obj) == "request" else m.decode_event
    message = decode(json.dumps(obj))
    assert obj["type"] == message.TYPE


def vector_cases(name: str) -> list[dict[str, Any]]:
    return [
        c for c in json.loads((VECTORS / name).read_text(encoding="utf-8"))["cases"] if "json" in c
    ]


@pytest.mark.parametrize(
    ("direction", "case"),
    [("request", c) for c in vector_cases("requests.json")]
    + [("event", c) for c in vector_cases("events.json")],
    ids=lambda v: v["name"] if isinstance(v, dict) else v,
)
def test_valid_vectors_match_the_schema(direction, case):
    v = validator(direction)
    assert list(v.iter_errors(case["json"])) == []
    # What the encoder writes back is valid too.
    assert list(v.iter_errors({"type": case["json"]["type"], **case["fields"]})) == []


# Refusals the schema cannot express: field combinations. And "prices\n": the schema's
# pattern ends in `$`, which in JSON Schema's (ECMA-262) regexes is the end of the string,
# but Python's jsonschema matches with `re.search`, where `$` also matches before a final
# newline; the decoder refuses it.
NOT_IN_SCHEMA = {
    "publish-producer-without-seq",
    "publish-seq-without-producer",
    "publish-payload-missing",
    "subscribe-stream-trailing-newline",
}


@pytest.mark.parametrize(
    "case",
    [
        c
        for c in vector_cases("invalid.json")
        if c["name"] not in NOT_IN_SCHEMA and isinstance(c["json"].get("type"), str)
    ],
    ids=lambda c: c["name"],
)
def test_invalid_vectors_fail_the_schema(case):
    assert not validator(case["direction"]).is_valid(case["json"])


def test_info_request_and_event_are_told_apart():
    request = {"type": "info", "id": 3, "stream": "prices"}
    assert validator("request").is_valid(request)
    assert not validator("event").is_valid(request)
