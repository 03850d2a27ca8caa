import type { SchemaStep } from '../storage-dialect.ts';

/**
 * The SQLite schema as an ordered list of steps, run by Kysely's Migrator (registry/migrate.ts). A step, once
 * released, is never edited: databases in the field already ran it. Change the schema by appending a step.
 * Steps 1 to 4 are those the registry's own runner (table schema_migrations, versions 1 to 4) ran before.
 */
export const steps: readonly SchemaStep[] = [
  {
    name: '0001-initial-schema',
    // STRICT tables refuse values of the wrong type instead of silently storing them. Times are ISO-8601
    // UTC text with milliseconds (Date#toISOString), which sorts chronologically as text.
    sql: `
      CREATE TABLE policies (
        name TEXT PRIMARY KEY,
        document TEXT NOT NULL CHECK (json_valid(document)),
        version INTEGER NOT NULL CHECK (version >= 1),
        updated_at TEXT NOT NULL
      ) STRICT;

      CREATE TABLE templates (
        name TEXT PRIMARY KEY,
        policy TEXT NOT NULL REFERENCES policies (name),
        validity_days INTEGER NOT NULL CHECK (validity_days >= 1),
        key_types TEXT NOT NULL CHECK (json_valid(key_types) AND json_type(key_types) = 'array'),
        require_allowlist INTEGER NOT NULL CHECK (require_allowlist IN (0, 1)),
        allow_reenroll INTEGER NOT NULL CHECK (allow_reenroll IN (0, 1)),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;

      CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('device', 'service')),
        status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
        template TEXT NOT NULL REFERENCES templates (name),
        policy TEXT REFERENCES policies (name),
        attributes TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(attributes) AND json_type(attributes) = 'object'),
        status_reason TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;
      -- Foreign-key columns are indexed so that checks on the parent side do not scan the child table.
      CREATE INDEX devices_template ON devices (template);
      CREATE INDEX devices_policy ON devices (policy);

      CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices (id),
        fingerprint TEXT NOT NULL UNIQUE,
        public_key_hash TEXT NOT NULL,
        not_before TEXT NOT NULL,
        not_after TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'superseded', 'revoked')),
        pem TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        revoked_at TEXT,
        revocation_reason TEXT,
        -- A renewal names the certificate it replaces; that one is superseded when the new one is first used.
        replaces TEXT REFERENCES certificates (serial),
        -- A revoked or superseded certificate always says when; CRL entries need the date.
        CHECK ((status IN ('revoked', 'superseded')) = (revoked_at IS NOT NULL))
      ) STRICT;
      CREATE INDEX certificates_device_id ON certificates (device_id);
      CREATE INDEX certificates_public_key_hash ON certificates (public_key_hash);

      CREATE TABLE claims (
        id TEXT PRIMARY KEY,
        template TEXT NOT NULL REFERENCES templates (name),
        certificate_serial TEXT NOT NULL UNIQUE,
        max_uses INTEGER CHECK (max_uses IS NULL OR max_uses >= 0),
        uses INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0 AND (max_uses IS NULL OR uses <= max_uses)),
        expires_at TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
        created_at TEXT NOT NULL,
        -- A manufacturer CA registered as a claim issuer: its birth certificates are the claim credential.
        issuer_pem TEXT
      ) STRICT;
      CREATE INDEX claims_template ON claims (template);

      CREATE TABLE allowlist (
        template TEXT NOT NULL REFERENCES templates (name),
        serial TEXT NOT NULL,
        added_at TEXT NOT NULL,
        PRIMARY KEY (template, serial)
      ) STRICT, WITHOUT ROWID;

      -- AUTOINCREMENT: ids are never reused, so a follower paging with afterId never misses an entry.
      -- The writer assigns ids itself (the next one after sqlite_sequence) because each entry's hash covers
      -- its id: ids stay gapless, so a missing entry shows as a gap even at the end of the log.
      -- hash = SHA-256 over prev_hash and the row as stored (registry/audit-chain.ts); prev_hash is the hash
      -- of the entry before, 64 zeros for the first. Editing, removing or inserting an entry breaks the chain.
      CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        result TEXT NOT NULL CHECK (result IN ('ok', 'refused')),
        code TEXT,
        device_id TEXT,
        detail TEXT CHECK (detail IS NULL OR json_valid(detail)),
        prev_hash TEXT NOT NULL CHECK (length(prev_hash) = 64),
        hash TEXT NOT NULL CHECK (length(hash) = 64)
      ) STRICT;
      CREATE INDEX audit_log_device_id ON audit_log (device_id, id);
      CREATE INDEX audit_log_at ON audit_log (at);

      -- The audit trail is evidence: not even the registry's own code may rewrite or remove it.
      CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
      BEGIN
        SELECT RAISE(ABORT, 'audit_log is append-only');
      END;
      CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
      BEGIN
        SELECT RAISE(ABORT, 'audit_log is append-only');
      END;

      -- Personal operator tokens. Only the SHA-256 of a token is kept: a copy of this file lets nobody call
      -- the API. Names are never reused (revoked rows stay), so \`operator:<name>\` in the audit trail always
      -- means the same token.
      CREATE TABLE operator_tokens (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'station', 'viewer')),
        token_hash TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
        created_at TEXT NOT NULL,
        revoked_at TEXT
      ) STRICT;
    `,
  },
  {
    name: '0002-template-traffic-limits',
    sql: `ALTER TABLE templates ADD COLUMN limits TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(limits));`,
  },
  {
    name: '0003-broker-role',
    // SQLite cannot change a CHECK constraint in place: the table is rebuilt with the same rows.
    sql: `
      CREATE TABLE operator_tokens_v3 (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'station', 'viewer', 'broker')),
        token_hash TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
        created_at TEXT NOT NULL,
        revoked_at TEXT
      ) STRICT;
      INSERT INTO operator_tokens_v3 (name, role, token_hash, created_at, revoked_at) SELECT name, role, token_hash, created_at, revoked_at FROM operator_tokens;
      DROP TABLE operator_tokens;
      ALTER TABLE operator_tokens_v3 RENAME TO operator_tokens;
    `,
  },
  {
    name: '0004-trusted-and-reported-device-attributes',
    // Policies read only devices.attributes, which now holds trusted values alone (an operator's, or the
    // allow-list row's); what a device says about itself goes to reported_attributes. Before this step a
    // claim enrollment stored the device's own claims in attributes: a device no operator registered
    // (no device.register in the audit trail) has them moved over, so they stop widening its policy.
    sql: `
      ALTER TABLE devices ADD COLUMN reported_attributes TEXT NOT NULL DEFAULT '{}'
        CHECK (json_valid(reported_attributes) AND json_type(reported_attributes) = 'object');
      ALTER TABLE allowlist ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}'
        CHECK (json_valid(attributes) AND json_type(attributes) = 'object');
      UPDATE devices SET reported_attributes = attributes, attributes = '{}'
        WHERE kind = 'device' AND attributes <> '{}'
          AND NOT EXISTS (SELECT 1 FROM audit_log WHERE audit_log.device_id = devices.id AND action = 'device.register' AND result = 'ok');
    `,
  },
  {
    name: '0005-enrolled-by-claim',
    // The claim of a device's last accepted claim enrollment, which admission reads for a claim session's
    // retry (broker/session-admission.ts); until now it was found in the audit trail, so it is taken from
    // there once. The old runner's table gets a version it does not know, so an older fleetgate refuses
    // this file instead of running on a schema it does not understand; later steps are in kysely_migration.
    sql: `
      ALTER TABLE devices ADD COLUMN enrolled_by TEXT;
      UPDATE devices SET enrolled_by = (
        SELECT json_extract(detail, '$.claimId') FROM audit_log
        WHERE audit_log.device_id = devices.id AND action = 'device.enroll' AND result = 'ok' AND json_extract(detail, '$.claimId') IS NOT NULL
        ORDER BY id DESC LIMIT 1
      );
      CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT;
      INSERT INTO schema_migrations (version, name, applied_at) VALUES (5, 'later steps are in kysely_migration', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
    `,
  },
  {
    name: '0006-certificate-authorities',
    // Every CA fleetgate has made (README "Rotating certificates and CAs"): the root(s), device and claim
    // issuing CAs, and the cross-certificates between two roots. The certificates live here so that every
    // process of a cluster (brokers included) follows the same rotation; keys stay with provisioning
    // (key_ref names the key in its key store). Certificates and claims record the CA that signed them, so
    // retiring a CA can count what it still vouches for; rows from before this step are the first CAs'
    // (filled in when provisioning imports them, provisioning/certificate-authorities.ts).
    sql: `
      CREATE TABLE certificate_authorities (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('root', 'device', 'claim', 'cross')),
        state TEXT NOT NULL CHECK (state IN ('next', 'active', 'retiring', 'retired')),
        fingerprint TEXT NOT NULL UNIQUE,
        subject TEXT NOT NULL,
        issuer_id TEXT REFERENCES certificate_authorities (id),
        -- A cross-certificate: the root whose key it certifies (issuer_id is the other root).
        cross_of TEXT REFERENCES certificate_authorities (id),
        pem TEXT NOT NULL,
        key_ref TEXT,
        not_before TEXT NOT NULL,
        not_after TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;
      CREATE UNIQUE INDEX certificate_authorities_one_active ON certificate_authorities (role) WHERE state = 'active' AND role <> 'cross';
      CREATE UNIQUE INDEX certificate_authorities_one_next ON certificate_authorities (role) WHERE state = 'next' AND role <> 'cross';
      ALTER TABLE certificates ADD COLUMN issuer_ca TEXT;
      CREATE INDEX certificates_issuer_ca ON certificates (issuer_ca, status);
      ALTER TABLE claims ADD COLUMN issuer_ca TEXT;
    `,
  },
  {
    name: '0007-renew-after-expiry',
    // Days after expiry during which a certificate of the template may still renew once (README "Renewal
    // after expiry"); 0, the value every existing template gets, keeps expired certificates refused.
    sql: `ALTER TABLE templates ADD COLUMN renew_after_expiry_days INTEGER NOT NULL DEFAULT 0 CHECK (renew_after_expiry_days BETWEEN 0 AND 3650);`,
  },
];
