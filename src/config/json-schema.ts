import { z } from 'zod';
import { rawConfigSchema } from './schema.js';

/**
 * A `${VAR}` or `${VAR:-default}` reference (docs/configuration.md): expanded before validation,
 * so any value may be one in the file. The JSON Schema accepts one wherever a value is not a free
 * string; what it expands to is checked by `circuit-proxy validate`, not by the schema.
 */
const ENV_REFERENCE = {
  type: 'string',
  pattern: '^\\$\\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\\}$',
  description: 'An environment variable reference, expanded at load time.',
};

type Node = Record<string, unknown>;

/**
 * The config's JSON Schema (draft 2020-12), generated from the zod schema the loader validates
 * with: `circuit-proxy schema` prints it, config/proxy.schema.json is a copy kept in step by a test.
 * Rules JSON Schema cannot state (a duration's range, a status range's order, cross-key rules,
 * what an environment reference expands to) stay with `circuit-proxy validate`.
 */
export function configJsonSchema(): Node {
  const schema = z.toJSONSchema(rawConfigSchema, { io: 'input', target: 'draft-2020-12' }) as Node;
  const service = ((schema.properties as Record<string, Node>).services!.additionalProperties ?? {}) as Node;
  // A service names its upstream by `url` or by `endpoints`, exactly one (the loader checks the same).
  service.oneOf = [
    { properties: { url: {} }, required: ['url'] },
    { properties: { endpoints: {} }, required: ['endpoints'] },
  ];
  return withEnvReferences(schema);
}

function withEnvReferences(node: Node): Node {
  if (node.type === 'object') {
    const props = node.properties as Record<string, Node> | undefined;
    if (props) for (const k of Object.keys(props)) props[k] = withEnvReferences(props[k]!);
    if (typeof node.additionalProperties === 'object') node.additionalProperties = withEnvReferences(node.additionalProperties as Node);
    return node;
  }
  if (node.type === 'array') {
    node.items = withEnvReferences(node.items as Node);
    return node;
  }
  if (node.type === 'string' && node.pattern === undefined) return node;
  const { description, default: defaultValue, ...rest } = node;
  const choices = Array.isArray(rest.anyOf) && Object.keys(rest).length === 1 ? (rest.anyOf as Node[]) : [rest];
  return {
    ...(description !== undefined ? { description } : {}),
    ...(defaultValue !== undefined ? { default: defaultValue } : {}),
    anyOf: [...choices, ENV_REFERENCE],
  };
}
