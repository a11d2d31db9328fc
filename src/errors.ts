/**
 * Error classes with a stable `code` and the HTTP status they map to.
 * Callers match on `code`, never on message text (undici's `UND_ERR_*` convention).
 */

/** One problem found in a configuration, with the key path it concerns. */
export interface ConfigProblem {
  /** Dotted key path, e.g. `services.product.threshold`, or `(env) CB_THRESHOLD`. */
  readonly path: string;
  /** Human sentence naming the rule and the value received. */
  readonly message: string;
  /** 1-based line in the YAML file, when the parser can tell. */
  readonly line?: number;
}

/** Base class: every error we raise on purpose carries a code and a status. */
export class CircuitProxyError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, message: string, status: number) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
  }
}

/** The configuration could not be loaded or is invalid (CLI exit code 2). */
export class ConfigError extends CircuitProxyError {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[], file?: string) {
    super('CP_ERR_CONFIG', formatProblems(problems, file), 500);
    this.problems = problems;
  }
}

/** Renders problems one per line, as `validate` and `serve` print them. */
export function formatProblems(problems: readonly ConfigProblem[], file?: string): string {
  const head = file ? `invalid config ${file}:` : 'invalid config:';
  const lines = problems.map((p) => `  - ${p.path}${p.line ? ` (line ${p.line})` : ''}: ${p.message}`);
  return [head, ...lines].join('\n');
}

/** Exit codes of the CLI (docs/operations.md). `status` adds 3: a circuit is open. */
export const ExitCode = { ok: 0, runtime: 1, usage: 2, circuitOpen: 3 } as const;
