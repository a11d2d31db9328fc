/**
 * A parser for the Prometheus text exposition format (0.0.4): HELP/TYPE metadata and samples with
 * escaped label values. Used by tests to read /metrics as data instead of matching lines.
 * (The npm parser we tried drops histogram labels.)
 */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Exposition {
  readonly types: ReadonlyMap<string, string>;
  readonly help: ReadonlyMap<string, string>;
  readonly samples: readonly Sample[];
}

export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const samples: Sample[] = [];
  for (const [n, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)\s?(.*)$/.exec(line);
      if (m) (m[1] === 'TYPE' ? types : help).set(m[2]!, m[3]!);
      continue;
    }
    let i = 0;
    while (i < line.length && /[a-zA-Z0-9_:]/.test(line[i]!)) i++;
    const name = line.slice(0, i);
    if (name === '') throw new Error(`line ${n + 1}: no metric name: ${line}`);
    const labels: Record<string, string> = {};
    if (line[i] === '{') {
      i++;
      while (line[i] !== '}') {
        const start = i;
        while (/[a-zA-Z0-9_]/.test(line[i]!)) i++;
        const key = line.slice(start, i);
        if (line[i] !== '=' || line[i + 1] !== '"') throw new Error(`line ${n + 1}: bad label: ${line}`);
        i += 2;
        let v = '';
        while (line[i] !== '"') {
          if (i >= line.length) throw new Error(`line ${n + 1}: unterminated label value`);
          if (line[i] === '\\') {
            const c = line[i + 1];
            v += c === 'n' ? '\n' : c;
            i += 2;
          } else v += line[i++];
        }
        i++;
        labels[key] = v;
        if (line[i] === ',') i++;
      }
      i++;
    }
    const rest = line.slice(i).trim().split(/\s+/);
    const raw = rest[0]!;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    if (raw === undefined || (Number.isNaN(value) && raw !== 'NaN')) throw new Error(`line ${n + 1}: bad value: ${line}`);
    samples.push({ name, labels, value });
  }
  return { types, help, samples };
}

/** The value of the one sample named `name` whose labels include `labels`. */
export function sampleValue(e: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = e.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples match ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}
