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
  const result = text.replace(userinfoPattern, '$1***@').replace(authorizationPattern, '$1***');
  return activeSecrets.size ? withoutSecrets(result, activeSecrets.keys()) : result;
}

/**
 * `text` without these secrets: as they are, base64-encoded (a Basic header) or URL-encoded. For
 * messages built from what a remote answered, which may repeat the credential it refused.
 */
export function withoutSecrets(text: string, secrets: Iterable<string | null | undefined>): string {
  let result = text;
  for (const secret of secrets) {
    if (!secret || secret.length < 4) continue;
    for (const form of new Set([secret, Buffer.from(secret).toString('base64'), encodeURIComponent(secret)])) {
      if (result.includes(form)) result = result.split(form).join('***');
    }
  }
  return result;
}
