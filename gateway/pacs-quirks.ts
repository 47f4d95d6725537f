/**
 * What we know about the PACS behind us, as named capability flags (one place,
 * not scattered ifs). Values describe Orthanc 1.10 with DICOMweb plugin 1.7,
 * as measured against the Debian packages (see docs/api.md).
 */
export interface PacsQuirks {
  /** PACS builds its own URLs from an RFC 7239 `Forwarded: host=…;proto=…` header. */
  readonly honoursForwarded: boolean;
  /** PACS serves PS3.18 /thumbnail itself (plugin 1.7: no → we render via /rendered). */
  readonly hasThumbnail: boolean;
  /** Viewport the gateway asks /rendered for when a thumbnail request names none. */
  readonly thumbnailViewport: string;
  /**
   * QIDO `includefield` is split on a literal "," only: an encoded "%2C" (OHIF v3
   * sends `includefield=00081030%2C00080060…`) makes the whole value one unknown
   * tag, and StudyDescription, Modality … go missing from the answer. Measured
   * on plugin 1.7 (match values such as `StudyInstanceUID=a%2Cb` are decoded
   * and split fine). The gateway then decodes %2C in includefield values.
   */
  readonly includeFieldNeedsLiteralComma: boolean;
}

export const ORTHANC_DICOMWEB_1_7: PacsQuirks = Object.freeze({
  honoursForwarded: true,
  hasThumbnail: false,
  thumbnailViewport: '128,128',
  includeFieldNeedsLiteralComma: true,
});

/**
 * A QIDO query string as this PACS understands it: with
 * `includeFieldNeedsLiteralComma`, every `includefield` value has its "%2C"
 * turned into ",". Nothing else is decoded or reordered: the rest of the
 * query is forwarded byte for byte (it is never parsed and re-serialised).
 */
export function normaliseQidoQuery(query: string, quirks: PacsQuirks): string {
  if (!quirks.includeFieldNeedsLiteralComma || !/%2c/i.test(query)) return query;
  return query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq === -1 || pair.slice(0, eq).toLowerCase() !== 'includefield') return pair;
      return `${pair.slice(0, eq + 1)}${pair.slice(eq + 1).replace(/%2c/gi, ',')}`;
    })
    .join('&');
}
// Also measured, and handled without a flag: a partial STOW failure comes back
// as 400 without Content-Type (StowResponseEvent.contentType is optional), and
// `Keep-Alive: timeout=1` (upstream-agent.ts).
