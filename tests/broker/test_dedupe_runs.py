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


class OneByOne:
    """The reference: every seq its own entry, oldest (by append order) forgotten first."""

    def __init__(self, size: int) -> None:
        from collections import OrderedDict

        self.size = size
        self.seen: OrderedDict[int, int] = OrderedDict()
        self.forgotten_upto = -1

    def remember(self, seq: int, offset: int) -> None:
        self.seen[seq] = offset
        while len(self.seen) > self.size:
            old, _ = self.seen.popitem(last=False)
            self.forgotten_upto = max(self.forgotten_upto, old)

    def lookup(self, seq: int) -> tuple[bool, int | None]:
        if seq in self.seen:
            return True, self.seen[seq]
        if seq <= self.forgotten_upto or (self.seen and seq < next(iter(self.seen))):
            return True, None
        return False, None


def test_runs_and_singles_mixed_agree_with_one_by_one() -> None:
    """Random batches, single appends, gaps filled later and retransmits of forgotten
    seqs: every lookup, ``fresh_from`` and ``forgotten_upto`` as the reference says."""
    import random

    rng = random.Random(7)
    for size in (1, 3, 8, 50):
        window, reference = DedupeWindow(size), OneByOne(size)
        seq = offset = 0
        for _ in range(400):
            if rng.random() < 0.4:
                count = rng.randint(1, 3 * size)
                assert window.fresh_from(seq)
                window.remember_run(seq, offset, count)
                for i in range(count):
                    reference.remember(seq + i, offset + i)
                seq, offset = seq + count, offset + count
            else:
                # Mostly the next seq; sometimes one skipped (a gap), sometimes an
                # earlier unseen one (the gap filled by a retransmit).
                candidate = seq + rng.choice((0, 0, 0, 1, 2))
                if rng.random() < 0.2:
                    candidate = rng.randint(max(0, seq - 2 * size), seq)
                if window.lookup(candidate)[0]:
                    continue
                window.remember(candidate, offset)
                reference.remember(candidate, offset)
                offset += 1
                seq = max(seq, candidate + 1)
            for probe in range(max(-1, seq - 4 * size), seq + 3):
                assert window.lookup(probe) == reference.lookup(probe), (size, probe)
            assert window.forgotten_upto == reference.forgotten_upto


def test_a_gap_filled_late_does_not_make_later_seqs_look_fresh() -> None:
    """Seq 10 appended, then 5 (a retransmit filling a gap): a batch from 6 is not
    fresh (it would append 10 twice); "newest" was the last appended, not the highest."""
    window = DedupeWindow(64)
    window.remember(10, 0)
    window.remember(5, 1)
    assert not window.fresh_from(6)
    assert window.lookup(10) == (True, 0)
    assert window.fresh_from(11)
