"""The findings: what the figures say, in plain language.

Each finding is a function of the run's data and the phases' figures that returns its paragraphs
(none when the run has nothing to say on it); FINDINGS lists them in the report's order, so adding
a finding is one function and one entry there.
"""

from __future__ import annotations

from collections.abc import Callable

from loadtesting import phases as phase_mod
from loadtesting import sar
from loadtesting.report.data import RunData, target_is_local


def fmt(v, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _served(f: dict) -> float | None:
    """Requests/s answered without failure in a phase."""
    if not f or f.get("rps") is None:
        return None
    if "failures" in f and f.get("requests"):
        return f["rps"] * (1 - f["failures"] / f["requests"])
    return max(f["rps"] - (f.get("fail_rps") or 0.0), 0.0)


def _searched(data: RunData) -> bool:
    """The run was a capacity search over users with steps (a rate search: loadtesting.rate_capacity)."""
    return bool(data.capacity and data.capacity.get("steps") and "sustained_per_second" not in data.capacity)


def _events(data: RunData) -> list[dict]:
    return [r for r in data.requests if r["type"] == "EVENT"]  # tracking runs: one request per event


def _total(data: RunData) -> dict | None:
    return next((r for r in data.requests if r["name"] == "Aggregated"), None)


def finding_refused(data: RunData, figures: dict[str, dict]) -> list[str]:
    """A run that ended with an error line: what stopped it, first (a refused run measured nothing)."""
    if not data.errors:
        return []
    measured = any(r["requests"] for r in data.requests)
    code = data.meta.get("exit_code")
    return [f"The run {'stopped on an error' if measured else 'was refused at start and measured nothing'}"
            + (f" (exit code {code})" if code is not None else "") + ": "
            + "; ".join(f"`{line[:300]}`" for line in data.errors) + "."]


def finding_capacity(data: RunData, figures: dict[str, dict]) -> list[str]:
    """A capacity search: the highest load served without failures and where the limit lies."""
    if not _searched(data):
        return []
    cap = data.capacity
    text = (f"The capacity search ran {len(cap['steps'])} steps. The highest load served without failures "
            f"was **{cap['max_sustainable_users']} users** ({fmt(cap['max_sustainable_rps'])} requests/s, "
            f"p95 {fmt(cap['p95_ms_at_max'], 0)} ms).")
    if cap.get("stopped"):
        text += (" The search was stopped before its end (while at "
                 f"{cap.get('stopped_during')} users): a partial result, not the limit.")
    elif cap.get("first_failing_users") is not None:
        text += (f" Failures started at {cap['first_failing_users']} users ({cap['failure_reason']}), so the "
                 f"limit lies between the two, known to within {cap['resolution']} users.")
    else:
        text += " No step failed up to the search's user ceiling: the limit is higher than what was tried."
    return [text]


def finding_events(data: RunData, figures: dict[str, dict]) -> list[str]:
    """A tracking run without a search: events sent, the rate, and how many reached ClickHouse."""
    events = _events(data)
    if _searched(data) or not events:
        return []
    sent = sum(r["requests"] for r in events)
    failed = sum(r["failures"] for r in events)
    achieved = (data.meta.get("extra") or {}).get("events_per_second_achieved")
    target = float((data.meta.get("options") or {}).get("events_per_second") or 0)
    if achieved:
        rate = f"at {fmt(achieved)} events/s" + (f" (target {target:g})" if target else "")
    else:
        rate = f"({fmt(sum(r['rps'] for r in events))} events/s averaged over the whole run, drain included)"
    text = f"The generator sent {sent:,} tracking events {rate}; {failed:,} failed to send."
    stored = sum(r["requests"] - r["failures"] for r in data.requests if r["type"] == "E2E")
    if any(r["type"] == "E2E" for r in data.requests):
        missing = sent - failed - stored
        text += (f" {stored:,} of them were found in ClickHouse as xAPI statements"
                 + (f"; {missing:,} never arrived." if missing > 0 else ", none lost."))
    return [text]


def finding_totals(data: RunData, figures: dict[str, dict]) -> list[str]:
    """Any other run: its peak users, requests, failures and p95, at this load rather than the limit."""
    total = _total(data)
    if _searched(data) or _events(data) or not total:
        return []
    peak = max((p["users"] for p in data.timeline), default=0)
    ratio = total["failures"] / total["requests"] if total["requests"] else 0
    return [f"The run reached {fmt(peak, 0)} users and served {total['requests']:,} requests at "
            f"{fmt(total['rps'])} requests/s on average, with {total['failures']:,} failures "
            f"({ratio:.2%}) and a p95 of {fmt(total['p95_ms'], 0)} ms. No capacity search was run, so "
            "this is the behaviour at this load, not the limit (`--capacity-search` finds it)."]


def finding_top_failure(data: RunData, figures: dict[str, dict]) -> list[str]:
    """The most frequent failure: what gave way first."""
    top = max(data.failures, key=lambda f: f["occurrences"], default=None)
    if not top:
        return []
    return [f"The most frequent failure was `{top['error'][:160]}` on {top['method']} "
            f"{top['name']} ({top['occurrences']:,} times). It names what gave way first."]


def finding_phases(data: RunData, figures: dict[str, dict]) -> list[str]:
    """From minimal to maximum sustainable load, and whether the failing load was saturation or a cap."""
    low = figures.get(phase_mod.MINIMAL, {})
    high = figures.get(phase_mod.MAX_SUSTAINABLE, {})
    fail = figures.get(phase_mod.FAILURE, {})
    if not (low and high and low.get("users") and high.get("users")):
        return []
    growth = high["users"] / low["users"] if low["users"] else 0
    rps_growth = (high.get("rps") or 0) / low["rps"] if low.get("rps") else 0
    text = (f"From minimal load ({fmt(low['users'], 0)} users) to the maximum sustainable load "
            f"({fmt(high['users'], 0)} users) users grew {growth:.1f}× and throughput {rps_growth:.1f}×, "
            f"while p95 went from {fmt(low.get('p95_ms'), 0)} to {fmt(high.get('p95_ms'), 0)} ms.")
    served_high = _served(high)
    served_fail = _served(fail)
    if served_fail is not None and served_high:
        more = served_fail / served_high
        text += (f" At the failing load the successfully served requests/s were {more:.2f}× those of the "
                 "sustainable load: "
                 + ("the system was saturated, more users only queued and failed." if more < 1.1 else
                    "throughput still grew, so failures came from a hard limit (a cap, a pool, a timeout) "
                    "rather than from saturation."))
    return [text]


def _sar_at_limit(data: RunData, figures: dict[str, dict], key: str, host: str | None = None) -> tuple[dict | None, str]:
    """A machine's sar summary at the failure load (else the maximum sustainable one, else the whole run)."""
    for name, where in ((phase_mod.FAILURE, "the failure load"), (phase_mod.MAX_SUSTAINABLE, "the maximum "
                                                                                            "sustainable load")):
        f = figures.get(name, {}).get(key)
        s = f.get(host) if (f and host is not None) else f
        if s and s.get("cpu_idle") is not None:
            return s, where
    rows = data.sar if host is None else data.sut_sar.get(host)
    return (sar.summarize(rows), "the run") if rows else (None, "")


def _machine(s: dict) -> str:
    return (f"{100 - s['cpu_idle']:.0f}% busy ({fmt(s['cpu_user'])}% user, {fmt(s['cpu_system'])}% system, "
            f"{fmt(s['cpu_iowait'])}% iowait), memory {fmt(s['mem_used_pct'])}% used and the disks wrote "
            f"{fmt(s['disk_write_kBps'])} kB/s")


def _generator_host(data: RunData) -> str:
    return sar.hostname(data.sar) if data.sar else ""


def finding_generator(data: RunData, figures: dict[str, dict]) -> list[str]:
    """The load generator's own machine (the run folder's sar.data): was the generator the limit?"""
    s, where = _sar_at_limit(data, figures, "sar")
    if not s:
        return []
    host = _generator_host(data)
    machine = f"The load generator's machine{f' ({host})' if host else ''}"
    local = target_is_local(data)
    if 100 - s["cpu_idle"] >= 85:
        text = (f"**The load generator was the limit**: during {where} its machine{f' ({host})' if host else ''} "
                f"was {_machine(s)}. A saturated generator sends late and times late, so the rates and latencies "
                "measured are the generator's as much as the system's: add processes (`--processes`) or machines.")
        if local:
            text += " The system under test ran on the same machine, so the two competed for its CPU."
        return [text]
    if local:
        return []  # one machine: finding_cpu says it all
    return [f"{machine} had headroom during {where}: CPU {_machine(s)}, so the generator was not what "
            "limited the run."]


def _verdict(s: dict, limit_found: bool, its: str) -> str:
    if 100 - s["cpu_idle"] >= 85:
        return f"{its} CPU was the bottleneck: more capacity needs more cores or cheaper requests"
    if (s.get("cpu_iowait") or 0) >= 20:
        return f"{its} disk was waited on: faster storage or fewer writes per request would help"
    if limit_found:
        return ("the CPU had headroom, so the limit is a configured one (worker processes, connection "
                "pools, queue sizes) or on another machine; raising it is the cheapest gain")
    return "the CPU had headroom at this load, so this machine was not what limited the run"


def finding_cpu(data: RunData, figures: dict[str, dict]) -> list[str]:
    """The system under test's machines (sar at the failure load, else the maximum sustainable one, else
    the whole run): what limited it. Its own sar files (--sar-file) by host; the generator's sar.data
    only when the system ran on the generator's machine."""
    cap = data.capacity
    total = _total(data)
    limit_found = bool((cap and cap.get("first_failing_users") is not None) or (total and total["failures"]))
    paras = []
    for host in data.sut_sar:
        s, where = _sar_at_limit(data, figures, "sut_sar", host)
        if s and s.get("cpu_idle") is not None:
            paras.append(f"On the system under test's host {host}, during {where} the CPU was {_machine(s)}: "
                         f"{_verdict(s, limit_found, 'its')}.")
    if paras:
        return paras
    s, where = _sar_at_limit(data, figures, "sar")
    if not s or s.get("cpu_idle") is None:
        return []
    if target_is_local(data):
        verdict = _verdict(s, limit_found, "that machine's")
        return [f"The system under test ran on the load generator's machine: during {where} its CPU was "
                f"{_machine(s)}: {verdict}."]
    return ["No sar of the system under test was given: the figures recorded are the load generator's machine's "
            "(above). Record the system's own on its host (`ssh HOST /usr/lib/sysstat/sadc -S XALL 1 > "
            "results/<run-id>/sar-HOST.data` during the run, or `python -m loadtesting.sar record FILE` there) "
            "and give it to the report with `--sar-file`."]


def finding_backlog(data: RunData, figures: dict[str, dict]) -> list[str]:
    """The pipeline's backlog: its peak, its last sample, and whether it drained."""
    backlog = data.lag.get("backlog (events)")
    unknown = data.meta.get("lag_unknown")
    if unknown:  # said before any backlog figure: a lag that could not be measured is not a drained pipeline
        return [f"The pipeline's backlog is unknown: {unknown}: lag unknown — is the pipeline consuming? "
                "The run did not wait for it to drain and does not claim it drained."]
    if not backlog:
        return []
    peak = max(v for _, v in backlog)
    last = backlog[-1][1]
    return [f"The pipeline's backlog peaked at {peak:,.0f} events and was {last:,.0f} at the last sample"
            + (f"; it drained {data.meta.get('drain_seconds')} s after the load stopped."
               if data.meta.get("drained") else ".")]


def finding_open_model(data: RunData, figures: dict[str, dict]) -> list[str]:
    """Open-model runs: the plan against what was started; drops mean the generator was the limit."""
    om = (data.meta.get("extra") or {}).get("open_model")
    dropped = sum(r["requests"] for r in data.requests if r["type"] == "DROPPED")
    if om:
        dropped = max(dropped, om["dropped"])  # the DROPPED rows may miss a worker's last report
        text = (f"Open model: {om['planned']:,} iterations were planned over {fmt(om['duration_s'])} s (target "
                f"{fmt(om['target_rate'])}/s) and {om['started']:,} started ({fmt(om['achieved_rate'])}/s)")
    elif dropped:
        text = "Open model"
    else:
        return []
    if not dropped:
        return [text + "; none was dropped."]
    return [text + f"; **{dropped:,} iterations were dropped** because no user was free at their planned instant: "
            "the generator was the limit, not the system under test. Raise the users (-u) so the pool covers "
            "rate × latency, or add processes when the generator's CPU is saturated."]


def finding_planned(data: RunData, figures: dict[str, dict]) -> list[str]:
    """Service time against response time from the planned start, for open-model requests."""
    planned = next((r for r in data.planned if r["name"] == "Aggregated"), None)
    if not planned or planned.get("p95_ms") is None:
        return []
    open_model = [r for r in data.planned if r["name"] != "Aggregated"]
    names = {(r["type"], r["name"]) for r in open_model}
    service = [r for r in data.requests if (r["type"], r["name"]) in names]
    if len(service) == 1:
        svc = service[0]
    else:  # several names: compare with the service time of the same requests only when all are open-model
        svc = _total(data)
        if svc is None or svc["requests"] != planned["requests"]:
            svc = None
    text = (f"{planned['requests']:,} open-model requests were also timed from their planned start: p95 "
            f"{fmt(planned['p95_ms'], 0)} ms (p50 {fmt(planned['p50_ms'], 0)}, p99 {fmt(planned['p99_ms'], 0)}, "
            f"max {fmt(planned['max_ms'], 0)} ms)")
    if svc is None or svc.get("p95_ms") is None:
        return [text + "; the table of response times from the planned start compares them per request name."]
    gap = planned["p95_ms"] - svc["p95_ms"]
    text += (f", against a p95 service time (from sending) of {fmt(svc['p95_ms'], 0)} ms: the difference, "
             f"{fmt(gap, 0)} ms at p95 ({fmt(planned['p99_ms'] - svc['p99_ms'], 0)} ms at p99), is time spent "
             "waiting to be sent. ")
    if gap > max(1.0, 0.1 * svc["p95_ms"]):
        text += ("Requests started late, so service time alone understates what users waited (coordinated "
                 "omission): the generator or its users could not keep up with the planned rate, and the "
                 "response time from the planned start is the figure to hold against an SLO.")
    else:
        text += "Requests left close to their planned instants: service time tells the whole story here."
    return [text]


def finding_e2e(data: RunData, figures: dict[str, dict]) -> list[str]:
    """End-to-end latency, one paragraph per E2E series; a tracking run's events stored after the load
    stopped, apart."""
    paras = [f"End-to-end latency of {r['name']} over {r['requests']:,} events: p95 {fmt(r['p95_ms'], 0)} ms, "
             f"average {fmt(r['avg_ms'], 0)} ms." for r in data.requests if r["type"] == "E2E"]
    e2e = (data.meta.get("extra") or {}).get("e2e") or {}
    after, during = e2e.get("after_load"), e2e.get("while_loading")
    if after and during:
        text = (f"{after['events']:,} events were stored after the load stopped, with an end-to-end latency of "
                f"p50 {fmt(after['p50_ms'], 0)} ms (max {fmt(after['max_ms'], 0)} ms); the "
                f"{during['events']:,} stored while it ran had p95 {fmt(during['p95_ms'], 0)} ms and p99 "
                f"{fmt(during['p99_ms'], 0)} ms.")
        few = after["events"] <= 0.05 * (after["events"] + during["events"])
        if few and after["p50_ms"] > 2 * max(during["p99_ms"], 1.0):
            text += (" The run's tail is these last events: with no traffic behind them they waited for a "
                     "partial batch to be flushed (a pipeline's batch interval or flush timer), which steady "
                     "traffic does not wait for. Hold the figures of events stored while the load ran against "
                     "an SLO, unless your traffic really stops and starts.")
        paras.append(text)
    return paras


Finding = Callable[[RunData, dict[str, dict]], list[str]]

# The findings, in the report's order: adding one is a function above and an entry here. A run's error
# comes first; the next three are alternatives: a capacity search, else a tracking run's events, else
# the run's totals.
FINDINGS: list[Finding] = [finding_refused, finding_capacity, finding_events, finding_totals, finding_top_failure, finding_phases,
                           finding_generator, finding_cpu, finding_backlog, finding_open_model, finding_planned, finding_e2e]


def findings(data: RunData, figures: dict[str, dict]) -> list[str]:
    """Plain-language paragraphs drawn from the figures (at least two)."""
    paras = [para for finding in FINDINGS for para in finding(data, figures)]
    if len(paras) < 2 and not data.errors:
        paras.append("Too little was recorded for more findings: run longer, or with `--capacity-search`, "
                     "so each phase has figures.")
    return paras
