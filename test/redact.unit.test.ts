import { describe, expect, it } from 'vitest';
import { redactSecrets, registerSecret } from '../src/sync/redact.js';

describe('redactSecrets', () => {
  it('removes the userinfo of every URL in a text', () => {
    expect(redactSecrets('fatal: could not read https://user:pa55@github.com/o/r.git and http://tok@h:8080/x')).toBe(
      'fatal: could not read https://***@github.com/o/r.git and http://***@h:8080/x',
    );
    expect(redactSecrets('https://u:p@ss@github.com/o/r')).toBe('https://***@github.com/o/r');
    expect(redactSecrets('https://github.com/o/r and mail me@example.com')).toBe('https://github.com/o/r and mail me@example.com');
  });

  it('removes Authorization header values', () => {
    expect(redactSecrets('> Authorization: Basic dXNlcjpwYXNz\n')).toBe('> Authorization: Basic ***\n');
    expect(redactSecrets('authorization: Bearer abc.def')).toBe('authorization: Bearer ***');
  });

  it('removes a registered secret, plain and base64-encoded, only while it is registered', () => {
    const secret = 's3cr3t-value-1234';
    const release = registerSecret(secret);
    const encoded = Buffer.from(secret).toString('base64');
    expect(redactSecrets(`echoed ${secret} and ${encoded}`)).toBe('echoed *** and ***');
    release();
    expect(redactSecrets(`echoed ${secret}`)).toBe(`echoed ${secret}`);
  });

  it('keeps a secret registered by two overlapping operations until both release it', () => {
    const secret = 'shared-secret-5678';
    const first = registerSecret(secret);
    const second = registerSecret(secret);
    first();
    expect(redactSecrets(secret)).toBe('***');
    second();
    expect(redactSecrets(secret)).toBe(secret);
  });
});

describe('withoutInputValues', () => {
  it('drops the variable value graphql-js quotes in a coercion error, keeping the reason', async () => {
    const { withoutInputValues } = await import('../src/schema/errors.js');
    const message =
      'Variable "$input" got invalid value { provider: "GIT", token: "tok; en-123", hots: "x" }; Field "hots" is not defined by type "AddCredentialInput". Did you mean "host"?';
    expect(withoutInputValues(message)).toBe(
      'Variable "$input" got invalid value (value omitted); Field "hots" is not defined by type "AddCredentialInput". Did you mean "host"?',
    );
    expect(withoutInputValues('Variable "$f" got invalid value "x" at "input.first"; Int cannot represent non-integer value: "x"')).toBe(
      'Variable "$f" got invalid value (value omitted) at "input.first"; Int cannot represent non-integer value: "x"',
    );
    expect(withoutInputValues('Cannot query field "nope" on type "Query".')).toBe('Cannot query field "nope" on type "Query".');
  });
});
