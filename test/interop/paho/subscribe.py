"""Connects with the given clean-session flag, optionally subscribes, collects messages for a while and
disconnects cleanly. Used for retained messages and for clean versus persistent sessions."""
import time

from common import arguments, connect, emit, make_client, pump


def extra(parser):
    parser.add_argument("--clean", type=int, choices=(0, 1), default=1)
    parser.add_argument("--filter")
    parser.add_argument("--qos", type=int, default=1)
    parser.add_argument("--count", type=int, default=1, help="stop after this many messages")
    parser.add_argument("--wait", type=float, default=0, help="seconds to wait for messages")


args = arguments(extra)
client = make_client(args, clean_session=bool(args.clean))
if not connect(client, args):
    raise SystemExit(1)
if args.filter:
    client.subscribe(args.filter, qos=args.qos)
    pump([client], lambda: client.state["granted"] is not None, 5)
    emit("suback", granted=client.state["granted"])
if args.wait > 0:
    pump([client], lambda: len(client.state["messages"]) >= args.count, args.wait)
    time.sleep(0)
for message in client.state["messages"]:
    emit("message", **message)
client.disconnect()
pump([client], lambda: client.state["disconnected"] is not None, 2)
emit("done")
