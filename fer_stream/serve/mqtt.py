"""``--mqtt mqtt://[user:pass@]host[:port][/prefix]``: episodes, alerts and each camera's state on an MQTT broker.

Topics (prefix ``fer-stream`` unless the URL names one):

* ``PREFIX/SOURCE/episodes``: every ``start``, ``update`` and ``end`` record (JSON, QoS 1);
* ``PREFIX/SOURCE/alerts``: every ``alert`` record (JSON, QoS 1);
* ``PREFIX/SOURCE/state``: what the camera sees now (``label``: the dominant expression of its open
  episodes or ``none``, ``faces``, ``episodes``), retained, when it changes;
* ``PREFIX/status``: ``online`` while the run is connected, ``offline`` after it (retained; also
  the broker's last will when the run dies).

With ``discovery`` the run announces two Home Assistant sensors per camera (MQTT discovery,
``homeassistant/sensor/.../config``, retained): its dominant expression and its face count.

The client is paho-mqtt, on its own network thread; it reconnects by itself. Records wait in a
bounded :class:`~fer_stream.serve.outbox.Outbox` while the broker is away and are handed to the
client once, so that paho's own retransmission of unacknowledged QoS 1 messages is the only resend.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from typing import Any

from fer_stream.errors import ConfigError
from fer_stream.io.sources import redact
from fer_stream.serve.outbox import Outbox

log = logging.getLogger("fer_stream")
DEFAULT_PREFIX = "fer-stream"
DISCOVERY_PREFIX = "homeassistant"
INFLIGHT = 20  # QoS 1 messages awaiting the broker's acknowledgement at once


def parse_mqtt_url(url: str) -> tuple[str, int, str, str | None, str | None, bool]:
    """``(host, port, prefix, user, password, tls)`` of an ``mqtt://`` or ``mqtts://`` URL, or one ConfigError line."""
    p = urllib.parse.urlsplit(url)
    if p.scheme not in ("mqtt", "mqtts") or not p.hostname:
        raise ConfigError(f"--mqtt '{redact(url)}' must look like mqtt://[user:pass@]host[:port][/prefix] (or mqtts:// for TLS)")
    try:
        port = p.port or (8883 if p.scheme == "mqtts" else 1883)
    except ValueError:
        raise ConfigError(f"--mqtt '{redact(url)}': the port must be a number from 1 to 65535") from None
    prefix = p.path.strip("/") or DEFAULT_PREFIX
    if any(c in prefix for c in "#+") or "//" in prefix or p.fragment or "#" in url or p.query:
        raise ConfigError(f"--mqtt '{redact(url)}': the topic prefix '{prefix}' may not hold '#', '+' or empty levels")
    user = urllib.parse.unquote(p.username) if p.username else None
    password = urllib.parse.unquote(p.password) if p.password else None
    return p.hostname, port, prefix, user, password, p.scheme == "mqtts"


class MqttPublisher:
    """An outlet (``send``, ``close``) that publishes to one broker (see the module's text)."""

    def __init__(self, url: str, *, discovery: bool = False, queue: int = 1000, client_id: str = "", connect_timeout: float = 10.0) -> None:
        import paho.mqtt.client as mqtt  # only runs that publish need it

        self.host, self.port, self.prefix, user, password, tls = parse_mqtt_url(url)
        self.url = redact(url)
        self.discovery = discovery
        self._connected = threading.Event()
        self._announced: set[str] = set()
        self._state: dict[str, str] = {}  # source -> its last state payload
        self._closed = False
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set()
        self.client.max_inflight_messages_set(INFLIGHT)
        self.client.max_queued_messages_set(queue + 64)  # bounded like the outbox (+ status and discovery messages)
        self.client.reconnect_delay_set(1, 10)
        self.client.will_set(f"{self.prefix}/status", "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.outbox = Outbox("mqtt", self._deliver, size=queue)
        self.client.connect_async(self.host, self.port, keepalive=15)
        self.client.loop_start()
        if not self._connected.wait(connect_timeout):
            log.warning("MQTT broker %s does not answer yet; episodes wait in a queue of %d and are sent once it does", self.url, queue)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker %s refused the connection: %s", self.url, reason)
            return
        client.publish(f"{self.prefix}/status", "online", qos=1, retain=True)
        self._connected.set()
        self.outbox.wake()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self._connected.is_set():
            log.warning("MQTT broker %s went away (%s); reconnecting", self.url, reason)
        self._connected.clear()

    def send(self, record: dict[str, Any]) -> None:
        self.outbox.send(record)

    def _deliver(self, record: dict[str, Any]) -> bool:
        if not self._connected.wait(1.0):
            return False
        source = record["source"]
        if self.discovery and source not in self._announced:
            self._announce(source)
        kind = record["type"]
        if kind == "state":
            payload = json.dumps({k: v for k, v in record.items() if k not in ("type", "source")})
            topic, retain = f"{self.prefix}/{source}/state", True
        else:
            payload, retain = json.dumps(record), False
            topic = f"{self.prefix}/{source}/{'alerts' if kind == 'alert' else 'episodes'}"
        import paho.mqtt.client as mqtt

        info = self.client.publish(topic, payload, qos=1, retain=retain)
        # Success, or "not connected" (the link fell since the check): paho holds the message now and
        # sends it, resending until the broker acknowledges it. A full paho queue: try again later.
        return info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)

    def _announce(self, source: str) -> None:
        """Home Assistant discovery: the camera's dominant expression and face count, as sensors."""
        device = {"identifiers": [f"fer_stream_{source}"], "name": f"fer-stream {source}", "manufacturer": "fer-stream"}
        common = {"state_topic": f"{self.prefix}/{source}/state", "availability_topic": f"{self.prefix}/status", "device": device}
        sensors = {
            "expression": {"name": "Expression", "value_template": "{{ value_json.label }}", "icon": "mdi:emoticon-outline"},
            "faces": {"name": "Faces", "value_template": "{{ value_json.faces }}", "state_class": "measurement"},
        }
        for key, extra in sensors.items():
            uid = f"fer_stream_{source}_{key}"
            config = {**common, **extra, "unique_id": uid, "object_id": uid}
            self.client.publish(f"{DISCOVERY_PREFIX}/sensor/{uid}/config", json.dumps(config), qos=1, retain=True)
        self._announced.add(source)

    def counts(self) -> dict[str, int]:
        return self.outbox.snapshot()

    def close(self) -> None:
        """Deliver what is queued (up to 10 s), say ``offline``, disconnect (once)."""
        if self._closed:
            return
        self._closed = True
        self.outbox.close()
        if self._connected.is_set():
            try:
                self.client.publish(f"{self.prefix}/status", "offline", qos=1, retain=True).wait_for_publish(5.0)
            except (ValueError, RuntimeError):  # refused or the link fell: the broker's last will says offline
                pass
        self.client.disconnect()
        self.client.loop_stop()
