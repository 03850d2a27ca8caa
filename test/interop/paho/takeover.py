"""Client-id takeover by the same device: a second connection with the same client id (same certificate)
closes the first [MQTT-3.1.4-2]; the second keeps working."""
from common import arguments, connect, emit, make_client, pump

args = arguments()
first = make_client(args)
if not connect(first, args):
    raise SystemExit(1)
second = make_client(args)
if not connect(second, args):
    raise SystemExit(1)
pump([first, second], lambda: first.state["disconnected"] is not None, 5)
emit("first", disconnected=first.state["disconnected"] is not None, rc=first.state["disconnected"])
info = second.publish(f"devices/{args.id}/status", "second-here", qos=1)
pump([first, second], lambda: info.mid in second.state["acked"] or second.state["disconnected"] is not None, 5)
emit("second", connected=second.state["disconnected"] is None, puback=info.mid in second.state["acked"])
second.disconnect()
pump([second], lambda: second.state["disconnected"] is not None, 2)
emit("done")
