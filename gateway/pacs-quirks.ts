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
}

export const ORTHANC_DICOMWEB_1_7: PacsQuirks = Object.freeze({
  honoursForwarded: true,
  hasThumbnail: false,
  thumbnailViewport: '128,128',
});
// Also measured, and handled without a flag: a partial STOW failure comes back
// as 400 without Content-Type (StowResponseEvent.contentType is optional), and
// `Keep-Alive: timeout=1` (upstream-agent.ts).
