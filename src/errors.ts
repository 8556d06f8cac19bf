// One family of domain errors. Anything thrown below the API is one of these
// or an unexpected bug; src/schema/errors.ts turns them into
// `extensions.code` and masks everything else as INTERNAL.

export type ErrorCode =
  | 'BAD_USER_INPUT'
  | 'NOT_FOUND'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'CONFLICT'
  | 'PROVIDER_ERROR'
  | 'UNAVAILABLE'
  | 'INTERNAL';

export abstract class DomainError extends Error {
  abstract readonly code: ErrorCode;
}

export class BadUserInputError extends DomainError {
  readonly code = 'BAD_USER_INPUT';
}

export class NotFoundError extends DomainError {
  readonly code = 'NOT_FOUND';
  constructor(what = 'object') {
    super(`${what} not found`);
  }
}

/** Worded so that nothing in it reads like a credential to the secret scrubber ("Authorization: Bearer …" would). */
export const tokenRequiredMessage = 'a valid API token is required (header Authorization, scheme Bearer)';

export class UnauthenticatedError extends DomainError {
  readonly code = 'UNAUTHENTICATED';
  constructor(message = tokenRequiredMessage) {
    super(message);
  }
}

export class ForbiddenError extends DomainError {
  readonly code = 'FORBIDDEN';
}

export class ConflictError extends DomainError {
  readonly code = 'CONFLICT';
}

export class ProviderError extends DomainError {
  readonly code = 'PROVIDER_ERROR';
}

/** A part of the service that is not configured or cannot be reached right now (the code graph). */
export class UnavailableError extends DomainError {
  readonly code = 'UNAVAILABLE';
}
