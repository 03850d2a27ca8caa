"""Shared by the interop scripts: Debian's paho-mqtt 1.6.1, MQTT 3.1.1 over mutual TLS.

Every script prints one JSON object per line on stdout ({"event": ...}); the test asserts on those.
The network loop is driven by hand (client.loop()), never loop_forever/loop_start, so paho never
reconnects on its own and the timing of each packet stays under the script's control.
"""
import argparse
import json
import sys
import time

import paho.mqtt.client as mqtt


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def arguments(extra=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True, help="directory with ca.crt, device.crt, device.key")
    parser.add_argument("--id", required=True, help="client id = device id")
    parser.add_argument("--keepalive", type=int, default=30)
    if extra:
        extra(parser)
    return parser.parse_args()


def make_client(args, client_id=None, clean_session=True, will=None):
    client = mqtt.Client(client_id=client_id or args.id, clean_session=clean_session, protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=f"{args.dir}/ca.crt", certfile=f"{args.dir}/device.crt", keyfile=f"{args.dir}/device.key")
    if will:
        client.will_set(will["topic"], will["payload"], qos=will.get("qos", 1), retain=False)
    state = {"connack": None, "session_present": None, "disconnected": None, "messages": [], "acked": set(), "granted": None}

    def on_connect(_client, _userdata, flags, rc):
        state["connack"] = rc
        state["session_present"] = bool(flags.get("session present"))

    def on_disconnect(_client, _userdata, rc):
        state["disconnected"] = rc

    def on_message(_client, _userdata, message):
        state["messages"].append({"topic": message.topic, "payload": message.payload.decode(), "qos": message.qos, "retain": bool(message.retain)})

    def on_publish(_client, _userdata, mid):
        state["acked"].add(mid)

    def on_subscribe(_client, _userdata, _mid, granted):
        state["granted"] = list(granted)

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.on_publish = on_publish
    client.on_subscribe = on_subscribe
    client.state = state
    return client


def pump(clients, until, timeout):
    """Runs the network loops of `clients` until `until()` is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            return False
        for client in clients:
            client.loop(timeout=0.05)
    return True


def connect(client, args, timeout=10):
    client.connect(args.host, args.port, keepalive=args.keepalive)
    if not pump([client], lambda: client.state["connack"] is not None or client.state["disconnected"] is not None, timeout):
        emit("error", reason="no CONNACK")
        sys.exit(3)
    emit("connack", rc=client.state["connack"], session_present=client.state["session_present"], client=client._client_id.decode())
    return client.state["connack"] == 0
