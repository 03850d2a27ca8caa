/**
 * The gateway's own MQTT topics (README "Enrollment and renewal"). Devices subscribe to the reply topics
 * before publishing the request.
 */
export const enrollTopics = (serial: string) =>
  ({
    request: `$fleetgate/enroll/${serial}/request`,
    accepted: `$fleetgate/enroll/${serial}/accepted`,
    rejected: `$fleetgate/enroll/${serial}/rejected`,
  }) as const;

export const renewTopics = (deviceId: string) =>
  ({
    request: `$fleetgate/certs/${deviceId}/renew/request`,
    accepted: `$fleetgate/certs/${deviceId}/renew/accepted`,
    rejected: `$fleetgate/certs/${deviceId}/renew/rejected`,
  }) as const;

/**
 * The trust bundle (README "Rotating certificates and CAs"), retained, published by every broker whenever its
 * trusted CAs change; every device session may read it, nobody may publish it.
 */
export const trustBundleTopic = '$fleetgate/trust/bundle';

/** Filters the provisioning service subscribes to inside the broker. */
export const enrollRequestFilter = '$fleetgate/enroll/+/request';
export const renewRequestFilter = '$fleetgate/certs/+/renew/request';
