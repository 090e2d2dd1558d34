"""Hypothesis strategies for realistic causal histories of one shared record.

Coaches (writers) edit a cooperative offline and now and then sync with each other (through the
server); an op's context is exactly what its writer knew when it made the edit, so contexts are
downward closed, as the server's served revisions are. Capture times are drawn from a tiny range, and
independently of causality, so ties and skewed clocks are common.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from sync.entities import LABEL_FIELD, CausalContext, Dot, EntityOp

COACHES = ("coach-amina", "coach-brice", "coach-chantal")
FIELDS = ("phone", "members_count", LABEL_FIELD)
VALUES = ("A", "B")


@dataclass(frozen=True)
class Edit:
    coach: int
    fields: tuple[tuple[str, str], ...]
    hlc: int


@dataclass(frozen=True)
class Sync:
    learner: int
    teacher: int


_edits = st.builds(
    Edit,
    coach=st.integers(0, len(COACHES) - 1),
    fields=st.dictionaries(st.sampled_from(FIELDS), st.sampled_from(VALUES), min_size=1).map(
        lambda d: tuple(sorted(d.items()))
    ),
    hlc=st.integers(0, 4),
)
_syncs = st.builds(Sync, learner=st.integers(0, len(COACHES) - 1), teacher=st.integers(0, len(COACHES) - 1))


def build_history(steps: list[Edit | Sync]) -> list[EntityOp]:
    """Play the steps and return the ops in creation order."""
    knowledge: list[set[Dot]] = [set() for _ in COACHES]
    seqs = [0] * len(COACHES)
    ops: list[EntityOp] = []
    for step in steps:
        if isinstance(step, Sync):
            knowledge[step.learner] |= knowledge[step.teacher]
            continue
        seqs[step.coach] += 1
        writer = COACHES[step.coach]
        dot = Dot(writer, seqs[step.coach])
        ops.append(
            EntityOp(
                op_id=f"{writer}#{dot.seq}",
                dot=dot,
                context=CausalContext.from_dots(knowledge[step.coach]),
                fields=dict(step.fields),
                hlc=step.hlc,
            )
        )
        knowledge[step.coach].add(dot)
    return ops


histories = st.lists(st.one_of(_edits, _syncs), min_size=1, max_size=14).map(build_history).filter(bool)
"""Non-empty lists of ops from a simulated history (creation order)."""


def truly_saw(later: EntityOp, earlier: EntityOp) -> bool:
    """The oracle for causality in these histories: contexts are exact, so no closure is needed."""
    if later.op_id == earlier.op_id:
        return False
    own_earlier = later.dot.writer == earlier.dot.writer and earlier.dot.seq < later.dot.seq
    return own_earlier or later.context.covers(earlier.dot)


def frontier(ops: list[EntityOp], field: str) -> list[EntityOp]:
    """The writes of ``field`` no other write of it saw."""
    writes = [op for op in ops if field in op.fields]
    return [a for a in writes if not any(truly_saw(b, a) for b in writes)]


def heads(ops: list[EntityOp]) -> list[EntityOp]:
    """The ops no other op saw."""
    return [a for a in ops if not any(truly_saw(b, a) for b in ops)]
