"""Bad inputs across the documented CLIs: one `error:` line naming the value, a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stack import free_port
from tests.helpers import REPO, log_of, run_locust, start_locust

CLOSED = free_port()  # bound and released: nothing listens there


def locust_args(locustfile: str, *args: str) -> list[str]:
    return ["-f", f"locustfiles/{locustfile}.py", "--headless", "--users", "1", "--spawn-rate", "1",
            "--run-time", "3s", *args]  # spill: the session's folder (conftest)


def locust(locustfile: str, *args: str) -> subprocess.CompletedProcess:
    return run_locust(locust_args(locustfile, *args), timeout=120)


def python(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _a_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("bad") / "a-file"
    path.write_text("not a folder\n")
    return str(path)


CASES = {
    "http closed port": (lambda f: locust("http", "--host", f"http://127.0.0.1:{CLOSED}"),
                         f"error: --host http://127.0.0.1:{CLOSED}: cannot connect (connection refused)"),
    "http not a URL": (lambda f: locust("http", "--host", "not-a-url"),
                       "error: --host not-a-url: cannot connect (not an http(s) URL; expected http[s]://host[:port])"),
    "http unknown name": (lambda f: locust("http", "--host", "http://no-such-host.invalid"),
                          "error: --host http://no-such-host.invalid: cannot connect (name not known: "
                          "no-such-host.invalid)"),
    "http wait-min above wait-max": (lambda f: locust("http", "--wait-min", "3", "--wait-max", "1"),
                                     "error: --wait-min 3.0 / --wait-max 1.0: expected min <= max"),
    "mqtt missing CA file": (lambda f: locust("mqtt", "--mqtt-url", f"mqtts://127.0.0.1:{CLOSED}",
                                              "--mqtt-ca-file", f + "-missing.pem"),
                             "error: --mqtt-ca-file '{f}-missing.pem': No such file or directory; "
                             "expected a readable PEM CA file"),
    "vector log under a file": (lambda f: locust("tracking", "--pipeline-backend", "vector",
                                                 "--vector-log-file", f + "/x.log", "--no-e2e"),
                                "error: --vector-log-file '{f}/x.log': {f} is a file, not a folder; "
                                "expected a file path in a folder that can be written"),
    "monitor, ClickHouse down": (lambda f: python("monitors", "--clickhouse-url",
                                                  f"clickhouse://default@127.0.0.1:{CLOSED}/default",
                                                  "--wait-timeout", "4"),
                                 f"error: --clickhouse-url clickhouse://default@127.0.0.1:{CLOSED}/default: "
                                 "ClickHouse unreachable for the whole --wait-timeout 4 s (NetworkError: Code: 210. "
                                 f"Connection refused (127.0.0.1:{CLOSED}))"),
    "monitor, Redis URL": (lambda f: python("monitors", "--monitor-backend", "redis_bus",
                                            "--event-bus-redis-url", "notaurl"),
                           "error: Redis URL 'notaurl' is not redis://[user:password@]host:port/db"),
    "kafka_latency, ClickHouse URL": (lambda f: python("monitors.kafka_latency", "--topic", "t",
                                                       "--clickhouse-url", "notaurl"),
                                      "error: ClickHouse URL 'notaurl' is not "
                                      "clickhouse://user[:password]@host[:port]/database"),
    "kafka_latency, negative count": (lambda f: python("monitors.kafka_latency", "--topic", "t", "--messages", "-1"),
                                      "error: --messages -1: expected a count >= 0 (0: no limit)"),
    "capacity, max below start": (lambda f: locust("http", "--capacity-search", "--capacity-max-users", "5"),
                                  "error: --capacity-max-users 5: expected at least --capacity-start-users (10)"),
    "rate search, too few samples": (lambda f: locust("tracking", "--no-e2e", "--capacity-search",
                                                      "--capacity-step-time", "1"),
                                     "error: --capacity-step-time 1: expected at least 4 samples "
                                     "(--capacity-sample-interval 0.5)"),
    "rate search, time limit below one step": (lambda f: locust("tracking", "--no-e2e", "--capacity-search",
                                                                "--capacity-time-limit", "30"),
                                               "error: --capacity-time-limit 30: expected seconds >= one step's "
                                               "longest case, 48.5 (ramp + settle + twice the step time)"),
    "run, a helper module": (lambda f: python("loadtesting.run", "lampi_data"),
                             "error: lampi_data: expected a kind (http, kafka, mqtt, tracking) "
                             "or the path of a .py locustfile"),
    "pipeline run, unknown backend": (lambda f: python("loadtesting.pipeline_run", "nope"),
                                      "error: backend 'nope': expected one of celery, redis_bus, kafka_bus, vector"),
    "streams run, no messages": (lambda f: python("loadtesting.streams_run", "--messages", "0"),
                                 "error: --messages 0: expected at least 1"),
    "compare, not a run folder": (lambda f: python("loadtesting.compare", f, f),
                                  "error: '{f}': not a run folder (no run.json or request_stats.jsonl); "
                                  "expected a run id or a run folder (results/<run-id>/)"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_is_one_error_line(case, tmp_path_factory):
    a_file = _a_file(tmp_path_factory)
    build, message = CASES[case]
    done = build(a_file)
    output = done.stdout + done.stderr
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert done.returncode != 0, output[-3000:]
    assert errors == [message.replace("{f}", a_file)], output[-3000:]
    assert "Traceback" not in output


def test_run_offers_only_locustfiles_that_define_users():
    from loadtesting.run import locustfiles

    assert locustfiles() == ["http", "kafka", "mqtt", "tracking"]
    assert "http, kafka, mqtt, tracking" in python("loadtesting.run", "--help").stdout


def test_a_host_that_goes_away_mid_run_is_measured_as_failures(tmp_path):
    """The start check does not stop a run whose host dies later: its requests fail and are counted."""
    from plumbing.locust_csv import read_locust_failures, read_locust_stats
    from tests.helpers import wait_for
    from tests.monitor.test_lifecycle import Output

    (tmp_path / "login").mkdir()  # a login page for http.server: GET /login/ serves login/index.html
    (tmp_path / "login" / "index.html").write_text('<input name="csrfmiddlewaretoken" value="t">')
    port = free_port()
    server = Output(subprocess.Popen([sys.executable, "-u", "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                                     cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        wait_for(lambda: server.has("Serving HTTP"), timeout=30, what="the server")
        proc = start_locust(locust_args("http", "--host", f"http://127.0.0.1:{port}", "--run-time", "6s",
                                        "--no-monitor", "--wait-min", "0.1", "--wait-max", "0.2",
                                        "--csv", str(tmp_path / "run")))
        wait_for(lambda: server.has("GET /login/"), timeout=30, what="a first request")
        server.proc.terminate()
        server.wait(timeout=10)
        output = proc.communicate(timeout=120)[0]
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    assert proc.returncode == 1, output[-3000:]  # failed requests: Locust's usual code
    assert not [line for line in output.splitlines() if line.startswith("error:")]
    errors = [row["Error"] for row in read_locust_failures(tmp_path / "run")]
    assert any("status 0" in e or "refused" in e.lower() for e in errors), errors  # after the host went away
    assert int(read_locust_stats(tmp_path / "run")["Aggregated"]["Failure Count"]) > 0


def test_the_standalone_monitor_takes_a_locust_conf_and_passes_over_the_generators_keys():
    # conf/tracking.conf holds the generator's options (users, pipeline-backend …) beside the monitor's.
    done = python("monitors", "--config", "conf/tracking.conf", "--wait-timeout", "0.5",
                  "--clickhouse-url", f"clickhouse://default@127.0.0.1:{CLOSED}/default", timeout=60)
    assert "unrecognized arguments" not in done.stderr, log_of(done.stderr)
    assert done.returncode == 1 and "ClickHouse unreachable for the whole --wait-timeout" in done.stderr


def test_bench_help_lists_the_benchmarks():
    done = python("bench", "--help", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m bench" in done.stdout and "  kafka " in done.stdout and "(only when named)" in done.stdout
