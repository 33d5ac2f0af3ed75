"""``--fail-on`` gates of ``python -m loadtesting.compare``: a figure fails its gate when it is
significantly worse and its change is beyond the gate's tolerance."""

from __future__ import annotations

import re
from dataclasses import dataclass

from loadtesting.compare_data import CompareError
from loadtesting.compare_stats import FIGURES, Comparison, Delta, Figure


@dataclass(frozen=True)
class Gate:
    figure: Figure
    tolerance: float
    relative: bool
    text: str

    def beyond(self, d: Delta) -> bool:
        """The change is beyond the tolerance in the worse direction."""
        change = d.delta if d.figure.lower_is_better else -d.delta
        if self.relative:
            return bool(d.base) and change / abs(d.base) * 100 > self.tolerance
        return change > self.tolerance


GATE = re.compile(r"^([a-z0-9_]+):([+-]?)(\d+(?:\.\d+)?)(%?)$")


def parse_gates(spec: str) -> list[Gate]:
    """`p95:+10%,rps:-5%` -> gates; a bad spec raises CompareError with one line."""
    gates = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        m = GATE.match(part)
        if not m:
            raise CompareError(f"--fail-on {part!r}: expected FIGURE:+N% or FIGURE:+N (e.g. p95:+10%,rps:-5%)")
        name, sign, number, pct = m.groups()
        fig = FIGURES.get(name)
        if fig is None:
            raise CompareError(f"--fail-on {part!r}: unknown figure {name!r}; expected one of "
                               + ", ".join(k for k, f in FIGURES.items() if f.tested))
        if not fig.tested:
            raise CompareError(f"--fail-on {part!r}: {fig.label} is one value per run and has no significance "
                               "test; gate on lag or dropped instead")
        worse = "+" if fig.lower_is_better else "-"
        if sign and sign != worse:
            raise CompareError(f"--fail-on {part!r}: {fig.label} is worse when {'higher' if worse == '+' else 'lower'}; "
                               f"expected {name}:{worse}{number}{pct}")
        gates.append(Gate(fig, float(number), bool(pct), part))
    if not gates:
        raise CompareError(f"--fail-on {spec!r}: no gate; expected e.g. p95:+10%,rps:-5%")
    return gates


def apply_gates(comparison: Comparison, gates: list[Gate]) -> list[tuple[Gate, Delta, bool]]:
    """(gate, its figure's delta, failed) per gate; a figure missing in a run raises CompareError."""
    out = []
    for gate in gates:
        d = comparison.figure(gate.figure.key)
        if d is None or d.delta is None:
            raise CompareError(f"--fail-on {gate.text!r}: {gate.figure.label} is not measured in both runs "
                               f"({comparison.base.run_id}, {comparison.cand.run_id})")
        out.append((gate, d, d.significantly_worse() and gate.beyond(d)))
    return out
