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
  /**
   * WADO-URI `contentType` is compared undecoded: `contentType=application%2Fdicom`, the form
   * cornerstone's WADO-URI loader, Weasis and OHIF v2 send, is 400 "Unsupported content type"
   * while `application/dicom` is served. Measured on plugin 1.7 (image%2Fjpeg and image%2fpng
   * alike). The gateway then decodes %2F in contentType values.
   */
  readonly wadoUriContentTypeNeedsLiteralSlash: boolean;
}

export const ORTHANC_DICOMWEB_1_7: PacsQuirks = Object.freeze({
  honoursForwarded: true,
  hasThumbnail: false,
  thumbnailViewport: '128,128',
  includeFieldNeedsLiteralComma: true,
  wadoUriContentTypeNeedsLiteralSlash: true,
});

/**
 * A QIDO query string as this PACS understands it: with
 * `includeFieldNeedsLiteralComma`, every `includefield` value has its "%2C"
 * turned into ",". Nothing else is decoded or reordered: the rest of the
 * query is forwarded byte for byte (it is never parsed and re-serialised).
 */
export function normaliseQidoQuery(query: string, quirks: PacsQuirks): string {
  if (!quirks.includeFieldNeedsLiteralComma || !/%2c/i.test(query)) return query;
  return decodeInValues(query, (name) => name.toLowerCase() === 'includefield', /%2c/gi, ',');
}

/**
 * A WADO-URI query string as this PACS understands it: with
 * `wadoUriContentTypeNeedsLiteralSlash`, every `contentType` value (the name is case-sensitive
 * in PS3.18 §9) has its "%2F" turned into "/". The rest goes byte for byte.
 */
export function normaliseWadoUriQuery(query: string, quirks: PacsQuirks): string {
  if (!quirks.wadoUriContentTypeNeedsLiteralSlash || !/%2f/i.test(query)) return query;
  return decodeInValues(query, (name) => name === 'contentType', /%2f/gi, '/');
}

/** `escape` turned into `literal` in the values of the pairs whose name `named` accepts. */
function decodeInValues(query: string, named: (name: string) => boolean, escape: RegExp, literal: string): string {
  return query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq === -1 || !named(pair.slice(0, eq))) return pair;
      return `${pair.slice(0, eq + 1)}${pair.slice(eq + 1).replace(escape, literal)}`;
    })
    .join('&');
}
// Also measured, and handled without a flag: a partial STOW failure comes back
// as 400 without Content-Type (StowResponseEvent.contentType is optional), and
// `Keep-Alive: timeout=1` (upstream-agent.ts).
