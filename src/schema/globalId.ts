import { BadUserInputError } from '../errors.js';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function encodeGlobalId(typename: string, id: string | number | bigint): string {
  return Buffer.from(`${typename}:${String(id)}`).toString('base64url');
}

/** Opaque Relay ID → { typename, id }; anything not issued by us is BAD_USER_INPUT. */
export function decodeGlobalId(globalId: string): { typename: string; id: string } {
  const decoded = globalId.length <= 128 ? Buffer.from(globalId, 'base64url').toString('utf8') : '';
  const separator = decoded.indexOf(':');
  const typename = decoded.slice(0, separator);
  const id = decoded.slice(separator + 1);
  if (separator < 1 || !/^[A-Za-z]+$/.test(typename) || !uuidPattern.test(id)) {
    throw new BadUserInputError('malformed ID');
  }
  return { typename, id };
}

/** The database id behind a global ID that must name a `typename`. */
export function parseGlobalId(globalId: string, typename: string): string {
  const decoded = decodeGlobalId(globalId);
  if (decoded.typename !== typename) throw new BadUserInputError(`ID is not a ${typename} ID`);
  return decoded.id;
}
