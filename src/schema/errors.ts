import { PothosValidationError } from '@pothos/core';
import { GraphQLError } from 'graphql';
import type { Logger } from 'pino';
import { DomainError, type ErrorCode } from '../errors.js';
import { isDatabaseUnavailable, unavailableRetrySeconds } from '../storage/database.js';
import { redactSecrets } from '../sync/redact.js';
import { LimitError } from './limits.js';

/**
 * graphql-js quotes the whole offending variable value in coercion errors
 * ("Variable "$input" got invalid value { token: "…" }"): a token or password
 * in the input must not come back in the answer or reach a log.
 */
export function withoutInputValues(message: string): string {
  const prefix = /Variable "\$[^"]+" got invalid value /.exec(message);
  if (!prefix) return redactSecrets(message);
  const start = prefix.index + prefix[0].length;
  // The value may itself contain "; ": everything up to the last one goes.
  const end = message.lastIndexOf('; ');
  if (end < start) return redactSecrets(message.slice(0, start) + '(value omitted)');
  const where = / at "[^"]*"$/.exec(message.slice(start, end))?.[0] ?? '';
  return redactSecrets(`${message.slice(0, start)}(value omitted)${where}${message.slice(end)}`);
}

const domainCodes: readonly ErrorCode[] = ['BAD_USER_INPUT', 'NOT_FOUND', 'UNAUTHENTICATED', 'FORBIDDEN', 'CONFLICT', 'PROVIDER_ERROR', 'UNAVAILABLE', 'INTERNAL'];

/**
 * The one place errors become GraphQL errors: domain errors keep their
 * message and get `extensions.code`; anything else is logged and masked as
 * INTERNAL, so no internal detail (SQL, paths, secrets) reaches a client.
 */
export function createErrorMasker(logger: Logger) {
  return (error: unknown): Error => {
    let original: unknown = error;
    while (original instanceof GraphQLError && original.originalError) original = original.originalError;
    const path = error instanceof GraphQLError ? error.path : undefined;
    if (original instanceof LimitError) {
      return new GraphQLError(original.message, { path, extensions: original.extensions });
    }
    if (original instanceof DomainError) {
      return new GraphQLError(redactSecrets(original.message), { path, extensions: { code: original.code } });
    }
    if (original instanceof PothosValidationError) {
      return new GraphQLError(original.message, { path, extensions: { code: 'BAD_USER_INPUT' } });
    }
    if (error instanceof GraphQLError && (!error.originalError || !error.path)) {
      // Parse, validation and variable-coercion errors (no resolver path), and
      // errors already shaped by a plugin: the client's input was at fault.
      const given = error.extensions.code as string | undefined;
      const code = given && (domainCodes as readonly string[]).includes(given) ? given : 'BAD_USER_INPUT';
      return new GraphQLError(withoutInputValues(error.message), { nodes: error.nodes, path, extensions: { ...error.extensions, code } });
    }
    if (isDatabaseUnavailable(original)) {
      // Nothing was read or changed: the client is told to try again, as the webhook route tells senders.
      logger.warn({ err: (original as Error).message }, 'GraphQL operation refused: the database is unreachable');
      return new GraphQLError('the database is unreachable; nothing was changed, try again shortly', {
        path,
        extensions: { code: 'UNAVAILABLE', http: { status: 503, headers: { 'Retry-After': String(unavailableRetrySeconds) } } },
      });
    }
    logger.error({ err: original }, 'unexpected error in a GraphQL operation');
    return new GraphQLError('internal error', { path, extensions: { code: 'INTERNAL' } });
  };
}

/** Yoga plugin: validation errors carry BAD_USER_INPUT like every other input error. */
export function useInputErrorCodes() {
  return {
    onValidate() {
      return ({ result, setResult }: { result: readonly GraphQLError[]; setResult: (errors: GraphQLError[]) => void }) => {
        if (!result.length) return;
        setResult(
          result.map(
            (error) => new GraphQLError(error.message, { nodes: error.nodes, extensions: { ...error.extensions, code: 'BAD_USER_INPUT' } }),
          ),
        );
      };
    },
  };
}
