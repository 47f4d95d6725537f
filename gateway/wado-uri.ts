/**
 * WADO-URI (PS3.18 §9): GET /wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…[&contentType=…]
 * Forwarded verbatim to the PACS's WADO-URI root (Orthanc: /wado) once the
 * mandatory parameters are present and the UIDs are well-formed.
 */
import { HttpProblem, isValidUid } from '../core/errors.js';

export function checkWadoUriQuery(query: string): void {
  let p: URLSearchParams;
  try {
    p = new URLSearchParams(query);
  } catch {
    throw new HttpProblem('BAD_PARAM', 'query string is not valid');
  }
  if (p.get('requestType') !== 'WADO') throw new HttpProblem('BAD_PARAM', 'requestType=WADO is required');
  for (const name of ['studyUID', 'seriesUID', 'objectUID']) {
    // The query goes to the PACS verbatim, so a second copy would reach it unchecked.
    if (p.getAll(name).length > 1) throw new HttpProblem('BAD_PARAM', `${name} may appear only once`);
    const v = p.get(name);
    if (!isValidUid(v)) throw new HttpProblem('BAD_UID', `${name} must be a DICOM UID (digits and dots, at most 64 characters)`);
  }
}
