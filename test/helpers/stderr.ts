/** What a CLI helper writes to stderr, with stderr taken for a non-terminal (nohup, CI). */
export function captureStderr(): { written: string[]; restore(): void } {
  const written: string[] = [];
  const orig = process.stderr.write.bind(process.stderr);
  const isTTY = process.stderr.isTTY;
  process.stderr.isTTY = false;
  process.stderr.write = ((s: string) => (written.push(String(s)), true)) as typeof process.stderr.write;
  return {
    written,
    restore() {
      process.stderr.write = orig;
      process.stderr.isTTY = isTTY;
    },
  };
}
