"""What `prune` and `PruningWrapper` accept: the `structure=` argument
parsed, the ranking and schedule checked, the default schedule."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from keras_compress.schedules import ConstantSparsity, PruningSchedule

__all__ = ["Structure", "parse_structure", "check_ranking", "check_schedule",
           "default_schedule"]

_N_M = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


@dataclasses.dataclass(frozen=True)
class Structure:
    """A parsed `structure=` argument: "unstructured", "channel" or "N:M"."""

    kind: str
    n: int = 0
    m: int = 0

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.kind == "n:m" else self.kind

    @property
    def natural_sparsity(self) -> float | None:
        """The sparsity this structure fixes (1 - N/M), or None when free."""
        return 1.0 - self.n / self.m if self.kind == "n:m" else None


def parse_structure(structure: Any) -> Structure:
    """Parse `structure`; raises ValueError naming the argument when invalid."""
    if isinstance(structure, Structure):
        return structure
    if isinstance(structure, str):
        text = structure.strip().lower()
        if text in ("unstructured", "magnitude"):
            return Structure("unstructured")
        if text in ("channel", "channels", "filter", "filters"):
            return Structure("channel")
        match = _N_M.match(text)
        if match:
            n, m = int(match.group(1)), int(match.group(2))
            if not 0 < n < m:
                raise ValueError(
                    f"`structure`={structure!r}: an N:M pattern needs 0 < N < M "
                    "(e.g. '2:4' keeps 2 of every 4 weights)."
                )
            return Structure("n:m", n, m)
    raise ValueError(
        f"`structure` must be 'unstructured', 'channel' or an N:M pattern such as "
        f"'2:4'; received {structure!r}."
    )


RANKINGS = ("layer", "global")


def check_ranking(ranking: Any, structure: Structure) -> str:
    if ranking not in RANKINGS:
        raise ValueError(f"`ranking` must be one of {RANKINGS}; received {ranking!r}.")
    if ranking == "global" and structure.kind == "n:m":
        raise ValueError(
            "`ranking='global'` has no meaning for N:M pruning, which ranks inside "
            "each group of M weights; use ranking='layer'."
        )
    return ranking


def default_schedule(structure: Structure) -> PruningSchedule:
    """ConstantSparsity at the structure's natural sparsity (N:M) or 0.5."""
    natural = structure.natural_sparsity
    return ConstantSparsity(0.5 if natural is None else natural, begin_step=0)


def check_schedule(schedule: Any, structure: Structure) -> PruningSchedule:
    if not isinstance(schedule, PruningSchedule):
        raise ValueError(
            "`schedule` must be a keras_compress pruning schedule such as "
            f"ConstantSparsity or PolynomialDecay; received {schedule!r}."
        )
    natural = structure.natural_sparsity
    if natural is not None and abs(schedule.target_sparsity - natural) > 1e-6:
        raise ValueError(
            f"`structure`='{structure}' fixes the sparsity at {natural:g}, but the "
            f"`schedule` ends at {schedule.target_sparsity:g}. Use e.g. "
            f"ConstantSparsity({natural:g}) or PolynomialDecay(0, {natural:g}, ...)."
        )
    return schedule
