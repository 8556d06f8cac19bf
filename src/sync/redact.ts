/**
 * Secrets known to this process (credentials decrypted for a git call) are
 * registered here while in use, so that git output, errors and log lines can
 * be scrubbed of them even when git echoes them in an unexpected form.
 */
const activeSecrets = new Map<string, number>();

export function registerSecret(secret: string): () => void {
  if (secret.length < 4) return () => undefined;
  activeSecrets.set(secret, (activeSecrets.get(secret) ?? 0) + 1);
  return () => {
    const count = (activeSecrets.get(secret) ?? 1) - 1;
    if (count <= 0) activeSecrets.delete(secret);
    else activeSecrets.set(secret, count);
  };
}

// Greedy up to the last "@" of the authority, so "user:p@ss@host" loses all of "user:p@ss".
const userinfoPattern = /([a-z][a-z0-9+.-]*:\/\/)[^\s/?#"'<>]*@/gi;
const authorizationPattern = /(authorization:\s*(?:basic|bearer|token)\s+)[^\s"']+/gi;

export function redactSecrets(text: string): string {
  let result = text.replace(userinfoPattern, '$1***@').replace(authorizationPattern, '$1***');
  for (const secret of activeSecrets.keys()) {
    if (result.includes(secret)) result = result.split(secret).join('***');
    const encoded = Buffer.from(secret).toString('base64');
    if (result.includes(encoded)) result = result.split(encoded).join('***');
  }
  return result;
}
