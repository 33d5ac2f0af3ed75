"""HTTP learners from two worker hosts against the site on another host: every request the site served is
in Locust's final stats, and the monitor's interval rows in ClickHouse (a host of its own) add up to them.
The run ends at --run-time, where Locust's master alone would wait only 0.5 s for the workers' last
reports (monitors.final_reports stops them first); --stop-timeout lets users finish the request in
flight, so the site serves nothing Locust does not count."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import wait_for
from tests.multihost import distributed


def served(log: Path, offset: int, hosts: set[str]) -> list[str]:
    """Lines of nginx's access log after `offset` from Locust's client on `hosts`."""
    if not log.exists():
        return []
    lines = log.read_bytes()[offset:].decode().splitlines()
    return [line for line in lines if "gevent-http-client" in line and line.split()[0] in hosts]


def test_distributed_http_across_hosts_adds_up(topology, ch, sut_site, tmp_path):
    log = Path(sut_site.extra["access_log"])
    offset = log.stat().st_size if log.exists() else 0
    run = distributed.run(topology, "http", [
        "--host", sut_site.url, "--clickhouse-url", ch.url, "--users", "20", "--spawn-rate", "20",
        "--run-time", "10s", "--stop-timeout", "5", "--wait-min", "0", "--wait-max", "0.5", "--fake-users", "1000",
        "--monitor-interval", "2", "--only-summary"], tmp_path)
    run.assert_ok()
    final = {name: r["requests"] for name, r in run.stats().items()}
    assert final["/login/ (POST)"] == 20
    assert distributed.interval_requests(ch.url, run.run_id) == final
    assert distributed.run_rows(ch.url, run.run_id) == ["end", "start"]
    # Requests came from both worker hosts, and the site served exactly what Locust counted (each
    # /lampi is two answers: APPEND_SLASH's 301, then /lampi/).
    workers = {topology[w].addr for w in distributed.WORKERS}
    expected = final["Aggregated"] + final["/lampi"]
    lines = wait_for(lambda: len(served(log, offset, workers)) >= expected and served(log, offset, workers),
                     timeout=15, what="nginx's access log to hold every request")
    assert len(lines) == expected
    assert {line.split()[0] for line in lines} == workers
    print(f"ground truth http: access log {len(lines)} lines = stats.json {final['Aggregated']} requests "
          f"+ {final['/lampi']} redirects; interval rows {sum(v for k, v in final.items() if k != 'Aggregated')}")


def test_each_worker_host_records_its_own_sar_and_the_report_shows_it(topology, ch, sut_site, tmp_path):
    run = distributed.run(topology, "http", [
        "--host", sut_site.url, "--clickhouse-url", ch.url, "--users", "10", "--spawn-rate", "10",
        "--run-time", "5s", "--stop-timeout", "5", "--wait-min", "0", "--wait-max", "0.5", "--fake-users", "1000",
        "--monitor-interval", "1", "--only-summary"], tmp_path)
    run.assert_ok()
    hosts = json.loads((run.out / "sar-hosts.json").read_text())
    # One entry per worker host, named by the address it reaches the master from; each host's own
    # network figures (its namespace's interface carried its requests).
    assert sorted(h.split()[-1] for h in hosts) == sorted(topology[w].addr for w in distributed.WORKERS)
    for figures in hosts.values():
        assert figures["samples"] >= 2 and figures["net_tx_kBps"] > 0, hosts
    assert (run.out / "sar.data").exists()  # the master's host, as before
    from loadtesting import report

    md = report.render(report.load(run.run_id, tmp_path, "clickhouse", ch.url), tmp_path / "report").read_text()
    section = md[md.index("## System activity (sar) per worker host"):]
    assert all(h in section for h in hosts)
