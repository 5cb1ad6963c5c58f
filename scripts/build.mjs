// Bundles each service into dist/<service>.js with esbuild (fast start, no
// TypeScript loader at run time). Native modules stay external.
import { build } from "esbuild";
import { existsSync } from "node:fs";

const services = ["bank", "gateway", "paycli", "credit-bureau", "checkout"].filter((s) =>
  existsSync(`services/${s}/src/main.ts`),
);
await Promise.all(
  services.map((s) =>
    build({
      entryPoints: [`services/${s}/src/main.ts`],
      outfile: `dist/${s}.js`,
      bundle: true,
      platform: "node",
      target: "node20",
      format: "esm",
      sourcemap: true,
      external: ["better-sqlite3", "pino", "ioredis"],
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
      logLevel: "warning",
    }),
  ),
);
console.log(`built ${services.map((s) => `dist/${s}.js`).join(", ")}`);
