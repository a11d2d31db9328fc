/**
 * DNS discovery of a service's endpoints (docs/endpoints.md, "Discovery"): the host name is
 * resolved at start and every `refresh`, all addresses (IPv4 and IPv6). With `servers`, Node's
 * `dns.Resolver` asks them directly (A and AAAA); without, the system resolver (`dns.lookup`
 * with `all: true`, as getaddrinfo reads /etc/hosts and resolv.conf). An error or an empty answer
 * is reported and changes nothing: the last good set keeps serving.
 */
import { lookup, Resolver } from 'node:dns/promises';
import type { DiscoveryRule } from '../config/types.js';

/** A resolution's addresses, or why there are none. */
export type Resolution = { readonly ok: true; readonly addresses: readonly string[] } | { readonly ok: false; readonly error: string };

export class Discovery {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly resolver: Resolver | undefined;

  constructor(
    readonly rule: DiscoveryRule,
    private readonly onResult: (r: Resolution) => void,
  ) {
    if (rule.servers.length > 0) {
      // A bounded wait per query: a server that does not answer must not hold a refresh forever.
      this.resolver = new Resolver({ timeout: 2000, tries: 2 });
      this.resolver.setServers([...rule.servers]);
    }
  }

  /** Resolves now, then every `refresh` after each answer (never two queries at once). */
  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.resolver?.cancel();
  }

  private async run(): Promise<void> {
    const r = await this.resolve();
    if (this.stopped) return;
    this.onResult(r);
    this.timer = setTimeout(() => void this.run(), this.rule.refreshMs);
    this.timer.unref();
  }

  /** Every address of the host name, sorted (a stable order keeps round-robin even). */
  async resolve(): Promise<Resolution> {
    const host = this.rule.host;
    try {
      let addresses: string[];
      if (this.resolver === undefined) {
        addresses = (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
      } else {
        const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(host), this.resolver.resolve6(host)]);
        if (v4.status === 'rejected' && v6.status === 'rejected') throw noData(v4.reason) ? v6.reason : v4.reason;
        addresses = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
      }
      const unique = [...new Set(addresses)].sort();
      if (unique.length === 0) return { ok: false, error: `no addresses for ${host}` };
      return { ok: true, addresses: unique };
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      return { ok: false, error: `cannot resolve ${host}: ${e.code ?? e.message}` };
    }
  }
}

function noData(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENODATA';
}
