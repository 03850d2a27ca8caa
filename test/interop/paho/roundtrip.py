"""QoS 0, 1 and 2 round trips on the device's own topics: subscribe at QoS 2, publish at each QoS, and
report the QoS each message came back with and whether each publish flow completed (PUBACK / PUBCOMP)."""
from common import arguments, connect, emit, make_client, pump

args = arguments()
client = make_client(args)
if not connect(client, args):
    raise SystemExit(1)
base = f"devices/{args.id}/echo"
client.subscribe(f"{base}/#", qos=2)
pump([client], lambda: client.state["granted"] is not None, 5)
emit("suback", granted=client.state["granted"])
mids = {}
for qos in (0, 1, 2):
    info = client.publish(f"{base}/q{qos}", f"payload-q{qos}", qos=qos)
    mids[qos] = info.mid
pump([client], lambda: len(client.state["messages"]) >= 3 and all(mids[q] in client.state["acked"] for q in (0, 1, 2)), 10)
for qos in (0, 1, 2):
    emit("published", qos=qos, completed=mids[qos] in client.state["acked"])
for message in client.state["messages"]:
    emit("message", **message)
client.disconnect()
pump([client], lambda: client.state["disconnected"] is not None, 2)
emit("done")
