/** What the portal core needs from the outside world; adapters implement these. */

/** One device key as the store holds it: never its value, only what the portal decides on. */
export interface DeviceKeyState {
  /** The registration id (as the store spells it). */
  readonly id: string;
  readonly enabled: boolean;
  readonly tags: Readonly<Record<string, string>>;
  /**
   * An opaque version of this state (Key Vault: secret version + updated time; folder: digest of `<id>.meta`). An
   * update names the version it was decided on and is refused when the state moved meanwhile.
   */
  readonly version: string;
}

export type UpdateResult = 'updated' | 'conflict' | 'not_found';

export interface DeviceKeyStore {
  /** A human name for pages and logs: "key folder" or "Key Vault <host>". */
  readonly description: string;
  /** Devices whose key is disabled (awaiting activation). */
  listDisabled(): Promise<readonly DeviceKeyState[]>;
  get(id: string): Promise<DeviceKeyState | undefined>;
  /** Compare-and-swap: writes `next` only if the stored state still has `expectedVersion`. */
  update(id: string, expectedVersion: string, next: { readonly enabled: boolean; readonly tags: Readonly<Record<string, string>> }): Promise<UpdateResult>;
}

/** Where and when DPS placed a device, when a DPS record is at hand (the local DPS in tests and the demo). */
export interface ProvisioningRecord {
  readonly assignedHub: string;
  readonly at: string;
}
export type ProvisioningLookup = (id: string) => Promise<ProvisioningRecord | undefined>;

export interface Principal {
  /** Stable id (Entra object id, or the dev user's name). */
  readonly id: string;
  /** Shown on pages and in the audit log. */
  readonly name: string;
  readonly roles: readonly string[];
}

export interface AuditEntry {
  readonly who: string;
  readonly action: 'activate' | 'revoke' | 'sign-in' | 'sign-out';
  readonly device?: string;
  readonly outcome: string;
}
