"""Secrets entering a run by every door never come out: console, run folder, spill, ClickHouse."""

from __future__ import annotations

import subprocess

import pytest

from plumbing import chclient
from stack import free_port
from tests.helpers import run_locust, wait_for

DATABASE = "secrets_test"  # the runs' own monitor database: every table in it is searched
USER = "loadtest_secret"
SECRETS = {  # where each one enters
    "clickhouse_url": "S3cr-CH-url-7781",
    "clickhouse_env": "S3cr-CH-env-7782",
    "clickhouse_file": "S3cr-CH-file-7783",
    "clickhouse_down": "S3cr-CH-down-7790",
    "redis_url": "S3cr-Redis-url-7784",
    "mqtt_url": "S3cr-MQTT-url-7785",
    "mqtt_env": "S3cr-MQTT-env-7786",
    "mqtt_file": "S3cr-MQTT-file-7787",
    "kafka_apikey": "S3cr-Kafka-key-7788",
    "ralph_env": "S3cr-Ralph-env-7789",
}


@pytest.fixture(scope="module")
def secret_clickhouse(stack, clickhouse):
    """The session's ClickHouse with two users whose passwords are secrets, one given in the URL and
    one in a password file (users.d is reloaded live)."""
    users_d = stack.dir("clickhouse") / "users.d"
    users_d.mkdir(exist_ok=True)
    path = users_d / f"{USER}.xml"
    try:
        path.write_text(f"""<?xml version="1.0"?>
<yandex><users>
  <{USER}><password>{SECRETS['clickhouse_url']}</password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></{USER}>
  <{USER}_file><password>{SECRETS['clickhouse_file']}</password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></{USER}_file>
</users></yandex>
""")

        def accepted() -> bool:
            try:
                client = chclient.connect(clickhouse.url.replace("default@", f"{USER}:{SECRETS['clickhouse_url']}@"))
                client.execute("SELECT 1")
                client.disconnect()
                return True
            except Exception:  # noqa: BLE001 - not reloaded yet
                return False

        wait_for(accepted, timeout=30, what="ClickHouse to load the user with a password")
        yield clickhouse
    finally:
        path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def secret_redis(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.execute_command("ACL", "SETUSER", USER, "on", f">{SECRETS['redis_url']}", "~*", "&*", "+@all")
    yield redis_server.url.replace("redis://", f"redis://{USER}:{SECRETS['redis_url']}@")
    client.execute_command("ACL", "DELUSER", USER)
    client.close()


def run(kind: str, args: list[str], env: dict, results) -> subprocess.CompletedProcess:
    return run_locust([kind, "--results", str(results), *args], via=["loadtesting.run"], env=env, timeout=300)


@pytest.fixture(scope="module")
def runs(secret_clickhouse, secret_redis, mosquitto, tmp_path_factory):
    """An MQTT run and a tracking run, each fed secrets through URLs, the environment and files."""
    tmp = tmp_path_factory.mktemp("secrets")
    results, spill = tmp / "results", tmp / "spill"
    (tmp / "mqtt-password").write_text(SECRETS["mqtt_file"] + "\n")
    (tmp / "ch-password").write_text(SECRETS["clickhouse_file"] + "\n")
    ch_host = secret_clickhouse.url.split("@", 1)[1]
    env = {"KAFKA_APIKEY": f"lt:{SECRETS['kafka_apikey']}", "LOCUST_RALPH_PASSWORD": SECRETS["ralph_env"],
           "LOCUST_MQTT_PASSWORD": SECRETS["mqtt_env"], "LOCUST_SPILL_DIR": str(spill)}
    common = ["--monitor-database", DATABASE, "--monitor-interval", "0.5", "--monitor-backend", "redis_bus",
              "--event-bus-redis-url", secret_redis, "--no-sar"]
    mqtt_url = mosquitto.url.replace("mqtt://", f"mqtt://lampi:{SECRETS['mqtt_url']}@")
    mqtt = run("mqtt", ["--users", "3", "--spawn-rate", "3", "--run-time", "3s", "--mqtt-url", mqtt_url,
                        "--mqtt-password-file", str(tmp / "mqtt-password"), "--mqtt-no-sys",
                        "--clickhouse-url", f"clickhouse://{USER}:{SECRETS['clickhouse_url']}@{ch_host}", *common],
               {**env, "CLICKHOUSE_PASSWORD": SECRETS["clickhouse_env"]}, results)
    tracking = run("tracking", ["--users", "2", "--spawn-rate", "2", "--num-events", "40", "--events-per-second", "40",
                                "--no-e2e", "--clickhouse-url", f"clickhouse://{USER}_file@{ch_host}", *common],
                   {**env, "CLICKHOUSE_PASSWORD_FILE": str(tmp / "ch-password")}, results)
    # A run whose ClickHouse is down: its rows (options included) go to the spill file.
    down = run("mqtt", ["--users", "1", "--spawn-rate", "1", "--run-time", "2s", "--mqtt-url", mqtt_url,
                        "--mqtt-no-sys", "--no-report",
                        "--clickhouse-url", f"clickhouse://{USER}:{SECRETS['clickhouse_down']}@127.0.0.1:{free_port()}",
                        *common], env, results)
    return {"mqtt": mqtt, "tracking": tracking, "down": down, "results": results, "spill": spill}


def found_in(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


def test_both_runs_used_their_secrets_and_stored_their_rows(runs, secret_clickhouse):
    client = chclient.connect(secret_clickhouse.url)
    for kind in ("mqtt", "tracking"):
        assert runs[kind].returncode == 0, (runs[kind].stdout + runs[kind].stderr)[-3000:]
    ends = client.execute(f"SELECT count() FROM {DATABASE}.load_test_runs WHERE event_type = 'end'")[0][0]
    assert ends == 2  # both runs reached ClickHouse with their passwords
    client.disconnect()


def test_no_secret_in_the_console_output(runs):
    for kind in ("mqtt", "tracking", "down"):
        assert found_in(runs[kind].stdout + runs[kind].stderr) == [], kind


def test_no_secret_in_any_file_of_the_runs(runs):
    files = [p for root in (runs["results"], runs["spill"]) if root.exists() for p in root.rglob("*") if p.is_file()]
    assert {"run.json", "samples.jsonl", "locust.log"} <= {p.name for p in files}
    assert any(p.name.endswith(".spill.jsonl") for p in files)
    leaks = {str(p): found_in(p.read_bytes().decode("utf-8", "replace")) for p in files}
    assert {path: names for path, names in leaks.items() if names} == {}


def test_no_secret_in_any_table_of_the_monitor_database(runs, secret_clickhouse):
    client = chclient.connect(secret_clickhouse.url)
    tables = [t for (t,) in client.execute(f"SHOW TABLES FROM {DATABASE}")]
    assert "load_test_meta" in tables and "load_test_runs" in tables
    leaks = {t: found_in(repr(client.execute(f"SELECT * FROM {DATABASE}.{t}"))) for t in tables}
    client.disconnect()
    assert {t: names for t, names in leaks.items() if names} == {}
