"""DedupeWindow's run methods (the batch fast path) against one-at-a-time remembering."""

from __future__ import annotations

from nbws.broker.dedupe import DedupeWindow


def test_remember_run_equals_remembering_one_by_one() -> None:
    one, run = DedupeWindow(8), DedupeWindow(8)
    for seq in range(5):
        one.remember(seq, seq + 100)
        run.remember(seq, seq + 100)
    for seq in range(5, 17):
        one.remember(seq, seq + 100)
    assert run.fresh_from(5) and not run.fresh_from(4)
    run.remember_run(5, 105, 12)
    for seq in range(-1, 20):
        assert run.lookup(seq) == one.lookup(seq), seq
    assert run.forgotten_upto == one.forgotten_upto == 8
    assert not run.fresh_from(16) and run.fresh_from(17)
