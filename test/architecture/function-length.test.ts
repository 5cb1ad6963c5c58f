// Functions that carry logic stay short enough to read in one screen
// (TigerBeetle's TIGER_STYLE: 70 lines). A long function hides its steps; a
// named helper per step says what it does, and its inputs say what it needs.
//
// A function is measured by its OWN lines: its lines from the first to the
// last, minus the bodies of the functions nested in it (they are measured on
// their own), minus blank and comment-only lines. So a factory that returns
// many small methods counts only its own code, not its methods.
//
// Measured: every .ts under services/*/src and packages/*/src except tests
// (*.test.ts, and shared suites that import node:test, such as
// services/gateway/src/store/contract.ts) and generated code (gen/ folders,
// files marked @generated).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { repoRoot } from "@paygate/testkit";

const OWN_LINES_MAX = 70;

/**
 * Functions allowed to stay over the limit, each with why. Keep it short: an
 * entry whose function is back under the limit fails the test until removed.
 */
const ALLOWED: readonly { readonly file: string; readonly name: string; readonly reason: string }[] = [];

interface Measured {
  readonly name: string;
  /** 1-based line of the function's first line. */
  readonly line: number;
  readonly ownLines: number;
}

/** The name a reader would look for: the declaration's, or what it is assigned to. */
function nameOf(fn: ts.SignatureDeclaration): string {
  if (fn.name !== undefined) return fn.name.getText();
  const parent = fn.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent))
    return parent.name.getText();
  if (ts.isCallExpression(parent)) return `(callback of ${parent.expression.getText().split("\n")[0]?.trim()})`;
  return "(anonymous)";
}

const isCommentOrBlank = (line: string) => {
  const t = line.trim();
  return t === "" || t.startsWith("//") || t.startsWith("*") || t.startsWith("/*");
};

/** Every function in `text` with its own lines (see the top of this file). */
function measureFunctions(fileName: string, text: string): Measured[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const sourceLines = text.split("\n");
  const lineOf = (pos: number) => sf.getLineAndCharacterOfPosition(pos).line;
  const found: Measured[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && "body" in node && node.body !== undefined) {
      const first = lineOf(node.getStart());
      const last = lineOf(node.end);
      const own = new Set<number>();
      for (let i = first; i <= last; i++) own.add(i);
      // A nested function with a block body keeps its braces' lines here; its inside is its own.
      const dropNested = (inner: ts.Node): void => {
        if (ts.isFunctionLike(inner) && "body" in inner && inner.body !== undefined && ts.isBlock(inner.body)) {
          const from = lineOf(inner.body.getStart()) + 1;
          const to = lineOf(inner.body.end) - 1;
          for (let i = from; i <= to; i++) own.delete(i);
          return;
        }
        ts.forEachChild(inner, dropNested);
      };
      ts.forEachChild(node, dropNested);
      let ownLines = 0;
      for (const i of own) if (!isCommentOrBlank(sourceLines[i] ?? "")) ownLines++;
      found.push({ name: nameOf(node), line: first + 1, ownLines });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

/** The functions of `text` over the limit, as `file:line name (n own lines)`. */
function overLimit(fileName: string, text: string, allowed = ALLOWED): string[] {
  return measureFunctions(fileName, text)
    .filter((f) => f.ownLines > OWN_LINES_MAX)
    .filter((f) => !allowed.some((a) => a.file === fileName && a.name === f.name))
    .map((f) => `${fileName}:${f.line} ${f.name} (${f.ownLines} own lines)`);
}

const isGenerated = (file: string, text: string) =>
  file.split("/").includes("gen") || /^\s*\/\/\s*@generated\b/m.test(text.slice(0, 500));
const isTestCode = (file: string, text: string) => file.endsWith(".test.ts") || /from\s+["']node:test["']/.test(text);

function measuredSources(): { file: string; text: string }[] {
  const roots = [
    ...["services", "packages"].flatMap((top) =>
      readdirSync(join(repoRoot, top), { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => `${top}/${d.name}/src`),
    ),
    "test/sim",
    "bench",
  ];
  return roots.flatMap((root) => {
    let names: string[];
    try {
      names = readdirSync(join(repoRoot, root), { recursive: true, encoding: "utf8" });
    } catch {
      return []; // a package without src/
    }
    return names
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts") && !f.split(/[\\/]/).includes("node_modules"))
      .map((f) => `${root}/${f.split("\\").join("/")}`)
      .map((file) => ({ file, text: readFileSync(join(repoRoot, file), "utf8") }))
      .filter(({ file, text }) => !isGenerated(file, text) && !isTestCode(file, text));
  });
}

test(`no function under services/*/src or packages/*/src has more than ${OWN_LINES_MAX} own lines`, () => {
  const sources = measuredSources();
  assert.ok(sources.length > 100, `found only ${sources.length} source files: is the repository root right?`);
  const bad = sources.flatMap(({ file, text }) => overLimit(file, text));
  assert.deepEqual(bad, [], `split these into named helpers (one per step):\n${bad.join("\n")}`);
});

test("every allowlisted function is still over the limit (else its entry goes)", () => {
  const stale = ALLOWED.filter((a) => {
    const text = readFileSync(join(repoRoot, a.file), "utf8");
    return !measureFunctions(a.file, text).some((f) => f.name === a.name && f.ownLines > OWN_LINES_MAX);
  }).map((a) => `${a.file} ${a.name}`);
  assert.deepEqual(stale, [], `remove these from ALLOWED:\n${stale.join("\n")}`);
});

// The rule's own tests: planted sources show it can fail, and that it counts what it says it counts.

const statements = (n: number, indent = "  ") => Array.from({ length: n }, (_, i) => `${indent}x += ${i};`).join("\n");

test("a 71-line function is reported; a 70-line one is not", () => {
  // First line, 69 statements, closing brace: 71 lines.
  const long = `function tooLong(x: number) {\n${statements(69)}\n}\n`;
  const fits = `function fits(x: number) {\n${statements(68)}\n}\n`;
  assert.deepEqual(overLimit("planted.ts", long), ["planted.ts:1 tooLong (71 own lines)"]);
  assert.deepEqual(overLimit("planted.ts", fits), []);
  assert.equal(measureFunctions("planted.ts", fits)[0]?.ownLines, 70);
});

test("blank and comment lines do not count", () => {
  const body = Array.from({ length: 69 }, (_, i) => `  x += ${i};\n\n  // why\n  /* and\n   * more */`).join("\n");
  const text = `function commented(x: number) {\n${body}\n}\n`;
  assert.equal(measureFunctions("planted.ts", text)[0]?.ownLines, 71);
  const fits = `function commented(x: number) {\n${body.split("\n").slice(5).join("\n")}\n}\n`;
  assert.deepEqual(overLimit("planted.ts", fits), []);
});

test("a factory is measured by its own lines, its long method by its own", () => {
  const text = [
    "export function createThing() {",
    "  const state = { n: 0 };",
    "  return {",
    "    bump(x: number) {",
    statements(80, "      "),
    "    },",
    "    read: () => state.n,",
    "  };",
    "}",
  ].join("\n");
  const measured = measureFunctions("planted.ts", text);
  assert.deepEqual(
    measured.map((f) => [f.name, f.ownLines]),
    [
      ["createThing", 8],
      ["bump", 82],
      ["read", 1],
    ],
  );
  assert.deepEqual(overLimit("planted.ts", text), ["planted.ts:4 bump (82 own lines)"]);
});

test("an allowlisted function is not reported, in its own file only", () => {
  const long = `function tooLong(x: number) {\n${statements(80)}\n}\n`;
  const allowed = [{ file: "planted.ts", name: "tooLong", reason: "planted" }];
  assert.deepEqual(overLimit("planted.ts", long, allowed), []);
  assert.equal(overLimit("other.ts", long, allowed).length, 1);
});
