import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';

/** The generated key's file in $DATA_DIR (`repolens rotate-key` replaces it through `secret.key.new`). */
export const keyFileName = 'secret.key';

/**
 * ENCRYPTION_KEY when set; otherwise a key generated once into
 * $DATA_DIR/secret.key (mode 0600), created exclusively so that two processes
 * starting together cannot end up with different keys.
 */
export async function loadEncryptionKey(dataDir: string, configured?: Buffer): Promise<Buffer> {
  if (configured) return configured;
  const file = path.join(dataDir, keyFileName);
  await mkdir(dataDir, { recursive: true });
  try {
    const handle = await open(file, 'wx', 0o600);
    try {
      await handle.writeFile(randomBytes(32).toString('base64') + '\n');
    } finally {
      await handle.close();
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const key = decodeKey(await readFile(file, 'utf8'));
  if (!key) throw new Error(`${file} does not hold a 32-byte base64 key`);
  return key;
}

/** The bytes of a base64 text (standard or URL-safe alphabet, surrounding space ignored), or null when it is not base64. */
export function decodeBase64(text: string): Buffer | null {
  const trimmed = text.trim();
  return /^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed) ? Buffer.from(trimmed, 'base64') : null;
}

/** A 32-byte key written in base64, or null. */
export function decodeKey(text: string): Buffer | null {
  const key = decodeBase64(text);
  return key?.length === 32 ? key : null;
}

export interface SecretBox {
  encrypt(plaintext: string): string;
  decrypt(sealed: string): string;
}

/** AES-256-GCM; sealed form `v1.<iv>.<tag>.<ciphertext>` (base64url parts). */
export function createSecretBox(key: Buffer): SecretBox {
  return {
    encrypt(plaintext) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return ['v1', iv, cipher.getAuthTag(), ciphertext].map((part) => (typeof part === 'string' ? part : part.toString('base64url'))).join('.');
    },
    decrypt(sealed) {
      const [version, iv, tag, ciphertext] = sealed.split('.');
      if (version !== 'v1' || !iv || !tag || ciphertext === undefined) throw new Error('unreadable sealed secret');
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
    },
  };
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function generateApiToken(): string {
  return `rls_${randomBytes(32).toString('base64url')}`;
}

export function constantTimeEqual(a: string, b: string): boolean {
  const left = createHash('sha256').update(a).digest();
  const right = createHash('sha256').update(b).digest();
  return timingSafeEqual(left, right);
}
