/** Who is calling: turns a request's bearer secret into an account key or a device. */
import type { DeviceRecord, KeyInfo, Store } from "../store/types.ts";
import { type KeyRole, secretKind } from "../protocol/keys.ts";
import { hashSecret } from "../store/hash.ts";
import { bearer, HttpError } from "./http.ts";
import type { FailureLimiter } from "./ratelimit.ts";
import type { RequestAudit } from "./audit.ts";
import { metrics } from "./relay_metrics.ts";
import { log } from "../shared/log.ts";

const TOUCH_INTERVAL_MS = 60_000; // last_used_at is for people; once a minute is precise enough
const TOUCH_FLUSH_MS = 1_000; // keys used in the last second are touched in one transaction

/** Authentication against the store, throttled per address. */
export class Authenticator {
  #store: Store;
  #limiter: FailureLimiter;
  #touched = new Map<string, number>();
  #pending = new Set<string>();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(store: Store, limiter: FailureLimiter) {
    this.#store = store;
    this.#limiter = limiter;
  }

  #throttle(addr: string): void {
    const wait = this.#limiter.retryAfter(addr);
    if (wait > 0) {
      metrics.throttled.inc("auth");
      throw new HttpError(429, `too many failed authentication attempts; retry in ${wait} s`, {
        "retry-after": String(wait),
      });
    }
  }

  #fail(addr: string, status: number, message: string): never {
    this.#limiter.fail(addr);
    metrics.authFailures.inc();
    throw new HttpError(status, message);
  }

  /**
   * The account key presented, if its role is one of `roles`; 401/403/429 otherwise. Notes
   * the key in `audit` as soon as it is known, so a later refusal names who was refused.
   */
  async key(
    req: Request,
    addr: string,
    roles: KeyRole[],
    audit?: RequestAudit,
  ): Promise<KeyInfo> {
    this.#throttle(addr);
    const secret = bearer(req);
    if (!secret) this.#fail(addr, 401, "no key given: log in with od login or set OD_KEY");
    const kind = secretKind(secret);
    if (kind === null) this.#fail(addr, 401, "the key is not an od key");
    if (kind === "cred") {
      this.#fail(addr, 403, "a device credential cannot be used as an account key");
    }
    const key = await this.#store.accounts.findKey(secret);
    if (!key) this.#fail(addr, 401, "the key is not valid on this relay");
    if (audit) {
      audit.keyId = key.id;
      audit.accountId = key.accountId;
    }
    if (key.revokedAt !== null) this.#fail(addr, 401, `key ${key.id} has been revoked`);
    if (!roles.includes(key.role)) {
      throw new HttpError(
        403,
        `a ${key.role} key cannot do this; it needs a ${roles.join(" or ")} key`,
      );
    }
    this.#touch(key.id);
    return key;
  }

  /** The device whose credential is presented; 401/429 otherwise. */
  async device(req: Request, addr: string, audit?: RequestAudit): Promise<DeviceRecord> {
    this.#throttle(addr);
    const secret = bearer(req);
    if (!secret || secretKind(secret) !== "cred") {
      this.#fail(addr, 401, "no device credential given");
    }
    const device = await this.#store.devices.byCredential(hashSecret(secret));
    if (!device) {
      this.#fail(addr, 401, "the device credential is not known to this relay (device removed?)");
    }
    if (audit) {
      audit.accountId = device.accountId;
      audit.ownerId = device.accountId;
      audit.device = device.name;
    }
    return device;
  }

  #touch(id: string): void {
    const now = Date.now();
    if ((this.#touched.get(id) ?? 0) + TOUCH_INTERVAL_MS > now) return;
    this.#touched.set(id, now);
    if (this.#touched.size > 100_000) this.#touched.clear(); // a bound; forgetting only costs writes
    this.#pending.add(id);
    this.#timer ??= setTimeout(() => this.flush(), TOUCH_FLUSH_MS);
  }

  /** Writes the pending key uses (a store that is down loses them: they are only for people). */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const ids = [...this.#pending];
    this.#pending.clear();
    if (ids.length === 0) return;
    try {
      await this.#store.accounts.touchKeys(ids);
    } catch (err) {
      log.warn("cannot record key use", { keys: ids.length, error: err });
    }
  }
}
