// The bureau's data: one YAML (or JSON, which is YAML) file, read once at start.
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { parseReports, type CreditReport } from "../domain/report.js";

export class ReportFileError extends Error {
  override name = "ReportFileError";
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super(`credit-bureau: invalid data file ${file}:\n  - ${problems.join("\n  - ")}`);
  }
}

export function loadReportFile(file: string): ReadonlyMap<string, CreditReport> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ReportFileError(file, [`cannot read it: ${(e as Error).message}`]);
  }
  return parseReportText(text, file);
}

export function parseReportText(text: string, file = "data"): ReadonlyMap<string, CreditReport> {
  let doc: unknown;
  try {
    // Numbers past 2^53 would lose digits: the domain refuses them (quote them instead).
    doc = parse(text, { uniqueKeys: true });
  } catch (e) {
    throw new ReportFileError(file, [`not valid YAML/JSON: ${(e as Error).message}`]);
  }
  const parsed = parseReports(doc);
  if (!parsed.ok) throw new ReportFileError(file, parsed.problems);
  return parsed.reports;
}
