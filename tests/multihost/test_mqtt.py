"""LAMPI devices on two worker hosts publishing to Mosquitto on the system's host: every acknowledged
lamp/changed reached the broker (a subscriber counts them there), and Locust's final stats and the
monitor's interval rows in ClickHouse (another host) agree."""

from __future__ import annotations

from generators import mqtt_model as model
from tests.helpers import wait_for
from tests.mqtt.conftest import Recorder
from tests.multihost import distributed

CHANGED = model.topic(model.LAMP_CHANGED)


def test_distributed_mqtt_across_hosts_every_publish_reached_the_broker(topology, ch, sut_mosquitto, tmp_path):
    rec = Recorder(sut_mosquitto.port, topic="devices/+/lamp/changed", qos=1, host=sut_mosquitto.host)
    try:
        run = distributed.run(topology, "mqtt", [
            "--mqtt-url", sut_mosquitto.url, "--users", "20", "--spawn-rate", "20", "--run-time", "6s", "--stop-timeout", "5",
            "--clickhouse-url", ch.url, "--monitor-interval", "1", "--fake-devices", "1000", "--no-sar"], tmp_path)
        run.assert_ok()
        final = {name: r["requests"] for name, r in run.stats().items()}
        counted = final[CHANGED]

        def live() -> int:  # retained copies from earlier runs arrive on subscribe, flagged retain
            return sum(1 for m in rec.messages if not m.retain)

        wait_for(lambda: live() >= counted, timeout=15, what="the broker's deliveries")
    finally:
        rec.close()
    assert counted > 50 and live() == counted
    assert distributed.interval_requests(ch.url, run.run_id) == final
    assert distributed.run_rows(ch.url, run.run_id) == ["end", "start"]
    print(f"ground truth mqtt: broker delivered {live()} lamp/changed = stats.json {counted}; "
          f"all requests {final['Aggregated']} = interval rows")
