// Free text that one person types and another reads: memos, merchant
// references, display names. It ends up on someone else's terminal (paycli
// history) and web page, so it must not carry anything a terminal or a text
// renderer acts on: C0/C1 control characters (ESC starts a terminal escape
// sequence, 0x9b is a one-byte CSI), DEL, and the Unicode bidi overrides and
// isolates that make text display in another order than it reads ("Trojan
// Source", CVE-2021-42574).

export const MEMO_LENGTH_MAX = 140;

function isControlCodeUnit(c: number): boolean {
  return (
    c <= 0x1f || // C0, including tab and newline: a memo is one line
    (c >= 0x7f && c <= 0x9f) || // DEL and C1 (0x9b is CSI on many terminals)
    (c >= 0x202a && c <= 0x202e) || // LRE RLE PDF LRO RLO
    (c >= 0x2066 && c <= 0x2069) // LRI RLI FSI PDI
  );
}

/** Index (UTF-16) of the first control or bidi-control character, or -1 when the text is printable. */
export function findControlCharacter(text: string): number {
  for (let i = 0; i < text.length; i++) if (isControlCodeUnit(text.charCodeAt(i))) return i;
  return -1;
}

/**
 * The text with every control character shown visibly instead of acted on.
 * "c" (for people): ESC becomes the four characters \x1b, U+202E becomes
 * \u202e. "json": \u001b and \u202e, valid escapes inside a JSON string, so
 * applied to JSON text it changes how the text looks, never what it means.
 * `keep` lists characters left alone (e.g. "\n" for text made of lines).
 * For showing stored text that predates the rule, or text from a peer that did not check.
 */
export function escapeControlCharacters(text: string, style: "c" | "json" = "c", keep = ""): string {
  if (findControlCharacter(text) === -1) return text;
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (!isControlCodeUnit(c) || keep.includes(text[i]!)) out += text[i];
    else if (style === "c" && c <= 0xff) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else out += `\\u${c.toString(16).padStart(4, "0")}`;
  }
  return out;
}

export interface TextProblem {
  readonly reason: "memo_too_long" | "invalid_memo";
  readonly message: string;
}

/** The memo rule (also for merchant references): at most MEMO_LENGTH_MAX characters, all printable. */
export function checkMemoShape(memo: string, field = "memo"): TextProblem | undefined {
  if ([...memo].length > MEMO_LENGTH_MAX)
    return { reason: "memo_too_long", message: `${field} must be at most ${MEMO_LENGTH_MAX} characters` };
  const at = findControlCharacter(memo);
  if (at !== -1) {
    const code = memo.charCodeAt(at).toString(16).padStart(4, "0");
    return {
      reason: "invalid_memo",
      message: `${field} must not contain control characters (U+${code.toUpperCase()} at position ${at})`,
    };
  }
  return undefined;
}
