import { Writable } from 'node:stream';
import type { Repository } from '../generated/prisma/client.js';
import { BadUserInputError } from '../errors.js';
import { archiveKeys, readObject, type ArchiveStore } from '../storage/archiveStore.js';
import type { Prisma } from '../storage/database.js';
import { readManifest, type ManifestEntry } from '../storage/fileArtifacts.js';
import type { WorkingCopies } from '../storage/workingCopies.js';
import { GitError, type Git } from './git.js';

export interface RepositoryFileContent {
  path: string;
  commitSha: string;
  blobSha: string;
  size: number;
  encoding: 'utf8' | 'base64';
  content: string;
}

/** Files bigger than this are refused by the API (a GraphQL response is not a download channel). */
export const maxFileBytes = 10 * 1024 * 1024;

/**
 * `Repository.file`: a file at a commit, from the working copy when it holds
 * that commit, else from the commit's per-file artifacts in the archive store.
 */
export class RepositoryFiles {
  constructor(
    private readonly prisma: Prisma,
    private readonly git: Git,
    private readonly copies: WorkingCopies,
    private readonly store: ArchiveStore,
  ) {}

  urlOf(key: string): string {
    return this.store.urlOf(key);
  }

  async read(repository: Pick<Repository, 'id' | 'lastCommitSha'>, filePath: string, commitSha?: string | null): Promise<RepositoryFileContent | null> {
    assertFilePath(filePath);
    if (commitSha && !/^([0-9a-f]{40}|[0-9a-f]{64})$/.test(commitSha)) throw new BadUserInputError('commitSha must be a full hexadecimal commit id');
    const commit = commitSha ?? repository.lastCommitSha;
    if (!commit) return null;
    if (commit === repository.lastCommitSha) {
      const local = await this.fromWorkingCopy(repository.id, commit, filePath);
      if (local !== undefined) return local;
    }
    return this.fromArchive(repository.id, commit, filePath);
  }

  /** undefined: the copy could not answer (absent, evicted meanwhile); null: no such file at the commit. */
  private async fromWorkingCopy(repositoryId: string, commitSha: string, filePath: string): Promise<RepositoryFileContent | null | undefined> {
    const cwd = this.copies.pathOf(repositoryId);
    if (!(await this.copies.exists(repositoryId))) return undefined;
    try {
      const { stdout } = await this.git.run(['ls-tree', '-l', '-z', '--full-tree', commitSha, '--', filePath], { cwd });
      const record = stdout.split('\0').find((line) => line.slice(line.indexOf('\t') + 1) === filePath);
      if (!record) return null;
      const [mode = '', type, sha = '', size = '0'] = record.slice(0, record.indexOf('\t')).split(/ +/);
      if (type !== 'blob') return null;
      const entry: ManifestEntry = { type: mode === '120000' ? 'symlink' : 'file', sha, mode, size: Number(size) };
      assertSize(filePath, entry.size);
      const chunks: Buffer[] = [];
      const sink = new Writable({ write: (chunk: Buffer, _encoding, callback) => (chunks.push(chunk), callback()) });
      await this.git.run(['cat-file', 'blob', sha], { cwd, stdout: sink });
      void this.prisma.repository.updateMany({ where: { id: repositoryId }, data: { localUsedAt: new Date() } }).catch(() => undefined);
      return toContent(filePath, commitSha, entry, Buffer.concat(chunks));
    } catch (error) {
      if (error instanceof GitError) return undefined;
      throw error;
    }
  }

  private async fromArchive(repositoryId: string, commitSha: string, filePath: string): Promise<RepositoryFileContent | null> {
    const manifest = await readManifest(this.store, archiveKeys.manifest(repositoryId, commitSha));
    const entry = manifest?.files[filePath];
    if (!entry || entry.type === 'submodule') return null;
    assertSize(filePath, entry.size);
    const body = await readObject(this.store, archiveKeys.blob(repositoryId, entry.sha));
    return body ? toContent(filePath, commitSha, entry, body) : null;
  }
}

function assertFilePath(filePath: string): void {
  const parts = filePath.split('/');
  if (!filePath || filePath.length > 4096 || filePath.includes('\0') || parts.some((part) => part === '' || part === '.' || part === '..')) {
    throw new BadUserInputError('path must be a relative path inside the repository, like "src/index.ts"');
  }
}

function assertSize(filePath: string, size: number): void {
  if (size > maxFileBytes) throw new BadUserInputError(`${filePath} is ${size} bytes; files over ${maxFileBytes} bytes are not returned by the API`);
}

/** UTF-8 text as it is; anything else (binary, invalid UTF-8) as base64. */
function toContent(filePath: string, commitSha: string, entry: ManifestEntry, bytes: Buffer): RepositoryFileContent {
  const base = { path: filePath, commitSha, blobSha: entry.sha, size: bytes.length };
  if (!bytes.includes(0)) {
    try {
      return { ...base, encoding: 'utf8', content: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
    } catch {
      // not UTF-8
    }
  }
  return { ...base, encoding: 'base64', content: bytes.toString('base64') };
}
