import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { parseSshArgs, splitUserHost, SshArgsError } from "./ssh_args.ts";
import { findScpOperands, findSftpDestination } from "./scp_args.ts";
import { findRsyncOperands } from "./rsync_args.ts";

const line = (args: string[]) => args.map((a) => JSON.stringify(a)).join(" ");

// [args, destinationIndex, host, user, port, command]; user and port are what the command line
// sets (ssh -G shows the same values, with root and 22 for null).
type SshCase = [string[], number | null, string | null, string | null, number | null, string[]];
const sshCases: SshCase[] = [
  [["dev"], 0, "dev", null, null, []],
  [["-o", "BatchMode=yes", "root@dev", "exit 7"], 2, "dev", "root", null, ["exit 7"]],
  [["-tt", "dev"], 1, "dev", null, null, []],
  [["-vvt", "dev", "top"], 1, "dev", null, null, ["top"]],
  [["-p", "2222", "dev"], 2, "dev", null, 2222, []],
  [["-p2222", "dev"], 1, "dev", null, 2222, []],
  [["-vp", "22", "dev"], 2, "dev", null, 22, []],
  [["-vvv", "-L", "8080:localhost:80", "dev"], 3, "dev", null, null, []],
  [["--", "dev", "ls", "--", "-la"], 1, "dev", null, null, ["ls", "--", "-la"]],
  [["-i", "key", "-J", "jump", "user@dev", "cmd"], 4, "dev", "user", null, ["cmd"]],
  [["ssh://root@dev:2222"], 0, "dev", "root", 2222, []],
  [["ssh://dev:"], 0, "dev", null, null, []],
  [["ssh://a%40b;x=y@dev"], 0, "dev", "a@b", null, []],
  [["ssh://a+b@dev/"], 0, "dev", "a b", null, []],
  [["-oProxyCommand=x", "dev"], 1, "dev", null, null, []],
  [["-lroot", "dev"], 1, "dev", "root", null, []],
  [["a@b@acme.pi1", "uptime"], 0, "acme.pi1", "a@b", null, ["uptime"]],
  // The first value given wins, wherever it comes from.
  [["-l", "alice", "bob@dev"], 2, "dev", "alice", null, []],
  [["bob@dev", "-l", "alice"], 0, "dev", "bob", null, []],
  [["-l", "a", "-l", "b", "dev"], 4, "dev", "a", null, []],
  [["-o", "User=carol", "-l", "alice", "dev"], 4, "dev", "carol", null, []],
  [["-l", "alice", "-oUSER=carol", "dev"], 3, "dev", "alice", null, []],
  [["-o", "User=carol", "bob@dev"], 2, "dev", "carol", null, []],
  [["-p", "1", "-p", "2", "dev"], 4, "dev", null, 1, []],
  [["-p", "22", "-p", "x", "dev"], 4, "dev", null, 22, []],
  [["-oPort=2200", "-p", "3", "dev"], 3, "dev", null, 2200, []],
  [["-o", "Port    =  2202", "dev"], 2, "dev", null, 2202, []],
  [["-o", 'port "2201"', "dev"], 2, "dev", null, 2201, []],
  [["-p", "2222", "ssh://dev:3333"], 2, "dev", null, 2222, []],
  [["ssh://dev:3333", "-p", "2222"], 0, "dev", null, 3333, []],
  // Options after the destination are ssh's until the first command word or "--".
  [["dev", "-p", "2222", "ls", "-p", "3"], 0, "dev", null, 2222, ["ls", "-p", "3"]],
  [["dev", "--", "-p", "3"], 0, "dev", null, null, ["-p", "3"]],
  [["dev1", "-v", "dev2"], 0, "dev1", null, null, ["dev2"]],
  [["-i", "--", "dev", "-p", "2"], 2, "dev", null, null, ["-p", "2"]],
  [["Bob@PI1"], 0, "PI1", "Bob", null, []],
  [["bob@"], 0, "", "bob", null, []],
  [["-P", "dev"], 1, "dev", null, null, []],
  [["-G", "dev"], 1, "dev", null, null, []],
  // ssh prints and exits before it needs a destination.
  [["-V"], null, null, null, null, []],
  [["-V", "-p"], null, null, null, null, []],
  [["-Q", "cipher", "-p"], null, null, null, null, []],
  [["dev", "-V"], null, null, null, null, []],
];

Deno.test("parseSshArgs() finds destination, user, port and command as ssh does", () => {
  for (const [args, destinationIndex, host, user, port, command] of sshCases) {
    const got = parseSshArgs(args);
    const { options: _, destinationUser: __, ...rest } = got;
    assertEquals(rest, { destinationIndex, host, user, port, command }, line(args));
  }
});

Deno.test("parseSshArgs() reports the destination's own user and every option", () => {
  const got = parseSshArgs(["-l", "alice", "-vp22", "bob@dev", "-o", "X=y", "ls"]);
  assertEquals(got.destinationUser, "bob");
  assertEquals(got.user, "alice");
  assertEquals(got.options, [
    { letter: "l", index: 0, value: "alice", valueIndex: 1 },
    { letter: "v", index: 2 },
    { letter: "p", index: 2, value: "22", valueIndex: 2 },
    { letter: "o", index: 4, value: "X=y", valueIndex: 5 },
  ]);
  assertEquals(parseSshArgs(["-P", "tag", "dev"], { tagOption: true }).host, "dev");
});

Deno.test("parseSshArgs() rejects what ssh rejects with one sentence", () => {
  const cases: [string[], string][] = [
    [[], "missing destination"],
    [["-p", "22", "--"], "missing destination"],
    [["-p"], "option -p needs a value"],
    [["dev", "-o"], "option -o needs a value"],
    [["-Q"], "option -Q needs a value"],
    [["-x", "-Z", "dev"], "unknown option -Z"],
    [["-1", "dev"], "unknown option -1"],
    [["-p", "0", "dev"], 'bad port "0"'],
    [["-p", "22x", "dev"], 'bad port "22x"'],
    [["-p", "22", "-o", "Port=abc", "dev"], 'bad port "abc"'],
    [["@dev"], 'missing user name before "@" in "@dev"'],
    [["ssh://dev/path"], 'an ssh:// URI cannot hold a path: "ssh://dev/path"'],
    [["ssh://@dev"], 'invalid ssh:// URI "ssh://@dev"'],
    [["ssh://dev:0"], 'invalid ssh:// URI "ssh://dev:0"'],
    [["ssh://a%zz@dev"], 'invalid ssh:// URI "ssh://a%zz@dev"'],
  ];
  for (const [args, message] of cases) {
    throws(() => parseSshArgs(args), { name: "SshArgsError", message }, line(args));
  }
  throws(() => parseSshArgs(["-P", "dev"], { tagOption: true }), SshArgsError);
});

Deno.test("splitUserHost() splits at the last @", () => {
  assertEquals(splitUserHost("pi1"), { host: "pi1" });
  assertEquals(splitUserHost("user@acme.pi1"), { user: "user", host: "acme.pi1" });
  assertEquals(splitUserHost("a@b@pi1"), { user: "a@b", host: "pi1" });
  assertEquals(splitUserHost("@pi1"), { user: "", host: "pi1" });
});

const scpCases: [string[], unknown[]][] = [
  [["file", "dev:/tmp/"], [{ index: 1, host: "dev", path: "/tmp/" }]],
  [["root@dev:/var/log/syslog", "."], [{
    index: 0,
    user: "root",
    host: "dev",
    path: "/var/log/syslog",
  }]],
  [["-P", "22", "-r", "dir", "bob@dev:"], [{ index: 4, user: "bob", host: "dev", path: "." }]],
  [["-3", "d1:a", "d2:b"], [{ index: 1, host: "d1", path: "a" }, {
    index: 2,
    host: "d2",
    path: "b",
  }]],
  [["-l", "100", "-o", "User=x", "a@b@dev:x", "."], [{
    index: 4,
    user: "a@b",
    host: "dev",
    path: "x",
  }]],
  [["@dev:p", "."], [{ index: 0, host: "dev", path: "p" }]],
  [["[::1]:p", "."], [{ index: 0, host: "::1", path: "p" }]],
  [["bob@[fe80::1%eth0]:p", "."], [{ index: 0, user: "bob", host: "fe80::1%eth0", path: "p" }]],
  [["scp://bob@dev:2222/rel", "."], [{
    index: 0,
    user: "bob",
    host: "dev",
    port: 2222,
    path: "rel",
  }]],
  [["scp://dev//abs", "scp://dev"], [
    { index: 0, host: "dev", path: "/abs" },
    { index: 1, host: "dev", path: "." },
  ]],
  [["./x:y", "/abs:x", ":x", "local"], []],
  [["src", "-r", "out"], []], // no permutation: "-r" is a source file
  [["--", "-file", "dev:"], [{ index: 2, host: "dev", path: "." }]],
];

Deno.test("findScpOperands() finds the remote operands as scp does", () => {
  for (const [args, want] of scpCases) assertEquals(findScpOperands(args), want, line(args));
  throws(() => findScpOperands(["dev:"]), { message: "scp needs a source and a target" });
  throws(() => findScpOperands(["-P"]), { message: "option -P needs a value" });
  throws(() => findScpOperands(["-Z", "a", "b"]), { message: "unknown option -Z" });
  throws(() => findScpOperands(["scp://a@dev:x/p", "."]), SshArgsError);
});

const sftpCases: [string[], unknown][] = [
  [["dev"], { index: 0, host: "dev" }],
  [["-b", "batch", "dev"], { index: 2, host: "dev" }],
  [["-P", "2", "-l", "100", "bob@dev:/tmp", "local"], {
    index: 4,
    user: "bob",
    host: "dev",
    path: "/tmp",
  }],
  [["sftp://bob@dev:2222/p"], { index: 0, user: "bob", host: "dev", port: 2222, path: "p" }],
  [["dev:22"], { index: 0, host: "dev", path: "22" }],
  [["a@b@dev"], { index: 0, user: "a@b", host: "dev" }],
  [["bob@[::1]"], { index: 0, user: "bob", host: "::1" }],
  [["@dev"], { index: 0, host: "@dev" }],
  [["bob@dev/22"], { index: 0, host: "bob@dev/22" }],
  [["-s", "sub", "--", "dev"], { index: 3, host: "dev" }],
  [["-D", "/usr/lib/openssh/sftp-server", "dev"], null],
  [["-h", "-P"], null],
];

Deno.test("findSftpDestination() finds the destination as sftp does", () => {
  for (const [args, want] of sftpCases) assertEquals(findSftpDestination(args), want, line(args));
  throws(() => findSftpDestination([]), { message: "missing destination" });
  throws(() => findSftpDestination(["dev", "-b", "x"]), { message: /at most one local path/ });
  throws(() => findSftpDestination(["bob@:p"]), { message: 'missing host name in "bob@:p"' });
});

// [args, remote operands as [index, user@host, path, daemon], rsh as [index, valueIndex, prefix, value]]
type RsyncCase = [
  string[],
  [number, string, string, boolean?][],
  [number, number, string, string]?,
];
const rsyncCases: RsyncCase[] = [
  [["-avz", "--exclude", "*.o", "build/", "dev:/opt/app/"], [[4, "dev", "/opt/app/"]]],
  [["-e", "ssh -i k", "src", "dev:dst"], [[3, "dev", "dst"]], [0, 1, "", "ssh -i k"]],
  [["--rsh=ssh", "src", "dev:"], [[2, "dev", "."]], [0, 0, "--rsh=", "ssh"]],
  [["--rsh", "ssh", "src", "dev:"], [[3, "dev", "."]], [0, 1, "", "ssh"]],
  [["-essh", "src", "dev:x"], [[2, "dev", "x"]], [0, 0, "-e", "ssh"]],
  [["-avze=ssh -p 2", "src", "dev:x"], [[2, "dev", "x"]], [0, 0, "-avze=", "ssh -p 2"]],
  [["-vze", "a", "-e", "b", "src", "dev:x"], [[5, "dev", "x"]], [2, 3, "", "b"]],
  [["-avzP", "bob@acme.pi1:logs/", "./logs"], [[1, "bob@acme.pi1", "logs/"]]],
  [["a@b@dev:x", "."], [[0, "a@b@dev", "x"]]],
  [["dev:x", ":y", "dev:z", "."], [[0, "dev", "x"], [1, "", "y"], [2, "dev", "z"]]],
  [["dev:x", ":y"], [[0, "dev", "x"], [1, "", "y"]]],
  [["dev:x"], [[0, "dev", "x"]]],
  [["src", "dev:x", "-e", "ssh"], [[1, "dev", "x"]], [2, 3, "", "ssh"]],
  [["--exclude", "-v", "-T", "--version", "src", "dev:x"], [[5, "dev", "x"]]],
  [["--", "-v", "dev:x"], [[2, "dev", "x"]]],
  [["-B", "1024", "-@1", "-M--fake-super", "-f", "- *.o", "src", "dev:x"], [[7, "dev", "x"]]],
  [["[::1]:x", "[::1]:y", "."], [[0, "::1", "x"], [1, "::1", "y"]]],
  [["src", "bob@[fe80::1]:y"], [[1, "bob@fe80::1", "y"]]],
  [["host:/a:b", "."], [[0, "host", "/a:b"]]],
  [["src", "dev::mod/x"], [[1, "dev", "mod/x", true]]],
  [["rsync://bob@dev:8730/mod/p", "."], [[0, "bob@dev", "mod/p", true]]],
  [["src", "RSYNC://dev"], [[1, "dev", "", true]]],
  [["-a", "src/", "/backup/", "./x:y", "a[1]:x"], []],
  [["src"], []],
  [["--version"], []],
  [["-h"], []],
  [["--read-batch=b", "dst"], []],
];

Deno.test("findRsyncOperands() finds remote operands and the remote shell as rsync does", () => {
  for (const [args, remote, rsh] of rsyncCases) {
    const got = findRsyncOperands(args);
    const operands = got.remote.map((r) => {
      const machine = r.user === undefined ? r.host : `${r.user}@${r.host}`;
      return r.daemon ? [r.index, machine, r.path, true] : [r.index, machine, r.path];
    });
    assertEquals(operands, remote, line(args));
    const want = rsh && { index: rsh[0], valueIndex: rsh[1], prefix: rsh[2], value: rsh[3] };
    assertEquals(got.rsh, want ?? null, line(args));
  }
  assertEquals(findRsyncOperands(["rsync://dev:873/m", "."]).remote[0].port, 873);
});

Deno.test("findRsyncOperands() rejects what rsync rejects with one sentence", () => {
  const cases: [string[], string][] = [
    [[], "missing source"],
    [["-av"], "missing source"],
    [["src", "dev:x", "-e"], "option -e needs a value"],
    [["src", "dev:x", "--exclude"], "option --exclude needs a value"],
    [["dev:x", "other:y"], "the source and destination cannot both be remote"],
    [["dev:x", "other:y", "."], "all source arguments must come from the same machine"],
    [["dev:x", "bob@dev:y", "."], "all source arguments must come from the same machine"],
    [["dev:x", "local", "."], 'unexpected local argument "local" after a remote source'],
    [["src", "dev:x", "dst"], 'unexpected remote argument "dev:x"'],
  ];
  for (const [args, message] of cases) {
    throws(() => findRsyncOperands(args), { name: "SshArgsError", message }, line(args));
  }
});
