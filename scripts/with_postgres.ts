/**
 * Runs a command with a PostgreSQL for the tests: `deno run -A scripts/with_postgres.ts CMD…`
 * starts one server (tests/_postgres.ts: initdb in a temporary directory, run as the `postgres`
 * system user), lets its role create databases, runs CMD with OD_TEST_STORE=postgres and the
 * server in OD_TEST_PG_HOST/PORT/USER/PASSWORD (tests/_test_store.ts reads them: each relay a
 * test starts gets a database of its own), then stops the server and exits with CMD's status.
 * scripts/test uses it when OD_TEST_STORE=postgres.
 */
import { havePostgres, startPostgres } from "../tests/_postgres.ts";

// A mesh test runs four relays (11 connections each) while other test files run beside it.
const MAX_CONNECTIONS = 400;

if (Deno.args.length === 0) {
  console.error("usage: deno run -A scripts/with_postgres.ts COMMAND [ARGS…]");
  Deno.exit(2);
}
if (!havePostgres()) {
  console.error("od: PostgreSQL 15 is not installed (scripts/test installs postgresql)");
  Deno.exit(1);
}
const pg = await startPostgres({ maxConnections: MAX_CONNECTIONS, createdb: true });
let code = 1;
try {
  const child = new Deno.Command(Deno.args[0], {
    args: Deno.args.slice(1),
    env: {
      OD_TEST_STORE: "postgres",
      OD_TEST_PG_HOST: "127.0.0.1",
      OD_TEST_PG_PORT: String(pg.port),
      OD_TEST_PG_USER: pg.user,
      OD_TEST_PG_PASSWORD: pg.password,
    },
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const stop = () => child.kill("SIGTERM");
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  code = (await child.status).code;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
} finally {
  await pg[Symbol.asyncDispose]();
}
Deno.exit(code);
