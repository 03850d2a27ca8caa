/** Byte helpers for PKI code; core has no Buffer, so these work on Uint8Array / ArrayBuffer. */

export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let out = '';
  for (const byte of view) out += byte.toString(16).padStart(2, '0');
  return out;
}

export async function sha256Hex(data: ArrayBuffer | Uint8Array<ArrayBuffer>): Promise<string> {
  const view = data instanceof Uint8Array ? data : new Uint8Array(data);
  return toHex(await globalThis.crypto.subtle.digest('SHA-256', view));
}

export function toBase64(bytes: ArrayBuffer | Uint8Array): string {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let binary = '';
  for (const byte of view) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text.replace(/\s+/g, ''));
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** One PEM block; lines of 64 characters (RFC 7468). */
export function toPem(label: string, der: ArrayBuffer | Uint8Array): string {
  const body = toBase64(der).replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`;
}

/** The DER bytes of every PEM block with one of `labels`, in order. */
export function pemBlocks(pem: string, labels: readonly string[]): Uint8Array<ArrayBuffer>[] {
  const blocks: Uint8Array<ArrayBuffer>[] = [];
  for (const match of pem.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g)) {
    if (labels.includes(match[1] ?? '')) blocks.push(fromBase64(match[2] ?? ''));
  }
  return blocks;
}

/** 128-bit random positive serial (RFC 5280 §4.1.2.2: positive, at most 20 octets), lower-case hex. */
export function randomSerial(): string {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40; // positive, and never a leading zero octet to strip
  return toHex(bytes);
}
