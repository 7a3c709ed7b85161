import type { ReasonCode } from './reasons.js';

/**
 * The webhook's decision as an ordered list of named checks (README "What the webhook checks, in order"). The
 * decision itself (webhook.ts, token.ts) marks each check as it passes; a refusal thrown meanwhile is the failure of
 * the first check not yet passed. An observer (`fleet explain`) sees exactly what the webhook decided, from the
 * webhook's own code; without one, marking is a call to an empty function.
 */
export const CHECKS = [
  'request',
  'token-form',
  'key-found',
  'key-enabled',
  'key-id',
  'signature',
  'token-times',
  'registration',
  'audience',
  'jti',
  'replay',
  'hub',
  'twin',
] as const;

export type CheckName = (typeof CHECKS)[number];

/** What each check establishes, for people (explain's output, docs/operations.md). */
export const CHECK_TITLES: Readonly<Record<CheckName, string>> = {
  request: 'the AllocationRequest has the documented shape',
  'token-form': 'the token is a compact JWS, at most 4 KiB, with an allowed alg and no key in its header',
  'key-found': 'a key is on file (device, then group, then fleet)',
  'key-enabled': 'that key entry is enabled',
  'key-id': "the token's kid (and alg) names one of the entry's keys",
  signature: "the signature verifies with the device's key",
  'token-times': 'exp, iat (and nbf) hold within the clock skew; exp - iat within the lifetime cap',
  registration: 'sub / registration_id name this registration',
  audience: 'aud / id_scope name DPS_ID_SCOPE',
  jti: 'jti is well formed (and present when replay protection is on)',
  replay: 'this jti was not used before',
  hub: 'a linked hub is picked',
  twin: 'the initial twin is built',
};

export interface CheckEvent {
  readonly check: CheckName;
  readonly outcome: 'pass' | 'fail' | 'skip';
  /** For a failure: the reason code the webhook answers. */
  readonly code?: ReasonCode;
  /** For a failure: the refusal's message (safe to show: never a secret); for a pass or skip: a short fact. */
  readonly detail?: string;
}

export type CheckObserver = (event: CheckEvent) => void;

/** One decision's way through CHECKS. */
export interface CheckProgress {
  pass(check: CheckName, detail?: string): void;
  skip(check: CheckName, detail: string): void;
  /** Reports the refusal as the failure of the first check not yet passed or skipped. */
  fail(code: ReasonCode, detail: string): void;
}

/** The progress of a decision nobody observes: every call is a no-op. */
export const UNOBSERVED: CheckProgress = { pass() {}, skip() {}, fail() {} };

export function observeChecks(onCheck: CheckObserver | undefined): CheckProgress {
  if (onCheck === undefined) return UNOBSERVED;
  let done = 0;
  const reach = (check: CheckName) => {
    const at = CHECKS.indexOf(check);
    // A check is marked once; marking again (a second key tried after a rotation re-read) changes nothing.
    if (at < done) return false;
    done = at + 1;
    return true;
  };
  return {
    pass(check, detail) {
      if (reach(check)) onCheck({ check, outcome: 'pass', ...(detail !== undefined && { detail }) });
    },
    skip(check, detail) {
      if (reach(check)) onCheck({ check, outcome: 'skip', detail });
    },
    fail(code, detail) {
      const check = CHECKS[Math.min(done, CHECKS.length - 1)]!;
      done = CHECKS.length;
      onCheck({ check, outcome: 'fail', code, detail });
    },
  };
}
