/**
 * The ssh options od adds so that the real ssh reaches devices through `od pipe` and checks
 * their host keys strictly against od's managed known_hosts, plus the quoting each layer needs:
 * ssh's `-o` tokenizer, the shell that runs ProxyCommand, and rsync's `-e` splitter.
 */
import { UsageError } from "../shared/errors.ts";
import { selfCommand } from "../cli/self.ts";
import { normalizeDeviceArg } from "../protocol/names.ts";
import { knownHostsPath } from "./known_hosts.ts";

/** Quotes a word for /bin/sh if it needs it. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_\-./=:,@+%]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Quotes a value for ssh's option parser (double quotes) and escapes its % tokens. */
function sshValue(value: string, tokens: boolean): string {
  const escaped = tokens ? value.replaceAll("%", "%%") : value;
  return /[\s"]/.test(escaped) ? `"${escaped.replaceAll('"', '\\"')}"` : escaped;
}

/** The ProxyCommand that runs this od's `pipe` for the host ssh was given (%n). */
export function proxyCommand(): string {
  const env = Deno.env.get("OD_CONFIG_DIR");
  const prefix = env ? `env OD_CONFIG_DIR=${shellQuote(env)} ` : "";
  return `${prefix}${selfCommand().replaceAll("%", "%%")} pipe %n ssh`;
}

/** `-o` options that route ssh through od with strict, od-managed host key checking. */
export function odSshOptions(alias: string | null): string[] {
  const opts = [
    `ProxyCommand=${proxyCommand()}`,
    ...(alias ? [`HostKeyAlias=${alias}`] : []),
    `UserKnownHostsFile=${sshValue(knownHostsPath(), true)}`,
    "GlobalKnownHostsFile=/dev/null",
    "StrictHostKeyChecking=yes",
    "CheckHostIP=no",
    "UpdateHostKeys=no",
  ];
  return opts.flatMap((o) => ["-o", o]);
}

/**
 * Checks that `host` names a device (`dev`, `account.dev`, optionally with `.od`) and returns
 * it lower-cased without the suffix; throws a usage error for anything else.
 */
export function deviceHost(host: string, tool: string): string {
  try {
    return normalizeDeviceArg(host);
  } catch {
    throw new UsageError(
      `od ${tool}: "${host}" is not a device; use DEV or ACCOUNT.DEV (see od list)`,
    );
  }
}

/** Splits an rsync `-e` command the way rsync does: spaces separate, quotes group, '' is '. */
export function splitRsyncCommand(command: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  for (let i = 0; i < command.length; i++) {
    const c = command[i];
    if (c === " ") {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else if (c === "'" || c === '"') {
      inWord = true;
      let j = i + 1;
      for (; j < command.length; j++) {
        if (command[j] !== c) word += command[j];
        else if (command[j + 1] === c) word += command[++j];
        else break;
      }
      i = j;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** Joins words into an rsync `-e` command, quoting where rsync's splitter needs it. */
export function joinRsyncCommand(words: string[]): string {
  return words.map((w) => /^[A-Za-z0-9_\-./=:,@+%]+$/.test(w) ? w : `'${w.replaceAll("'", "''")}'`)
    .join(" ");
}
