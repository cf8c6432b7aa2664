/** The relay's store: one SQLite file with accounts, keys and devices. */
import type { DatabaseSync } from "node:sqlite";
import { integrityCheck, openDatabase, statement } from "./db.ts";
import { Accounts } from "./accounts.ts";
import { Devices } from "./devices.ts";
import { Props } from "./props.ts";
import { Events } from "./events.ts";
import { Shares } from "./shares.ts";
import { Audit } from "./audit.ts";
import { Sessions } from "./sessions_sync.ts";

/** An open store; close it when done. */
export class Store {
  readonly accounts: Accounts;
  readonly devices: Devices;
  readonly props: Props;
  readonly events: Events;
  readonly shares: Shares;
  readonly audit: Audit;
  readonly sessions: Sessions;
  readonly #db: DatabaseSync;

  private constructor(db: DatabaseSync) {
    this.#db = db;
    this.accounts = new Accounts(db);
    this.devices = new Devices(db);
    this.props = new Props(db);
    this.events = new Events(db);
    this.shares = new Shares(db);
    this.audit = new Audit(db);
    this.sessions = new Sessions(db);
  }

  /** Opens (and with `create`, creates) the store in `dataDir`, migrating it if needed. */
  static open(dataDir: string, create = true): Store {
    return new Store(openDatabase(dataDir, create));
  }

  /** "ok" when SQLite finds the file sound. */
  integrity(): string {
    return integrityCheck(this.#db);
  }

  /** Changes whenever another connection (such as `od admin`) commits to the file. */
  dataVersion(): number {
    return (statement(this.#db, "PRAGMA data_version").get() as { data_version: number })
      .data_version;
  }

  /** Closes the database. */
  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
