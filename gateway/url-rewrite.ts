/**
 * Map URLs that point at the PACS back onto the gateway, in JSON/XML answers
 * (QIDO RetrieveURL 0008,1190, metadata BulkDataURI, STOW RetrieveURL and
 * Location). WADO bodies are never touched.
 *
 * We replace exact known PACS roots (the configured DICOMweb and WADO-URI
 * roots, plus the loopback aliases a PACS may use for itself), never
 * "anything that looks like a URL": a RetrieveURL pointing at another archive
 * must stay as it is.
 */
import { LOOPBACK_HOSTS } from '../core/config.js';
import type { Endpoint } from './upstream.js';

interface Mapping {
  readonly from: string;
  readonly fromBytes: Buffer;
  /** `from` where it ends the root: not followed by a character that would continue its last segment. */
  readonly fromPattern: RegExp;
  /** Suffix appended to the public base, e.g. "/dicom-web". */
  readonly toSuffix: string;
}

function aliases(e: Endpoint): string[] {
  const urls = [e.url];
  const loop = LOOPBACK_HOSTS.includes(e.hostname) || e.hostname === '::1';
  if (loop) {
    const portPart = e.hostHeader.includes(':') && !e.hostHeader.endsWith(']') ? `:${e.port}` : '';
    for (const h of LOOPBACK_HOSTS) urls.push(`${e.protocol}//${h}${portPart}${e.basePath}`);
  }
  return [...new Set(urls)];
}

function mapping(from: string, toSuffix: string): Mapping {
  const escaped = from.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return { from, fromBytes: Buffer.from(from), fromPattern: new RegExp(`${escaped}(?![\\w.~%+-])`, 'g'), toSuffix };
}

export class UrlRewriter {
  private readonly mappings: readonly Mapping[];

  constructor(dicomweb: Endpoint, wadoUri: Endpoint, dicomwebSuffix: string, wadoUriSuffix: string) {
    const m: Mapping[] = [];
    for (const from of aliases(dicomweb)) m.push(mapping(from, dicomwebSuffix));
    for (const from of aliases(wadoUri)) m.push(mapping(from, wadoUriSuffix));
    // Longest first so a root that prefixes another cannot shadow it.
    this.mappings = m.sort((a, b) => b.from.length - a.from.length);
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

  /** Rewrite a body; returns null when there is nothing to rewrite (send the original bytes). */
  mapBody(body: Buffer, publicBase: string): Buffer | null {
    const hits = this.mappings.filter((m) => body.includes(m.fromBytes));
    if (hits.length === 0) return null;
    let text = body.toString('utf8');
    // Exact roots only, as mapUrl: `<root>2/…` or `<root>-old/…` is another service's URL.
    const original = text;
    for (const m of hits) text = text.replace(m.fromPattern, () => publicBase + m.toSuffix);
    return text === original ? null : Buffer.from(text, 'utf8');
  }
}

/** Content types whose bodies we rewrite (small, textual answers). */
export function isRewritableType(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const t = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  return t.endsWith('json') || t.endsWith('+xml') || t === 'application/xml' || t === 'text/xml';
}
