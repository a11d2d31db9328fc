/**
 * `${VAR}` and `${VAR:-default}` expansion, applied to string values after YAML parsing
 * (never to the raw text, so an environment value cannot inject YAML structure).
 * `$${` escapes a literal `${`.
 */
const REF = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export interface Expansion {
  readonly value: string;
  /** Variables referenced without a default that are unset. */
  readonly missing: readonly string[];
}

export function expandEnv(input: string, env: NodeJS.ProcessEnv): Expansion {
  const missing: string[] = [];
  const value = input.replace(REF, (whole, name: string | undefined, fallback: string | undefined) => {
    if (name === undefined) return '${';
    const set = env[name];
    // Shell semantics: `:-` applies when the variable is unset or empty.
    if (set !== undefined && set !== '') return set;
    if (fallback !== undefined) return fallback;
    if (set === '') return '';
    missing.push(name);
    return whole;
  });
  return { value, missing };
}
