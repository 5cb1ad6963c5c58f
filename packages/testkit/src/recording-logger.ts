// A logger for unit tests of code that logs through an { info, error } port
// (telemetry's OpsLogger and its kind): every call is kept, in order.

export interface RecordedLine {
  readonly level: "info" | "error";
  readonly obj: object;
  readonly msg: string;
}

/** A logger whose calls land in `lines`. */
export function recordingLogger(): {
  logger: { info(obj: object, msg: string): void; error(obj: object, msg: string): void };
  lines: RecordedLine[];
} {
  const lines: RecordedLine[] = [];
  const logger = {
    info: (obj: object, msg: string) => {
      lines.push({ level: "info", obj, msg });
    },
    error: (obj: object, msg: string) => {
      lines.push({ level: "error", obj, msg });
    },
  };
  return { logger, lines };
}
