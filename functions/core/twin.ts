import type { TwinTemplate } from './policy.js';
import type { EnrollmentTwin } from './request.js';

export interface InitialTwin {
  tags: Record<string, unknown>;
  properties: { desired: Record<string, unknown> };
}

export interface ProvisioningFacts {
  readonly enrollment: { readonly kind: 'individual' | 'group'; readonly id: string };
  readonly keyId?: string;
  readonly keyOrigin: string;
  readonly algorithm: string;
  readonly provisionedAt: string;
}

// Twin tag names may not contain '.', '$' or spaces; Key Vault adds 'file-encoding' itself when a secret is set from
// a file, which describes the secret, not the device.
const TAG_NAME = /^[A-Za-z0-9_-]{1,128}$/;
const IGNORED_STORE_TAGS = new Set(['file-encoding']);

/** Only the tags safe and meaningful on a twin; anything else stored beside the key is left out. */
export function twinTagsFromStore(tags: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(tags)) {
    if (TAG_NAME.test(name) && !IGNORED_STORE_TAGS.has(name) && name !== 'provisioning' && typeof value === 'string') {
      out[name] = value;
    }
  }
  return out;
}

/**
 * The initial twin, in layers (later ones win): the configured template; the enrollment's own initial twin, which
 * DPS would otherwise have used and which an answered twin replaces; the device's tags from the key store; and a
 * `provisioning` tag saying how the device was admitted.
 */
export function buildInitialTwin(
  template: TwinTemplate,
  enrollmentTwin: EnrollmentTwin | undefined,
  storeTags: Readonly<Record<string, string>>,
  facts: ProvisioningFacts,
): InitialTwin {
  return {
    tags: {
      ...template.tags,
      ...enrollmentTwin?.tags,
      ...twinTagsFromStore(storeTags),
      provisioning: {
        enrollmentType: facts.enrollment.kind,
        enrollmentId: facts.enrollment.id,
        keyId: facts.keyId ?? null,
        keySource: facts.keyOrigin,
        algorithm: facts.algorithm,
        provisionedAt: facts.provisionedAt,
      },
    },
    properties: { desired: { ...template.properties?.desired, ...enrollmentTwin?.desired } },
  };
}
