"""Connects with a last will on the device's status topic, then either dies without DISCONNECT (the
process exits and the OS closes the socket) or, with --disconnect, leaves cleanly (no will)."""
import os

from common import arguments, connect, emit, make_client, pump


def extra(parser):
    parser.add_argument("--disconnect", action="store_true")


args = arguments(extra)
client = make_client(args, will={"topic": f"devices/{args.id}/status", "payload": "offline-unexpectedly", "qos": 1})
if not connect(client, args):
    raise SystemExit(1)
if args.disconnect:
    client.disconnect()
    pump([client], lambda: client.state["disconnected"] is not None, 2)
    emit("disconnected")
else:
    emit("dying")
    os._exit(0)  # no DISCONNECT, no TLS close_notify: like a device losing power
