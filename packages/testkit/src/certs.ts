// Test certificates from the same script `make certs` uses. One CA per test
// run is shared by every suite (made once, atomically); a second, unrelated
// CA stands in for an attacker's certificates.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./paths.js";

const EXTRA = ["bank-c", "checkout", "paycli", "admin", "intruder"];

function makeOnce(dir: string): string {
  if (existsSync(join(dir, "DONE"))) return dir;
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(tmp, { recursive: true });
  execFileSync("bash", [join(repoRoot, "scripts/certs.sh"), tmp, ...EXTRA], { stdio: "ignore" });
  execFileSync("touch", [join(tmp, "DONE")]);
  try {
    renameSync(tmp, dir);
  } catch {
    // Another suite won the race; use its certificates.
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

/** The paygate test CA with certificates for every component and client. */
export function testCerts(): string {
  return makeOnce(join(repoRoot, ".tmp", "test-certs"));
}

/** A different CA with the same names: everything it signs must be refused. */
export function rogueCerts(): string {
  return makeOnce(join(repoRoot, ".tmp", "rogue-certs"));
}

export function tlsFilesFor(dir: string, name: string) {
  return { caFile: join(dir, "ca.crt"), certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) };
}

/** The same files as a service process reads them (its TLS_* settings). */
export function tlsEnvFor(dir: string, name: string): Record<"TLS_CA_FILE" | "TLS_CERT_FILE" | "TLS_KEY_FILE", string> {
  const tls = tlsFilesFor(dir, name);
  return { TLS_CA_FILE: tls.caFile, TLS_CERT_FILE: tls.certFile, TLS_KEY_FILE: tls.keyFile };
}
