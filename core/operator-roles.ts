/**
 * Who may call the HTTPS API (docs/THREAT-MODEL.md R6). admin: everything; operator: revoke/suspend/resume
 * and read; station: claims and allow-lists; viewer: read. `broker`: the credential of one
 * `fleetgate broker` process, for the enrollment relay only (issued per broker, revocable like any token);
 * no other route accepts it, and no other role reaches the relay.
 *
 * Here, in core, because the registry stores roles and the API contract (contract/constants.ts) publishes
 * them to the CLI and the console; this file imports nothing, so the console bundle can carry it.
 */
export const operatorRoles = ['admin', 'operator', 'station', 'viewer', 'broker'] as const;
export type OperatorRole = (typeof operatorRoles)[number];
