"""The docs stay true: every option is documented with its default."""

from __future__ import annotations

import pathlib

from nbws.config import Nbws

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def test_every_option_is_documented_with_its_default():
    text = (DOCS / "configuration.md").read_text()
    rows = {
        line.split("|")[1].strip(" `"): line for line in text.splitlines() if line.startswith("| `")
    }
    for name, trait in Nbws.class_traits(config=True).items():
        assert name in rows, f"docs/configuration.md does not document {name}"
        assert f"`{trait.default_value!r}`" in rows[name], f"{name}: default changed"


def test_close_codes_in_protocol_doc_match_the_error_tree():
    from nbws import errors

    text = (DOCS / "protocol.md").read_text()
    for cls in (
        errors.ProtocolViolation,
        errors.InvalidPayload,
        errors.PolicyViolation,
        errors.MessageTooBig,
        errors.InternalError,
        errors.TryAgainLater,
    ):
        assert f"| {int(cls.close_code)} |" in text, cls.__name__
