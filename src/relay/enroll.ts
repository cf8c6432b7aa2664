/**
 * Enrolment and clones. A daemon enrols with the account's device key and a credential it made
 * itself, plus the fingerprint of the machine it runs on. A credential presented later from a
 * machine with another fingerprint is a copy of that device's state (a cloned disk image, a
 * copied state directory): the relay refuses it with 409 `clone`, and the copy asks, with the
 * original's credential as proof, to be enrolled as a new device whose parent is the original.
 */
import { CloneDetected, ConflictError, type DeviceRecord, type KeyInfo } from "../store/types.ts";
import { hashSecret } from "../store/hash.ts";
import { type Cloned, type Enrolled, parseClone, parseEnroll } from "../protocol/api.ts";
import { HttpError, json, readJson } from "./http.ts";
import type { RelayContext } from "./context.ts";

/** The 409 a copied credential gets; the daemon reacts by asking for a clone. */
export function cloneRefusal(original: DeviceRecord): HttpError {
  return new HttpError(
    409,
    `this state was copied from device "${original.name}" on another machine; ` +
      `enrol the copy as a new device`,
    { "x-od-clone-of": original.name },
  );
}

/** POST /v1/enroll: a device key registers a new device with a credential it generated. */
export async function enroll(ctx: RelayContext, key: KeyInfo, req: Request): Promise<Response> {
  const { credential, id, fingerprint } = parseEnroll(await readJson(req, 4096));
  try {
    const { device, created } = await ctx.store.devices.enroll({
      accountId: key.accountId,
      name: id,
      credentialHash: hashSecret(credential),
      enrolledBy: key.id,
      fingerprint,
    });
    if (created) await ctx.events.emit(device.accountId, device.name, "enrolled", { key: key.id });
    const result: Enrolled = { device: device.name, account: device.account };
    return json(result, created ? 201 : 200);
  } catch (err) {
    if (err instanceof ConflictError) throw new HttpError(409, err.message);
    if (err instanceof CloneDetected) throw cloneRefusal(err.original);
    throw err;
  }
}

/**
 * POST /v1/clone, authenticated with the original's credential: enrols the copy as a child
 * with a fresh random id and the new credential it generated. Idempotent on that credential,
 * so a copy killed mid-way simply asks again.
 */
export async function clone(ctx: RelayContext, original: DeviceRecord, req: Request) {
  const { credential, fingerprint } = parseClone(await readJson(req, 4096));
  if (fingerprint === original.fingerprint) {
    throw new HttpError(400, `this is device "${original.name}" itself, not a copy of it`);
  }
  let result;
  try {
    result = await ctx.store.devices.enroll({
      accountId: original.accountId,
      name: null,
      credentialHash: hashSecret(credential),
      enrolledBy: `clone of ${original.name}`,
      parent: original.name,
      fingerprint,
    });
  } catch (err) {
    // The new credential is already another account's device: not a copy of this one.
    if (err instanceof ConflictError) throw new HttpError(409, err.message);
    if (err instanceof CloneDetected) throw cloneRefusal(err.original);
    throw err;
  }
  const { device, created } = result;
  if (created) {
    await ctx.events.emit(device.accountId, device.name, "clone", { parent: original.name });
  }
  const answer: Cloned = { device: device.name, account: device.account, parent: original.name };
  return json(answer, created ? 201 : 200);
}
