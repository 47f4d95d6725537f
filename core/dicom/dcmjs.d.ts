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
  };
  export default dcmjs;
}
