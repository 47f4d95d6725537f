/** Structured logging (pino). Never log PHI: log UIDs' hashes only where needed, never names/IDs/bodies. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string = process.env.CBMIR_LOG_LEVEL ?? 'info', name = 'cbmir'): Logger {
  return pino({
    name,
    level,
    redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization'], censor: '[redacted]' },
  });
}
