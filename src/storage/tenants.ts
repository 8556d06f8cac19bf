import type { Prisma } from './database.js';
import { generateApiToken, hashToken } from './secrets.js';

const tenantNamePattern = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/;

export class TenantNameError extends Error {}

/** Throws TenantNameError unless the name is one a tenant may have. */
export function checkTenantName(tenantName: string): void {
  if (!tenantNamePattern.test(tenantName)) {
    throw new TenantNameError('tenant name must be 1-63 characters: letters, digits, ".", "_" or "-", starting with a letter or digit');
  }
}

/** Creates the tenant if new and returns one new API token (shown once, stored hashed). */
export async function createApiToken(prisma: Prisma, tenantName: string): Promise<{ tenantId: string; token: string }> {
  checkTenantName(tenantName);
  const tenant = await prisma.tenant.upsert({ where: { name: tenantName }, update: {}, create: { name: tenantName } });
  const token = generateApiToken();
  await prisma.apiToken.create({ data: { tenantId: tenant.id, tokenHash: hashToken(token) } });
  return { tenantId: tenant.id, token };
}

/** The token's tenant and its own id (per-token limits), or null for a missing or unknown token. */
export async function authenticateToken(prisma: Prisma, token: string | undefined | null): Promise<{ tenantId: string; tokenId: string } | null> {
  if (!token || token.length > 200) return null;
  const row = await prisma.apiToken.findUnique({ where: { tokenHash: hashToken(token) }, select: { id: true, tenantId: true } });
  return row ? { tenantId: row.tenantId, tokenId: row.id } : null;
}

export function bearerToken(header: string | undefined | null): string | null {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1] ?? null;
}
