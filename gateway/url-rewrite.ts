/**
 * Map URLs that point at the PACS back onto the gateway, in JSON/XML answers
 * (QIDO RetrieveURL 0008,1190, metadata BulkDataURI, STOW RetrieveURL and
 * Location). WADO bodies are never touched.
 *
 * We replace exact known PACS roots (the configured DICOMweb and WADO-URI
 * roots, plus the loopback aliases a PACS may use for itself), never
 * "anything that looks like a URL": a RetrieveURL pointing at another archive
 * must stay as it is.
 *
 * Bodies are mapped as bytes, never decoded: the roots are fixed ASCII strings,
 * so a byte search finds them, invalid UTF-8 passes unchanged, and an answer can
 * be mapped as it streams (BodyRewriter) with only a root's length held back
 * between chunks.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { LOOPBACK_HOSTS } from '../core/config.js';
import type { Endpoint } from './upstream.js';

interface Mapping {
  readonly from: string;
  readonly fromBytes: Buffer;
  /** Suffix appended to the public base, e.g. "/dicom-web". */
  readonly toSuffix: string;
}

/**
 * Bytes that would continue a root's last segment (`[\w.~%+-]`): `<root>2/…` or
 * `<root>-old/…` is another service's URL, so a root followed by one is not mapped.
 */
const CONTINUES_SEGMENT = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~%+-') CONTINUES_SEGMENT[c.charCodeAt(0)] = 1;

function aliases(e: Endpoint): string[] {
  const urls = [e.url];
  const loop = LOOPBACK_HOSTS.includes(e.hostname) || e.hostname === '::1';
  if (loop) {
    const portPart = e.hostHeader.includes(':') && !e.hostHeader.endsWith(']') ? `:${e.port}` : '';
    for (const h of LOOPBACK_HOSTS) urls.push(`${e.protocol}//${h}${portPart}${e.basePath}`);
  }
  return [...new Set(urls)];
}

interface Mapped {
  /** The bytes up to where it is safe to stop, with the roots found there replaced. */
  readonly out: Buffer;
  /** What must wait for the next chunk: it may begin a root, or end one whose next byte is unknown. */
  readonly rest: Buffer;
  readonly replaced: number;
}

const EMPTY = Buffer.alloc(0);

/**
 * One pass over `buf`: at each position the longest root that matches on a boundary is
 * replaced. Unless `final`, the last `maxFrom` bytes are held back (`rest`): a root
 * starting there is not yet whole, or its next byte — which decides the boundary — not
 * yet known.
 */
function mapBytes(buf: Buffer, final: boolean, mappings: readonly Mapping[], to: readonly Buffer[], maxFrom: number): Mapped {
  const limit = final ? buf.length : buf.length - maxFrom;
  // Where each root next occurs; longest roots come first, so the earliest wins and, at one position, the longest.
  const next = mappings.map((m) => buf.indexOf(m.fromBytes));
  const pieces: Buffer[] = [];
  let pos = 0;
  let replaced = 0;
  for (;;) {
    const k = earliest(next);
    const at = k === -1 ? -1 : next[k]!;
    if (at === -1 || at >= limit) break;
    const end = at + mappings[k]!.fromBytes.length;
    // Before `limit` the next byte is known (no root is longer than maxFrom); past the end of a final buffer there is none.
    if (end === buf.length || !CONTINUES_SEGMENT[buf[end]!]) {
      pieces.push(buf.subarray(pos, at), to[k]!);
      pos = end;
      replaced++;
      for (let i = 0; i < next.length; i++) if (next[i]! !== -1 && next[i]! < pos) next[i] = buf.indexOf(mappings[i]!.fromBytes, pos);
    } else {
      next[k] = buf.indexOf(mappings[k]!.fromBytes, at + 1);
    }
  }
  const cut = Math.max(pos, limit);
  if (replaced === 0) return { out: buf.subarray(0, cut), rest: buf.subarray(cut), replaced };
  pieces.push(buf.subarray(pos, cut));
  return { out: Buffer.concat(pieces), rest: buf.subarray(cut), replaced };
}

/** Index of the smallest position that is not -1 (the first such on ties), or -1. */
function earliest(positions: readonly number[]): number {
  let k = -1;
  for (let i = 0; i < positions.length; i++) {
    const at = positions[i]!;
    if (at !== -1 && (k === -1 || at < positions[k]!)) k = i;
  }
  return k;
}

/** Maps an answer as it streams: `replaced` counts the roots mapped so far. */
export class BodyRewriter extends Transform {
  private tail: Buffer = EMPTY;
  replaced = 0;

  constructor(
    private readonly mappings: readonly Mapping[],
    private readonly to: readonly Buffer[],
    private readonly maxFrom: number,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const buf = this.tail.length === 0 ? chunk : Buffer.concat([this.tail, chunk]);
    const m = mapBytes(buf, false, this.mappings, this.to, this.maxFrom);
    // A copy: a held-back slice would keep the whole chunk it came from alive.
    this.tail = Buffer.from(m.rest);
    this.replaced += m.replaced;
    cb(null, m.out.length > 0 ? m.out : undefined);
  }

  override _flush(cb: TransformCallback): void {
    const m = mapBytes(this.tail, true, this.mappings, this.to, this.maxFrom);
    this.replaced += m.replaced;
    cb(null, m.out.length > 0 ? m.out : undefined);
  }
}

export class UrlRewriter {
  private readonly mappings: readonly Mapping[];
  private readonly maxFrom: number;

  constructor(dicomweb: Endpoint, wadoUri: Endpoint, dicomwebSuffix: string, wadoUriSuffix: string) {
    const m: Mapping[] = [];
    for (const from of aliases(dicomweb)) m.push({ from, fromBytes: Buffer.from(from), toSuffix: dicomwebSuffix });
    for (const from of aliases(wadoUri)) m.push({ from, fromBytes: Buffer.from(from), toSuffix: wadoUriSuffix });
    // Longest first so a root that prefixes another cannot shadow it.
    this.mappings = m.sort((a, b) => b.from.length - a.from.length);
    this.maxFrom = Math.max(...this.mappings.map((x) => x.fromBytes.length));
  }

  /** Rewrite a single URL-valued header (Location, Content-Location). */
  mapUrl(value: string, publicBase: string): string {
    for (const m of this.mappings) {
      if (value === m.from || value.startsWith(`${m.from}/`) || value.startsWith(`${m.from}?`)) {
        return publicBase + m.toSuffix + value.slice(m.from.length);
      }
    }
    return value;
  }

  /** Rewrite a whole body; returns null when there is nothing to rewrite (send the original bytes). */
  mapBody(body: Buffer, publicBase: string): Buffer | null {
    const m = mapBytes(body, true, this.mappings, this.targets(publicBase), this.maxFrom);
    return m.replaced > 0 && !m.out.equals(body) ? m.out : null;
  }

  /** A stream that rewrites a body as it passes, holding back at most one root's length. */
  bodyRewriter(publicBase: string): BodyRewriter {
    return new BodyRewriter(this.mappings, this.targets(publicBase), this.maxFrom);
  }

  private targets(publicBase: string): Buffer[] {
    return this.mappings.map((m) => Buffer.from(publicBase + m.toSuffix));
  }
}

/** Content types whose bodies we rewrite (textual answers). */
export function isRewritableType(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const t = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  return t.endsWith('json') || t.endsWith('+xml') || t === 'application/xml' || t === 'text/xml';
}
