/**
 * The error catalogue: handlers throw HttpProblem; one middleware turns it into an
 * RFC 9457 (ex-7807) problem body. Codes are stable identifiers clients can match.
 */
export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail?: string;
  code: string;
  [extra: string]: unknown;
}

const catalogue = {
  BAD_PATH: { status: 400, title: 'Path not allowed' },
  BAD_UID: { status: 400, title: 'Malformed UID' },
  BAD_PARAM: { status: 400, title: 'Invalid parameter' },
  UNAUTHORIZED: { status: 401, title: 'Authentication required' },
  FORBIDDEN: { status: 403, title: 'Forbidden' },
  HOST_NOT_ALLOWED: { status: 403, title: 'Host not allowed' },
  NOT_FOUND: { status: 404, title: 'Not found' },
  METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed' },
  NOT_ACCEPTABLE: { status: 406, title: 'Not acceptable' },
  UPLOAD_TIMEOUT: { status: 408, title: 'Upload too slow' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'Payload too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  NOT_EMBEDDABLE: { status: 422, title: 'Image cannot be embedded' },
  UPSTREAM_UNREACHABLE: { status: 502, title: 'PACS unreachable' },
  UPSTREAM_TIMEOUT: { status: 504, title: 'PACS timeout' },
  NOT_READY: { status: 503, title: 'Service not ready' },
  EMBED_TIMEOUT: { status: 503, title: 'Embedding not available in time' },
  EMBED_UNAVAILABLE: { status: 503, title: 'Embedding queue unavailable' },
  INDEX_UNAVAILABLE: { status: 503, title: 'Vector index unavailable' },
  INTERNAL: { status: 500, title: 'Internal error' },
} as const;

export type ProblemCode = keyof typeof catalogue;

export class HttpProblem extends Error {
  readonly status: number;
  constructor(
    readonly code: ProblemCode,
    readonly detail?: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(detail ?? catalogue[code].title);
    this.name = 'HttpProblem';
    this.status = catalogue[code].status;
  }

  toBody(): ProblemBody {
    const c = catalogue[this.code];
    return {
      type: `urn:cbmir:problem:${this.code.toLowerCase().replace(/_/g, '-')}`,
      title: c.title,
      status: c.status,
      code: this.code,
      ...(this.detail ? { detail: this.detail } : {}),
      ...this.extra,
    };
  }
}

/** DICOM UID: digits and dots, ≤ 64 chars, no empty components (leading zeros tolerated: real archives have them). */
const UID_RE = /^[0-9]+(\.[0-9]+)*$/;
export function isValidUid(s: unknown): s is string {
  return typeof s === 'string' && s.length > 0 && s.length <= 64 && UID_RE.test(s);
}

export function assertUid(name: string, s: unknown): string {
  if (!isValidUid(s)) throw new HttpProblem('BAD_UID', `${name} must be a DICOM UID (digits and dots, at most 64 characters)`);
  return s;
}
