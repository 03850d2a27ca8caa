/** A live MQTT session as brokers report it, and where the API reads them (broker/ and provisioning/ meet here). */
export interface SessionSummary {
  readonly clientId: string;
  readonly kind: 'device' | 'claim';
  readonly certificateSerial: string;
  readonly remoteAddress: string | undefined;
  readonly connectedAt: Date;
  /** Which broker holds it, in a cluster. */
  readonly broker?: string;
}

/** In-process (the all-in-one broker) or shared (Redis, in a cluster). */
export interface SessionDirectory {
  list(): Promise<readonly SessionSummary[]>;
}
