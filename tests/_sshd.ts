/**
 * A real OpenSSH server for tests: started from a temporary sshd_config with a fresh host key,
 * on 127.0.0.1, accepting one fresh client key for root. sshd cannot listen on port 0, so a
 * free port is found by binding port 0 and releasing it, retrying if another process wins it.
 */
import { Proc } from "./_harness.ts";
import {
  type AccountKeys,
  addAccount,
  clientEnv,
  type Relay,
  startDaemon,
  startRelay,
} from "./_fleet.ts";

/** A running sshd. */
export interface Sshd extends AsyncDisposable {
  port: number;
  /** The client private key that may log in as root. */
  clientKey: string;
  /** The current host public key file. */
  hostKeyPub: string;
  /** Restarts sshd on the same port with a newly generated host key. */
  swapHostKey(): Promise<void>;
  stop(): Promise<void>;
}

async function keygen(path: string): Promise<void> {
  await Deno.remove(path).catch(() => {});
  await Deno.remove(`${path}.pub`).catch(() => {});
  const out = await new Deno.Command("ssh-keygen", {
    args: ["-q", "-t", "ed25519", "-N", "", "-f", path],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (out.code !== 0) throw new Error(`ssh-keygen: ${new TextDecoder().decode(out.stderr)}`);
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function config(dir: string, port: number, hostKey: string): string {
  return [
    `Port ${port}`,
    "ListenAddress 127.0.0.1",
    `HostKey ${hostKey}`,
    `PidFile ${dir}/sshd.pid`,
    `AuthorizedKeysFile ${dir}/authorized_keys`,
    "StrictModes no", // the temp dir is not owned the way sshd insists on for homes
    "UsePAM no",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PermitRootLogin prohibit-password",
    "AllowTcpForwarding yes",
    "PrintMotd no",
    "PrintLastLog no",
    "UseDNS no",
    "Subsystem sftp internal-sftp",
    "",
  ].join("\n");
}

async function launch(dir: string, port: number, hostKey: string, netns?: string): Promise<Proc> {
  await Deno.writeTextFile(`${dir}/sshd_config`, config(dir, port, hostKey));
  await Deno.mkdir("/run/sshd", { recursive: true }); // privilege separation directory
  const args = ["-D", "-e", "-f", `${dir}/sshd_config`];
  const proc = netns
    ? new Proc("sshd", ["netns", "exec", netns, "/usr/sbin/sshd", ...args], { cmd: "ip" })
    : new Proc("sshd", args, { cmd: "/usr/sbin/sshd" });
  await proc.waitFor(/Server listening on 127\.0\.0\.1 port \d+/, 10_000).catch(async (err) => {
    await proc.stop();
    throw err;
  });
  return proc;
}

/** Starts sshd in `dir` (which it fills with keys and config), optionally inside `netns`. */
export async function startSshd(dir: string, netns?: string): Promise<Sshd> {
  await Deno.mkdir(dir, { recursive: true });
  const clientKey = `${dir}/client_key`;
  const hostKey = `${dir}/host_key`;
  await keygen(clientKey);
  await keygen(hostKey);
  await Deno.copyFile(`${clientKey}.pub`, `${dir}/authorized_keys`);
  let port = 0;
  let proc: Proc | null = null;
  for (let attempt = 0; attempt < 5 && !proc; attempt++) {
    port = freePort();
    proc = await launch(dir, port, hostKey, netns).catch(() => null);
  }
  if (!proc) throw new Error("sshd did not start on any of 5 free ports");
  let current = proc;
  return {
    port,
    clientKey,
    hostKeyPub: `${hostKey}.pub`,
    async swapHostKey() {
      await current.stop();
      await keygen(hostKey);
      current = await launch(dir, port, hostKey, netns);
    },
    async stop() {
      await current.stop();
    },
    async [Symbol.asyncDispose]() {
      await current.stop();
    },
  };
}

/** A relay, an account, an sshd and a daemon exposing it as `ssh`, ready for od ssh. */
export interface SshFleet extends AsyncDisposable {
  relay: Relay;
  sshd: Sshd;
  daemon: Proc;
  keys: AccountKeys;
  /** Environment for od client commands. */
  env: Record<string, string>;
  /** ssh options every test passes: the client key, no user or system ssh_config. */
  sshArgs: string[];
  dir: string;
  /** Restarts the daemon (e.g. to report a new host key); resolves once it is connected. */
  restartDaemon(): Promise<void>;
}

/** Starts the whole path od ssh needs, in `dir`; `extra` services are exposed too. */
export async function startSshFleet(
  dir: string,
  extra: Record<string, number> = {},
): Promise<SshFleet> {
  const relay = await startRelay(`${dir}/data`);
  const keys = await addAccount(relay.dataDir, "acme");
  const sshd = await startSshd(`${dir}/sshd`);
  const daemonOptions = {
    key: keys.deviceKey,
    id: "edge-1",
    stateDir: `${dir}/state`,
    services: { ssh: sshd.port, ...extra },
    extraArgs: ["--host-key", sshd.hostKeyPub],
  };
  let daemon = await startDaemon(relay, daemonOptions);
  const fleet: SshFleet = {
    relay,
    sshd,
    daemon,
    keys,
    env: clientEnv(relay, keys.clientKey, `${dir}/config`),
    sshArgs: ["-F", "/dev/null", "-i", sshd.clientKey, "-o", "IdentitiesOnly=yes"],
    dir,
    async restartDaemon() {
      await daemon.stop();
      daemon = await startDaemon(relay, daemonOptions);
      fleet.daemon = daemon;
    },
    async [Symbol.asyncDispose]() {
      await daemon.stop();
      await sshd.stop();
      await relay.proc.stop();
    },
  };
  return fleet;
}
