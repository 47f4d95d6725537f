/**
 * The slice of dcmjs (no bundled types) that core/dicom uses: Part-10 read and
 * write of "denaturalized" datasets (tag → {vr, Value}).
 */
declare module 'dcmjs' {
  export interface DcmElement {
    vr: string;
    Value?: unknown[];
  }
  export type DcmDataset = Record<string, DcmElement>;

  export class DicomDict {
    constructor(meta: DcmDataset);
    meta: DcmDataset;
    dict: DcmDataset;
    write(options?: { allowInvalidVRLength?: boolean; fragmentMultiframe?: boolean }): ArrayBuffer;
  }

  export class DicomMessage {
    static readFile(
      buffer: ArrayBuffer,
      options?: { ignoreErrors?: boolean; untilTag?: string | null; includeUntilTagValue?: boolean; noCopy?: boolean; forceStoreRaw?: boolean },
    ): DicomDict;
    /** Internal: reads one element (every level, sequence items included); core/dicom/parse.ts wraps it for one read. */
    static _readTag(...args: unknown[]): { tag: { toCleanString(): string }; values: unknown[] };
  }

  interface Logger {
    setLevel(level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent'): void;
    getLogger(name: string): Logger;
  }

  export class ReadBufferStream {
    constructor(buffer: ArrayBuffer, littleEndian?: boolean | null, options?: { noCopy?: boolean });
    view: object;
  }

  const dcmjs: {
    data: { DicomDict: typeof DicomDict; DicomMessage: typeof DicomMessage; ReadBufferStream: typeof ReadBufferStream };
    log: Logger;
    /** Specific Character Set term, normalised as dcmjs does ("ISO_IR 100" → "iso-ir-100"), → TextDecoder label. */
    constants: { encodingMapping: Readonly<Record<string, string>> };
  };
  export default dcmjs;
}
