// The Helm chart, checked without a cluster: `helm lint` and `helm template`
// for each values case, every rendered object against the Kubernetes and
// cert-manager schemas (unknown fields fail), and the invariants that tie the
// chart to the code: identities, ports, env names, volumes, network reach.
//
//   node --import tsx --test test/chart/chart.test.ts
//
// helm is built from the Go module proxy by scripts/tools.sh on first use
// (about two minutes on 2 cores), then reused from .tools/bin.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parse, parseAllDocuments, stringify } from "yaml";
import { GATEWAY_IDENTITY, bankIdentity, clientIdentity } from "@paygate/rpc";
import { parseSeed } from "@paygate/seed";
import { GATEWAY_NODE_OPTIONS } from "@paygate/testkit";
import { SchemaError, validateAny, type K8sObject } from "./k8s-validate.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const CHART = join(ROOT, "deploy/helm/paygate");
const NAMESPACE = "paygate";
// operatorSecrets: Secrets a case names that the operator (or CloudNativePG) creates, not the chart.
const CASES: readonly { name: string; files: string[]; monitored: boolean; operatorSecrets: readonly string[] }[] = [
  { name: "default values", files: [], monitored: true, operatorSecrets: [] },
  {
    name: "three banks, two gateways on the bundled PostgreSQL, external Redis, no monitoring",
    files: [join(CHART, "ci/three-banks-external-redis-no-monitoring.yaml")],
    monitored: false,
    operatorSecrets: [],
  },
  {
    name: "three gateways on a CloudNativePG cluster",
    files: [join(CHART, "ci/three-gateways-cloudnativepg.yaml")],
    monitored: true,
    operatorSecrets: ["paygate-db-app", "paygate-db-ca"],
  },
];
const HELM_OUTPUT_MAX = 64 * 1024 * 1024;

// Env the chart sets that a service's loadConfig does not read, and why.
// OTel's SDK reads its own variables.
// Read by node itself (NODE_OPTIONS) or by the tracing SDK, not by loadConfig.
const READ_OUTSIDE_CONFIG = new Set(["OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT", "NODE_OPTIONS"]);
// The chart already sets these; the code does not read them yet. The test
// fails as soon as it does, so this list can only shrink: delete the entry.
// Every service reads all its env now; a new service lists here what it does not read yet.
const NOT_READ_YET: Readonly<Record<string, readonly string[]>> = {};
// Services whose code does not exist yet (no config.ts): the chart uses the
// ports DESIGN.md plans for them. Once config.ts exists its defaults rule
// and this table is ignored.
const PLANNED_PORTS: Readonly<Record<string, { readonly env: string; readonly port: number }>> = {
  "credit-bureau": { env: "CREDIT_BUREAU_PORT", port: 8081 },
  checkout: { env: "CHECKOUT_PORT", port: 8080 },
};
// The env var holding each service's main port (the code's own names).
const PORT_ENV: Readonly<Record<string, string>> = {
  gateway: "GATEWAY_PORT",
  bank: "BANK_PORT",
  "credit-bureau": "CREDIT_BUREAU_PORT",
  checkout: "CHECKOUT_PORT",
};

// ---------------------------------------------------------------- helm

let helm = "";

function ensureHelm(): string {
  // Progress (and the first build's timing) goes to stderr, which we pass through.
  const r = spawnSync("bash", [join(ROOT, "scripts/tools.sh"), "helm"], {
    cwd: ROOT,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  assert.equal(r.status, 0, "scripts/tools.sh helm failed: cannot build helm");
  const path = r.stdout.trim().split("\n").pop() ?? "";
  assert.ok(existsSync(path), `scripts/tools.sh printed ${JSON.stringify(path)}, which does not exist`);
  return path;
}

interface HelmResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runHelm(args: readonly string[]): HelmResult {
  const r = spawnSync(helm, args, {
    cwd: ROOT,
    encoding: "utf8",
    maxBuffer: HELM_OUTPUT_MAX,
    env: {
      ...process.env,
      HELM_CACHE_HOME: join(ROOT, ".tools/helm/cache"),
      HELM_CONFIG_HOME: join(ROOT, ".tools/helm/config"),
      HELM_DATA_HOME: join(ROOT, ".tools/helm/data"),
    },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function valueArgs(files: readonly string[], set: readonly string[] = []): string[] {
  return [...files.flatMap((f) => ["-f", f]), ...set.flatMap((s) => ["--set", s])];
}

function template(files: readonly string[], set: readonly string[] = []): HelmResult {
  return runHelm(["template", "paygate", CHART, "--namespace", NAMESPACE, ...valueArgs(files, set)]);
}

function render(files: readonly string[], set: readonly string[] = []): K8sObject[] {
  const r = template(files, set);
  assert.equal(r.status, 0, `helm template failed:\n${r.stderr}`);
  const docs = parseAllDocuments(r.stdout);
  for (const d of docs) assert.equal(d.errors.length, 0, `rendered YAML does not parse: ${d.errors.join("; ")}`);
  return docs.map((d) => d.toJS() as K8sObject | null).filter((o): o is K8sObject => o !== null);
}

// ---------------------------------------------------------------- object model helpers

interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: {
    readonly fieldRef?: { readonly fieldPath: string };
    readonly secretKeyRef?: { readonly name: string; readonly key: string };
  };
}
interface Port {
  readonly name?: string;
  readonly containerPort: number;
}
interface Probe {
  readonly httpGet?: { readonly path: string; readonly port: string | number };
}
interface Container {
  readonly name: string;
  readonly image: string;
  readonly command?: readonly string[];
  readonly env?: readonly EnvVar[];
  readonly ports?: readonly Port[];
  readonly readinessProbe?: Probe;
  readonly livenessProbe?: Probe;
  readonly volumeMounts?: readonly { readonly name: string; readonly mountPath: string; readonly subPath?: string }[];
  readonly securityContext?: {
    readonly readOnlyRootFilesystem?: boolean;
    readonly allowPrivilegeEscalation?: boolean;
    readonly runAsNonRoot?: boolean;
    readonly capabilities?: { readonly drop?: readonly string[] };
    readonly seccompProfile?: { readonly type: string };
  };
}
interface Volume {
  readonly name: string;
  readonly secret?: {
    readonly secretName: string;
    readonly items?: readonly { readonly key: string; readonly path: string }[];
  };
  readonly persistentVolumeClaim?: { readonly claimName: string };
}
interface PodSpec {
  readonly containers: readonly Container[];
  readonly volumes?: readonly Volume[];
  readonly enableServiceLinks?: boolean;
  readonly automountServiceAccountToken?: boolean;
  readonly securityContext?: { readonly runAsNonRoot?: boolean; readonly seccompProfile?: { readonly type: string } };
}
interface Workload {
  readonly kind: "StatefulSet" | "Deployment";
  readonly name: string;
  readonly replicas: number;
  readonly labels: Record<string, string>;
  readonly pod: PodSpec;
  readonly obj: K8sObject;
}
interface NetworkPolicyPeer {
  readonly podSelector?: { readonly matchLabels?: Record<string, string>; readonly matchExpressions?: unknown[] };
  readonly namespaceSelector?: unknown;
  readonly ipBlock?: unknown;
}
interface NetworkPolicyRule {
  readonly ports?: readonly { readonly port?: number | string; readonly protocol?: string }[];
  readonly from?: readonly NetworkPolicyPeer[];
}

const spec = (o: K8sObject): Record<string, any> => (o.spec ?? {}) as Record<string, any>;
const ofKind = (objs: readonly K8sObject[], kind: string): K8sObject[] => objs.filter((o) => o.kind === kind);

function workloads(objs: readonly K8sObject[]): Workload[] {
  return objs
    .filter((o) => o.kind === "StatefulSet" || o.kind === "Deployment")
    .map((o) => ({
      kind: o.kind as Workload["kind"],
      name: o.metadata.name,
      replicas: Number(spec(o).replicas ?? 1),
      labels: (spec(o).template?.metadata?.labels ?? {}) as Record<string, string>,
      pod: spec(o).template.spec as PodSpec,
      obj: o,
    }));
}

/** The paygate service a container runs (`node dist/<service>.js`), or undefined (Redis). */
function serviceOf(c: Container): string | undefined {
  const m = c.command?.join(" ").match(/^node dist\/([a-z-]+)\.js$/);
  return m?.[1];
}

function paygateContainers(objs: readonly K8sObject[]): { w: Workload; c: Container; service: string }[] {
  return workloads(objs).flatMap((w) =>
    w.pod.containers.flatMap((c) => (serviceOf(c) ? [{ w, c, service: serviceOf(c)! }] : [])),
  );
}

function envOf(c: Container, podName: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.fieldRef?.fieldPath === "metadata.name") env[e.name] = podName;
    else assert.fail(`${c.name}: env ${e.name} has a source this test cannot resolve`);
  }
  return env;
}

function portNamed(c: Container, name: string): number {
  const p = c.ports?.find((x) => x.name === name);
  assert.ok(p, `${c.name} has no port named ${name}`);
  return p.containerPort;
}

function mainPortName(service: string): string {
  return service === "checkout" ? "http" : "rpc";
}

function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}

function certificates(objs: readonly K8sObject[]): Map<string, Record<string, any>> {
  return new Map(ofKind(objs, "Certificate").map((c) => [spec(c).secretName as string, spec(c)]));
}

function urlMap(value: string | undefined): Map<string, URL> {
  return new Map(
    (value ?? "")
      .split(",")
      .filter(Boolean)
      .map((kv) => {
        const i = kv.indexOf("=");
        return [kv.slice(0, i), new URL(kv.slice(i + 1))];
      }),
  );
}

function tlsSecretOf(w: Workload): string {
  const c = w.pod.containers[0]!;
  const mount = c.volumeMounts?.find((m) => m.mountPath === "/etc/paygate/tls");
  assert.ok(mount, `${w.name} mounts no certificate at /etc/paygate/tls`);
  const vol = w.pod.volumes?.find((v) => v.name === mount.name);
  assert.ok(vol?.secret, `${w.name}: volume ${mount.name} is not a Secret`);
  return vol.secret.secretName;
}

// ---------------------------------------------------------------- invariant checks (return problems)

/** Every NetworkPolicy rule that lets traffic reach `port` on pods labelled `labels` must come only from `allowed` pods. */
function reachProblems(
  objs: readonly K8sObject[],
  target: Workload,
  port: number,
  allowedLabels: Record<string, string>,
): string[] {
  const problems: string[] = [];
  const policies = ofKind(objs, "NetworkPolicy").filter((p) =>
    selects(spec(p).podSelector?.matchLabels, target.labels),
  );
  const ingressPolicies = policies.filter((p) => (spec(p).policyTypes ?? ["Ingress"]).includes("Ingress"));
  if (ingressPolicies.length === 0)
    return [`${target.name}: no NetworkPolicy selects it, so every pod can reach port ${port}`];
  const pods = workloads(objs);
  for (const p of ingressPolicies) {
    for (const rule of (spec(p).ingress ?? []) as NetworkPolicyRule[]) {
      if (!ruleCoversPort(rule, target, port)) continue;
      const where = `${p.metadata.name}: a rule opening port ${port} of ${target.name}`;
      if (!rule.from || rule.from.length === 0) {
        problems.push(`${where} allows every source`);
        continue;
      }
      for (const peer of rule.from) {
        if (peer.namespaceSelector !== undefined || peer.ipBlock !== undefined)
          problems.push(`${where} allows a namespace or IP block`);
        if (!peer.podSelector) continue;
        if (peer.podSelector.matchExpressions?.length) problems.push(`${where} uses matchExpressions (not checked)`);
        const matched = pods.filter((w) => selects(peer.podSelector!.matchLabels, w.labels));
        if (Object.keys(peer.podSelector.matchLabels ?? {}).length === 0) problems.push(`${where} allows every pod`);
        for (const w of matched) if (!selects(allowedLabels, w.labels)) problems.push(`${where} allows ${w.name}`);
      }
    }
  }
  return problems;
}

function portNameOf(w: Workload, port: number): string | undefined {
  return w.pod.containers.flatMap((c) => c.ports ?? []).find((p) => p.containerPort === port)?.name;
}

function ruleCoversPort(rule: NetworkPolicyRule, target: Workload, port: number): boolean {
  const ports = rule.ports ?? [];
  return (
    ports.length === 0 ||
    ports.some((x) => x.port === undefined || x.port === port || x.port === portNameOf(target, port))
  );
}

/**
 * Whether the policies let `source` pods open `port` on `target` pods: the
 * target's ingress rules, then the source's egress rules (by port). A peer
 * with a namespace selector or an IP block counts as letting it in, so a
 * "denied" answer is never a guess.
 */
function admits(objs: readonly K8sObject[], source: Workload, target: Workload, port: number): boolean {
  const policies = ofKind(objs, "NetworkPolicy");
  const applies = (p: K8sObject, w: Workload, type: string): boolean =>
    selects(spec(p).podSelector?.matchLabels, w.labels) && (spec(p).policyTypes ?? ["Ingress"]).includes(type);
  const ingress = policies.filter((p) => applies(p, target, "Ingress"));
  const peerAdmits = (peer: NetworkPolicyPeer): boolean =>
    peer.ipBlock !== undefined ||
    (peer.podSelector === undefined
      ? peer.namespaceSelector !== undefined
      : selects(peer.podSelector.matchLabels, source.labels));
  const inOk =
    ingress.length === 0 ||
    ingress.some((p) =>
      ((spec(p).ingress ?? []) as NetworkPolicyRule[]).some(
        (r) => ruleCoversPort(r, target, port) && (!r.from || r.from.length === 0 || r.from.some(peerAdmits)),
      ),
    );
  const egress = policies.filter((p) => applies(p, source, "Egress"));
  const outOk =
    egress.length === 0 ||
    egress.some((p) => ((spec(p).egress ?? []) as NetworkPolicyRule[]).some((r) => ruleCoversPort(r, target, port)));
  return inOk && outOk;
}

function secretProblems(objs: readonly K8sObject[], operatorSecrets: readonly string[] = []): string[] {
  const issued = new Set(ofKind(objs, "Certificate").map((c) => spec(c).secretName as string));
  const secrets = new Set([...ofKind(objs, "Secret").map((s) => s.metadata.name), ...operatorSecrets]);
  const problems: string[] = [];
  for (const w of workloads(objs)) {
    for (const v of w.pod.volumes ?? []) {
      if (!v.secret) continue;
      if (!issued.has(v.secret.secretName) && !secrets.has(v.secret.secretName)) {
        problems.push(
          `${w.name}: volume ${v.name} mounts Secret ${v.secret.secretName}, which no Certificate issues and the chart does not create`,
        );
      }
    }
  }
  return problems;
}

function claimProblems(objs: readonly K8sObject[]): string[] {
  const problems: string[] = [];
  for (const w of workloads(objs).filter((x) => x.kind === "StatefulSet")) {
    const claims = ((spec(w.obj).volumeClaimTemplates ?? []) as K8sObject[]).map((t) => t.metadata.name);
    if (claims.length === 0) problems.push(`StatefulSet ${w.name} has no volumeClaimTemplates`);
    for (const c of w.pod.containers) {
      const data = c.volumeMounts?.find((m) => m.mountPath === "/data");
      if (!data) problems.push(`${w.name}/${c.name} does not mount /data`);
      else if (!claims.includes(data.name))
        problems.push(`${w.name}/${c.name} mounts /data from ${data.name}, not from a volumeClaimTemplate`);
    }
  }
  return problems;
}

/** The chart's Secret values: name/key -> the decoded value. */
function secretValues(objs: readonly K8sObject[]): Map<string, string> {
  const values = new Map<string, string>();
  for (const secret of ofKind(objs, "Secret")) {
    for (const [k, v] of Object.entries((secret.data ?? {}) as Record<string, string>))
      values.set(`${secret.metadata.name}/${k}`, Buffer.from(v, "base64").toString("utf8"));
    for (const [k, v] of Object.entries((secret.stringData ?? {}) as Record<string, string>))
      values.set(`${secret.metadata.name}/${k}`, v);
  }
  return values;
}

/** Passwords and keys reach processes as files: none in an env value (literal or secretKeyRef), none in a database URL. */
function passwordProblems(objs: readonly K8sObject[]): string[] {
  const passwords = new Map(
    [...secretValues(objs)]
      .filter(([where]) => /password|secret|key/i.test(where.split("/")[1]!))
      .map(([where, v]) => [v, where]),
  );
  const problems: string[] = [];
  for (const w of workloads(objs)) {
    for (const c of w.pod.containers) {
      for (const e of c.env ?? []) {
        const where = `${w.name}/${c.name}: env ${e.name}`;
        const ref = e.valueFrom?.secretKeyRef;
        if (ref)
          problems.push(`${where} comes from Secret ${ref.name}/${ref.key}: mount the Secret and pass a *_FILE path`);
        if (e.value === undefined) continue;
        if (/PASSWORD$/.test(e.name)) problems.push(`${where} is a password in the pod spec`);
        for (const [password, from] of passwords)
          if (password.length >= 8 && e.value.includes(password))
            problems.push(`${where} contains the value of Secret ${from}`);
        if (/^postgres(ql)?:\/\//.test(e.value)) {
          const url = new URL(e.value);
          if (url.password !== "" || url.searchParams.has("password"))
            problems.push(`${where} is a database URL with a password in it`);
        }
      }
    }
  }
  return problems;
}

/** The Secret and key a file inside one of the container's mounts comes from, or a problem. */
function secretFileOf(w: Workload, c: Container, file: string): { secret: string; key: string } | string {
  const mount = c.volumeMounts?.find((m) => file.startsWith(`${m.mountPath}/`));
  const volume = mount && w.pod.volumes?.find((v) => v.name === mount.name);
  if (!mount || !volume?.secret) return `${w.name}/${c.name}: ${file} is not in a mounted Secret`;
  const path = file.slice(mount.mountPath.length + 1);
  const key = volume.secret.items ? volume.secret.items.find((i) => i.path === path)?.key : path;
  return key === undefined
    ? `${w.name}/${c.name}: Secret ${volume.secret.secretName} mounted at ${mount.mountPath} projects no ${path}`
    : { secret: volume.secret.secretName, key };
}

interface StoreView {
  readonly kind: string;
  readonly file?: string;
  readonly url?: string;
  readonly passwordFile?: string;
}

/**
 * The gateway's store as its own loadConfig reads the chart's env: SQLite on
 * the data volume (one replica), or PostgreSQL whose password and CA are
 * files from mounted Secrets; on the bundled server, the URL names its
 * Service, the user and database initdb made, and the very Secret initdb read.
 */
async function storeProblems(objs: readonly K8sObject[]): Promise<string[]> {
  const load = await loadConfigOf("gateway");
  assert.ok(load, "services/gateway/src/config.ts has no loadConfig");
  const ws = workloads(objs);
  const gateway = ws.find((w) => w.name === "gateway")!;
  const c = gateway.pod.containers[0]!;
  const env = envOf(c, "gateway-0");
  const store = load(env, "/app").store as StoreView;
  const problems: string[] = [];
  if (gateway.replicas > 1 && store.kind !== "postgres")
    problems.push(`${gateway.replicas} gateway replicas on a ${store.kind} store: each would keep its own decisions`);
  if (gateway.replicas > 1 && !env.REDIS_URL) problems.push(`${gateway.replicas} gateway replicas without REDIS_URL`);
  if (store.kind === "sqlite") {
    const claims = ((spec(gateway.obj).volumeClaimTemplates ?? []) as K8sObject[]).map((t) => t.metadata.name);
    const mount = c.volumeMounts?.find((m) => store.file!.startsWith(`${m.mountPath}/`));
    if (!mount || !claims.includes(mount.name))
      problems.push(`gateway: SQLite file ${store.file} is not on a volumeClaimTemplate`);
    return problems;
  }
  // Replicas hashing card numbers with different keys could not find each other's cards.
  const cardKeyFile = (load(env, "/app").cards as { cardSecretFile?: string }).cardSecretFile ?? "";
  const cardKey = secretFileOf(gateway, c, cardKeyFile);
  if (typeof cardKey === "string") problems.push(`the card key: ${cardKey}`);
  else {
    const value = secretValues(objs).get(`${cardKey.secret}/${cardKey.key}`);
    if (value !== undefined && !/^[0-9a-f]{64}$/.test(value.trim()))
      problems.push(`the card key in ${cardKey.secret}/${cardKey.key} is not 32 bytes of hex`);
  }
  const url = new URL(store.url!);
  const password = store.passwordFile ? secretFileOf(gateway, c, store.passwordFile) : undefined;
  if (typeof password === "string") problems.push(password);
  const ca = url.searchParams.get("sslrootcert");
  if (ca) {
    const from = secretFileOf(gateway, c, ca);
    if (typeof from === "string") problems.push(`sslrootcert: ${from}`);
  }
  const pg = ws.find((w) => w.name === "postgresql");
  if (!pg) return problems;
  const svc = ofKind(objs, "Service").find((s) => url.hostname === `${s.metadata.name}.${NAMESPACE}.svc`);
  if (!svc || spec(svc).clusterIP === "None" || !selects(spec(svc).selector, pg.labels))
    problems.push(`DATABASE_URL names ${url.hostname}, not the bundled server's Service`);
  else if (
    !spec(svc).ports.some(
      (p: { port: number; targetPort: string }) =>
        p.port === Number(url.port || 5432) && p.targetPort === portNameOf(pg, 5432),
    )
  )
    problems.push(`Service ${svc.metadata.name} does not forward port ${url.port} to the server`);
  const pgc = pg.pod.containers[0]!;
  const pgEnv = envOf(pgc, "postgresql-0");
  if (decodeURIComponent(url.username) !== pgEnv.POSTGRES_USER)
    problems.push(`DATABASE_URL user ${url.username}, initdb's ${pgEnv.POSTGRES_USER}`);
  if (decodeURIComponent(url.pathname.slice(1)) !== pgEnv.POSTGRES_DB)
    problems.push(`DATABASE_URL database ${url.pathname}, initdb's ${pgEnv.POSTGRES_DB}`);
  const initdb = secretFileOf(pg, pgc, pgEnv.POSTGRES_PASSWORD_FILE ?? "");
  if (typeof initdb === "string") problems.push(initdb);
  else if (password === undefined)
    problems.push("the bundled server has a password and the gateway no DATABASE_PASSWORD_FILE");
  else if (typeof password !== "string" && (password.secret !== initdb.secret || password.key !== initdb.key)) {
    problems.push(`the gateway reads ${password.secret}/${password.key}, initdb ${initdb.secret}/${initdb.key}`);
  }
  if (
    typeof initdb !== "string" &&
    !ofKind(objs, "Secret").some((s) => s.metadata.name === initdb.secret && initdb.key in ((s.data ?? {}) as object))
  ) {
    problems.push(`Secret ${initdb.secret} with key ${initdb.key} is not rendered`);
  }
  return problems;
}

// ---------------------------------------------------------------- the services' own config

type LoadConfig = (env: Record<string, string | undefined>, cwd?: string) => Record<string, unknown>;

async function loadConfigOf(service: string): Promise<LoadConfig | undefined> {
  const file = join(ROOT, "services", service, "src/config.ts");
  if (!existsSync(file)) return undefined;
  const mod = (await import(pathToFileURL(file).href)) as { loadConfig?: LoadConfig };
  assert.equal(typeof mod.loadConfig, "function", `${file} exports no loadConfig`);
  return mod.loadConfig;
}

/** Runs loadConfig over env, returning the config and the names it read. */
function loadRecording(
  load: LoadConfig,
  env: Record<string, string>,
): { config: Record<string, unknown>; read: Set<string> } {
  const read = new Set<string>();
  const proxy = new Proxy(env, {
    get(target, key) {
      if (typeof key === "string") read.add(key);
      return Reflect.get(target, key);
    },
  });
  return { config: load(proxy, "/app"), read };
}

/**
 * Feeds each container's rendered env to its service's own loadConfig: it
 * must load, read every variable the chart sets (a misspelled name would be
 * ignored silently at run time), and agree on ports and default timings.
 */
async function configProblems(objs: readonly K8sObject[]): Promise<{ problems: string[]; notes: string[] }> {
  const problems: string[] = [];
  const notes: string[] = [];
  for (const { w, c, service } of paygateContainers(objs)) {
    const env = envOf(c, w.kind === "StatefulSet" ? `${w.name}-0` : w.name);
    const port = portNamed(c, mainPortName(service));
    const portEnv = PORT_ENV[service];
    if (!portEnv) {
      problems.push(`${w.name}: no port variable known for ${service}`);
      continue;
    }
    if (env[portEnv] !== String(port))
      problems.push(`${w.name}: ${portEnv}=${env[portEnv]} but the containerPort is ${port}`);
    if (env.METRICS_PORT !== String(portNamed(c, "metrics")))
      problems.push(`${w.name}: METRICS_PORT=${env.METRICS_PORT} but the metrics port is ${portNamed(c, "metrics")}`);
    const load = await loadConfigOf(service);
    if (!load) {
      const planned = PLANNED_PORTS[service];
      if (!planned) problems.push(`${service} has no config.ts and no planned port`);
      else if (port !== planned.port) problems.push(`${service}: port ${port}, planned ${planned.port}`);
      notes.push(
        `${service}: no services/${service}/src/config.ts yet; port checked against the planned ${planned?.port}`,
      );
      continue;
    }
    let loaded: { config: Record<string, unknown>; read: Set<string> };
    try {
      loaded = loadRecording(load, env);
    } catch (e) {
      problems.push(`${w.name}: the chart's env does not load: ${(e as Error).message}`);
      continue;
    }
    const { config, read } = loaded;
    if (config.port !== port)
      problems.push(`${w.name}: config.port ${String(config.port)} but the containerPort is ${port}`);
    const pending = NOT_READ_YET[service] ?? [];
    for (const name of Object.keys(env)) {
      if (READ_OUTSIDE_CONFIG.has(name)) continue;
      if (pending.includes(name)) {
        if (read.has(name))
          problems.push(`${service} now reads ${name}: delete it from NOT_READ_YET in test/chart/chart.test.ts`);
        continue;
      }
      if (!read.has(name))
        problems.push(
          `${w.name}: the chart sets ${name}, which ${service}'s loadConfig never reads (a misspelled variable?)`,
        );
    }
    // The chart's ports and 2PC timings are the code's defaults.
    const defaults = load(
      Object.fromEntries(Object.entries(env).filter(([k]) => k !== portEnv && !/_(TIMEOUT|INTERVAL)_MS$/.test(k))),
      "/app",
    );
    if (defaults.port !== port)
      problems.push(`${service}: the chart's port ${port} is not the code's default ${String(defaults.port)}`);
    for (const key of ["prepareTimeoutMs", "commitTimeoutMs", "redriveIntervalMs", "resolveIntervalMs"]) {
      if (key in config && config[key] !== defaults[key])
        problems.push(`${service}: ${key} ${String(config[key])} is not the code's default ${String(defaults[key])}`);
    }
  }
  return { problems, notes };
}

function appVersion(): string {
  const chart = parse(readFileSync(join(CHART, "Chart.yaml"), "utf8")) as { appVersion: string };
  return String(chart.appVersion);
}

// ---------------------------------------------------------------- tests

before(() => {
  helm = ensureHelm();
});

describe("kubernetes-models catches what a typo would break", () => {
  let objs: K8sObject[] = [];
  before(() => {
    objs = render([]);
  });
  const clone = (o: K8sObject): any => structuredClone(o);

  test("a misspelled container field fails", () => {
    const sts = clone(workloads(objs).find((w) => w.name === "gateway")!.obj);
    sts.spec.template.spec.containers[0].imagePullPolcy = "IfNotPresent";
    assert.throws(
      () => validateAny(sts),
      (e: Error) => e instanceof SchemaError && /containers\[0\]\.imagePullPolcy/.test(e.message),
    );
  });
  test("a misspelled field deep in a probe fails", () => {
    const sts = clone(workloads(objs).find((w) => w.name === "gateway")!.obj);
    sts.spec.template.spec.containers[0].readinessProbe.httpGet.paht = "/readyz";
    assert.throws(() => validateAny(sts), /httpGet\.paht/);
  });
  test("a misspelled metadata field fails", () => {
    const svc = clone(ofKind(objs, "Service")[0]!);
    svc.metadata.lables = { a: "b" };
    assert.throws(() => validateAny(svc), /metadata\.lables/);
  });
  test("a misspelled Certificate field fails", () => {
    const cert = clone(ofKind(objs, "Certificate").find((c) => c.metadata.name === "gateway")!);
    cert.spec.usage = cert.spec.usages;
    delete cert.spec.usages;
    assert.throws(() => validateAny(cert), /spec\.usage\b/);
  });
  test("a wrong type or a bad enum fails", () => {
    const sts = clone(workloads(objs).find((w) => w.name === "gateway")!.obj);
    sts.spec.replicas = "two";
    assert.throws(() => validateAny(sts), SchemaError);
    const cert = clone(ofKind(objs, "Certificate").find((c) => c.metadata.name === "gateway")!);
    cert.spec.privateKey.algorithm = "DSA";
    assert.throws(() => validateAny(cert), SchemaError);
  });
  test("a misspelled ServiceMonitor field fails", () => {
    const sm = clone(ofKind(objs, "ServiceMonitor")[0]!);
    validateAny(sm);
    sm.spec.endpoints[0].intervall = "30s";
    assert.throws(() => validateAny(sm), /endpoints\[0\]\.intervall/);
  });
  test("a misspelled PrometheusRule field fails", () => {
    const rule = clone(ofKind(objs, "PrometheusRule")[0]!);
    validateAny(rule);
    rule.spec.groups[2].rules[0].fro = "1m";
    assert.throws(() => validateAny(rule), /rules\[0\]\.fro/);
  });
  test("a kind without a schema fails", () => {
    assert.throws(
      () => validateAny({ apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } }),
      /no schema/,
    );
  });
  test("labels, resource quantities and other maps are data, not fields", () => {
    const sts = clone(workloads(objs).find((w) => w.name === "gateway")!.obj);
    sts.metadata.labels["anything.example/at-all"] = "yes";
    sts.spec.template.spec.containers[0].resources.limits["example.com/gpu"] = "1";
    validateAny(sts);
  });
});

describe("the invariant checks can fail", () => {
  let objs: K8sObject[] = [];
  before(() => {
    objs = render([]);
  });
  const gatewayLabels = (o: readonly K8sObject[]): Record<string, string> =>
    workloads(o).find((w) => w.name === "gateway")!.labels;

  test("a bank policy opened to a namespace is caught", () => {
    const broken = structuredClone(objs) as any[];
    const np = broken.find((o) => o.kind === "NetworkPolicy" && o.metadata.name === "bank-a");
    np.spec.ingress[0].from.push({ namespaceSelector: {} });
    const bank = workloads(broken).find((w) => w.name === "bank-a")!;
    assert.match(reachProblems(broken, bank, 50051, gatewayLabels(broken)).join("\n"), /namespace/);
  });
  test("a bank policy that lets checkout in is caught", () => {
    const broken = structuredClone(objs) as any[];
    const np = broken.find((o) => o.kind === "NetworkPolicy" && o.metadata.name === "bank-a");
    np.spec.ingress[0].from[0].podSelector.matchLabels = { "app.kubernetes.io/part-of": "paygate" };
    const bank = workloads(broken).find((w) => w.name === "bank-a")!;
    assert.match(reachProblems(broken, bank, 50051, gatewayLabels(broken)).join("\n"), /allows checkout/);
  });
  test("a bank without a policy is caught", () => {
    const broken = objs.filter((o) => !(o.kind === "NetworkPolicy" && o.metadata.name === "bank-a"));
    const bank = workloads(broken).find((w) => w.name === "bank-a")!;
    assert.match(reachProblems(broken, bank, 50051, gatewayLabels(broken)).join("\n"), /no NetworkPolicy/);
  });
  test("a pod mounting a Secret nobody issues is caught", () => {
    const broken = structuredClone(objs) as any[];
    const sts = broken.find((o) => o.kind === "StatefulSet" && o.metadata.name === "gateway");
    sts.spec.template.spec.volumes.find((v: Volume) => v.name === "tls").secret.secretName = "gateway-tls-typo";
    assert.match(secretProblems(broken).join("\n"), /gateway-tls-typo/);
  });
  test("a variable the code never reads is caught", async () => {
    const broken = render([], []).map((o) => structuredClone(o) as any);
    const sts = broken.find((o) => o.kind === "StatefulSet" && o.metadata.name === "gateway");
    sts.spec.template.spec.containers[0].env.push({ name: "PREPARE_TIMEOUT", value: "5000" });
    assert.match(
      (await configProblems(broken)).problems.join("\n"),
      /sets PREPARE_TIMEOUT, which gateway's loadConfig never reads/,
    );
  });
  test("a port that is not the code's default is caught", async () => {
    const { problems } = await configProblems(render([], ["bank.port=50099"]));
    assert.match(problems.join("\n"), /bank: the chart's port 50099 is not the code's default 50051/);
  });
  test("env the code rejects is caught", async () => {
    const broken = render([], []).map((o) => structuredClone(o) as any);
    const sts = broken.find((o) => o.kind === "StatefulSet" && o.metadata.name === "bank-a");
    sts.spec.template.spec.containers[0].env.find((e: EnvVar) => e.name === "BANK_NAME").value = "Bank A";
    assert.match(
      (await configProblems(broken)).problems.join("\n"),
      /bank-a: the chart's env does not load: .*BANK_NAME must match/s,
    );
  });
  describe("on the bundled PostgreSQL", () => {
    let pgObjs: K8sObject[] = [];
    before(() => {
      pgObjs = render([], ["postgresql.bundled.enabled=true", "gateway.replicas=2"]);
    });
    const find = (o: readonly any[], kind: string, name: string): any =>
      o.find((x) => x.kind === kind && x.metadata.name === name);
    const gatewayEnv = (o: readonly any[]): EnvVar[] =>
      find(o, "StatefulSet", "gateway").spec.template.spec.containers[0].env;

    test("a PostgreSQL policy that lets banks in is caught", () => {
      const broken = structuredClone(pgObjs) as any[];
      find(broken, "NetworkPolicy", "postgresql").spec.ingress[0].from.push({
        podSelector: { matchLabels: { "paygate.local/role": "bank" } },
      });
      const ws = workloads(broken);
      const pg = ws.find((w) => w.name === "postgresql")!;
      assert.match(reachProblems(broken, pg, 5432, gatewayLabels(broken)).join("\n"), /allows bank-a/);
      assert.ok(admits(broken, ws.find((w) => w.name === "bank-a")!, pg, 5432));
      assert.ok(
        !admits(
          pgObjs,
          workloads(pgObjs).find((w) => w.name === "bank-a")!,
          workloads(pgObjs).find((w) => w.name === "postgresql")!,
          5432,
        ),
      );
    });
    test("a PostgreSQL without a policy is caught", () => {
      const broken = pgObjs.filter((o) => !(o.kind === "NetworkPolicy" && o.metadata.name === "postgresql"));
      assert.match(
        reachProblems(
          broken,
          workloads(broken).find((w) => w.name === "postgresql")!,
          5432,
          gatewayLabels(broken),
        ).join("\n"),
        /no NetworkPolicy/,
      );
    });
    test("a PostgreSQL policy that shuts the gateway out is caught", () => {
      const broken = structuredClone(pgObjs) as any[];
      find(broken, "NetworkPolicy", "postgresql").spec.ingress[0].from[0].podSelector.matchLabels[
        "app.kubernetes.io/component"
      ] = "checkout";
      const ws = workloads(broken);
      assert.ok(!admits(broken, ws.find((w) => w.name === "gateway")!, ws.find((w) => w.name === "postgresql")!, 5432));
    });
    test("a gateway egress policy without port 5432 is caught", () => {
      const broken = structuredClone(pgObjs) as any[];
      const np = structuredClone(find(broken, "NetworkPolicy", "gateway"));
      np.metadata.name = "gateway-egress";
      np.spec = {
        podSelector: np.spec.podSelector,
        policyTypes: ["Egress"],
        egress: [{ ports: [{ port: 50051, protocol: "TCP" }] }],
      };
      broken.push(np);
      const ws = workloads(broken);
      assert.ok(!admits(broken, ws.find((w) => w.name === "gateway")!, ws.find((w) => w.name === "postgresql")!, 5432));
    });
    test("a password in an env value is caught, literal, from a secretKeyRef, or inside DATABASE_URL", () => {
      const pw = Buffer.from(find(pgObjs, "Secret", "postgresql").data.password as string, "base64").toString("utf8");
      const literal = structuredClone(pgObjs) as any[];
      gatewayEnv(literal).push({ name: "PGPASS", value: pw });
      assert.match(
        passwordProblems(literal).join("\n"),
        /env PGPASS contains the value of Secret postgresql\/password/,
      );
      const fromRef = structuredClone(pgObjs) as any[];
      gatewayEnv(fromRef).push({
        name: "DATABASE_PASSWORD",
        valueFrom: { secretKeyRef: { name: "postgresql", key: "password" } },
      });
      assert.match(
        passwordProblems(fromRef).join("\n"),
        /env DATABASE_PASSWORD comes from Secret postgresql\/password/,
      );
      const inUrl = structuredClone(pgObjs) as any[];
      const url = gatewayEnv(inUrl).find((e) => e.name === "DATABASE_URL") as { value: string };
      url.value = url.value.replace("paygate@", "paygate:hunter2@");
      assert.match(passwordProblems(inUrl).join("\n"), /DATABASE_URL is a database URL with a password/);
    });
    test("a password file outside the mounted Secret, or from another Secret than initdb's, is caught", async () => {
      const setFile = (o: any[], file: string): void =>
        void ((gatewayEnv(o).find((e) => e.name === "DATABASE_PASSWORD_FILE") as { value: string }).value = file);
      const outside = structuredClone(pgObjs) as any[];
      setFile(outside, "/data/password");
      assert.match((await storeProblems(outside)).join("\n"), /\/data\/password is not in a mounted Secret/);
      const unprojected = structuredClone(pgObjs) as any[];
      setFile(unprojected, "/etc/paygate/postgresql/pw");
      assert.match(
        (await storeProblems(unprojected)).join("\n"),
        /mounted at \/etc\/paygate\/postgresql projects no pw/,
      );
      const other = structuredClone(pgObjs) as any[];
      find(other, "StatefulSet", "gateway").spec.template.spec.volumes.find(
        (v: Volume) => v.name === "postgresql-password",
      ).secret.secretName = "paygate-seed";
      assert.match(
        (await storeProblems(other)).join("\n"),
        /the gateway reads paygate-seed\/password, initdb postgresql\/password/,
      );
    });
    test("a DATABASE_URL that misses the bundled server's Service or its database is caught", async () => {
      const broken = structuredClone(pgObjs) as any[];
      const url = gatewayEnv(broken).find((e) => e.name === "DATABASE_URL") as { value: string };
      url.value = url.value.replace("postgresql.", "postgresql-headless.").replace(/\/paygate$/, "/payments");
      const problems = (await storeProblems(broken)).join("\n");
      assert.match(problems, /names postgresql-headless\.paygate\.svc, not the bundled server's Service/);
      assert.match(problems, /database \/payments, initdb's paygate/);
    });
    test("a card key outside a Secret, or not 32 bytes of hex, is caught", async () => {
      const file = structuredClone(pgObjs) as any[];
      (gatewayEnv(file).find((e) => e.name === "CARD_SECRET_FILE") as { value: string }).value =
        "/data/card-secret.key";
      assert.match(
        (await storeProblems(file)).join("\n"),
        /the card key: .*\/data\/card-secret.key is not in a mounted Secret/,
      );
      const short = structuredClone(pgObjs) as any[];
      find(short, "Secret", "gateway-card-secret").data["card-secret.key"] = Buffer.from("abcd").toString("base64");
      assert.match((await storeProblems(short)).join("\n"), /is not 32 bytes of hex/);
      const inEnv = structuredClone(pgObjs) as any[];
      gatewayEnv(inEnv).push({
        name: "CARD_KEY",
        value: Buffer.from(find(pgObjs, "Secret", "gateway-card-secret").data["card-secret.key"], "base64").toString(
          "utf8",
        ),
      });
      assert.match(
        passwordProblems(inEnv).join("\n"),
        /env CARD_KEY contains the value of Secret gateway-card-secret\/card-secret.key/,
      );
    });
    test("two gateway replicas on SQLite are caught", async () => {
      const broken = structuredClone(objs) as any[];
      find(broken, "StatefulSet", "gateway").spec.replicas = 2;
      assert.match((await storeProblems(broken)).join("\n"), /2 gateway replicas on a sqlite store/);
    });
  });
  test("a StatefulSet without a claim is caught", () => {
    const broken = structuredClone(objs) as any[];
    delete broken.find((o) => o.kind === "StatefulSet" && o.metadata.name === "bank-b").spec.volumeClaimTemplates;
    assert.match(claimProblems(broken).join("\n"), /bank-b has no volumeClaimTemplates/);
  });
});

describe("values the chart refuses", () => {
  test("an unknown top-level value (values.schema.json is strict)", () => {
    const r = template([], ["replicaCount=3"]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /replicaCount/);
  });
  test("an unknown nested value", () => {
    const r = template([], ["gateway.replica=3"]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /replica/);
  });
  test("several gateway replicas without PostgreSQL", () => {
    const r = template([], ["gateway.replicas=2"]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /gateway.replicas > 1 needs a shared PostgreSQL store/);
    // Control: the same with the bundled server renders.
    assert.equal(template([], ["gateway.replicas=2", "postgresql.bundled.enabled=true"]).status, 0);
  });
  test("several gateway replicas on PostgreSQL without shared idempotency keys", () => {
    const r = template([], ["gateway.replicas=2", "postgresql.bundled.enabled=true", "redis.enabled=false"]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /needs shared idempotency keys/);
  });
  test("a postgresql.url with a password in it, without echoing the password", () => {
    for (const url of [
      "postgres://paygate:hunter2secret@db.example.com:5432/paygate",
      "postgresql://paygate@db.example.com/paygate?password=hunter2secret",
    ]) {
      const r = template([], [`postgresql.url=${url}`]);
      assert.notEqual(r.status, 0, url);
      assert.match(r.stderr, /postgresql.url must not carry a password/);
      assert.doesNotMatch(r.stderr, /hunter2secret/);
    }
  });
  test("more than one PostgreSQL source", () => {
    const r = template(
      [],
      ["postgresql.url=postgres://paygate@db.example.com/paygate", "postgresql.bundled.enabled=true"],
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /set only one of url, host and bundled.enabled/);
  });
  test("a password Secret or a CA without a database", () => {
    for (const key of ["existingSecret", "caSecret"]) {
      const r = template([], [`postgresql.${key}=paygate-db-app`]);
      assert.notEqual(r.status, 0, key);
      assert.match(r.stderr, new RegExp(`postgresql.${key} needs postgresql.url or postgresql.host`));
    }
  });
  test("a CA for the postgres.js driver, which would not check it", () => {
    const r = template(
      [],
      ["postgresql.host=db.example.com", "postgresql.caSecret=db-ca", "postgresql.driver=postgres"],
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /postgresql.caSecret needs postgresql.driver pg/);
  });
  test("a heartbeat longer than half the lease", () => {
    const r = template(
      [],
      ["postgresql.bundled.enabled=true", "gateway.leaseMs=3000", "gateway.heartbeatIntervalMs=2000"],
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /heartbeatIntervalMs must be at most half/);
  });
  test("more pooled connections than the bundled server accepts", () => {
    const r = template([], ["postgresql.bundled.enabled=true", "gateway.replicas=13", "postgresql.poolMax=8"]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /104 connections, more than postgresql.bundled.maxConnections \(100\) minus 3 reserved/);
    assert.equal(
      template([], ["postgresql.bundled.enabled=true", "gateway.replicas=12", "postgresql.poolMax=8"]).status,
      0,
    );
  });
  test("session affinity on the gateway Service (gone: any replica serves any request)", () => {
    const r = template([], ["gateway.service.sessionAffinity=ClientIP"]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /sessionAffinity/);
  });
  test("a bank the seed does not know", () => {
    const r = runHelm([
      "template",
      "paygate",
      CHART,
      "--set-json",
      'banks=[{"name":"bank-a"},{"name":"bank-b"},{"name":"bank-z"}]',
    ]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /bank-z is not in seed/);
  });
  test("a seed bank without a StatefulSet", () => {
    const r = runHelm(["template", "paygate", CHART, "--set-json", 'banks=[{"name":"bank-a"}]']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /seed.content names bank bank-b but banks has no such entry/);
  });
});

test("the chart's PostgreSQL settings are the code's defaults (config.ts)", async () => {
  const load = await loadConfigOf("gateway");
  assert.ok(load);
  const gateway = workloads(render([], ["postgresql.bundled.enabled=true"])).find((w) => w.name === "gateway")!;
  const env = envOf(gateway.pod.containers[0]!, "gateway-0");
  const tunables = [
    "DATABASE_POOL_MAX",
    "DATABASE_DRIVER",
    "DATABASE_STATEMENT_TIMEOUT_MS",
    "GATEWAY_LEASE_MS",
    "GATEWAY_HEARTBEAT_INTERVAL_MS",
  ];
  for (const name of tunables) assert.ok(name in env, `the chart does not set ${name}`);
  const chart = load(env, "/app").store as Record<string, unknown>;
  const code = load(Object.fromEntries(Object.entries(env).filter(([k]) => !tunables.includes(k))), "/app")
    .store as Record<string, unknown>;
  assert.equal(chart.kind, "postgres");
  for (const key of ["poolMax", "driver", "statementTimeoutMs", "leaseMs", "heartbeatIntervalMs"])
    assert.equal(chart[key], code[key], key);
});

test("a managed PostgreSQL by URL: the URL as given, the password and the CA as files", async () => {
  const url =
    "postgres://paygate@db.example.com:5432/paygate?sslmode=verify-full&sslrootcert=/etc/paygate/postgresql-ca/rds-ca.pem";
  const objs = render(
    [],
    [
      `postgresql.url=${url}`,
      "postgresql.existingSecret=rds-paygate",
      "postgresql.existingSecretPasswordKey=pw",
      "postgresql.caSecret=rds-ca",
      "postgresql.caSecretKey=rds-ca.pem",
    ],
  );
  const gateway = workloads(objs).find((w) => w.name === "gateway")!;
  const env = envOf(gateway.pod.containers[0]!, "gateway-0");
  assert.equal(env.DATABASE_URL, url);
  assert.deepEqual(secretFileOf(gateway, gateway.pod.containers[0]!, env.DATABASE_PASSWORD_FILE!), {
    secret: "rds-paygate",
    key: "pw",
  });
  assert.deepEqual(secretFileOf(gateway, gateway.pod.containers[0]!, "/etc/paygate/postgresql-ca/rds-ca.pem"), {
    secret: "rds-ca",
    key: "rds-ca.pem",
  });
  assert.ok(!workloads(objs).some((w) => w.name === "postgresql"), "no bundled server");
  assert.deepEqual(await storeProblems(objs), []);
  assert.deepEqual(passwordProblems(objs), []);
  assert.deepEqual(secretProblems(objs, ["rds-paygate", "rds-ca"]), []);
  for (const o of objs) validateAny(o);
});

test("without cert-manager, pods use the Secrets named in tls.existingSecrets", () => {
  const objs = render([], ["certManager.enabled=false", "tls.existingSecrets.gateway=my-gateway-cert"]);
  assert.equal(ofKind(objs, "Certificate").length, 0);
  assert.equal(ofKind(objs, "Issuer").length, 0);
  const ws = workloads(objs);
  assert.equal(tlsSecretOf(ws.find((w) => w.name === "gateway")!), "my-gateway-cert");
  assert.equal(tlsSecretOf(ws.find((w) => w.name === "bank-a")!), "bank-a-tls");
  for (const o of objs) validateAny(o);
});

for (const vc of CASES) {
  describe(`chart with ${vc.name}`, () => {
    let objs: K8sObject[] = [];
    before(() => {
      objs = render(vc.files);
    });

    test("helm lint --strict passes", () => {
      const r = runHelm(["lint", "--strict", CHART, ...valueArgs(vc.files)]);
      assert.equal(r.status, 0, `helm lint failed:\n${r.stdout}\n${r.stderr}`);
    });

    test("every rendered object validates against its schema, unknown fields included", () => {
      assert.ok(objs.length > 10, `only ${objs.length} objects rendered`);
      const problems: string[] = [];
      for (const o of objs) {
        try {
          validateAny(o);
        } catch (e) {
          problems.push((e as Error).message);
        }
      }
      assert.deepEqual(problems, []);
    });

    test("object names are unique per kind", () => {
      const seen = new Set<string>();
      for (const o of objs) {
        const key = `${o.kind}/${o.metadata.name}`;
        assert.ok(!seen.has(key), `${key} rendered twice`);
        seen.add(key);
      }
    });

    test("every StatefulSet keeps /data on a PersistentVolumeClaim", () => {
      assert.deepEqual(claimProblems(objs), []);
    });

    test("every Secret a pod mounts is issued by a Certificate or created by the chart", () => {
      assert.deepEqual(secretProblems(objs, vc.operatorSecrets), []);
    });

    test("certificates carry the identities the code authorizes on", () => {
      const certs = certificates(objs);
      const ws = workloads(objs);
      const uriOf = (w: Workload): readonly string[] => certs.get(tlsSecretOf(w))?.uris ?? [];
      const gateway = ws.find((w) => w.name === "gateway")!;
      assert.deepEqual(uriOf(gateway), [GATEWAY_IDENTITY]);
      const banks = ws.filter((w) => w.pod.containers.some((x) => serviceOf(x) === "bank"));
      assert.ok(banks.length >= 2);
      for (const b of banks) {
        const name = envOf(b.pod.containers[0]!, `${b.name}-0`).BANK_NAME!;
        assert.deepEqual(uriOf(b), [bankIdentity(name)], `${b.name}`);
      }
      const checkout = ws.find((w) => w.name === "checkout");
      if (checkout) assert.deepEqual(uriOf(checkout), [clientIdentity("checkout")]);
      // Banks accept participant calls from GATEWAY_IDENTITY only: no other
      // pod may hold a certificate with that identity.
      for (const w of ws) {
        if (w.name === "gateway" || !w.pod.containers.some(serviceOf)) continue;
        assert.ok(!uriOf(w).includes(GATEWAY_IDENTITY), `${w.name} holds the gateway's identity`);
      }
      for (const [secret, s] of certs) {
        if (s.isCA) continue;
        assert.deepEqual(
          [...s.usages].sort(),
          ["client auth", "digital signature", "key encipherment", "server auth"],
          secret,
        );
        assert.equal(s.issuerRef.name, "paygate-ca", secret);
      }
    });

    test("the CA chain is self-signed root -> CA Issuer -> leaves", () => {
      const issuers = new Map(ofKind(objs, "Issuer").map((i) => [i.metadata.name, spec(i)]));
      const certs = ofKind(objs, "Certificate").map(spec);
      const root = certs.filter((s) => s.isCA);
      assert.equal(root.length, 1);
      assert.ok(issuers.get(root[0]!.issuerRef.name)?.selfSigned, "the root is issued by a selfSigned Issuer");
      const ca = [...issuers.values()].filter((i) => i.ca);
      assert.equal(ca.length, 1);
      assert.equal(ca[0]!.ca.secretName, root[0]!.secretName);
    });

    test("the gateway runs with the V8 flags the tests and the benchmark measured (testkit's GATEWAY_NODE_OPTIONS)", () => {
      const gateway = workloads(objs).find((w) => w.name === "gateway")!;
      assert.equal(envOf(gateway.pod.containers[0]!, "gateway-0").NODE_OPTIONS, GATEWAY_NODE_OPTIONS);
    });

    test("every URL a service dials names a host its peer's certificate covers", () => {
      const certs = certificates(objs);
      const ws = workloads(objs);
      const dnsOf = (name: string): readonly string[] =>
        certs.get(tlsSecretOf(ws.find((w) => w.name === name)!))?.dnsNames ?? [];
      const gateway = ws.find((w) => w.name === "gateway")!;
      const gEnv = envOf(gateway.pod.containers[0]!, "gateway-0");
      const banks = urlMap(gEnv.BANKS);
      assert.ok(banks.size >= 2);
      for (const [bank, url] of banks) {
        assert.ok(dnsOf(bank).includes(url.hostname), `${bank}'s certificate lacks ${url.hostname}`);
        assert.equal(Number(url.port), portNamed(ws.find((w) => w.name === bank)!.pod.containers[0]!, "rpc"));
      }
      for (const w of ws.filter((x) => x.pod.containers.some((y) => serviceOf(y) === "bank"))) {
        const coordinators = (envOf(w.pod.containers[0]!, `${w.name}-0`).COORDINATOR_URL ?? "")
          .split(",")
          .filter(Boolean)
          .map((u) => new URL(u));
        assert.ok(coordinators.length >= 1, `${w.name} sets no COORDINATOR_URL`);
        for (const url of coordinators) {
          assert.ok(dnsOf("gateway").includes(url.hostname), `gateway certificate lacks ${url.hostname}`);
          assert.equal(Number(url.port), portNamed(gateway.pod.containers[0]!, "rpc"));
          // The gateway Service, never one pod: any replica answers GetDecision, so scaling changes no bank's env.
          const svc = ofKind(objs, "Service").find((x) => url.hostname === `${x.metadata.name}.${NAMESPACE}.svc`);
          assert.ok(
            svc && spec(svc).clusterIP !== "None" && selects(spec(svc).selector, gateway.labels),
            `${w.name} dials ${url.hostname}, not the gateway Service`,
          );
        }
      }
      const replica = gateway.pod.containers[0]!.env?.find((e) => e.name === "GATEWAY_REPLICA");
      assert.equal(replica?.valueFrom?.fieldRef?.fieldPath, "metadata.name", "GATEWAY_REPLICA must be the pod name");
      const checkout = ws.find((w) => w.name === "checkout");
      if (checkout) {
        const url = new URL(envOf(checkout.pod.containers[0]!, "checkout").GATEWAY_URL!);
        assert.ok(dnsOf("gateway").includes(url.hostname), `gateway certificate lacks ${url.hostname}`);
      }
      if (gEnv.CREDIT_BUREAU_URL) assert.ok(dnsOf("credit-bureau").includes(new URL(gEnv.CREDIT_BUREAU_URL).hostname));
    });

    test("only the gateway reaches banks, the bureau, Redis and PostgreSQL", () => {
      const ws = workloads(objs);
      const gateway = ws.find((w) => w.name === "gateway")!;
      const guarded = paygateContainers(objs).filter((x) => x.service === "bank" || x.service === "credit-bureau");
      assert.ok(guarded.length >= 2);
      const problems = guarded.flatMap(({ w, c }) => reachProblems(objs, w, portNamed(c, "rpc"), gateway.labels));
      const redis = ws.find((w) => w.name === "redis");
      if (redis) problems.push(...reachProblems(objs, redis, 6379, gateway.labels));
      const pg = ws.find((w) => w.name === "postgresql");
      if (pg) problems.push(...reachProblems(objs, pg, 5432, gateway.labels));
      assert.deepEqual(problems, []);
    });

    test("the gateway may reach the bundled PostgreSQL; banks, checkout and the bureau may not", (t) => {
      const ws = workloads(objs);
      const pg = ws.find((w) => w.name === "postgresql");
      if (!pg) return t.diagnostic("no bundled PostgreSQL in this case");
      assert.ok(admits(objs, ws.find((w) => w.name === "gateway")!, pg, 5432), "gateway -> postgresql:5432 is blocked");
      const others = paygateContainers(objs).filter((x) => x.service !== "gateway");
      assert.ok(others.some((x) => x.service === "bank"));
      for (const { w } of others) assert.ok(!admits(objs, w, pg, 5432), `${w.name} -> postgresql:5432 is allowed`);
    });

    test("the gateway Service has no session affinity (any replica serves any request)", () => {
      const svc = ofKind(objs, "Service").find((x) => x.metadata.name === "gateway")!;
      assert.ok(
        ["None", undefined].includes(spec(svc).sessionAffinity),
        `sessionAffinity ${spec(svc).sessionAffinity}`,
      );
    });

    test("the gateway's store: SQLite on its volume, or PostgreSQL with the password in a mounted Secret", async () => {
      assert.deepEqual(await storeProblems(objs), []);
    });

    test("no password in any env value or database URL", () => {
      assert.deepEqual(passwordProblems(objs), []);
    });

    test("env, ports and defaults agree with the services' config.ts", async (t) => {
      const { problems, notes } = await configProblems(objs);
      for (const n of notes) t.diagnostic(n);
      assert.deepEqual(problems, []);
    });

    test("every paygate image is the chart's appVersion, which is package.json's version", () => {
      const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
      assert.equal(appVersion(), pkg.version);
      const containers = paygateContainers(objs);
      assert.ok(containers.length >= 4);
      for (const { c } of containers) assert.equal(c.image.split(":").pop(), appVersion(), c.name);
      const built = readFileSync(join(ROOT, "scripts/build.mjs"), "utf8");
      for (const { service } of containers)
        assert.ok(built.includes(`"${service}"`), `scripts/build.mjs does not build dist/${service}.js`);
    });

    test("pods run locked down", () => {
      for (const w of workloads(objs)) {
        assert.equal(w.pod.securityContext?.runAsNonRoot, true, w.name);
        assert.equal(w.pod.securityContext?.seccompProfile?.type, "RuntimeDefault", w.name);
        assert.equal(w.pod.automountServiceAccountToken, false, w.name);
        // Service links would inject GATEWAY_PORT=tcp://... into every pod,
        // colliding with the gateway's own GATEWAY_PORT setting.
        assert.equal(w.pod.enableServiceLinks, false, w.name);
        for (const c of w.pod.containers) {
          const s = c.securityContext;
          assert.equal(s?.readOnlyRootFilesystem, true, `${w.name}/${c.name}`);
          assert.equal(s?.allowPrivilegeEscalation, false, `${w.name}/${c.name}`);
          assert.deepEqual(s?.capabilities?.drop, ["ALL"], `${w.name}/${c.name}`);
          // subPath mounts never see rotated files: certificates must be whole-directory mounts.
          assert.ok(!(c.volumeMounts ?? []).some((m) => m.subPath), `${w.name}/${c.name} uses subPath`);
        }
      }
    });

    test("probes use the ops port; readiness is /readyz", () => {
      for (const { w, c } of paygateContainers(objs)) {
        assert.equal(c.readinessProbe?.httpGet?.path, "/readyz", w.name);
        assert.equal(c.readinessProbe?.httpGet?.port, "metrics", w.name);
        assert.equal(c.livenessProbe?.httpGet?.path, "/healthz", w.name);
      }
    });

    test("every paygate workload has a PodDisruptionBudget", () => {
      const pdbs = ofKind(objs, "PodDisruptionBudget");
      for (const { w } of paygateContainers(objs)) {
        if (w.name === "checkout") continue; // one pod on a ReadWriteOnce volume, Recreate strategy
        assert.ok(
          pdbs.some((p) => selects(spec(p).selector?.matchLabels, w.labels)),
          `${w.name} has no PodDisruptionBudget`,
        );
      }
    });

    test("the seed Secret matches the banks, and the default seed is config/seed.yaml", () => {
      const secret = ofKind(objs, "Secret").find((s) => s.metadata.name === "paygate-seed");
      assert.ok(secret, "no seed Secret");
      const seed = parseSeed((secret.stringData as Record<string, string>)["seed.yaml"]!, "chart seed");
      const bankNames = paygateContainers(objs)
        .filter((x) => x.service === "bank")
        .map(({ w, c }) => envOf(c, `${w.name}-0`).BANK_NAME);
      assert.deepEqual([...seed.banks].sort(), bankNames.sort());
      if (vc.files.length === 0) {
        // Compare what the services would load, not the text: same users, accounts, balances.
        const strip = (s: ReturnType<typeof parseSeed>) =>
          JSON.stringify(s, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
        assert.equal(strip(seed), strip(parseSeed(readFileSync(join(ROOT, "config/seed.yaml"), "utf8"))));
      }
    });

    test("monitoring objects follow monitoring.enabled and dashboards come from dashboards/*.json", () => {
      const monitored = vc.monitored;
      assert.equal(ofKind(objs, "ServiceMonitor").length, monitored ? 1 : 0);
      assert.equal(ofKind(objs, "PrometheusRule").length, monitored ? 1 : 0);
      const dashboards = ofKind(objs, "ConfigMap").filter((m) => m.metadata.name.startsWith("paygate-dashboard-"));
      if (!monitored) return assert.equal(dashboards.length, 0);
      assert.ok(dashboards.length >= 1);
      for (const d of dashboards) {
        for (const [file, text] of Object.entries(d.data as Record<string, string>)) {
          const json = JSON.parse(text) as { title?: string; panels?: unknown[] };
          assert.ok(json.title && Array.isArray(json.panels), `${file} is not a Grafana dashboard`);
        }
      }
      // Every Service it selects exposes a port named metrics.
      const sm = spec(ofKind(objs, "ServiceMonitor")[0]!);
      const selected = ofKind(objs, "Service").filter((s) => selects(sm.selector.matchLabels, s.metadata.labels ?? {}));
      assert.ok(selected.length >= 3);
      for (const s of selected)
        assert.ok(
          spec(s).ports.some((p: { name: string }) => p.name === sm.endpoints[0].port),
          s.metadata.name,
        );
      // One source of truth: the ConfigMaps are the files test/observability runs against Prometheus.
      const files = readdirSync(join(CHART, "dashboards"))
        .filter((f) => f.endsWith(".json"))
        .sort();
      assert.deepEqual(dashboards.flatMap((d) => Object.keys(d.data as object)).sort(), files);
      for (const d of dashboards) {
        for (const [file, text] of Object.entries(d.data as Record<string, string>))
          assert.equal(text, readFileSync(join(CHART, "dashboards", file), "utf8").trimEnd(), file);
      }
    });

    test("the PrometheusRule is rules/paygate-rules.yaml, verbatim", (t) => {
      const rules = ofKind(objs, "PrometheusRule");
      if (!vc.monitored) return t.diagnostic("monitoring is off in this case");
      assert.deepEqual(spec(rules[0]!), parse(readFileSync(join(CHART, "rules/paygate-rules.yaml"), "utf8")));
    });

    test("BankDown and GatewayDown match exactly the jobs the ServiceMonitor gives banks and gateways", (t) => {
      if (!vc.monitored) return t.diagnostic("monitoring is off in this case");
      assert.deepEqual(downAlertProblems(objs), []);
    });
  });
}

/**
 * The job each scraped Service's targets get (the ServiceMonitor's jobLabel,
 * else the Service name, as the Prometheus Operator does it), checked against
 * the `up{job=~"..."}` matchers of the BankDown and GatewayDown alerts.
 */
function downAlertProblems(objs: readonly K8sObject[]): string[] {
  const sm = spec(ofKind(objs, "ServiceMonitor")[0]!);
  const alerts = new Map<string, RegExp>();
  for (const g of spec(ofKind(objs, "PrometheusRule")[0]!).groups as { rules: { alert?: string; expr: string }[] }[]) {
    for (const r of g.rules) {
      const m = /up\{job=~"([^"]+)"\}/.exec(String(r.expr));
      // Prometheus anchors =~ at both ends.
      if (r.alert && m) alerts.set(r.alert, new RegExp(`^(?:${m[1]})$`));
    }
  }
  const problems: string[] = [];
  const bankDown = alerts.get("BankDown");
  const gatewayDown = alerts.get("GatewayDown");
  if (!bankDown || !gatewayDown)
    return [`BankDown/GatewayDown with an up{job=~...} matcher not found: ${[...alerts.keys()].join(", ")}`];
  const scraped = ofKind(objs, "Service").filter((s) => selects(sm.selector.matchLabels, s.metadata.labels ?? {}));
  for (const s of scraped) {
    const labels = s.metadata.labels ?? {};
    const job = (sm.jobLabel ? labels[sm.jobLabel as string] : undefined) ?? s.metadata.name;
    const role =
      labels["paygate.local/role"] === "bank" ? "bank" : s.metadata.name.startsWith("gateway") ? "gateway" : "other";
    if (bankDown.test(job) !== (role === "bank"))
      problems.push(`BankDown ${role === "bank" ? "misses" : "matches"} ${s.metadata.name} (job ${job})`);
    if (gatewayDown.test(job) !== (role === "gateway"))
      problems.push(`GatewayDown ${role === "gateway" ? "misses" : "matches"} ${s.metadata.name} (job ${job})`);
  }
  if (!scraped.some((s) => s.metadata.labels?.["paygate.local/role"] === "bank"))
    problems.push("no bank Service is scraped");
  return problems;
}

test("banks with any names are still banks to BankDown (job from paygate.local/job, not the Service name)", () => {
  const seed = [
    "banks: [acme, globex]",
    "users:",
    "  - { id: admin, username: admin, password: admin-ci-2026, roles: [admin], display_name: Admin }",
    "accounts:",
    "  - { id: acme/1001, owner: admin, currency: USD, opening_minor: 0 }",
  ].join("\n");
  const dir = mkdtempSync(join(tmpdir(), "paygate-chart-"));
  try {
    const file = join(dir, "values.yaml");
    writeFileSync(file, stringify({ banks: [{ name: "acme" }, { name: "globex" }], seed: { content: seed } }));
    const objs = render([file]);
    assert.equal(ofKind(objs, "StatefulSet").filter((s) => ["acme", "globex"].includes(s.metadata.name)).length, 2);
    assert.deepEqual(downAlertProblems(objs), []);
    // Control: without the jobLabel the job is the Service name, and "acme-headless" is no bank to BankDown.
    const sm = ofKind(objs, "ServiceMonitor")[0]! as K8sObject & { spec: Record<string, unknown> };
    delete sm.spec.jobLabel;
    assert.ok(
      downAlertProblems(objs).some((p) => p.startsWith("BankDown misses acme-headless")),
      downAlertProblems(objs).join("; "),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("webhooks: the chart's schedule is the code's default; the allow-list admits the checkout's receiver only when it is enabled", async () => {
  const load = await loadConfigOf("gateway");
  assert.ok(load);
  const envWith = (set: string[]) =>
    envOf(workloads(render([], set)).find((w) => w.name === "gateway")!.pod.containers[0]!, "gateway-0");
  const env = envWith([]);
  const tunables = Object.keys(env).filter((k) => k.startsWith("WEBHOOK_") && k !== "WEBHOOK_ALLOWED_HOSTS");
  assert.deepEqual(tunables.sort(), [
    "WEBHOOK_ALLOW_LOOPBACK",
    "WEBHOOK_CONCURRENCY",
    "WEBHOOK_GIVE_UP_MS",
    "WEBHOOK_POLL_MS",
    "WEBHOOK_RETRY_BASE_MS",
    "WEBHOOK_RETRY_MAX_MS",
    "WEBHOOK_TIMEOUT_MS",
  ]);
  const chart = load(env, "/app").webhooks as Record<string, unknown>;
  const code = load(
    Object.fromEntries(Object.entries(env).filter(([k]) => !tunables.includes(k) && k !== "WEBHOOK_ALLOWED_HOSTS")),
    "/app",
  ).webhooks as Record<string, unknown>;
  for (const key of [
    "allowLoopback",
    "timeoutMs",
    "pollMs",
    "retryBaseMs",
    "retryMaxMs",
    "giveUpMs",
    "concurrency",
    "caFile",
  ])
    assert.deepEqual(chart[key], code[key], key);
  assert.deepEqual(chart.allowedHosts, ["checkout.paygate.svc", "checkout.paygate.svc.cluster.local"]);
  assert.deepEqual(
    load(envWith(["checkout.enabled=false"]), "/app").webhooks,
    { ...code, allowedHosts: [] },
    "nothing admitted by default",
  );
  assert.deepEqual(
    (
      load(envWith(["gateway.webhooks.allowedHosts={hooks.shop.example,*.merchants.example}"]), "/app").webhooks as {
        allowedHosts: string[];
      }
    ).allowedHosts,
    ["hooks.shop.example", "*.merchants.example", "checkout.paygate.svc", "checkout.paygate.svc.cluster.local"],
  );
  const bad = runHelm([
    "template",
    "paygate",
    CHART,
    "--set",
    "gateway.webhooks.allowedHosts={https://hooks.example/}",
  ]);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /allowedHosts\/0/);
});
