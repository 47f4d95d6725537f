/**
 * bench:proxy's verdicts on its targets (docs/benchmarks.md, "Proxy"): for QIDO and
 * WADO alike, throughput through the gateway ≥ 0.90 × direct and ≤ 1 ms added to the
 * p50, both judged on the medians over rounds of values paired within a round, so a
 * verdict rests on the ratio measured in the same run and not on absolute figures;
 * and no request failed, direct or through the gateway: a ratio over failing requests
 * (fast 502s, or a PACS that refused) says nothing about the proxy.
 */
export const PROXY_TARGETS = { minRatio: 0.9, maxAddedP50Ms: 1 } as const;

export type Verdict = 'met' | 'missed' | 'not run';

/** The headline figures of one endpoint (medians over rounds). */
export interface ProxyFigures {
  readonly ratio: number;
  readonly added_p50_ms: number;
  /** Failed or timed-out requests, direct and through the gateway, over every measured round. */
  readonly errors: number;
}

export interface ProxyVerdicts {
  /** Per endpoint and figure, for the JSON line. */
  readonly byEndpoint: Record<string, { ratio: Verdict; added_p50_ms: Verdict; errors: Verdict }>;
  /** Every target met (false when one was missed or could not be judged). */
  readonly met: boolean;
  /** [target, result] rows for the report. */
  readonly rows: [string, string][];
}

// A NaN (no round measured) is no evidence either way: it is neither met nor missed.
const judge = (value: number, ok: (v: number) => boolean): Verdict => (Number.isFinite(value) ? (ok(value) ? 'met' : 'missed') : 'not run');

/** Markdown cell of a verdict (a miss stands out). */
export const verdictCell = (v: Verdict): string => (v === 'missed' ? '**missed**' : v);

export function proxyVerdicts(figures: Readonly<Record<string, ProxyFigures>>): ProxyVerdicts {
  const byEndpoint: ProxyVerdicts['byEndpoint'] = {};
  const rows: [string, string][] = [];
  for (const [name, f] of Object.entries(figures)) {
    const ratio = judge(f.ratio, (v) => v >= PROXY_TARGETS.minRatio);
    const added = judge(f.added_p50_ms, (v) => v <= PROXY_TARGETS.maxAddedP50Ms);
    const errors = judge(f.errors, (v) => v === 0);
    byEndpoint[name] = { ratio, added_p50_ms: added, errors };
    rows.push(
      [`${name}: req/s ratio gateway ÷ direct ≥ ${PROXY_TARGETS.minRatio.toFixed(2)}`, `${verdictCell(ratio)} (${f.ratio})`],
      [`${name}: added p50 ≤ ${PROXY_TARGETS.maxAddedP50Ms} ms`, `${verdictCell(added)} (${f.added_p50_ms} ms)`],
      [`${name}: no failed requests (direct and gateway)`, `${verdictCell(errors)} (${f.errors})`],
    );
  }
  const all = Object.values(byEndpoint).flatMap((v) => [v.ratio, v.added_p50_ms, v.errors]);
  return { byEndpoint, met: all.length > 0 && all.every((v) => v === 'met'), rows };
}
