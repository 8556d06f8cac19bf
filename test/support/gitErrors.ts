import { expect } from 'vitest';
import { GitError } from '../../src/sync/git.js';

/**
 * Awaits a promise that must fail with a GitError of this kind and message,
 * and checks that the credentials appear in it neither plainly nor as the
 * Basic-auth header value.
 */
export async function expectGitError(
  promise: Promise<unknown>,
  failure: GitError['failure'],
  message: RegExp,
  credentials: { username: string; password: string },
): Promise<GitError> {
  const error = await promise.then(
    () => {
      throw new Error('expected a GitError');
    },
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(GitError);
  expect((error as GitError).failure).toBe(failure);
  expect((error as GitError).message).toMatch(message);
  expect((error as GitError).message).not.toContain(credentials.password);
  expect((error as GitError).message).not.toContain(Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64'));
  return error as GitError;
}
