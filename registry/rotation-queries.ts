import { type Kysely, sql } from 'kysely';
import { FleetgateError, type RotationCampaignState, type RotationProgress, type RotationSelector } from '../core/index.ts';
import type { RotationCampaignRecord, RotationDeviceQuery, RotationDeviceRow, RotationOutcome } from './registry-port.ts';
import { type Tables, toDate } from './storage-dialect.ts';

/**
 * The rotation campaign statements of the registry (registry/sql-registry.ts runs them, writes inside its
 * write transaction), written once for SQLite and PostgreSQL. Whether a device renewed, or had a renewal
 * refused, is read from the tables every transport writes (certificates, audit_log), never kept twice.
 */

type Db = Kysely<Tables>;

/** Ids per statement, well under both databases' limits on bound parameters. */
const batchSize = 500;

/**
 * The devices a selector matches, inserted as the campaign's pending rows. Services and revoked devices
 * are never selected: services do not take the rotate command, revoked devices can never renew.
 */
export async function insertSelection(db: Db, campaignId: string, selector: RotationSelector, now: Date): Promise<number> {
  const selectable = selectableDevices(db);
  switch (selector.kind) {
    case 'template': {
      const template = await db.selectFrom('templates').select('name').where('name', '=', selector.template).executeTakeFirst();
      if (template === undefined) throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template: selector.template } });
      return insertFrom(db, campaignId, selectable.where('d.template', '=', selector.template));
    }
    case 'expires-within': {
      const before = new Date(now.getTime() + selector.days * 86_400_000).toISOString();
      // The newest active certificate counts: a device that renewed but has not reconnected yet holds two.
      return insertFrom(
        db,
        campaignId,
        selectable.where((eb) => eb(eb.selectFrom('certificates as c').select((c) => c.fn.max('c.not_after').as('latest')).whereRef('c.device_id', '=', 'd.id').where('c.status', '=', 'active'), '<', before)),
      );
    }
    case 'ids': {
      let inserted = 0;
      const refused: string[] = [];
      for (let start = 0; start < selector.ids.length; start += batchSize) {
        const batch = selector.ids.slice(start, start + batchSize);
        const found = new Set((await selectable.select('d.id').where('d.id', 'in', batch).execute()).map((row) => row.id));
        refused.push(...batch.filter((id) => !found.has(id)));
        if (refused.length === 0) inserted += await insertFrom(db, campaignId, selectable.where('d.id', 'in', batch));
      }
      if (refused.length > 0) {
        const shown = refused.slice(0, 5).join(', ') + (refused.length > 5 ? ', …' : '');
        throw new FleetgateError('ROTATION_SELECTOR_INVALID', {
          message: `${refused.length} of the ids are not devices a campaign can select (unknown, revoked or services): ${shown}. Remove them from the file and start again.`,
          detail: { refused: refused.length, first: refused.slice(0, 20) },
        });
      }
      return inserted;
    }
    case 'ca': {
      // The devices holding an unexpired active certificate signed by the CA (what keeps it from being
      // retired), or, for a root, by any device CA under it.
      const ca = await db.selectFrom('certificate_authorities').select(['id', 'role']).where('id', '=', selector.caId).executeTakeFirst();
      if (ca === undefined) {
        throw new FleetgateError('ROTATION_SELECTOR_INVALID', { message: `ca=${selector.caId} is not a CA of this gateway; \`fleetgate ca list\` shows their ids.`, detail: { caId: selector.caId } });
      }
      if (ca.role !== 'device' && ca.role !== 'root') {
        throw new FleetgateError('ROTATION_SELECTOR_INVALID', {
          message: `ca=${selector.caId} is a ${ca.role} CA; only the devices of a device CA (or of the device CAs under a root) renew. Claims move by new claims from the factory.`,
          detail: { caId: selector.caId, role: ca.role },
        });
      }
      const issuers = ca.role === 'device' ? [ca.id] : (await db.selectFrom('certificate_authorities').select('id').where('issuer_id', '=', ca.id).where('role', '=', 'device').execute()).map((row) => row.id);
      if (issuers.length === 0) return 0;
      return insertFrom(
        db,
        campaignId,
        selectable.where((eb) =>
          eb.exists(eb.selectFrom('certificates as c').select('c.serial').whereRef('c.device_id', '=', 'd.id').where('c.status', '=', 'active').where('c.issuer_ca', 'in', issuers).where('c.not_after', '>', now.toISOString())),
        ),
      );
    }
  }
}

const selectableDevices = (db: Db) => db.selectFrom('devices as d').where('d.kind', '=', 'device').where('d.status', '<>', 'revoked');

async function insertFrom(db: Db, campaignId: string, selected: ReturnType<typeof selectableDevices>): Promise<number> {
  const result = await db
    .insertInto('rotation_devices')
    .columns(['campaign_id', 'device_id', 'state'])
    .expression(selected.select([sql<string>`${campaignId}`.as('campaign_id'), sql.ref<string>('d.id').as('device_id'), sql<string>`'pending'`.as('state')]) as never)
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0);
}

/**
 * Each device of the campaigns with what the registry says about it now: `renewed` — a certificate issued
 * to it since the campaign started, by any transport; `refused` — a renewal refused (audit_log
 * device.renew) since it was notified.
 */
const deviceFacts = (db: Db) =>
  db
    .selectFrom('rotation_devices as rd')
    .innerJoin('rotation_campaigns as rc', 'rc.id', 'rd.campaign_id')
    .select([
      'rd.campaign_id',
      'rd.device_id',
      'rd.state',
      'rd.dispatched_at',
      'rd.notified_at',
      sql<number | boolean>`EXISTS (SELECT 1 FROM certificates c WHERE c.device_id = rd.device_id AND c.issued_at >= rc.created_at)`.as('renewed'),
      sql<number | boolean>`(rd.notified_at IS NOT NULL AND EXISTS (SELECT 1 FROM audit_log a WHERE a.device_id = rd.device_id AND a.action = 'device.renew' AND a.result = 'refused' AND a.at >= rd.notified_at))`.as('refused'),
    ]);

/** Progress of each campaign, by id. */
export async function campaignProgress(db: Db, campaignIds: readonly string[]): Promise<Map<string, RotationProgress>> {
  const progress = new Map<string, RotationProgress>();
  if (campaignIds.length === 0) return progress;
  const rows = await db
    .selectFrom(deviceFacts(db).where('rd.campaign_id', 'in', campaignIds).as('f'))
    .select([
      'f.campaign_id',
      sql<number | string>`count(*)`.as('selected'),
      sql<number | string>`sum(CASE WHEN f.renewed THEN 1 ELSE 0 END)`.as('renewed'),
      sql<number | string>`sum(CASE WHEN f.refused AND NOT f.renewed THEN 1 ELSE 0 END)`.as('failed'),
      sql<number | string>`sum(CASE WHEN f.state = 'notified' THEN 1 ELSE 0 END)`.as('notified'),
      sql<number | string>`sum(CASE WHEN f.state = 'offline' AND NOT f.renewed THEN 1 ELSE 0 END)`.as('offline'),
      sql<number | string>`sum(CASE WHEN f.state = 'pending' AND NOT f.renewed THEN 1 ELSE 0 END)`.as('pending'),
    ])
    .groupBy('f.campaign_id')
    .execute();
  for (const row of rows) {
    progress.set(row.campaign_id, {
      selected: Number(row.selected),
      pending: Number(row.pending ?? 0),
      notified: Number(row.notified ?? 0),
      renewed: Number(row.renewed ?? 0),
      failed: Number(row.failed ?? 0),
      offline: Number(row.offline ?? 0),
    });
  }
  return progress;
}

const noProgress: RotationProgress = { selected: 0, pending: 0, notified: 0, renewed: 0, failed: 0, offline: 0 };

export async function campaignRecords(db: Db, where: { id?: string; states?: readonly RotationCampaignState[] } = {}): Promise<RotationCampaignRecord[]> {
  if (where.states?.length === 0) return [];
  const rows = await db
    .selectFrom('rotation_campaigns')
    .selectAll()
    .$if(where.id !== undefined, (q) => q.where('id', '=', where.id!))
    .$if(where.states !== undefined, (q) => q.where('state', 'in', [...where.states!]))
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .execute();
  const progress = await campaignProgress(db, rows.map((row) => row.id));
  return rows.map((row) => ({
    id: row.id,
    selector: row.selector,
    ratePerSecond: Number(row.rate_per_second),
    state: row.state,
    createdBy: row.created_by,
    createdAt: toDate(row.created_at),
    updatedAt: toDate(row.updated_at),
    endedAt: row.ended_at === null ? null : toDate(row.ended_at),
    progress: progress.get(row.id) ?? noProgress,
  }));
}

/** Up to `limit` pending devices of a running campaign, marked reached (`offline`), in id order. */
export async function dispatchPending(db: Db, campaignId: string, limit: number, now: Date): Promise<{ deviceId: string; renewed: boolean }[]> {
  const campaign = await db.selectFrom('rotation_campaigns').select('state').where('id', '=', campaignId).executeTakeFirst();
  if (campaign?.state !== 'running') return [];
  const rows = await deviceFacts(db).where('rd.campaign_id', '=', campaignId).where('rd.state', '=', 'pending').orderBy('rd.device_id').limit(limit).execute();
  if (rows.length === 0) return [];
  await db
    .updateTable('rotation_devices')
    .set({ state: 'offline', dispatched_at: now.toISOString() })
    .where('campaign_id', '=', campaignId)
    .where('device_id', 'in', rows.map((row) => row.device_id))
    .execute();
  return rows.map((row) => ({ deviceId: row.device_id, renewed: Boolean(row.renewed) }));
}

export async function pendingForDevice(db: Db, deviceId: string): Promise<{ campaignId: string; state: 'offline' | 'notified' }[]> {
  const rows = await deviceFacts(db).where('rd.device_id', '=', deviceId).where('rd.state', 'in', ['offline', 'notified']).where('rc.state', '=', 'running').orderBy('rc.created_at').execute();
  return rows.filter((row) => !row.renewed && !row.refused).map((row) => ({ campaignId: row.campaign_id, state: row.state as 'offline' | 'notified' }));
}

/** A device's place in its campaign, as the progress counts it (core RotationProgress). */
const outcomeOf = sql<RotationOutcome>`CASE WHEN f.renewed THEN 'renewed' WHEN f.refused THEN 'failed' ELSE f.state END`;

export async function deviceRows(db: Db, campaignId: string, query: RotationDeviceQuery = {}): Promise<RotationDeviceRow[]> {
  const rows = await db
    .selectFrom(deviceFacts(db).where('rd.campaign_id', '=', campaignId).as('f'))
    .select(['f.device_id', 'f.state', 'f.dispatched_at', 'f.notified_at', outcomeOf.as('outcome')])
    .$if(query.outcome !== undefined, (q) => q.where(outcomeOf, '=', query.outcome!))
    .$if(query.after !== undefined, (q) => q.where('f.device_id', '>', query.after!))
    .orderBy('f.device_id')
    .$if(query.limit !== undefined, (q) => q.limit(query.limit!))
    .execute();
  return rows.map((row) => ({
    deviceId: row.device_id,
    state: row.state,
    outcome: row.outcome,
    dispatchedAt: row.dispatched_at === null ? null : toDate(row.dispatched_at),
    notifiedAt: row.notified_at === null ? null : toDate(row.notified_at),
  }));
}
