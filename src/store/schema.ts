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
];
