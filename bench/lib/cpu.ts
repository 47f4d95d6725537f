/**
 * CPU time consumed by a process (user + system, ms) from /proc/<pid>/stat
 * (Linux). Used to report CPU per request of each party in a benchmark — a
 * figure that, unlike requests/s, barely moves with other load on the machine.
 */
import { readFileSync } from 'node:fs';

const TICKS_PER_S = 100; // USER_HZ: 100 on every mainstream Linux build

/** CPU ms of `pid` (and its reaped children when `children`), or undefined if unreadable. */
export function processCpuMs(pid: number, children = false): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name "(…)", which may contain spaces.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0);
    return (ticks * 1000) / TICKS_PER_S;
  } catch {
    return undefined;
  }
}

/** CPU ms of this process (precise, from the runtime). */
export function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
