import { describe, expect, test } from 'vitest';
import { pickHub } from '../../functions/core/hub.js';

const hubs = ['hub-a.azure-devices.net', 'hub-b.azure-devices.net', 'hub-c.azure-devices.net'];
const ids = Array.from({ length: 3000 }, (_, i) => `sensor-${i}`);

describe('pickHub', () => {
  test('keeps a re-registering device on its current hub while it is linked (any letter case)', () => {
    expect(pickHub({ registrationId: 'x', linkedHubs: hubs, currentHub: 'HUB-C.azure-devices.net' })).toEqual({ hub: hubs[2], why: 'current' });
  });

  test('moves a device whose current hub is no longer linked', () => {
    const choice = pickHub({ registrationId: 'x', linkedHubs: hubs, currentHub: 'gone.azure-devices.net' });
    expect(choice.why).toBe('rendezvous');
    expect(hubs).toContain(choice.hub);
  });

  test('prefers IOT_HUB_HOSTNAME only when DPS linked it', () => {
    expect(pickHub({ registrationId: 'x', linkedHubs: hubs, preferredHub: hubs[1] })).toEqual({ hub: hubs[1], why: 'preferred' });
    expect(pickHub({ registrationId: 'x', linkedHubs: hubs, preferredHub: 'other.azure-devices.net' }).why).toBe('rendezvous');
  });

  test('is deterministic and independent of the order of linkedHubs', () => {
    for (const id of ids.slice(0, 200)) {
      const a = pickHub({ registrationId: id, linkedHubs: hubs }).hub;
      expect(pickHub({ registrationId: id.toUpperCase(), linkedHubs: [...hubs].reverse() }).hub).toBe(a);
    }
  });

  test('spreads devices evenly', () => {
    const counts = new Map<string, number>();
    for (const id of ids) {
      const { hub } = pickHub({ registrationId: id, linkedHubs: hubs });
      counts.set(hub, (counts.get(hub) ?? 0) + 1);
    }
    for (const hub of hubs) expect(counts.get(hub)).toBeGreaterThan(ids.length / 3 * 0.85);
  });

  test('linking one more hub moves only the devices the new hub wins', () => {
    const more = [...hubs, 'hub-d.azure-devices.net'];
    let moved = 0;
    for (const id of ids) {
      const before = pickHub({ registrationId: id, linkedHubs: hubs }).hub;
      const after = pickHub({ registrationId: id, linkedHubs: more }).hub;
      if (after !== before) {
        expect(after).toBe('hub-d.azure-devices.net');
        moved += 1;
      }
    }
    expect(moved).toBeGreaterThan(ids.length / 4 * 0.8);
    expect(moved).toBeLessThan(ids.length / 4 * 1.2);
  });
});
