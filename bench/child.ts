/** Helpers shared by the bench and soak scripts for child processes that log JSON lines. */
import type { ChildProcess } from 'node:child_process';

/** The first stdout JSON line for which `pick` returns a value. */
export function firstLine<T>(child: ChildProcess, pick: (l: any) => T | undefined): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('process did not report in 10 s')), 10_000);
    let buf = '';
    let done = false;
    child.stdout!.on('data', (d: Buffer) => {
      if (done) return;
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let v: T | undefined;
        try {
          v = pick(JSON.parse(line));
        } catch {
          continue;
        }
        if (v !== undefined) {
          done = true;
          clearTimeout(timer);
          resolve(v);
          return;
        }
      }
    });
  });
}

/** The proxy's ports, from its "circuit-proxy listening" log line. */
export function listeningPorts(child: ChildProcess): Promise<{ port: number; adminPort: number }> {
  return firstLine(child, (l) =>
    String(l.msg).startsWith('circuit-proxy listening') ? { port: l.port as number, adminPort: l.adminPort as number } : undefined,
  );
}

/** Forces `service` open through a running proxy's admin API (the bench's fail-fast path). */
export async function forceOpen(adminPort: number, service: string): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/breakers/${service}/open`, {
    method: 'POST',
    body: '{"reason":"bench: fail-fast path"}',
  });
  if (!res.ok) throw new Error(`force-open of ${service} failed: ${res.status}`);
}
