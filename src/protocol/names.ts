/** Names users type: device ids, account names, service names, and the `account.dev` form. */

const ID_RE = /^[a-z0-9]+(-[a-z0-9]+)*$/;
const SERVICE_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/;

/** Why a name is not a valid device id or account name, or null if it is. */
export function idProblem(value: string, what = "device ID"): string | null {
  if (value.length < 3 || value.length > 50) {
    return `${what} "${value.slice(0, 60)}" must be 3 to 50 characters long`;
  }
  if (!ID_RE.test(value.toLowerCase())) {
    return `${what} "${value}" may contain only letters, digits and single inner dashes`;
  }
  return null;
}

/** Lower-cases a device id or account name after checking it; throws RangeError if invalid. */
export function normalizeId(value: string, what = "device ID"): string {
  const problem = idProblem(value, what);
  if (problem) throw new RangeError(problem);
  return value.toLowerCase();
}

/** Why a service name is invalid, or null. Services are short lowercase words like `ssh`. */
export function serviceProblem(value: string): string | null {
  if (!SERVICE_RE.test(value)) {
    return `service name "${value.slice(0, 40)}" must be 1 to 32 of a-z, 0-9, _ and -, ` +
      `starting with a letter or digit`;
  }
  return null;
}

/** A device as a client names it: `dev` in its own account, or `account.dev`. */
export interface DeviceRef {
  account: string | null;
  device: string;
}

/** Parses `dev` or `account.dev`; throws RangeError with a sentence if malformed. */
export function parseDeviceRef(value: string): DeviceRef {
  const parts = value.split(".");
  if (parts.length > 2) throw new RangeError(`device "${value}" must be DEV or ACCOUNT.DEV`);
  if (parts.length === 2) {
    return { account: normalizeId(parts[0], "account name"), device: normalizeId(parts[1]) };
  }
  return { account: null, device: normalizeId(parts[0]) };
}

/** Formats a DeviceRef back to its shortest form for messages. */
export function formatDeviceRef(ref: DeviceRef): string {
  return ref.account ? `${ref.account}.${ref.device}` : ref.device;
}

/**
 * Normalizes a device as typed on a command line: `dev`, `account.dev`, either with the `.od`
 * suffix that ssh-config hosts carry, in any case. Returns `dev` or `account.dev` in lower case;
 * throws RangeError naming the value as typed.
 */
export function normalizeDeviceArg(typed: string): string {
  return formatDeviceRef(parseDeviceRef(typed.replace(/\.od$/i, "")));
}
