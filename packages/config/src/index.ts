// Typed reading of environment-style settings. Each service's config.ts
// declares what it needs with these readers; every problem is collected and
// reported together, so a misconfigured deploy fails once with the full list.

export type Env = Readonly<Record<string, string | undefined>>;

export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    readonly service: string,
    readonly problems: readonly string[],
  ) {
    super(`${service}: invalid configuration:\n  - ${problems.join("\n  - ")}`);
  }
}

export interface ExitingProcess {
  readonly stderr: { write(text: string): unknown };
  exit(code: number): never;
}

/**
 * main.ts's first step: the service's typed config, or every problem on stderr
 * and exit code 2 (a misconfigured deploy fails once, with the full list).
 * Errors other than ConfigError are bugs and propagate.
 */
export function loadConfigOrExit<T>(load: (env: Env) => T, env: Env, proc: ExitingProcess = process): T {
  try {
    return load(env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    proc.stderr.write(`${e.message}\n`);
    return proc.exit(2);
  }
}

export interface IntOptions {
  readonly min?: number;
  readonly max?: number;
}

export interface EnvReader {
  string(name: string, fallback?: string): string;
  optional(name: string): string | undefined;
  int(name: string, fallback: number, options?: IntOptions): number;
  bool(name: string, fallback: boolean): boolean;
  list(name: string, fallback?: readonly string[]): string[];
  /** "a=x,b=y" → Map{a→x, b→y}. */
  map(name: string, fallback?: string): Map<string, string>;
  problem(message: string): void;
  /** Throws ConfigError with every problem seen, else returns the frozen config. */
  finish<T extends object>(config: T): Readonly<T>;
}

export function createEnvReader(service: string, env: Env): EnvReader {
  const problems: string[] = [];
  const raw = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };
  const reader: EnvReader = {
    string(name, fallback) {
      const v = raw(name) ?? fallback;
      if (v === undefined) {
        problems.push(`${name} is required`);
        return "";
      }
      return v;
    },
    optional: (name) => raw(name),
    int(name, fallback, options = {}) {
      const v = raw(name);
      if (v === undefined) return fallback;
      if (!/^-?\d+$/.test(v)) {
        problems.push(`${name} must be an integer, got ${JSON.stringify(v)}`);
        return fallback;
      }
      const n = Number(v);
      if (
        !Number.isSafeInteger(n) ||
        (options.min !== undefined && n < options.min) ||
        (options.max !== undefined && n > options.max)
      ) {
        problems.push(`${name} must be an integer in [${options.min ?? "-inf"}, ${options.max ?? "inf"}], got ${v}`);
        return fallback;
      }
      return n;
    },
    bool(name, fallback) {
      const v = raw(name)?.toLowerCase();
      if (v === undefined) return fallback;
      if (["1", "true", "yes", "on"].includes(v)) return true;
      if (["0", "false", "no", "off"].includes(v)) return false;
      problems.push(`${name} must be true or false, got ${JSON.stringify(v)}`);
      return fallback;
    },
    list(name, fallback = []) {
      const v = raw(name);
      if (v === undefined) return [...fallback];
      return v
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
    },
    map(name, fallback) {
      const out = new Map<string, string>();
      const v = raw(name) ?? fallback;
      if (v === undefined) return out;
      for (const part of v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)) {
        const i = part.indexOf("=");
        if (i <= 0 || i === part.length - 1) {
          problems.push(`${name}: expected name=value pairs separated by commas, got ${JSON.stringify(part)}`);
          continue;
        }
        out.set(part.slice(0, i), part.slice(i + 1));
      }
      return out;
    },
    problem: (message) => void problems.push(message),
    finish(config) {
      if (problems.length > 0) throw new ConfigError(service, problems);
      return Object.freeze(config);
    },
  };
  return reader;
}
