/**
 * Schema migrations, in order. Entry N brings a store from `user_version` N to N+1; entries are
 * never edited once released, only appended. Times are milliseconds since the epoch.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: accounts, their keys, and enrolled devices
  `
  CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
  );
  CREATE TABLE keys (
    id           TEXT    PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    role         TEXT    NOT NULL CHECK (role IN ('client', 'device', 'full')),
    hash         BLOB    NOT NULL UNIQUE,
    label        TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
  );
  CREATE INDEX keys_account ON keys(account_id);
  CREATE TABLE devices (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    credential_hash BLOB    NOT NULL UNIQUE,
    enrolled_by     TEXT,
    parent          TEXT,
    created_at      INTEGER NOT NULL,
    last_seen       INTEGER,
    last_ip         TEXT,
    version         TEXT,
    services        TEXT    NOT NULL DEFAULT '[]',
    host_keys       TEXT    NOT NULL DEFAULT '[]',
    UNIQUE (account_id, name)
  );
  `,
  // 2: properties (last write wins per key, with tombstones), the event log, clone identity
  `
  CREATE TABLE props (
    device_id   INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    key         TEXT    NOT NULL,
    value       TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, key)
  ) WITHOUT ROWID;
  CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    device      TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    data        TEXT    NOT NULL DEFAULT '{}',
    at          INTEGER NOT NULL
  );
  CREATE INDEX events_account ON events(account_id, id);
  ALTER TABLE devices ADD COLUMN fingerprint TEXT;
  `,
  // 3: shares between accounts, and the audit log
  `
  CREATE TABLE shares (
    id          INTEGER PRIMARY KEY,
    owner_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    grantee_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    device      TEXT,
    filters     TEXT    NOT NULL DEFAULT '[]',
    services    TEXT    NOT NULL DEFAULT '[]',
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
  );
  CREATE INDEX shares_grantee ON shares(grantee_id);
  CREATE INDEX shares_owner ON shares(owner_id);
  CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    account_id  INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
    owner_id    INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
    key_id      TEXT,
    ip          TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    device      TEXT,
    service     TEXT,
    result      TEXT    NOT NULL,
    reason      TEXT    NOT NULL DEFAULT '',
    duration_ms INTEGER,
    bytes_up    INTEGER,
    bytes_down  INTEGER,
    count       INTEGER NOT NULL DEFAULT 1
  );
  CREATE INDEX audit_at ON audit(at);
  CREATE INDEX audit_account ON audit(account_id, at);
  CREATE INDEX audit_owner ON audit(owner_id, at);
  `,
  // 4: property filters (od list site=x) find their devices by key and value
  `
  CREATE INDEX props_key_value ON props(key, value);
  `,
  // 5: several relays (heartbeats; which relay holds each device link, by generation), and the
  // change log that tells other processes and relays what changed. Triggers fill the log, so
  // every writer records its changes (the PostgreSQL dialect NOTIFYs instead); the log keeps the
  // last 100,000 changes, enough for a reader polling every 250 ms through a reconnect storm.
  `
  CREATE TABLE relays (
    id           TEXT    PRIMARY KEY,
    mesh_url     TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
  );
  CREATE TABLE device_links (
    device_id   INTEGER PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    relay_id    TEXT    REFERENCES relays(id) ON DELETE SET NULL,
    generation  INTEGER NOT NULL,
    since       INTEGER NOT NULL
  );
  CREATE INDEX device_links_relay ON device_links(relay_id);
  CREATE TABLE change_log (
    seq         INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL,
    account_id  INTEGER,
    device_id   INTEGER,
    ref         TEXT,
    num         INTEGER
  );
  CREATE TRIGGER change_log_bounded AFTER INSERT ON change_log BEGIN
    DELETE FROM change_log WHERE seq <= NEW.seq - 100000;
  END;
  CREATE TRIGGER keys_added AFTER INSERT ON keys BEGIN
    INSERT INTO change_log (kind, account_id, ref) VALUES ('keys', NEW.account_id, NEW.id);
  END;
  CREATE TRIGGER keys_revoked AFTER UPDATE OF revoked_at ON keys
  WHEN NEW.revoked_at IS NOT OLD.revoked_at BEGIN
    INSERT INTO change_log (kind, account_id, ref) VALUES ('keys', NEW.account_id, NEW.id);
  END;
  CREATE TRIGGER keys_removed AFTER DELETE ON keys BEGIN
    INSERT INTO change_log (kind, account_id, ref) VALUES ('keys', OLD.account_id, OLD.id);
  END;
  CREATE TRIGGER shares_added AFTER INSERT ON shares BEGIN
    INSERT INTO change_log (kind, account_id, num) VALUES ('shares', NEW.owner_id, NEW.id);
  END;
  CREATE TRIGGER shares_removed AFTER DELETE ON shares BEGIN
    INSERT INTO change_log (kind, account_id, num) VALUES ('shares', OLD.owner_id, OLD.id);
  END;
  CREATE TRIGGER devices_added AFTER INSERT ON devices BEGIN
    INSERT INTO change_log (kind, account_id, device_id) VALUES ('devices', NEW.account_id, NEW.id);
  END;
  CREATE TRIGGER devices_renamed AFTER UPDATE OF name ON devices WHEN NEW.name IS NOT OLD.name
  BEGIN
    INSERT INTO change_log (kind, account_id, device_id) VALUES ('devices', NEW.account_id, NEW.id);
  END;
  CREATE TRIGGER devices_removed AFTER DELETE ON devices BEGIN
    INSERT INTO change_log (kind, account_id, device_id) VALUES ('devices', OLD.account_id, OLD.id);
  END;
  CREATE TRIGGER props_added AFTER INSERT ON props BEGIN
    INSERT INTO change_log (kind, account_id, device_id, ref) VALUES
      ('props', (SELECT account_id FROM devices WHERE id = NEW.device_id), NEW.device_id, NEW.key);
  END;
  CREATE TRIGGER props_changed AFTER UPDATE ON props
  WHEN NEW.value IS NOT OLD.value OR NEW.updated_at IS NOT OLD.updated_at BEGIN
    INSERT INTO change_log (kind, account_id, device_id, ref) VALUES
      ('props', (SELECT account_id FROM devices WHERE id = NEW.device_id), NEW.device_id, NEW.key);
  END;
  CREATE TRIGGER events_added AFTER INSERT ON events BEGIN
    INSERT INTO change_log (kind, account_id, num) VALUES ('events', NEW.account_id, NEW.id);
  END;
  CREATE TRIGGER links_added AFTER INSERT ON device_links BEGIN
    INSERT INTO change_log (kind, device_id, ref, num)
      VALUES ('links', NEW.device_id, NEW.relay_id, NEW.generation);
  END;
  CREATE TRIGGER links_changed AFTER UPDATE ON device_links
  WHEN NEW.relay_id IS NOT OLD.relay_id OR NEW.generation IS NOT OLD.generation BEGIN
    INSERT INTO change_log (kind, device_id, ref, num)
      VALUES ('links', NEW.device_id, NEW.relay_id, NEW.generation);
  END;
  `,
  // 6: dashboard sessions (src/relay/dashboard): the SHA-256 of each session's cookie secret, the
  // key it was opened with (a session dies with its key: revoked keys are checked on every use,
  // deleted keys take their sessions along), and when it ends.
  `
  CREATE TABLE sessions (
    hash        BLOB    NOT NULL PRIMARY KEY,
    key_id      TEXT    NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
  );
  CREATE INDEX sessions_key ON sessions(key_id, created_at);
  CREATE INDEX sessions_expires ON sessions(expires_at);
  `,
];
