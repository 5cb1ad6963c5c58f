// The layering docs/ARCHITECTURE.md describes, checked on the import lines so
// it cannot rot silently: a domain that imports Connect or a database driver
// can no longer be tested without them, production code that imports a test
// fake ships it, a bench that reaches into a service's src/ breaks whenever
// that service is refactored, and services that import each other stop being
// separately deployable.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { repoRoot } from "@paygate/testkit";

interface Import {
  readonly file: string; // repository-relative
  readonly specifier: string;
  /** Repository-relative target of a relative specifier; undefined for a package. */
  readonly target: string | undefined;
}

// `import x from "m"`, `export { y } from "m"`, `import "m"`, `import("m")`; multi-line
// import lists end in `} from "m"`, so matching on `from "m"` covers them.
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']/g;

function tsFiles(dir: string): string[] {
  const abs = join(repoRoot, dir);
  return readdirSync(abs, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts") && !f.split(/[\\/]/).includes("node_modules"))
    .map((f) => join(dir, f));
}

function importsOf(file: string): Import[] {
  return importsOfText(file, readFileSync(join(repoRoot, file), "utf8"));
}

/** The imports of `text` as if it were `file` (the rules' own tests plant a file this way). */
function importsOfText(file: string, text: string): Import[] {
  const found: Import[] = [];
  for (const line of text.split("\n")) {
    // Only code lines: a comment may well name a forbidden module to explain why.
    if (/^\s*(\/\/|\*|\/\*)/.test(line)) continue;
    for (const m of line.matchAll(SPECIFIER)) {
      const specifier = m[1]!;
      const target = specifier.startsWith(".") ? normalize(join(dirname(file), specifier)) : undefined;
      found.push({ file, specifier, target });
    }
  }
  return found;
}

const isTest = (file: string) => file.endsWith(".test.ts");
const serviceOf = (path: string) => /^services\/([^/]+)\//.exec(path)?.[1];
const services = readdirSync(join(repoRoot, "services"));
const serviceSources = services.flatMap((s) => tsFiles(`services/${s}/src`));

test("no production file under services/*/src imports a test-support module", () => {
  const bad = serviceSources
    .filter((f) => !isTest(f))
    .flatMap(importsOf)
    .filter((i) => /(^|\/)test-support(\/|$)/.test(i.target ?? i.specifier))
    .map((i) => `${i.file}: ${i.specifier}`);
  assert.deepEqual(bad, [], "test fakes belong to services/<name>/test-support, imported by tests only");
});

// What the rules in domain/ must do without: the transport and the storage.
const DOMAIN_FORBIDDEN = [
  /^@connectrpc\//,
  /^@paygate\/rpc$/,
  /^@paygate\/proto(\/|$)/,
  /^better-sqlite3$/,
  /^pg$/,
  /^postgres$/,
  /^ioredis$/,
];

test("domain code imports neither Connect, the transport package nor a store driver", () => {
  const domainFiles = serviceSources.filter((f) => f.includes("/src/domain/") && !isTest(f));
  assert.ok(domainFiles.length > 20, "found the services' domain folders");
  const bad: string[] = [];
  for (const i of domainFiles.flatMap(importsOf)) {
    const leavesDomain = i.target !== undefined && !i.target.includes("/src/domain/");
    const forbidden = DOMAIN_FORBIDDEN.some((re) => re.test(i.specifier));
    if (forbidden || leavesDomain) bad.push(`${i.file}: ${i.specifier}`);
  }
  assert.deepEqual(
    bad,
    [],
    "domain/ depends on its ports (domain/*.ts) and the @paygate vocabulary, money and faults packages only",
  );
});

test("services never import each other", () => {
  const bad: string[] = [];
  for (const s of services) {
    for (const i of tsFiles(`services/${s}`).flatMap(importsOf)) {
      const other = i.target !== undefined ? serviceOf(i.target) : /^@paygate\/([^/]+)/.exec(i.specifier)?.[1];
      if (other !== undefined && other !== s && services.includes(other)) bad.push(`${i.file}: ${i.specifier}`);
    }
  }
  assert.deepEqual(bad, [], "services share @paygate/* packages and talk through the generated clients");
});

test("bench/ drives processes through packages, never a service's source", () => {
  const bad = tsFiles("bench")
    .flatMap(importsOf)
    .filter((i) => i.target !== undefined && !relative("bench", i.target).match(/^[^.]/))
    .map((i) => `${i.file}: ${i.specifier}`);
  assert.deepEqual(
    bad,
    [],
    "a micro-benchmark of one module lives in that service (services/<name>/bench); bench/ imports @paygate/* and its own files",
  );
});

// The simulator, the chaos and end-to-end tests and the benches use a service
// through the entry points its package.json exports on purpose
// (@paygate/gateway/domain, @paygate/bank/use-cases, .../test-support):
// a relative path into services/<name>/src or test-support couples them to
// the service's file layout, so a refactor inside it breaks them.
const SERVICE_INTERNALS = /^services\/[^/]+\/(src|test-support)(\/|$)/;
const reachesIntoService = (i: Import) => i.target !== undefined && SERVICE_INTERNALS.test(i.target);

// Files that still reach in, each waiting for its owner to switch it (the
// entry points they need exist); the test fails once one no longer does, so
// the list can only shrink.
const NOT_YET_SWITCHED: Readonly<Record<string, string>> = {
  "test/chaos/card-checks.ts": "the checkout's TRANSIENT_REASONS: needs an entry point of @paygate/checkout",
};

function serviceInternalsImportedBy(files: readonly string[], planted?: ReadonlyMap<string, string>): string[] {
  return files
    .flatMap((f) => (planted ? importsOfText(f, planted.get(f) ?? "") : importsOf(f)))
    .filter(reachesIntoService)
    .map((i) => `${i.file}: ${i.specifier}`);
}

test("the rule on service internals catches a relative import into src/ or test-support/, and only that", () => {
  // Written with FROM and IMPORT for the keywords, so this file's own lines do not break the rule.
  const code = (lines: readonly string[]) => lines.join("\n").replaceAll("FROM", "from").replaceAll("IMPORT", "import");
  const planted = new Map([
    [
      "test/sim/planted.ts",
      code([
        'import type { Leg } FROM "../../services/gateway/src/domain/ports.js";',
        "import {",
        "  createMemoryLedger,",
        '} FROM "../../services/bank/test-support/memory-ledger.js";',
        'const late = await IMPORT("../../services/bank/src/bank.js");',
        '// the old "../../services/gateway/src/banks.js" is named in a comment only',
        'import { createCoordinator } FROM "@paygate/gateway/domain";',
        'import { createRng } FROM "./rng.js";',
        'import { repoRoot } FROM "../../packages/testkit/src/index.js";',
      ]),
    ],
    ["bench/planted.ts", code(['export { fakes } FROM "../services/gateway/test-support/fakes.js";'])],
  ]);
  assert.deepEqual(serviceInternalsImportedBy([...planted.keys()], planted), [
    "test/sim/planted.ts: ../../services/gateway/src/domain/ports.js",
    "test/sim/planted.ts: ../../services/bank/test-support/memory-ledger.js",
    "test/sim/planted.ts: ../../services/bank/src/bank.js",
    "bench/planted.ts: ../services/gateway/test-support/fakes.js",
  ]);
});

test("test/ and bench/ use a service through its package's exports, never a relative path into its src/ or test-support/", () => {
  const files = [...tsFiles("test"), ...tsFiles("bench")];
  assert.ok(
    files.some((f) => f.startsWith("test/sim/")),
    "found the simulator",
  );
  const bad = serviceInternalsImportedBy(files);
  assert.deepEqual(
    bad.filter((b) => !(b.slice(0, b.indexOf(":")) in NOT_YET_SWITCHED)),
    [],
    "import @paygate/<service>/<entry> (services/<name>/package.json exports); add what you need to that entry point",
  );
  const stillReaching = new Set(bad.map((b) => b.slice(0, b.indexOf(":"))));
  assert.deepEqual(
    Object.keys(NOT_YET_SWITCHED).filter((f) => !stillReaching.has(f)),
    [],
    "these files no longer reach into a service: take them off NOT_YET_SWITCHED",
  );
});
