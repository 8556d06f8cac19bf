import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Prisma as PrismaNamespace } from '../generated/prisma/client.js';
import type { Prisma } from './database.js';
import { createSecretBox, decodeBase64, decodeKey, keyFileName, type SecretBox } from './secrets.js';

/**
 * `repolens rotate-key`: every sealed column moves from the current key to a
 * new one in one transaction. Nothing here ever prints, logs or throws a key
 * or a plaintext: errors name the table, row id and column only.
 */

/** An expected failure: one line for the operator; nothing was changed. */
export class RotationError extends Error {}

/** The sealed columns (grep `secretBox.encrypt`): table, column, and how the output counts them. */
const sealedColumns = [
  { table: 'Credential', column: 'encryptedSecret', label: 'credentials' },
  { table: 'Credential', column: 'encryptedRefreshToken', label: 'refresh tokens' },
  { table: 'Repository', column: 'webhookSecret', label: 'webhook secrets' },
  { table: 'OAuthState', column: 'codeVerifier', label: 'OAuth states' },
] as const;

export type SealedLabel = (typeof sealedColumns)[number]['label'];

export interface RotationCounts {
  /** Re-encrypted from the current key to the new one, per kind of secret. */
  reencrypted: Record<SealedLabel, number>;
  /** Found already sealed with the new key (a rotation that committed before its key file was renamed, or a rerun). */
  alreadyNew: number;
}

/** A 32-byte base64 key from a variable; the message names the variable, never its value. */
export function parseKey(value: string | undefined, variable: string): Buffer {
  const text = value?.trim();
  if (!text) throw new RotationError(`${variable} is not set: give it the new key (32 random bytes, base64; e.g. \`openssl rand -base64 32\`)`);
  const key = decodeKey(text);
  if (!key) {
    const length = decodeBase64(text)?.length ?? 0;
    throw new RotationError(`${variable} must be 32 bytes, base64-encoded (it decodes to ${length === 0 ? 'nothing usable' : `${length} bytes`})`);
  }
  return key;
}

export function generateKey(): Buffer {
  return randomBytes(32);
}

function opens(box: SecretBox, sealed: string): boolean {
  try {
    box.decrypt(sealed);
    return true;
  } catch {
    return false;
  }
}

/** One sealed value of a row, read under a row lock. */
interface SealedValue {
  table: string;
  column: string;
  label: SealedLabel;
  id: string;
  sealed: string;
}

/**
 * Re-encrypts every sealed value from `currentKey` to `newKey` in one
 * transaction (the rows are locked while it runs). A value already sealed
 * with `newKey` is left as it is; a value that opens with neither key aborts
 * the whole rotation before anything is written, naming its table, row and
 * column.
 */
export async function reencryptSecrets(prisma: Prisma, currentKey: Buffer, newKey: Buffer): Promise<RotationCounts> {
  const current = createSecretBox(currentKey);
  const next = createSecretBox(newKey);
  return prisma.$transaction(
    async (tx) => {
      // Table and column names come from the constant list above, never from input.
      const values: SealedValue[] = [];
      for (const { table, column, label } of sealedColumns) {
        const rows = await tx.$queryRaw<{ id: string; sealed: string }[]>`
          SELECT id::text AS id, ${PrismaNamespace.raw(`"${column}"`)} AS sealed FROM ${PrismaNamespace.raw(`"${table}"`)}
          WHERE ${PrismaNamespace.raw(`"${column}"`)} IS NOT NULL ORDER BY id FOR UPDATE`;
        for (const row of rows) values.push({ table, column, label, id: row.id, sealed: row.sealed });
      }

      // Everything is checked before anything is written.
      const counts: RotationCounts = { reencrypted: Object.fromEntries(sealedColumns.map(({ label }) => [label, 0])) as Record<SealedLabel, number>, alreadyNew: 0 };
      const updates: (SealedValue & { resealed: string })[] = [];
      const unreadable: SealedValue[] = [];
      for (const value of values) {
        let plaintext: string | undefined;
        try {
          plaintext = current.decrypt(value.sealed);
        } catch {
          if (opens(next, value.sealed)) counts.alreadyNew++;
          else unreadable.push(value);
          continue;
        }
        updates.push({ ...value, resealed: next.encrypt(plaintext) });
        counts.reencrypted[value.label]++;
      }
      if (unreadable.length > 0) {
        const [first] = unreadable;
        const more = unreadable.length > 1 ? ` (and ${unreadable.length - 1} more sealed value(s))` : '';
        throw new RotationError(
          `${first!.table} ${first!.id}: ${first!.column} opens with neither the current key nor the new key${more}; nothing was changed`,
        );
      }

      for (const update of updates) {
        // Raw statements: re-sealing is no change of the row (Repository.updatedAt stays as it is).
        await tx.$executeRaw`UPDATE ${PrismaNamespace.raw(`"${update.table}"`)} SET ${PrismaNamespace.raw(`"${update.column}"`)} = ${update.resealed} WHERE id = ${update.id}::uuid`;
      }
      return counts;
    },
    // A rotation is rare and may touch many rows: it is not cut short by Prisma's 5-second default.
    { maxWait: 60_000, timeout: 60 * 60_000 },
  );
}

/** "re-encrypted 3 credentials, 2 refresh tokens, 5 webhook secrets, 0 OAuth states" */
export function describeCounts(counts: RotationCounts): string {
  const parts = sealedColumns.map(({ label }) => `${counts.reencrypted[label]} ${label}`);
  const already = counts.alreadyNew ? ` (${counts.alreadyNew} sealed value(s) already had the new key)` : '';
  return `re-encrypted ${parts.join(', ')}${already}`;
}

/* ---- The generated key file, $DATA_DIR/secret.key ---- */

export const pendingKeyFileName = `${keyFileName}.new`;

export function keyFiles(dataDir: string): { current: string; pending: string } {
  return { current: path.join(dataDir, keyFileName), pending: path.join(dataDir, pendingKeyFileName) };
}

/** The key a key file holds; null when the file does not exist; 'invalid' when it is not a 32-byte base64 key. */
export async function readKeyFile(file: string): Promise<Buffer | null | 'invalid'> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  return decodeKey(text) ?? 'invalid';
}

/** Flushes a directory's entries (a created or renamed file) to disk. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes `key` into a new file of mode 0600, on disk (file and directory entry) before it returns. */
export async function writeKeyFile(file: string, key: Buffer): Promise<void> {
  await rm(file, { force: true });
  const handle = await open(file, 'wx', 0o600);
  try {
    await handle.writeFile(key.toString('base64') + '\n');
    await handle.chmod(0o600);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await syncDirectory(path.dirname(file));
}

/** Puts the pending key in place of the current one (an atomic rename), durably. */
export async function promotePendingKey(dataDir: string): Promise<void> {
  const { current, pending } = keyFiles(dataDir);
  await rename(pending, current);
  await syncDirectory(dataDir);
}

export async function removePendingKey(dataDir: string): Promise<void> {
  await rm(keyFiles(dataDir).pending, { force: true });
  await syncDirectory(dataDir);
}
