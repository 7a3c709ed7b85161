/**
 * DPS error codes and the error body shape (dps-protocol §3). Codes marked "emulator choice" are not documented by
 * Microsoft for this situation; docs/local-dps.md lists them.
 */
import { randomUUID } from 'node:crypto';

export const DPS_ERRORS = {
  /** Request body or URL unusable. Emulator choice: 400004 (IoT Hub's ArgumentInvalid). */
  badRequest: { status: 400, errorCode: 400004, name: 'ArgumentInvalid' },
  customAllocationFailed: { status: 400, errorCode: 400207, name: 'CustomAllocationFailed' },
  customAllocationIotHubNotSpecified: { status: 400, errorCode: 400208, name: 'CustomAllocationIotHubNotSpecified' },
  customAllocationUnauthorizedAccess: { status: 400, errorCode: 400209, name: 'CustomAllocationUnauthorizedAccess' },
  unauthorized: { status: 401, errorCode: 401002, name: 'IotHubUnauthorizedAccess' },
  /** No such API path. Emulator choice: 404000. */
  notFound: { status: 404, errorCode: 404000, name: 'NotFound' },
  /** Unknown operation id. Emulator choice: 404201. */
  operationNotFound: { status: 404, errorCode: 404201, name: 'RegistrationOperationNotFound' },
  /** Wrong method on a known path. Emulator choice: 405000. */
  methodNotAllowed: { status: 405, errorCode: 405000, name: 'MethodNotAllowed' },
  /** Request body over the limit. Emulator choice: 413000. */
  tooLarge: { status: 413, errorCode: 413000, name: 'RequestEntityTooLarge' },
  /** Over the emulator's registration bound (issue 13 item 9). DPS answers 429 when it throttles (quotas page); the code is an emulator choice. */
  throttled: { status: 429, errorCode: 429001, name: 'ThrottlingException' },
  internal: { status: 500, errorCode: 500000, name: 'InternalServerError' },
} as const;

export type DpsErrorKind = keyof typeof DPS_ERRORS;

export interface DpsErrorBody {
  errorCode: number;
  trackingId: string;
  message: string;
  timestampUtc: string;
}

export function errorBody(kind: DpsErrorKind, message: string, now = new Date()): DpsErrorBody {
  return { errorCode: DPS_ERRORS[kind].errorCode, trackingId: randomUUID(), message, timestampUtc: now.toISOString() };
}
