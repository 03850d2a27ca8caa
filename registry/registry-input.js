/** Page sizes and audit entries as the registry hands them back, whatever the database. */
const defaultLimit = 100;
const maxLimit = 1_000;
/** Page sizes: 100 by default, never more than 1000. */
export function clampLimit(limit) {
    if (limit === undefined || Number.isNaN(limit))
        return defaultLimit;
    return Math.min(maxLimit, Math.max(1, Math.trunc(limit)));
}
/**
 * An audit entry as stored (the fields its hash covers), as the port returns it: optional fields are left
 * out rather than set to undefined, so entries compare and serialise cleanly; `detail` is parsed from the
 * text stored (JSON drops undefined and functions).
 */
export function storedAuditEntry(fields) {
    return {
        id: fields.id,
        at: new Date(fields.at),
        actor: fields.actor,
        action: fields.action,
        result: fields.result,
        ...(fields.code === null ? {} : { code: fields.code }),
        ...(fields.deviceId === null ? {} : { deviceId: fields.deviceId }),
        ...(fields.detail === null ? {} : { detail: JSON.parse(fields.detail) }),
    };
}
