// Validates rendered Kubernetes objects against the API schemas shipped in
// kubernetes-models and @kubernetes-models/cert-manager, strictly.
//
// Those packages check types, enums and required fields but accept unknown
// fields (the upstream OpenAPI has no additionalProperties: false), so a typo
// like `imagePullPolcy` would pass. A real API server drops such a field
// silently, which is worse than failing. So we run each schema's validator
// over a recording proxy: the compiled validator reads every property its
// schema declares and enumerates the keys of map-typed objects; any key of
// the input it never read is not in the schema, i.e. unknown.
import * as core from "kubernetes-models/v1";
import * as apps from "kubernetes-models/apps/v1";
import * as batch from "kubernetes-models/batch/v1";
import * as policy from "kubernetes-models/policy/v1";
import * as networking from "kubernetes-models/networking.k8s.io/v1";
import * as rbac from "kubernetes-models/rbac.authorization.k8s.io/v1";
import * as certManager from "@kubernetes-models/cert-manager/cert-manager.io/v1";

export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly labels?: Record<string, string> };
  readonly [key: string]: unknown;
}

interface ModelClass {
  new (data: object): { validate(): void };
  prototype: { validate(): void };
}

// apiVersion -> the module whose exports are the kinds of that group/version.
const GROUPS: Readonly<Record<string, Readonly<Record<string, unknown>>>> = {
  v1: core,
  "apps/v1": apps,
  "batch/v1": batch,
  "policy/v1": policy,
  "networking.k8s.io/v1": networking,
  "rbac.authorization.k8s.io/v1": rbac,
  "cert-manager.io/v1": certManager,
};

export class SchemaError extends Error {
  override name = "SchemaError";
}

function modelFor(obj: K8sObject): ModelClass {
  const group = GROUPS[obj.apiVersion];
  const model = group?.[obj.kind] as ModelClass | undefined;
  if (typeof model !== "function" || typeof model.prototype.validate !== "function") {
    throw new SchemaError(`${obj.apiVersion}/${obj.kind}: no schema known for this kind`);
  }
  return model;
}

interface Node {
  readonly path: string;
  readonly target: object;
  readonly read: Set<string>;
  enumerated: boolean;
}

// Wraps every object and array of `value` in a proxy that records reads.
function track(value: unknown, path: string, nodes: Node[]): unknown {
  if (value === null || typeof value !== "object") return value;
  const isArray = Array.isArray(value);
  const node: Node = { path, target: value, read: new Set(), enumerated: false };
  if (!isArray) nodes.push(node);
  const children = new Map<PropertyKey, unknown>();
  return new Proxy(value, {
    get(target, key, receiver) {
      if (typeof key === "string") node.read.add(key);
      const raw: unknown = Reflect.get(target, key, receiver);
      if (raw === null || typeof raw !== "object" || typeof key !== "string") return raw;
      if (!children.has(key)) children.set(key, track(raw, isArray ? `${path}[${key}]` : `${path}.${key}`, nodes));
      return children.get(key);
    },
    has(target, key) {
      if (typeof key === "string") node.read.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      // A validator that lists the keys is checking a map (labels, resource
      // quantities, ...): every key there is data, not a field name.
      node.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
}

function unknownFields(model: ModelClass, obj: K8sObject): string[] {
  const nodes: Node[] = [];
  const proxy = track(obj, "", nodes) as object;
  model.prototype.validate.call(proxy);
  const unknown: string[] = [];
  for (const node of nodes) {
    if (node.enumerated) continue;
    for (const key of Object.keys(node.target)) {
      if (!node.read.has(key)) unknown.push(`${node.path}.${key}`);
    }
  }
  return unknown;
}

/** Throws SchemaError naming the object and every problem found. */
export function validateObject(obj: K8sObject): void {
  const where = `${obj.kind}/${obj.metadata?.name ?? "?"}`;
  const model = modelFor(obj);
  try {
    new model(obj).validate();
  } catch (e) {
    throw new SchemaError(`${where}: ${(e as Error).message}`);
  }
  const unknown = unknownFields(model, obj);
  if (unknown.length > 0) throw new SchemaError(`${where}: unknown field(s) ${unknown.join(", ")}`);
}

const DURATION = /^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/;

/** The allow-list checks of a CRD without a model; each pushes what it finds wrong onto `problems`. */
function allowListChecks(problems: string[]) {
  /** `value` as an object, each key not in `keys` a problem. */
  const allowed = (path: string, value: unknown, keys: readonly string[]): Record<string, unknown> => {
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      problems.push(`${path} must be an object`);
      return {};
    }
    for (const k of Object.keys(value)) if (!keys.includes(k)) problems.push(`unknown field ${path}.${k}`);
    return value as Record<string, unknown>;
  };
  /** Absent, or an object of strings. */
  const stringMap = (path: string, value: unknown): void => {
    if (value === undefined) return;
    const m = allowed(path, value, Object.keys((value as object) ?? {}));
    for (const [k, v] of Object.entries(m)) if (typeof v !== "string") problems.push(`${path}.${k} must be a string`);
  };
  /** Absent, or a Prometheus duration such as 30s or 1h30m. */
  const duration = (path: string, value: unknown): void => {
    if (value !== undefined && !DURATION.test(String(value))) problems.push(`${path} is not a duration`);
  };
  return { allowed, stringMap, duration };
}

/** Checks a monitoring.coreos.com/v1 object's top level and metadata; returns its spec, allowed `specKeys`. */
function monitoringSpec(obj: K8sObject, problems: string[], specKeys: readonly string[]): Record<string, unknown> {
  const { allowed, stringMap } = allowListChecks(problems);
  const top = allowed("", obj, ["apiVersion", "kind", "metadata", "spec"]);
  if (top.apiVersion !== "monitoring.coreos.com/v1") problems.push("apiVersion must be monitoring.coreos.com/v1");
  const meta = allowed(".metadata", top.metadata, ["name", "namespace", "labels", "annotations"]);
  if (typeof meta.name !== "string" || meta.name === "") problems.push(".metadata.name is required");
  stringMap(".metadata.labels", meta.labels);
  return allowed(".spec", top.spec, specKeys);
}

/**
 * The ServiceMonitor CRD has no model here (it would take
 * @kubernetes-models/prometheus-operator): check the fields this chart uses
 * against an allow-list taken from the monitoring.coreos.com/v1 CRD, with the
 * same rule, unknown fields fail.
 */
export function validateServiceMonitor(obj: K8sObject): void {
  const where = `ServiceMonitor/${obj.metadata?.name ?? "?"}`;
  const problems: string[] = [];
  const { allowed, stringMap, duration } = allowListChecks(problems);
  const spec = monitoringSpec(obj, problems, [
    "selector",
    "namespaceSelector",
    "endpoints",
    "jobLabel",
    "targetLabels",
    "podTargetLabels",
    "sampleLimit",
  ]);
  const selector = allowed(".spec.selector", spec.selector, ["matchLabels", "matchExpressions"]);
  if (selector.matchLabels !== undefined) stringMap(".spec.selector.matchLabels", selector.matchLabels);
  if (spec.namespaceSelector !== undefined) {
    const ns = allowed(".spec.namespaceSelector", spec.namespaceSelector, ["any", "matchNames"]);
    if (
      ns.matchNames !== undefined &&
      !(Array.isArray(ns.matchNames) && ns.matchNames.every((n) => typeof n === "string"))
    ) {
      problems.push(".spec.namespaceSelector.matchNames must be a list of strings");
    }
  }
  if (!Array.isArray(spec.endpoints) || spec.endpoints.length === 0)
    problems.push(".spec.endpoints must be a non-empty list");
  for (const [i, ep] of (Array.isArray(spec.endpoints) ? spec.endpoints : []).entries()) {
    const e = allowed(`.spec.endpoints[${i}]`, ep, [
      "port",
      "targetPort",
      "path",
      "scheme",
      "interval",
      "scrapeTimeout",
      "honorLabels",
      "relabelings",
      "metricRelabelings",
      "tlsConfig",
    ]);
    if (typeof e.port !== "string") problems.push(`.spec.endpoints[${i}].port must be a port name`);
    if (e.scheme !== undefined && e.scheme !== "http" && e.scheme !== "https")
      problems.push(`.spec.endpoints[${i}].scheme must be http or https`);
    duration(`.spec.endpoints[${i}].interval`, e.interval);
  }
  if (problems.length > 0) throw new SchemaError(`${where}: ${problems.join(", ")}`);
}

/**
 * PrometheusRule, the same way: an allow-list from the monitoring.coreos.com/v1
 * CRD (groups of record/alert rules), unknown fields fail. The rules'
 * PromQL is checked by promtool and a real Prometheus in test/observability.
 */
export function validatePrometheusRule(obj: K8sObject): void {
  const where = `PrometheusRule/${obj.metadata?.name ?? "?"}`;
  const problems: string[] = [];
  const { allowed, stringMap, duration } = allowListChecks(problems);
  const spec = monitoringSpec(obj, problems, ["groups"]);
  if (!Array.isArray(spec.groups) || spec.groups.length === 0) problems.push(".spec.groups must be a non-empty list");
  for (const [i, g] of (Array.isArray(spec.groups) ? spec.groups : []).entries()) {
    const group = allowed(`.spec.groups[${i}]`, g, [
      "name",
      "interval",
      "rules",
      "partial_response_strategy",
      "limit",
      "query_offset",
      "labels",
    ]);
    if (typeof group.name !== "string" || group.name === "") problems.push(`.spec.groups[${i}].name is required`);
    duration(`.spec.groups[${i}].interval`, group.interval);
    for (const [j, r] of (Array.isArray(group.rules) ? group.rules : []).entries()) {
      const path = `.spec.groups[${i}].rules[${j}]`;
      const rule = allowed(path, r, ["record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"]);
      if ((typeof rule.record === "string") === (typeof rule.alert === "string"))
        problems.push(`${path} needs exactly one of record and alert`);
      if (typeof rule.expr !== "string" && typeof rule.expr !== "number") problems.push(`${path}.expr is required`);
      duration(`${path}.for`, rule.for);
      duration(`${path}.keep_firing_for`, rule.keep_firing_for);
      stringMap(`${path}.labels`, rule.labels);
      stringMap(`${path}.annotations`, rule.annotations);
    }
  }
  if (problems.length > 0) throw new SchemaError(`${where}: ${problems.join(", ")}`);
}

/** Dispatches on kind: the typed schemas, or the ServiceMonitor / PrometheusRule allow-lists. */
export function validateAny(obj: K8sObject): void {
  if (obj.apiVersion === "monitoring.coreos.com/v1" && obj.kind === "ServiceMonitor") validateServiceMonitor(obj);
  else if (obj.apiVersion === "monitoring.coreos.com/v1" && obj.kind === "PrometheusRule") validatePrometheusRule(obj);
  else validateObject(obj);
}
