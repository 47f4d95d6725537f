/**
 * Progress for a long CLI run when stderr is not a terminal (nohup, systemd, CI): one line
 * every `everyMs` (default 30 s) instead of a bar that would write nothing readable there.
 */
export function progressLines<P>(line: (p: P) => string, everyMs = 30_000): { update(p: P): void; stop(): void } {
  let last = Date.now();
  return {
    update(p) {
      const now = Date.now();
      if (now - last < everyMs) return;
      last = now;
      process.stderr.write(`${line(p)}\n`);
    },
    stop() {},
  };
}
