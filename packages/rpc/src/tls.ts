// Certificate files for mTLS. Servers and clients both present a certificate
// and trust only the paygate CA. Files are re-read when they change so that
// cert-manager rotations take effect without a restart.
import { readFileSync, watchFile, unwatchFile } from "node:fs";

export interface TlsFiles {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export function loadTls(files: TlsFiles): TlsMaterial {
  return { ca: readFileSync(files.caFile), cert: readFileSync(files.certFile), key: readFileSync(files.keyFile) };
}

/**
 * Calls onChange with fresh material whenever any of the files changes
 * (polling: works across the symlink swaps Kubernetes uses for secrets).
 * Returns a function that stops watching.
 */
export function watchTls(
  files: TlsFiles,
  onChange: (m: TlsMaterial) => void,
  onError: (e: unknown) => void,
  intervalMs = 2000,
): () => void {
  const paths = [files.caFile, files.certFile, files.keyFile];
  let pending: NodeJS.Timeout | undefined;
  const listener = () => {
    // Files of one rotation land one after another: settle before reading.
    clearTimeout(pending);
    pending = setTimeout(() => {
      try {
        onChange(loadTls(files));
      } catch (e) {
        onError(e);
      }
    }, 200);
  };
  for (const p of paths) watchFile(p, { interval: intervalMs, persistent: false }, listener);
  return () => {
    clearTimeout(pending);
    for (const p of paths) unwatchFile(p, listener);
  };
}
