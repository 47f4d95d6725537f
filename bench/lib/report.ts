/**
 * Benchmark reports: each benchmark owns one `## <title>` section of a shared
 * Markdown file (docs/benchmarks.md) and replaces only that section, so
 * benchmarks can be rerun independently without clobbering each other.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const FILE_HEADER =
  '# Benchmarks\n\nMeasured numbers, each section written by the benchmark named in it. Rerun a benchmark to refresh its section.\n';

/** Replace (or append) the section `## title` of `file` with `body` (Markdown without the heading). */
export function upsertSection(file: string, title: string, body: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const current = existsSync(file) ? readFileSync(file, 'utf8') : FILE_HEADER;
  const heading = `## ${title}`;
  const section = `${heading}\n\n${body.trim()}\n`;
  const lines = current.split('\n');
  const start = lines.findIndex((l) => l.trim() === heading);
  let next: string;
  if (start === -1) {
    next = `${current.replace(/\s*$/, '')}\n\n${section}`;
  } else {
    let end = lines.findIndex((l, i) => i > start && /^## /.test(l));
    if (end === -1) end = lines.length;
    const before = lines.slice(0, start).join('\n').replace(/\s*$/, '');
    const after = lines.slice(end).join('\n').replace(/^\s*/, '');
    next = `${before}\n\n${section}${after ? `\n${after}` : ''}`;
  }
  writeFileSync(file, next.endsWith('\n') ? next : `${next}\n`);
}

/** A Markdown table from a header row and data rows. */
export function markdownTable(header: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  const line = (cells: readonly (string | number)[]): string => `| ${cells.map(String).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map((r) => line(r))].join('\n');
}

/** Integers as runs, for prose: [1, 2, 3, 4] → "1–4", [1, 2, 4] → "1–2, 4" (sorted, duplicates dropped). */
export function numberRanges(values: readonly number[]): string {
  const s = [...new Set(values)].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < s.length;) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === (s[j] as number) + 1) j++;
    out.push(j === i ? String(s[i]) : `${s[i]}–${s[j]}`);
    i = j + 1;
  }
  return out.join(', ');
}
