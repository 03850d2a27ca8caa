import { CompiledQuery, Migrator } from 'kysely';
import { FleetgateError } from "../core/index.js";
/**
 * Brings the schema up to the newest step with Kysely's Migrator, in one transaction that holds the
 * dialect's migration lock and re-reads what is applied under it: several processes opening a fresh
 * database at once queue, and the later ones find nothing left to do.
 *
 * A database made before Kysely carries the registry's own runner's table, `schema_migrations`, whose
 * versions 1..legacySteps are the first steps here, statement for statement: they are recorded as applied
 * in Kysely's table once, and only the steps after them run. Returns the names of the steps this call ran.
 */
export async function migrate(dialect) {
    return dialect.queueWrite(() => dialect.db.connection().execute(async (connection) => {
        try {
            await dialect.beginMigration(connection); // inside: a failed lock wait or CREATE SCHEMA is rolled back too
            if (!(await dialect.tableExists(connection, 'kysely_migration')) && (await dialect.tableExists(connection, 'schema_migrations'))) {
                await adoptLegacyVersions(connection, dialect);
            }
            await refuseNewerSchema(connection, dialect);
            const migrator = new Migrator({
                db: connection,
                provider: { getMigrations: async () => Object.fromEntries(dialect.steps.map((step) => [step.name, stepMigration(dialect, step.sql)])) },
                // This transaction is the one that holds the lock.
                disableTransactions: true,
                ...(dialect.migrationSchema === undefined ? {} : { migrationTableSchema: dialect.migrationSchema }),
            });
            const { error, results = [] } = await migrator.migrateToLatest();
            if (error !== undefined)
                throw error;
            await connection.executeQuery(CompiledQuery.raw('COMMIT'));
            return results.map((result) => result.migrationName);
        }
        catch (error) {
            await connection.executeQuery(CompiledQuery.raw('ROLLBACK')).catch(() => undefined);
            throw error;
        }
    }));
}
function stepMigration(dialect, script) {
    return { up: (db) => dialect.runScript(db, script) };
}
async function adoptLegacyVersions(connection, dialect) {
    const legacy = await connection.selectFrom('schema_migrations').select(['version', 'applied_at']).orderBy('version').execute();
    const newer = legacy.filter((row) => row.version > dialect.legacySteps);
    if (newer.length > 0)
        throw newerSchema(Math.max(...newer.map((row) => row.version)), dialect);
    // The same table Kysely's Migrator would create.
    await connection.schema
        .createTable('kysely_migration')
        .addColumn('name', 'varchar(255)', (column) => column.notNull().primaryKey())
        .addColumn('timestamp', 'varchar(255)', (column) => column.notNull())
        .execute();
    for (const row of legacy) {
        const step = dialect.steps[row.version - 1];
        if (step !== undefined)
            await connection.insertInto('kysely_migration').values({ name: step.name, timestamp: new Date(row.applied_at).toISOString() }).execute();
    }
}
/** A newer fleetgate wrote this database; running old code on it could corrupt what it does not understand. */
async function refuseNewerSchema(connection, dialect) {
    if (!(await dialect.tableExists(connection, 'kysely_migration')))
        return;
    const known = new Set(dialect.steps.map((step) => step.name));
    const applied = await connection.selectFrom('kysely_migration').select('name').execute();
    const unknown = applied.filter((row) => !known.has(row.name)).map((row) => Number.parseInt(row.name, 10) || 0);
    if (unknown.length > 0)
        throw newerSchema(Math.max(...unknown), dialect);
}
function newerSchema(databaseVersion, dialect) {
    const supportedVersion = dialect.steps.length;
    return new FleetgateError('CONFIG_INVALID', {
        message: `The registry database has schema version ${databaseVersion}, newer than this fleetgate (${supportedVersion}); upgrade fleetgate.`,
        detail: { databaseVersion, supportedVersion },
    });
}
