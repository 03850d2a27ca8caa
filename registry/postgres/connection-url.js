import { FleetgateError } from "../../core/index.js";
/** A PostgreSQL schema name fleetgate accepts: a plain identifier, so it needs no quoting in `search_path`. */
const schemaName = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
export function isPostgresUrl(target) {
    return /^postgres(ql)?:\/\//i.test(target);
}
/**
 * Splits fleetgate's own `?schema=NAME` off a `postgres://` URL; the rest is handed to `pg` unchanged.
 * An explicit `schema` argument wins over the URL's.
 */
export function parsePostgresUrl(url, schema) {
    let parsed;
    try {
        parsed = new URL(url);
    }
    catch (cause) {
        // The URL may hold a password: never echo it.
        throw new FleetgateError('CONFIG_INVALID', { message: 'The database URL is not a valid postgres:// URL.', cause });
    }
    const fromUrl = parsed.searchParams.get('schema') ?? undefined;
    parsed.searchParams.delete('schema');
    const chosen = schema ?? fromUrl;
    if (chosen !== undefined)
        assertSchemaName(chosen);
    return { connectionString: parsed.toString(), schema: chosen };
}
export function assertSchemaName(name) {
    if (!schemaName.test(name)) {
        throw new FleetgateError('CONFIG_INVALID', {
            message: `The PostgreSQL schema name must match ${schemaName.source}, got "${name}".`,
            detail: { schema: name },
        });
    }
    return name;
}
