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
];
