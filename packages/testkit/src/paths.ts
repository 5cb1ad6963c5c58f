import { fileURLToPath } from "node:url";
import { resolve } from "node:path";

/** The repository root (packages/testkit/src/../../..). */
export const repoRoot = resolve(fileURLToPath(new URL("../../..", import.meta.url)));
