"""Connects with a short keepalive, then stops the network loop: no PINGREQ ever goes out. Reports how
long after CONNACK the server closed the connection (MQTT-3.1.2-24: within 1.5 x keepalive)."""
import select
import ssl
import time

from common import arguments, connect, emit, make_client


def extra(parser):
    parser.add_argument("--limit", type=float, default=20)


args = arguments(extra)
client = make_client(args)
if not connect(client, args):
    raise SystemExit(1)
start = time.monotonic()
sock = client.socket()
closed = False
while time.monotonic() - start < args.limit:
    readable, _, _ = select.select([sock], [], [], 0.1)
    if not readable:
        continue
    try:
        data = sock.recv(4096)
    except ssl.SSLWantReadError:
        continue
    except (OSError, ssl.SSLError):
        closed = True
        break
    if not data:
        closed = True
        break
    emit("unexpected", bytes=len(data))
emit("closed" if closed else "still-open", after=round(time.monotonic() - start, 2), keepalive=args.keepalive)
