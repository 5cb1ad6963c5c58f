// fast-check generators for bad input to one RPC: random bytes, protobuf wire
// garbage (wrong wire types, lying lengths, overlong varints), well-typed
// messages full of hostile values (unicode, huge strings, negative and
// overflowing int64, unknown enum numbers, big repeated fields), JSON of the
// wrong shape, broken UTF-8 and deep nesting, and broken envelopes.
//
// Money must not move, so every amount a generator produces is invalid (<= 0
// or past AMOUNT_MINOR_MAX) and a few fields that would otherwise create
// things (a password, a bank, a card's account) are always wrong: the state
// check after the run can then demand that nothing changed at all.
import fc from "fast-check";
import { create, toBinary, toJsonString, type DescField, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import { ScalarType } from "@bufbuild/protobuf";
import { AMOUNT_MINOR_MAX, INT64_MAX } from "@paygate/money";
import { envelope, frame, isJson, PROTOCOLS, type Protocol } from "./protocols.js";

const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;

export interface FuzzCase {
  readonly protocol: Protocol;
  readonly kind: string;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array;
}

/** Strings that mean something here, and strings that break naive code. */
const DICTIONARY = [
  "bank-a/1001",
  "bank-b/2001",
  "bank-a/1003",
  "bank-b/2003",
  "bank-a",
  "USD",
  "EUR",
  "usd",
  "alice",
  "bob",
  "shop",
  "admin",
  "gateway-0:00000000-0000-4000-8000-000000000000",
  "other-gw:11111111-2222-4333-8444-555555555555",
  "4242424242424242",
  "https://127.0.0.1:50050/",
  "https://user:pw@localhost/#x",
  "capture.succeeded",
  "transfer.committed",
  "we_0123456789abcdef01234567",
  "wd_0123456789abcdef01234567",
  "ABC123",
  "",
  " ",
  "\u0000",
  "\r\n",
  "../../etc/passwd",
  "' OR 1=1 --",
  "${jndi:ldap://x}",
  "😀💸",
  "e\u0301",
  "\u202eRTL",
  "\ud800",
  "%00%ff",
  "x".repeat(256),
  "9".repeat(40),
];

const hugeString = fc.constantFrom("h".repeat(200_000), "Ω".repeat(120_000));
const overLimitString = fc.constant("L".repeat(1_100_000)); // past the 1 MiB readMaxBytes

export const stringArb: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.constantFrom(...DICTIONARY), weight: 6 },
  { arbitrary: fc.string({ maxLength: 40 }), weight: 3 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 40 }), weight: 3 },
  { arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }), weight: 2 },
  { arbitrary: hugeString, weight: 1 },
);

/** Never a valid amount: <= 0, or past the maximum one request may move. */
export const invalidAmountArb: fc.Arbitrary<bigint> = fc.oneof(
  fc.constantFrom(0n, -1n, INT64_MIN, AMOUNT_MINOR_MAX + 1n, INT64_MAX),
  fc.bigInt({ min: INT64_MIN, max: 0n }),
  fc.bigInt({ min: AMOUNT_MINOR_MAX + 1n, max: INT64_MAX }),
);

const int64Arb = fc.oneof(
  fc.constantFrom(0n, -1n, 1n, INT64_MIN, INT64_MAX, AMOUNT_MINOR_MAX),
  fc.bigInt({ min: INT64_MIN, max: INT64_MAX }),
);

/** Per-field overrides (by the field's localName) that keep the world unchanged. */
export type FieldRules = Readonly<Record<string, fc.Arbitrary<unknown>>>;

export const SAFE_RULES: FieldRules = {
  amountMinor: invalidAmountArb,
  // Below PASSWORD_LENGTH_MIN: CreateUser never succeeds.
  password: fc.oneof(fc.constantFrom("", "short", "alice-test-password".slice(0, 9)), fc.string({ maxLength: 9 })),
  // Never a configured bank: OpenAccount never succeeds.
  bank: fc.oneof(fc.constantFrom("", "bank-z", "BANK-A", "bank-a ", "bank-a/1001"), fc.string({ maxLength: 20 })),
};

/** Field overrides for one request type (e.g. IssueCard's account must not exist). */
const NO_SUCH_ACCOUNT = fc.constantFrom("bank-z/1", "bank-a/99999", "", "nope");

export const MESSAGE_RULES: Readonly<Record<string, FieldRules>> = {
  "paygate.gateway.v1.IssueCardRequest": { accountId: NO_SUCH_ACCOUNT },
  // An unlink or a new code for a real account would change who may use it.
  "paygate.gateway.v1.UnlinkBankAccountRequest": { accountId: NO_SUCH_ACCOUNT },
  "paygate.gateway.v1.IssueLinkCodeRequest": { accountId: NO_SUCH_ACCOUNT },
};

function scalarArb(t: ScalarType): fc.Arbitrary<unknown> {
  switch (t) {
    case ScalarType.STRING:
      return stringArb;
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 64 });
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.double();
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64Arb;
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return fc.bigInt({ min: 0n, max: UINT64_MAX });
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.integer({ min: 0, max: 4294967295 });
    default:
      return fc.oneof(
        fc.constantFrom(0, -1, 1, 12, 13, 2147483647, -2147483648),
        fc.integer({ min: -2147483648, max: 2147483647 }),
      );
  }
}

function fieldArb(field: DescField, depth: number, rules: FieldRules): fc.Arbitrary<unknown> {
  const rule = rules[field.localName];
  if (rule) return field.fieldKind === "list" ? fc.array(rule, { maxLength: 6 }) : rule;
  switch (field.fieldKind) {
    case "scalar":
      return scalarArb(field.scalar);
    case "enum":
      return fc.integer({ min: -3, max: 40 });
    case "message":
      return depth >= 3 ? fc.constant(undefined) : initArb(field.message, depth + 1, rules);
    case "list": {
      const elem =
        field.listKind === "scalar"
          ? scalarArb(field.scalar)
          : field.listKind === "enum"
            ? fc.integer({ min: -3, max: 40 })
            : depth >= 3
              ? fc.constant({})
              : initArb(field.message, depth + 1, rules);
      // Many small elements (not many huge ones: that is the over-limit case's job).
      const small =
        field.listKind === "scalar" && field.scalar === ScalarType.STRING
          ? fc.constantFrom("ABC123", "", "x")
          : field.listKind === "message"
            ? fc.constant({ amountMinor: -1n })
            : elem;
      return fc.oneof(
        { arbitrary: fc.array(elem, { maxLength: 6 }), weight: 9 },
        { arbitrary: fc.array(small, { minLength: 3000, maxLength: 3000 }), weight: 1 },
      );
    }
    case "map":
      return fc.constant(undefined);
  }
}

export function initArb(
  desc: DescMessage,
  depth = 0,
  rules: FieldRules = SAFE_RULES,
): fc.Arbitrary<Record<string, unknown>> {
  const merged = { ...rules, ...MESSAGE_RULES[desc.typeName] };
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of desc.fields) model[f.localName] = fieldArb(f, depth, merged);
  return fc.record(model, { requiredKeys: [] }).map((r) => {
    for (const k of Object.keys(r)) if (r[k] === undefined) delete r[k];
    return r;
  });
}

function varint(v: bigint, overlong = false): number[] {
  const out: number[] = [];
  let x = BigInt.asUintN(64, v);
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x > 0n || overlong) b |= 0x80;
    out.push(b);
  } while (x > 0n);
  if (overlong) out.push(...Array<number>(10).fill(0x80), 0x00);
  return out;
}

/** Protobuf-shaped bytes with the wrong wire types, lying lengths and junk tags. */
const wireGarbageArb: fc.Arbitrary<Uint8Array> = fc
  .array(
    fc.record({
      field: fc.oneof(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 536870911 })),
      wireType: fc.integer({ min: 0, max: 7 }),
      value: fc.bigInt({ min: 0n, max: UINT64_MAX }),
      payload: fc.uint8Array({ maxLength: 24 }),
      lie: fc.integer({ min: -5, max: 1_000_000 }),
      overlong: fc.boolean(),
    }),
    { maxLength: 10 },
  )
  .map((fields) => {
    const bytes: number[] = [];
    for (const f of fields) {
      bytes.push(...varint(BigInt(f.field) * 8n + BigInt(f.wireType)));
      switch (f.wireType) {
        case 0:
          bytes.push(...varint(f.value, f.overlong));
          break;
        case 1:
          bytes.push(...f.payload.slice(0, 8));
          break;
        case 2:
          bytes.push(...varint(BigInt(Math.max(0, f.payload.length + (f.lie % 3 === 0 ? f.lie : 0)))), ...f.payload);
          break;
        case 5:
          bytes.push(...f.payload.slice(0, 4));
          break;
        default:
          bytes.push(...f.payload.slice(0, 3));
      }
    }
    return Uint8Array.from(bytes);
  });

const utf8 = (s: string) => new TextEncoder().encode(s);

/** JSON with the field names right and the types wrong, plus plain JSON noise. */
function wrongJsonArb(desc: DescMessage): fc.Arbitrary<Uint8Array> {
  const names = desc.fields.flatMap((f) => [f.jsonName, f.name]);
  const weird = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.constantFrom(
      "1e400",
      "-0",
      "1.5",
      "NaN",
      "Infinity",
      "9223372036854775808",
      "-9223372036854775809",
      "0x10",
      "true",
      "null",
      '""',
      "[]",
      "{}",
    ),
  );
  const asText = (v: unknown) =>
    typeof v === "string" && /^[-0-9tnNI[{"]/.test(v) && !v.startsWith('"') ? v : JSON.stringify(v);
  const objectArb = fc
    .array(
      fc.tuple(
        names.length > 0
          ? fc.oneof(fc.constantFrom(...names), fc.string({ maxLength: 8 }))
          : fc.string({ maxLength: 8 }),
        weird,
      ),
      { maxLength: 6 },
    )
    .map((pairs) => utf8(`{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${asText(v)}`).join(",")}}`));
  return fc.oneof(
    { arbitrary: objectArb, weight: 6 },
    { arbitrary: fc.jsonValue().map((v) => utf8(JSON.stringify(v) ?? "null")), weight: 2 },
    { arbitrary: fc.integer({ min: 1, max: 200_000 }).map((n) => utf8("[".repeat(n) + "]".repeat(n))), weight: 1 },
    {
      arbitrary: fc.integer({ min: 1, max: 50_000 }).map((n) => utf8(`${'{"a":'.repeat(n)}1${"}".repeat(n)}`)),
      weight: 1,
    },
    {
      arbitrary: fc.constantFrom(
        Uint8Array.from([0xff, 0xfe, 0x7b, 0x7d]),
        Uint8Array.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x3a, 0x31, 0x7d]),
        utf8("\ufeff{}"),
        utf8('{"a":1,"a":2}'),
        utf8("{"),
        utf8(""),
      ),
      weight: 1,
    },
  );
}

function typedBytes(desc: DescMessage, json: boolean): fc.Arbitrary<Uint8Array> {
  return initArb(desc).map((init) => {
    const msg = create(desc, init);
    if (!json) return toBinary(desc, msg);
    try {
      return utf8(toJsonString(desc, msg));
    } catch {
      // Not representable in JSON (e.g. an out-of-range Timestamp): send the binary form anyway.
      return toBinary(desc, msg);
    }
  });
}

function overLimitBytes(desc: DescMessage, json: boolean): fc.Arbitrary<Uint8Array> {
  const field = desc.fields.find((f) => f.fieldKind === "scalar" && f.scalar === ScalarType.STRING);
  if (!field) return fc.uint8Array({ minLength: 1_100_000, maxLength: 1_100_000 });
  return overLimitString.map((s) => {
    const msg = create(desc, { [field.localName]: s } as Record<string, unknown>);
    return json ? utf8(toJsonString(desc, msg)) : toBinary(desc, msg);
  });
}

type Framing = "good" | "raw" | "bad-length" | "compressed" | "two-messages" | "trailing-junk";

function applyFraming(
  protocol: Protocol,
  message: Uint8Array,
  framing: Framing,
): { headers: Record<string, string>; body: Uint8Array } {
  const unary = protocol === "connect-proto" || protocol === "connect-json";
  if (unary || framing === "good") return frame(protocol, message, "good");
  const { headers } = frame(protocol, message, "good");
  switch (framing) {
    case "raw":
      return { headers, body: message };
    case "bad-length": {
      const e = envelope(message);
      new DataView(e.buffer).setUint32(1, message.length + 7);
      return { headers, body: e };
    }
    case "compressed":
      return { headers, body: envelope(message, 1) };
    case "two-messages":
      return { headers, body: Uint8Array.from([...envelope(message), ...envelope(message)]) };
    case "trailing-junk":
      return { headers, body: Uint8Array.from([...envelope(message), 0x00, 0x00]) };
  }
}

/** Every protocol, weighted to those the method can be called with (the rest only earn a 415). */
function protocolArb(method: DescMethod): fc.Arbitrary<Protocol> {
  const streaming = method.methodKind === "server_streaming";
  return fc.oneof(
    ...PROTOCOLS.map((p) => ({
      arbitrary: fc.constant(p),
      weight: p.startsWith("connect-stream") !== streaming && p.startsWith("connect") ? 1 : 6,
    })),
  );
}

/** One bad request to `method`, in any protocol the server speaks. */
export function caseArb(method: DescMethod): fc.Arbitrary<FuzzCase> {
  return fc
    .tuple(
      protocolArb(method),
      fc.constantFrom<Framing>(
        "good",
        "good",
        "good",
        "raw",
        "bad-length",
        "compressed",
        "two-messages",
        "trailing-junk",
      ),
    )
    .chain(([protocol, framing]) => {
      const json = isJson(protocol);
      const kinds: fc.Arbitrary<[string, Uint8Array]>[] = [
        typedBytes(method.input, json).map((b) => ["typed", b] as [string, Uint8Array]),
        typedBytes(method.input, json).map((b) => ["typed", b] as [string, Uint8Array]),
        fc.uint8Array({ maxLength: 2048 }).map((b) => ["random-bytes", b] as [string, Uint8Array]),
        json
          ? wrongJsonArb(method.input).map((b) => ["wrong-json", b] as [string, Uint8Array])
          : wireGarbageArb.map((b) => ["wire-garbage", b] as [string, Uint8Array]),
        json
          ? wrongJsonArb(method.input).map((b) => ["wrong-json", b] as [string, Uint8Array])
          : wireGarbageArb.map((b) => ["wire-garbage", b] as [string, Uint8Array]),
      ];
      const body = fc.oneof(
        { arbitrary: fc.oneof(...kinds), weight: 40 },
        {
          arbitrary: overLimitBytes(method.input, json).map((b) => ["over-limit", b] as [string, Uint8Array]),
          weight: 1,
        },
      );
      return body.map(([kind, message]) => {
        const framed = applyFraming(protocol, message, framing);
        return {
          protocol,
          kind: framing === "good" ? kind : `${kind}+${framing}`,
          headers: framed.headers,
          body: framed.body,
        };
      });
    });
}

/** A short, printable description of a case for failure messages. */
export function describeCase(c: FuzzCase): string {
  const hex = Buffer.from(c.body.subarray(0, 48)).toString("hex");
  return `${c.protocol} ${c.kind} ${c.body.length} bytes: ${hex}${c.body.length > 48 ? "..." : ""}`;
}
