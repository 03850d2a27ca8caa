/**
 * Enforces a maximum MQTT packet size on a socket. Aedes hands whatever `conn.read()` returns to mqtt-packet,
 * which buffers a packet of any announced length (up to 256 MB) before parsing it. This watches the same
 * bytes as they are read: it decodes each fixed header (type byte + variable-length "remaining length",
 * MQTT 3.1.1 §2.2.3) and skips the body arithmetically, so a too-large packet is refused as soon as its
 * header arrives, before its body is buffered.
 *
 * Returns the inspection of one chunk as read from the socket (false once the limit was broken: the chunk
 * must not reach the parser), for the connection's one read interceptor (broker/ingress-flow-control.ts
 * calls it on every chunk it lets through) rather than a second wrapper around `conn.read`.
 */
export function frameSizeGuard(maxPacketBytes: number, onViolation: (announcedBytes: number, malformedLength: boolean) => void): (chunk: Buffer) => boolean {
  let state: 'type' | 'length' | 'body' = 'type';
  let remaining = 0; // body bytes still to skip
  let length = 0;
  let multiplier = 1;
  let headerBytes = 1;
  let tripped = false;

  return (chunk) => {
    let offset = 0;
    while (offset < chunk.length && !tripped) {
      if (state === 'body') {
        const skip = Math.min(remaining, chunk.length - offset);
        remaining -= skip;
        offset += skip;
        if (remaining === 0) state = 'type';
        continue;
      }
      const byte = chunk[offset++] as number;
      if (state === 'type') {
        state = 'length';
        length = 0;
        multiplier = 1;
        headerBytes = 1;
        continue;
      }
      headerBytes++;
      length += (byte & 0x7f) * multiplier;
      multiplier *= 128;
      const total = headerBytes + length;
      // A fifth length byte is not a large packet but a malformed one (MQTT 3.1.1 §2.2.3: four bytes at most).
      const malformedLength = (byte & 0x80) !== 0 && headerBytes >= 5;
      if (total > maxPacketBytes || malformedLength) {
        tripped = true;
        onViolation(total, malformedLength);
        return false;
      }
      if ((byte & 0x80) === 0) {
        remaining = length;
        state = remaining === 0 ? 'type' : 'body';
      }
    }
    return !tripped;
  };
}
