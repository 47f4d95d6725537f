/** Structured logging (pino). Never log PHI: log UIDs' hashes only where needed, never names/IDs/bodies. */
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * DICOM UIDs are identifiers under the de-identification rules, and error messages can carry
 * them (a PACS path, a QIDO). A digits-and-dots token with five or more components, or with a
 * component of ten or more digits (2.25.<UUID>), is one; an IPv4 address or a version is not.
 */
// Bounded by digits, not by \b: a job id `<uid>_<version>` has no word boundary after the UID.
const UID_LIKE = /(?<!\d|\d\.)(?:\d+(?:\.\d+){4,}|\d+(?:\.\d+)*\.\d{10,}(?:\.\d+)*)(?!\.?\d)/g;

/** UIDs of the DICOM standard itself (transfer syntaxes, SOP classes) name no one and say why an image was refused. */
const STANDARD_ROOT = '1.2.840.10008.';

export function scrubUids(s: string): string {
  return s.replace(UID_LIKE, (uid) => (uid.startsWith(STANDARD_ROOT) ? uid : '<uid>'));
}

function scrub(v: unknown, depth = 0): unknown {
  if (typeof v === 'string') return scrubUids(v);
  if (depth > 4 || v === null || typeof v !== 'object') return v;
  // pino's err serializer would read these; its message and stack are not enumerable.
  if (v instanceof Error) return { type: v.name, message: scrubUids(v.message), stack: scrubUids(v.stack ?? '') };
  if (Array.isArray(v)) return v.map((x) => scrub(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = scrub(x, depth + 1);
  return out;
}

export function createLogger(
  level: string = process.env.CBMIR_LOG_LEVEL ?? 'info',
  name = 'cbmir',
  destination?: DestinationStream,
): Logger {
  const options = {
    name,
    level,
    redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization'], censor: '[redacted]' },
    formatters: { log: (obj: Record<string, unknown>) => scrub(obj) as Record<string, unknown> },
    hooks: {
      // The message too: a caller may build one from an error's text.
      logMethod(this: Logger, args: Parameters<Logger['info']>, method: (...a: unknown[]) => void) {
        method.apply(
          this,
          args.map((a) => (typeof a === 'string' ? scrubUids(a) : a)),
        );
      },
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
