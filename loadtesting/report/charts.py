"""The charts (PNG), with the phases shaded."""

from __future__ import annotations

from pathlib import Path

from loadtesting import phases as phase_mod
from loadtesting.report.data import RunData

PHASE_COLOURS = {phase_mod.MINIMAL: "#2ca02c", phase_mod.MAX_SUSTAINABLE: "#1f77b4", phase_mod.FAILURE: "#d62728"}


def _shade(ax, data: RunData, t0: float) -> None:
    for p in data.phases:
        end = p.end if p.end is not None else (data.timeline[-1]["time"] if data.timeline else p.start)
        ax.axvspan(p.start - t0, end - t0, color=PHASE_COLOURS.get(p.name, "#999999"), alpha=0.15, label=p.name)


def charts(data: RunData, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    made = []
    if data.capacity and data.capacity.get("steps") and "sustained_per_second" in data.capacity:
        made.append(rate_capacity_chart(data.capacity, out / "capacity.png"))  # needs no timeline
    if not data.timeline:
        return made
    t0 = data.timeline[0]["time"]
    x = [p["time"] - t0 for p in data.timeline]

    fig, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
    panels = [("users", "users", "#444444"), ("rps", "requests/s", "#1f77b4"),
              ("fail_rps", "failures/s", "#d62728"), ("p95", "p95 ms\n(Aggregated)", "#ff7f0e")]
    for ax, (key, label, colour) in zip(axes, panels, strict=True):
        ax.plot(x, [p[key] for p in data.timeline], color=colour, linewidth=1.2)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        _shade(ax, data, t0)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(dict(zip(labels, handles, strict=False)).values(), dict(zip(labels, handles,
                       strict=False)).keys(), loc="upper left", fontsize=8)
    axes[-1].set_xlabel("seconds since start")
    fig.suptitle(f"Run {data.run_id}: the generator's own requests (Aggregated)")
    fig.tight_layout()
    path = out / "load.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    made.append(path)

    if data.lag:  # one panel per unit: seconds of lag and counts of events never share an axis
        panels = lag_panels(data.lag)
        fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.5 * len(panels)), sharex=True, squeeze=False)
        for ax, (unit, group) in zip(axes[:, 0], panels.items(), strict=True):
            for name, series in group.items():
                ax.plot([t - t0 for t, _ in series], [v for _, v in series], label=name, linewidth=1.2)
            _shade(ax, data, t0)
            ax.set_ylabel(f"lag ({unit})")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        axes[-1, 0].set_xlabel("seconds since start")
        fig.tight_layout()
        fig.savefig(out / "lag.png", dpi=90)
        plt.close(fig)
        made.append(out / "lag.png")

    if data.e2e:  # end-to-end latency: its own rows, its own chart (never in load.png's p95)
        fig, ax = plt.subplots(figsize=(10, 3.5))
        for name, series in data.e2e.items():
            ax.plot([t - t0 for t, _ in series], [v for _, v in series], label=name, linewidth=1.2)
        _shade(ax, data, t0)
        made.append(finish(fig, ax, "seconds since start", "end-to-end p95 ms per interval", out / "e2e.png"))

    if data.capacity and data.capacity.get("steps") and "sustained_per_second" not in data.capacity:
        steps = data.capacity["steps"]
        fig, ax = plt.subplots(figsize=(10, 3.5))
        ordered = sorted(steps, key=lambda s: s["users"])
        ax.plot([s["users"] for s in ordered], [s["rps"] for s in ordered], marker="o", color="#1f77b4")
        for s in ordered:
            ax.annotate("ok" if s["ok"] else "fail", (s["users"], s["rps"]), fontsize=7,
                        color="#2ca02c" if s["ok"] else "#d62728", textcoords="offset points", xytext=(0, 6))
        ax.axvline(data.capacity["max_sustainable_users"], color="#2ca02c", linestyle="--", label="max sustainable")
        made.append(finish(fig, ax, "users", "requests/s", out / "capacity.png"))
    return made


def rate_capacity_chart(cap: dict, path: Path) -> Path:
    """A rate search: offered vs stored rate per step, and each step's backlog slope with its 95 % interval."""
    import matplotlib.pyplot as plt

    unit = cap.get("unit", "events")
    steps = sorted(cap["steps"], key=lambda s: s["target"])
    x = [s["target"] for s in steps]
    fig, (top, low) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.plot(x, x, color="#999999", linestyle=":", label="target")
    top.plot(x, [s["offered_per_s"] for s in steps], marker="o", color="#1f77b4", label=f"offered {unit}/s")
    if any(s["stored_per_s"] is not None for s in steps):
        top.plot(x, [s["stored_per_s"] for s in steps], marker="s", color="#ff7f0e", label=f"stored {unit}/s")
    for s in steps:
        colour = {"pass": "#2ca02c", "generator": "#9467bd"}.get(s["verdict"], "#d62728")
        top.annotate("ok" if s["verdict"] == "pass" else s["verdict"], (s["target"], s["offered_per_s"]), fontsize=7,
                     color=colour, textcoords="offset points", xytext=(0, 6))
    if cap.get("sustained_per_second"):
        for ax in (top, low):
            ax.axvline(cap["sustained_per_second"], color="#2ca02c", linestyle="--", label="sustained")
    top.set_ylabel(f"{unit}/s")
    top.grid(alpha=0.3)
    top.legend(fontsize=8)
    for name, colour in (("sent − stored", "#ff7f0e"), ("bus", "#1f77b4")):
        pts = [(s["target"], s["backlog"][name]) for s in steps if name in s.get("backlog", {})]
        if pts:
            low.errorbar([t for t, _ in pts], [b["slope"] for _, b in pts], yerr=[b["ci"] for _, b in pts],
                         marker="o", capsize=3, color=colour, label=f"{name} backlog slope")
    low.plot(x, [cap["rule"]["backlog_tolerance"] * t for t in x], color="#d62728", linestyle=":",
             label="tolerance")
    return finish(fig, low, f"target {unit}/s", f"backlog growth ({unit}/s)", path)


def lag_unit(series_name: str) -> str:
    """The unit of a lag series: `<source> lag_seconds` is seconds; the backlog and `<source> lag` count events."""
    return "seconds" if series_name.endswith("lag_seconds") else "events"


def lag_panels(lag: dict[str, list]) -> dict[str, dict[str, list]]:
    """The lag series grouped by unit, one chart panel (one y axis) each."""
    panels: dict[str, dict[str, list]] = {}
    for name, series in lag.items():
        panels.setdefault(lag_unit(name), {})[name] = series
    return panels


def finish(fig, ax, xlabel: str, ylabel: str, path: Path) -> Path:
    """Label, grid and legend a chart, save it at `path` and close it (every chart of the suite ends so)."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- markdown ----------------------------------------------------------------------------------------
