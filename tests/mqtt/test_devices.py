"""LAMPI devices on a real Mosquitto: the model on the wire (next to a course lamp behind a real bridge), counts,
connects, restarts, scale."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading

from generators import mqtt_model as model
from generators.lampi_data import device_id
from plumbing.locust_csv import read_locust_failures, read_locust_stats
from tests.helpers import REPO, locust_until, log_of, start_locust, wait_for
from tests.mqtt.conftest import LOCUSTFILE, CourseLamp, Recorder, pattern, retained_view, run_devices

CHANGED = model.topic(model.LAMP_CHANGED)


def test_model_doc_shows_the_models_tables():
    assert model.render_tables() in (REPO / "docs" / "mqtt-model.md").read_text()


def test_topics_payloads_and_qos_follow_the_model(mosquitto, tmp_path):
    rec = Recorder(mosquitto.port, topic=["devices/#", "$SYS/broker/connection/#"])
    done = run_devices(mosquitto.url, users=5, run_time="3s")
    rec.close()
    assert done.returncode == 0, log_of(done.stderr)
    seen = {}
    for msg in rec.messages:
        name = pattern(msg.topic)
        assert "<device_id>" in name, msg.topic
        seen.setdefault(name, set()).add(msg.qos)
        if name == CHANGED:
            body = json.loads(msg.payload)
            assert set(body) == {"color", "brightness", "on", "client"} and set(body["color"]) == {"h", "s"}
            assert msg.payload == json.dumps(body).encode()  # json.dumps' own separators, as the lamp writes
    # Subscribed at QoS 2, a message arrives at the QoS it was published with.
    assert seen == {model.topic(k): {k.qos} for k in model.KINDS}


def test_state_messages_are_retained(mosquitto):
    done = run_devices(mosquitto.url, users=3, run_time="2s")
    assert done.returncode == 0, log_of(done.stderr)
    view = retained_view(mosquitto.port, count=len(model.KINDS))  # subscribed after the run
    assert {name for name, (_, _, retain) in view.items() if retain} == {model.topic(k) for k in model.KINDS if k.retain}


def test_the_cloud_sees_a_simulated_lamp_as_it_sees_a_course_lamp(two_clouds, tmp_path):
    course_cloud, sim_cloud = two_clouds
    lamp = CourseLamp(tmp_path / "lamp", course_cloud, device_id=device_id(7))
    try:
        course = retained_view(course_cloud.port, count=len(model.KINDS))
    finally:
        lamp.close()
    done = run_devices(sim_cloud.url, "--fake-devices", "1", "--first-fake-device", "7", users=1, run_time="2s")
    assert done.returncode == 0, log_of(done.stderr)
    sim = retained_view(sim_cloud.port, count=len(model.KINDS))

    def shape(view: dict) -> dict:  # lamp states differ in value, not in form
        return {name: (sorted(json.loads(body)) if name == CHANGED else body, qos, retain)
                for name, (body, qos, retain) in view.items()}

    assert shape(sim) == shape(course)
    # The lamp publishes its connection states at QoS 2; the course's bridge carries them at QoS 1.
    assert course[model.topic(model.SERVICE_STATE)] == (b"1", 1, True)


def test_a_vanished_lamp_leaves_its_bridge_state_0_as_a_course_lamp_does(two_clouds, tmp_path):
    course_cloud, sim_cloud = two_clouds
    lamp = CourseLamp(tmp_path / "lamp", course_cloud, device_id=device_id(8))
    retained_view(course_cloud.port, count=len(model.KINDS))
    lamp.vanish()
    cmd = ["-f", str(REPO / "locustfiles" / "mqtt.py"), "--headless", "-u", "1", "-r", "1", "-t", "60s",
           "--mqtt-url", sim_cloud.url, "--no-monitor", "--fake-devices", "1", "--first-fake-device", "8"]
    proc = start_locust(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        retained_view(sim_cloud.port, count=len(model.KINDS))  # the device has announced itself
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # no DISCONNECT: the broker sends the last will
        proc.wait(timeout=30)
    bridge = model.topic(model.BRIDGE_STATE)

    def after_will(port: int) -> dict:
        view = retained_view(port, count=len(model.KINDS))
        return view if view[bridge][0] == b"0" else {}

    course = wait_for(lambda: after_will(course_cloud.port), timeout=30, what="the course lamp's will")
    sim = wait_for(lambda: after_will(sim_cloud.port), timeout=30, what="the simulated lamp's will")
    states = [model.topic(k) for k in (model.BRIDGE_STATE, model.SERVICE_STATE, model.UI_STATE)]
    # Only the bridge's state turns 0; the services' retained '1' stays, as their broker died with them.
    assert [sim[t] for t in states] == [course[t] for t in states] == [(b"0", 1, True), (b"1", 1, True), (b"1", 1, True)]


def test_every_acknowledged_publish_reached_the_broker(mosquitto, tmp_path):
    rec = Recorder(mosquitto.port, topic="devices/+/lamp/changed", qos=1)
    done = run_devices(mosquitto.url, users=8, run_time="4s", env={"LOCUST_RESULTS_DIR": str(tmp_path)})
    # Locust's final figures (stats.json).
    final = {r["name"]: r for r in json.loads((tmp_path / "stats.json").read_text())["requests"]}
    counted = int(final[CHANGED]["requests"])

    def live() -> int:  # retained copies from earlier runs arrive on subscribe, flagged retain
        return sum(1 for m in rec.messages if not m.retain)

    wait_for(lambda: live() >= counted, timeout=10, what="deliveries")
    rec.close()
    assert done.returncode == 0, log_of(done.stderr)
    assert counted > 100 and live() == counted


def test_publish_to_delivery_latency_is_its_own_row_outside_aggregated(mosquitto, tmp_path):
    done = run_devices(mosquitto.url, "--mqtt-e2e", users=5, run_time="3s", env={"LOCUST_RESULTS_DIR": str(tmp_path)})
    assert done.returncode == 0, log_of(done.stderr)
    rows = {(r["type"], r["name"]): r for r in json.loads((tmp_path / "stats.json").read_text())["requests"]}
    assert rows[("E2E", CHANGED)]["requests"] > 0
    # Aggregated counts the devices' own connects and publishes, each once: no delivery is a request.
    own = sum(r["requests"] for (rtype, name), r in rows.items() if rtype != "E2E" and name != "Aggregated")
    assert rows[("", "Aggregated")]["requests"] == own


def test_devices_connect_before_publishing(mosquitto, tmp_path):
    done = run_devices(mosquitto.url, users=20, run_time="3s", csv=tmp_path / "run")
    assert done.returncode == 0, log_of(done.stderr)
    stats = read_locust_stats(tmp_path / "run")
    assert int(stats["connect"]["Request Count"]) == 20 and int(stats["connect"]["Failure Count"]) == 0
    assert int(stats["Aggregated"]["Failure Count"]) == 0  # nothing was published before its CONNACK


def test_broker_restart_mid_run_reconnects_and_counts_failures(own_broker, tmp_path):
    stack, broker = own_broker
    restarted = threading.Event()

    def restart_when_running() -> None:
        rec = Recorder(broker.port, topic="devices/+/lamp/changed", qos=0)
        wait_for(lambda: len(rec.messages) > 200, timeout=60, what="devices publishing")
        rec.close()
        stack.restart("mosquitto")
        restarted.set()

    t = threading.Thread(target=restart_when_running)
    t.start()
    done = run_devices(broker.url, "--mqtt-connect-timeout", "5", users=10, run_time="12s", csv=tmp_path / "run")
    t.join()
    assert restarted.is_set()
    assert "Traceback" not in done.stderr
    stats = read_locust_stats(tmp_path / "run")
    assert int(stats["reconnect"]["Request Count"]) - int(stats["reconnect"]["Failure Count"]) >= 10
    failures = read_locust_failures(tmp_path / "run")
    assert any(f["Name"] == "disconnect" for f in failures)
    assert done.returncode == 1  # the disconnects are failures, so the run says so


def test_two_thousand_devices_from_one_process(mosquitto, tmp_path):
    # Ends once all have connected (however long spawning takes on this machine), by SIGTERM.
    csv = tmp_path / "run"
    args = ["-f", LOCUSTFILE, "--headless", "-u", "2000", "-r", "500", "-t", "600s", "--mqtt-url", mosquitto.url,
            "--mqtt-profile", "normal", "--no-monitor", "--csv", str(csv)]

    def connects():
        try:
            row = read_locust_stats(csv).get("connect")
        except (OSError, ValueError):
            return None
        return row and int(row["Request Count"]) + int(row["Failure Count"]) >= 2000 and row

    with locust_until(args) as run:
        row = wait_for(connects, timeout=240, interval=0.5, what="2,000 connects")
        code, err = run.end()
    assert code == 143, log_of(err)
    assert int(row["Request Count"]) == 2000 and int(row["Failure Count"]) == 0, log_of(err)


def test_sys_topics_are_recorded_in_the_run_folder(mosquitto, tmp_path):
    done = run_devices(mosquitto.url, "--monitor-interval", "1", users=3, run_time="3s",
                       env={"LOCUST_RESULTS_DIR": str(tmp_path)})
    assert done.returncode == 0, log_of(done.stderr)
    lines = [json.loads(x) for x in (tmp_path / "mqtt-sys.jsonl").read_text().splitlines()]
    assert any(x["topic"] == "$SYS/broker/clients/connected" for x in lines)


def test_unreachable_broker_is_a_one_line_error():
    done = run_devices("mqtt://127.0.0.1:1", users=1, run_time="2s")
    errors = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert done.returncode != 0 and len(errors) == 1
    assert errors[0].startswith("error: MQTT broker mqtt://127.0.0.1:1 unreachable:")


def test_unknown_host_is_a_one_line_error():
    done = run_devices("mqtt://no-such-host.invalid:1883", users=1, run_time="2s")
    assert "error: MQTT broker mqtt://no-such-host.invalid:1883 unreachable:" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_url_is_a_one_line_error():
    done = run_devices("http://127.0.0.1:1883", users=1, run_time="2s")
    assert "error: --mqtt-url 'http://127.0.0.1:1883': expected mqtt://host:port or mqtts://host:port" in done.stderr


def test_refused_credentials_are_a_one_line_error(auth_broker, tmp_path):
    done = run_devices(auth_broker, "--mqtt-username", "lampi", users=1, run_time="2s",
                       env={"LOCUST_MQTT_PASSWORD": "wrong"})
    assert done.returncode != 0
    assert f"error: MQTT broker {auth_broker} refused the connection: Not authorized" in done.stderr
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    ok = run_devices(auth_broker, "--mqtt-username", "lampi", "--mqtt-password-file", str(secret), users=2,
                     run_time="2s")
    assert ok.returncode == 0, log_of(ok.stderr)
    assert "s3cret" not in ok.stderr + ok.stdout


QOS0_PUBLISHER = r"""
import sys
import gevent
from generators.mqtt_client import Device, Settings

fired = []
dev = Device("qos0-test", Settings("127.0.0.1", int(sys.argv[1]), max_inflight=20, max_queued=1000),
             lambda **kw: fired.append(kw))
assert dev.connect()
for i in range(500):
    dev.publish("devices/qos0/lamp/changed", "devices/+/lamp/changed", b"{}", 0, False)
    if i % 50 == 0:
        gevent.sleep(0)
while dev.pending:
    gevent.sleep(0.01)
pubs = [f for f in fired if f["request_type"] == "PUB0"]
print(len(pubs), sum(1 for f in pubs if f["exception"] is None))
dev.close()
"""


def test_qos0_publishes_are_each_reported_once_as_send_only(mosquitto):
    rec = Recorder(mosquitto.port, topic="devices/qos0/#", qos=0)
    try:
        done = subprocess.run([sys.executable, "-c", QOS0_PUBLISHER, str(mosquitto.port)], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, log_of(done.stderr)
        assert done.stdout.split() == ["500", "500"]  # one PUB0 request per publish, none failed
        wait_for(lambda: len(rec.messages) == 500, timeout=30, what="500 QoS 0 messages at the subscriber")
    finally:
        rec.close()


QOS0_STALLED = r"""
import os, signal, sys, time
import gevent
from generators.mqtt_client import Device, Settings

fired = []
dev = Device("qos0-stalled", Settings("127.0.0.1", int(sys.argv[1])), lambda **kw: fired.append(kw))
assert dev.connect()
os.kill(int(sys.argv[2]), signal.SIGSTOP)  # the broker reads nothing: the socket's buffers fill
published = 0
try:
    while not dev.pending and published < 5000:  # until a write no longer completes at once
        dev.publish("devices/stalled/lamp/changed", "devices/+/lamp/changed", b"x" * 65536, 0, False)
        published += 1
    for _ in range(10):  # and a few queued behind it
        dev.publish("devices/stalled/lamp/changed", "devices/+/lamp/changed", b"x" * 65536, 0, False)
        published += 1
    waiting = len(dev.pending)
finally:
    os.kill(int(sys.argv[2]), signal.SIGCONT)
deadline = time.monotonic() + 30
while dev.pending and time.monotonic() < deadline:
    gevent.sleep(0.05)
pubs = [f for f in fired if f["request_type"] == "PUB0"]
print(waiting, published, len(pubs), sum(1 for f in pubs if f["exception"] is None))
dev.close()
"""


def _with_paused_broker(own_broker, script: str) -> subprocess.CompletedProcess:
    """Run a publisher `script` given the broker's port and its pid (it pauses the broker with SIGSTOP)."""
    stack, broker = own_broker
    [pid] = stack.pids("mosquitto")
    done = subprocess.run([sys.executable, "-c", script, str(broker.port), str(pid)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, log_of(done.stderr)
    return done


def test_qos0_publishes_the_socket_could_not_take_at_once_are_reported_when_written(own_broker):
    done = _with_paused_broker(own_broker, QOS0_STALLED)
    waiting, published, reported, ok = map(int, done.stdout.split())
    assert waiting > 10  # the test really had QoS 0 messages waiting for their write
    assert (reported, ok) == (published, published)  # each reported once, as written, none failed


CLOSING_PUBLISHER = r"""
import sys
from generators.mqtt_client import Device, Settings

fired = []
dev = Device("closing-test", Settings("127.0.0.1", int(sys.argv[1]), max_inflight=20, max_queued=1000),
             lambda **kw: fired.append(kw))
assert dev.connect()
for i in range(500):  # 20 in flight, the rest queued in paho: all pending when close() starts
    dev.publish("devices/closing/lamp/changed", "devices/+/lamp/changed", b"{}", 1, False)
pending_at_close = len(dev.pending)
dev.close()
pubs = [f for f in fired if f["request_type"] == "PUB1"]
print(pending_at_close, len(pubs), sum(1 for f in pubs if f["exception"] is None))
"""


def test_closing_waits_for_the_acks_of_messages_in_flight(mosquitto):
    done = subprocess.run([sys.executable, "-c", CLOSING_PUBLISHER, str(mosquitto.port)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, log_of(done.stderr)
    pending_at_close, reported, acked = map(int, done.stdout.split())
    assert pending_at_close > 400  # the test really closes with messages outstanding
    assert (reported, acked) == (500, 500)  # each reported once, as acknowledged, none failed


KILLED_CLOSE = r"""
import os, signal, sys
import gevent
from generators.mqtt_client import Device, Settings

fired = []
dev = Device("killed-close", Settings("127.0.0.1", int(sys.argv[1]), max_inflight=20, max_queued=100),
             lambda **kw: fired.append(kw))
assert dev.connect()
os.kill(int(sys.argv[2]), signal.SIGSTOP)  # the broker answers nothing: the publishes stay in flight
try:
    for i in range(5):
        dev.publish("devices/killed/lamp/changed", "devices/+/lamp/changed", b"{}", 1, False)
    closing = gevent.spawn(dev.close)
    gevent.idle()  # close() is waiting for the acks
    closing.kill()  # as Locust kills a user still in on_stop at the end of --stop-timeout
finally:
    os.kill(int(sys.argv[2]), signal.SIGCONT)
pubs = [f for f in fired if f["request_type"] == "PUB1"]
print(len(pubs), sum(1 for f in pubs if f["exception"] is not None))
"""


def test_messages_in_flight_when_closing_is_killed_are_counted_as_failed(own_broker):
    done = _with_paused_broker(own_broker, KILLED_CLOSE)
    assert done.stdout.split() == ["5", "5"]  # each reported once, as failed: none lost


def test_message_rate_publishes_one_lamp_changed_per_planned_instant(mosquitto, tmp_path):
    done = run_devices(mosquitto.url, "--mqtt-message-rate", "40", users=10, run_time="4s", csv=tmp_path / "run")
    assert done.returncode == 0, log_of(done.stderr)
    m = re.search(r"open model: planned (\d+), started (\d+), dropped (\d+)", done.stderr)
    assert m, log_of(done.stderr)
    planned, started, dropped = map(int, m.groups())
    assert planned > 0 and started + dropped == planned
    stats = read_locust_stats(tmp_path / "run")
    # Every instant taken is one lamp/changed, acknowledged before the devices disconnect; a lamp
    # also announces its state with one lamp/changed on each accepted (re)connect, as the course's does.
    connects = sum(int(stats[n]["Request Count"]) - int(stats[n]["Failure Count"])
                   for n in ("connect", "reconnect") if n in stats)
    assert connects >= 10
    assert int(stats[CHANGED]["Request Count"]) == started + connects


def test_devices_dropped_together_do_not_reconnect_in_lockstep():
    import random

    from plumbing.backoff import jittered

    waits = [jittered(4.0, random.Random(device)) for device in range(500)]  # one broker restart, 500 devices
    assert all(2.0 <= w <= 4.0 for w in waits)  # at least half the back-off: retries still slow down
    assert max(waits) - min(waits) > 1.5 and len({round(w, 3) for w in waits}) > 400  # spread, not one instant
