"""The docs stay true: every option is documented with its default."""

from __future__ import annotations

import pathlib

import pytest

from nbws.cli import NbwsServe
from nbws.config import ChoiceEnum, Count, Nbws, Seconds

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def option_rows(section: str) -> dict[str, str]:
    """``| `name` | ...`` rows of docs/configuration.md under the heading ``section``."""
    text = (DOCS / "configuration.md").read_text()
    part = text.partition(section)[2].partition("\n## ")[0]
    assert part, f"no section {section!r}"
    return {
        line.split("|")[1].strip(" `"): line for line in part.splitlines() if line.startswith("| `")
    }


@pytest.mark.parametrize(
    ("cls", "section"),
    [(Nbws, "## Options (`c.Nbws`)"), (NbwsServe, "## `nbws serve` (`c.NbwsServe`)")],
)
def test_every_option_is_documented_with_its_default_and_allowed_values(
    cls: type, section: str
) -> None:
    rows = option_rows(section)
    traits = cls.class_own_traits(config=True)  # type: ignore[attr-defined]
    for name, trait in traits.items():
        assert name in rows, f"docs/configuration.md does not document {name}"
        assert f"| `{trait.default()!r}` |" in rows[name], f"{name}: default changed"
        if isinstance(trait, ChoiceEnum):
            for value in trait.values or ():
                assert f"`{value!r}`" in rows[name], f"{name}: {value} not listed"
        if isinstance(trait, Count | Seconds):
            assert trait.allowed() in rows[name], f"{name}: range changed"
    assert set(rows) == set(traits), "docs/configuration.md documents options that do not exist"


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
