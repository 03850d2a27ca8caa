/** A live MQTT session as brokers report it, and where the API reads them (broker/ and provisioning/ meet here). */
export interface SessionSummary {
  readonly clientId: string;
  readonly kind: 'device' | 'claim';
  readonly certificateSerial: string;
  readonly remoteAddress: string | undefined;
  readonly connectedAt: Date;
}

export interface SessionDirectory {
  list(): SessionSummary[];
}
