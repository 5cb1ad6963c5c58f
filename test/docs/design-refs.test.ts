// The code cites the design by section ("DESIGN.md §3.4"); the design is
// docs/DESIGN.md in this repository. Every cited section must exist there, so
// a reader of the repository alone can follow every citation.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "@paygate/testkit";

const CITATION = /DESIGN\.md §\s?([0-9]+[a-z]?(?:\.[0-9]+)*)/g;
const TEXT_FILES = /\.(ts|mjs|js|md|ya?ml|tpl|sh|json|proto)$|Makefile$/;

function sections(design: string): Set<string> {
  const ids = new Set<string>();
  for (const m of design.matchAll(/^#{2,4}\s+([0-9]+[a-z]?(?:\.[0-9]+)*)\.?\s/gm)) ids.add(m[1]!);
  return ids;
}

test("every DESIGN.md section the repository cites exists in docs/DESIGN.md", () => {
  const root = repoRoot;
  const design = readFileSync(join(root, "docs/DESIGN.md"), "utf8");
  const known = sections(design);
  assert.ok(known.has("3.4") && known.has("3b"), "docs/DESIGN.md has numbered sections");
  // Tracked and new (not ignored) files, as a clone has them.
  const files = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard"], {
    cwd: root,
    encoding: "utf8",
  })
    .split("\n")
    .filter((f) => TEXT_FILES.test(f) && !f.startsWith("packages/proto/src/gen/"));
  const missing: string[] = [];
  let citations = 0;
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(join(root, f), "utf8");
    } catch {
      continue; // deleted in the working tree
    }
    for (const m of text.matchAll(CITATION)) {
      citations++;
      if (!known.has(m[1]!)) missing.push(`${f}: §${m[1]}`);
    }
    assert.ok(
      f === "test/docs/design-refs.test.ts" || !text.includes(["..", "shared", "DESIGN.md"].join("/")),
      `${f} points outside the repository for the design`,
    );
  }
  assert.ok(citations > 20, `found ${citations} citations: the scan works`);
  assert.deepEqual(missing, [], "cited sections missing from docs/DESIGN.md");
});

test("the section finder reads the headings it should (a test for the test)", () => {
  const ids = sections(
    "# t\n## 3. Two-phase commit\n### 3.4 Presumed abort\n## 3b. Replicas\n#### 10.2 Group commit\n",
  );
  assert.deepEqual([...ids].sort(), ["10.2", "3", "3.4", "3b"]);
});
