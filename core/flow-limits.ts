/**
 * Per-template traffic limits for device sessions. Stored as one JSON object with the template, so a new
 * limit is a new optional field here, not a schema change. A missing field means the gateway-wide default.
 */
export interface TemplateLimits {
  /** Sustained PUBLISH packets per second a device may send (token bucket; burst = 2 s worth). */
  readonly publishPerSecond?: number;
  /** Sustained publish payload bytes per second a device may send. */
  readonly publishBytesPerSecond?: number;
  /** Messages queued towards one subscriber before QoS 0 is dropped and QoS 1 back-pressures. */
  readonly outboundQueueMessages?: number;
  /** Bytes queued towards one subscriber before QoS 0 is dropped and QoS 1 back-pressures. */
  readonly outboundQueueBytes?: number;
}
