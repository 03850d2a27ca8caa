import type { SchemaStep } from '../storage-dialect.ts';

/**
 * The PostgreSQL schema as an ordered list of steps, like the SQLite one (registry/sqlite/schema-steps.ts): a
 * released step is never edited. Step 1 is the SQLite schema at its step 2 (template limits), column for
 * column, so the two hold the same data. Steps 1 to 3 are those the registry's own runner (table
 * schema_migrations, versions 1 to 3) ran before.
 */
export const steps: readonly SchemaStep[] = [
  {
    name: '0001-initial-schema',
    // Keys and names are COLLATE "C" so that ORDER BY and the prefix range in listDevices compare code points,
    // as SQLite's BINARY collation does, whatever the database's locale. Times are timestamptz(3): the
    // milliseconds of a JS Date, no more, so every Date written reads back equal. JSON columns are `json`,
    // not `jsonb`: it keeps the text as written (key order, "\u0000" escapes), which the audit hash needs
    // for `detail`, and it validates like SQLite's json_valid.
    sql: `
      CREATE TABLE policies (
        name TEXT COLLATE "C" PRIMARY KEY,
        document JSON NOT NULL CHECK (json_typeof(document) = 'object'),
        version INTEGER NOT NULL CHECK (version >= 1),
        updated_at TIMESTAMPTZ(3) NOT NULL
      );

      CREATE TABLE templates (
        name TEXT COLLATE "C" PRIMARY KEY,
        policy TEXT COLLATE "C" NOT NULL REFERENCES policies (name),
        validity_days INTEGER NOT NULL CHECK (validity_days >= 1),
        key_types JSON NOT NULL CHECK (json_typeof(key_types) = 'array'),
        require_allowlist BOOLEAN NOT NULL,
        allow_reenroll BOOLEAN NOT NULL,
        limits JSON NOT NULL DEFAULT '{}' CHECK (json_typeof(limits) = 'object'),
        created_at TIMESTAMPTZ(3) NOT NULL,
        updated_at TIMESTAMPTZ(3) NOT NULL
      );

      CREATE TABLE devices (
        id TEXT COLLATE "C" PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('device', 'service')),
        status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
        template TEXT COLLATE "C" NOT NULL REFERENCES templates (name),
        policy TEXT COLLATE "C" REFERENCES policies (name),
        attributes JSON NOT NULL DEFAULT '{}' CHECK (json_typeof(attributes) = 'object'),
        status_reason TEXT,
        created_at TIMESTAMPTZ(3) NOT NULL,
        updated_at TIMESTAMPTZ(3) NOT NULL
      );
      -- Foreign-key columns are indexed so that checks on the parent side do not scan the child table.
      CREATE INDEX devices_template ON devices (template);
      CREATE INDEX devices_policy ON devices (policy);

      CREATE TABLE certificates (
        serial TEXT COLLATE "C" PRIMARY KEY,
        device_id TEXT COLLATE "C" NOT NULL REFERENCES devices (id),
        fingerprint TEXT NOT NULL UNIQUE,
        public_key_hash TEXT NOT NULL,
        not_before TIMESTAMPTZ(3) NOT NULL,
        not_after TIMESTAMPTZ(3) NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'superseded', 'revoked')),
        pem TEXT NOT NULL,
        issued_at TIMESTAMPTZ(3) NOT NULL,
        revoked_at TIMESTAMPTZ(3),
        revocation_reason TEXT,
        -- A renewal names the certificate it replaces; that one is superseded when the new one is first used.
        replaces TEXT COLLATE "C" REFERENCES certificates (serial),
        -- Insertion order, the tie-break SQLite gets from rowid for certificates issued in the same millisecond.
        seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
        -- A revoked or superseded certificate always says when; CRL entries need the date.
        CHECK ((status IN ('revoked', 'superseded')) = (revoked_at IS NOT NULL))
      );
      CREATE INDEX certificates_device_id ON certificates (device_id, issued_at, seq);
      CREATE INDEX certificates_public_key_hash ON certificates (public_key_hash);
      CREATE INDEX certificates_replaces ON certificates (replaces);

      CREATE TABLE claims (
        id TEXT COLLATE "C" PRIMARY KEY,
        template TEXT COLLATE "C" NOT NULL REFERENCES templates (name),
        certificate_serial TEXT COLLATE "C" NOT NULL UNIQUE,
        max_uses INTEGER CHECK (max_uses IS NULL OR max_uses >= 0),
        uses INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0 AND (max_uses IS NULL OR uses <= max_uses)),
        expires_at TIMESTAMPTZ(3) NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
        created_at TIMESTAMPTZ(3) NOT NULL,
        -- A manufacturer CA registered as a claim issuer: its birth certificates are the claim credential.
        issuer_pem TEXT
      );
      CREATE INDEX claims_template ON claims (template);

      CREATE TABLE allowlist (
        template TEXT COLLATE "C" NOT NULL REFERENCES templates (name),
        serial TEXT COLLATE "C" NOT NULL,
        added_at TIMESTAMPTZ(3) NOT NULL,
        PRIMARY KEY (template, serial)
      );

      -- hash = SHA-256 over prev_hash and the row as stored (registry/audit-chain.ts); prev_hash is the hash
      -- of the entry before, 64 zeros for the first. The writer assigns ids itself, one after the highest
      -- ever handed out (audit_sequence), inside the registry's write lock: ids are gapless and never reused,
      -- so a missing entry shows as a gap even at the end of the log. No SERIAL: a sequence hands out
      -- numbers outside transactions, and a rolled-back write would leave a gap that looks like a deletion.
      CREATE TABLE audit_log (
        id BIGINT PRIMARY KEY CHECK (id >= 1),
        at TIMESTAMPTZ(3) NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        result TEXT NOT NULL CHECK (result IN ('ok', 'refused')),
        code TEXT,
        device_id TEXT COLLATE "C",
        detail JSON,
        prev_hash TEXT NOT NULL CHECK (length(prev_hash) = 64),
        hash TEXT NOT NULL CHECK (length(hash) = 64)
      );
      CREATE INDEX audit_log_device_id ON audit_log (device_id, id);
      CREATE INDEX audit_log_at ON audit_log (at);

      -- The highest audit id ever assigned: what sqlite_sequence is to the SQLite log. One row.
      CREATE TABLE audit_sequence (
        singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
        last_id BIGINT NOT NULL CHECK (last_id >= 0)
      );
      INSERT INTO audit_sequence (last_id) VALUES (0);

      -- The audit trail is evidence: not even the registry's own code may rewrite or remove it.
      CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'restrict_violation';
      END
      $$;
      CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
      CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
      -- TRUNCATE fires no row triggers; SQLite has no TRUNCATE, PostgreSQL needs its own refusal.
      CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

      -- The counter only moves forward: winding it back would hide a removed tail.
      CREATE FUNCTION audit_sequence_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP <> 'UPDATE' OR NEW.last_id < OLD.last_id THEN
          RAISE EXCEPTION 'audit_sequence only moves forward' USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN NEW;
      END
      $$;
      CREATE TRIGGER audit_sequence_forward BEFORE UPDATE OR DELETE ON audit_sequence FOR EACH ROW EXECUTE FUNCTION audit_sequence_forward_only();
      CREATE TRIGGER audit_sequence_no_truncate BEFORE TRUNCATE ON audit_sequence FOR EACH STATEMENT EXECUTE FUNCTION audit_sequence_forward_only();

      -- Personal operator tokens. Only the SHA-256 of a token is kept: a copy of this database lets nobody
      -- call the API. Names are never reused (revoked rows stay), so \`operator:<name>\` in the audit trail
      -- always means the same token.
      CREATE TABLE operator_tokens (
        name TEXT COLLATE "C" PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'station', 'viewer')),
        token_hash TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
        created_at TIMESTAMPTZ(3) NOT NULL,
        revoked_at TIMESTAMPTZ(3)
      );
    `,
  },
  {
    name: '0002-broker-role',
    sql: `
      ALTER TABLE operator_tokens DROP CONSTRAINT operator_tokens_role_check;
      ALTER TABLE operator_tokens ADD CONSTRAINT operator_tokens_role_check CHECK (role IN ('admin', 'operator', 'station', 'viewer', 'broker'));
    `,
  },
  {
    name: '0003-trusted-and-reported-device-attributes',
    // As SQLite step 4 (registry/sqlite/schema-steps.ts): policies read only the trusted devices.attributes;
    // what devices report moves to reported_attributes, also for devices enrolled before this step.
    sql: `
      ALTER TABLE devices ADD COLUMN reported_attributes JSON NOT NULL DEFAULT '{}' CHECK (json_typeof(reported_attributes) = 'object');
      ALTER TABLE allowlist ADD COLUMN attributes JSON NOT NULL DEFAULT '{}' CHECK (json_typeof(attributes) = 'object');
      UPDATE devices SET reported_attributes = attributes, attributes = '{}'
        WHERE kind = 'device' AND attributes::text <> '{}'
          AND NOT EXISTS (SELECT 1 FROM audit_log WHERE audit_log.device_id = devices.id AND action = 'device.register' AND result = 'ok');
    `,
  },
  {
    name: '0004-enrolled-by-claim',
    // As SQLite step 5 (registry/sqlite/schema-steps.ts).
    sql: `
      ALTER TABLE devices ADD COLUMN enrolled_by TEXT COLLATE "C";
      UPDATE devices SET enrolled_by = (
        SELECT detail ->> 'claimId' FROM audit_log
        WHERE audit_log.device_id = devices.id AND action = 'device.enroll' AND result = 'ok' AND detail ->> 'claimId' IS NOT NULL
        ORDER BY id DESC LIMIT 1
      );
      CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ(3) NOT NULL);
      INSERT INTO schema_migrations (version, name, applied_at) VALUES (4, 'later steps are in kysely_migration', now());
    `,
  },
  {
    name: '0005-certificate-authorities',
    // As SQLite step 6 (registry/sqlite/schema-steps.ts).
    sql: `
      CREATE TABLE certificate_authorities (
        id TEXT COLLATE "C" PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('root', 'device', 'claim', 'cross')),
        state TEXT NOT NULL CHECK (state IN ('next', 'active', 'retiring', 'retired')),
        fingerprint TEXT NOT NULL UNIQUE,
        subject TEXT NOT NULL,
        issuer_id TEXT COLLATE "C" REFERENCES certificate_authorities (id),
        cross_of TEXT COLLATE "C" REFERENCES certificate_authorities (id),
        pem TEXT NOT NULL,
        key_ref TEXT,
        not_before TIMESTAMPTZ(3) NOT NULL,
        not_after TIMESTAMPTZ(3) NOT NULL,
        created_at TIMESTAMPTZ(3) NOT NULL,
        updated_at TIMESTAMPTZ(3) NOT NULL
      );
      CREATE UNIQUE INDEX certificate_authorities_one_active ON certificate_authorities (role) WHERE state = 'active' AND role <> 'cross';
      CREATE UNIQUE INDEX certificate_authorities_one_next ON certificate_authorities (role) WHERE state = 'next' AND role <> 'cross';
      ALTER TABLE certificates ADD COLUMN issuer_ca TEXT COLLATE "C";
      CREATE INDEX certificates_issuer_ca ON certificates (issuer_ca, status);
      ALTER TABLE claims ADD COLUMN issuer_ca TEXT COLLATE "C";
    `,
  },
  {
    name: '0006-renew-after-expiry',
    // As SQLite step 7 (registry/sqlite/schema-steps.ts).
    sql: `ALTER TABLE templates ADD COLUMN renew_after_expiry_days INTEGER NOT NULL DEFAULT 0 CHECK (renew_after_expiry_days BETWEEN 0 AND 3650);`,
  },
];
