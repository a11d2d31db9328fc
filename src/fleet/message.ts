/**
 * What sidecars of a fleet tell each other on the fleet's channel (docs/fleet.md, "Messages"):
 * one JSON object per message, version 1. Pure: parsed and checked here against a clock passed in;
 * whether the service is known is the fleet's to say.
 */
import { SERVICE_NAME } from '../config/schema.js';
import { MAX_DURATION_MS } from '../config/duration.js';

export const MESSAGE_VERSION = 1;

/** A message's `kind`, and the `kind` label of `circuit_fleet_messages_total`. */
export type MessageKind = 'open' | 'close' | 'force' | 'sync';
export const MESSAGE_KINDS: readonly MessageKind[] = ['open', 'close', 'force', 'sync'];

/** A message longer than this is not one of ours. */
export const MAX_MESSAGE_BYTES = 4096;
/** How far ahead of our clock a sender's may be (NTP-synced hosts are within milliseconds). */
export const MAX_CLOCK_SKEW_MS = 5000;

interface Common {
  readonly v: typeof MESSAGE_VERSION;
  /** The sender's id in the fleet (its host name unless configured). */
  readonly sidecar: string;
  /** The sending process, random per start: a sidecar never acts on its own messages. */
  readonly instance: string;
  readonly service: string;
  /** Epoch ms on the sender's clock. */
  readonly at: number;
  readonly reason: string;
}

export type FleetMessage =
  | (Common & {
      readonly kind: 'open';
      /** Epoch ms the sender's circuit lets its trial through. */
      readonly until: number;
      /** The opening was the verdict of a half-open trial: sidecars holding their trial for it open too. */
      readonly trial: boolean;
    })
  | (Common & {
      readonly kind: 'close';
      /** A close told again on (re)joining: it ends only openings that began before `at` (docs/fleet.md). */
      readonly replay?: true;
    })
  | (Common & { readonly kind: 'force'; readonly action: 'open' | 'close' })
  /** A sidecar that (re)joined asks the others to publish their openings in force again; `service` is `*`. */
  | (Common & { readonly kind: 'sync' });

/** Why a message was ignored (logged at debug; `circuit_fleet_ignored_total` counts them all). */
export type IgnoredWhy = 'malformed' | 'version' | 'future' | 'stale' | 'unknown-service';

export type Parsed = { readonly ok: true; readonly message: FleetMessage } | { readonly ok: false; readonly why: IgnoredWhy };

const bad = (why: IgnoredWhy): Parsed => ({ ok: false, why });

function isText(v: unknown, max: number): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= max;
}

function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0;
}

/** Parses and checks one message at `now` (epoch ms). */
export function parseMessage(text: string, now: number): Parsed {
  if (text.length > MAX_MESSAGE_BYTES) return bad('malformed');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return bad('malformed');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return bad('malformed');
  const m = raw as Record<string, unknown>;
  if (typeof m.v === 'number' && Number.isInteger(m.v) && m.v > MESSAGE_VERSION) return bad('version');
  if (m.v !== MESSAGE_VERSION) return bad('malformed');
  const anyService = m.kind === 'sync' && m.service === '*';
  if (!isText(m.sidecar, 128) || !isText(m.instance, 64) || typeof m.service !== 'string' || !(anyService || SERVICE_NAME.test(m.service)))
    return bad('malformed');
  if (!isTime(m.at) || typeof m.reason !== 'string' || m.reason.length > 500) return bad('malformed');
  const common = { v: MESSAGE_VERSION, sidecar: m.sidecar, instance: m.instance, service: m.service, at: m.at, reason: m.reason } as const;
  let message: FleetMessage;
  switch (m.kind) {
    case 'open':
      if (!isTime(m.until) || m.until <= m.at || m.until - m.at > MAX_DURATION_MS || typeof m.trial !== 'boolean') return bad('malformed');
      message = { ...common, kind: 'open', until: m.until, trial: m.trial };
      break;
    case 'close':
      if (m.replay !== undefined && m.replay !== true) return bad('malformed');
      message = m.replay === true ? { ...common, kind: 'close', replay: true } : { ...common, kind: 'close' };
      break;
    case 'force':
      if (m.action !== 'open' && m.action !== 'close') return bad('malformed');
      message = { ...common, kind: 'force', action: m.action };
      break;
    case 'sync':
      if (!anyService) return bad('malformed');
      message = { ...common, kind: 'sync' };
      break;
    default:
      return bad('malformed');
  }
  if (message.at > now + MAX_CLOCK_SKEW_MS) return bad('future');
  if (message.kind === 'open' && message.until <= now) return bad('stale');
  return { ok: true, message };
}

/** The text of a message, as published. */
export function formatMessage(m: FleetMessage): string {
  return JSON.stringify(m);
}
