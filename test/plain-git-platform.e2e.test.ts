import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PlainGitPlatform } from '../src/providers/plainGit.js';
import { PlatformError } from '../src/providers/platform.js';
import { createUpstream } from './support/gitFixtures.js';
import { startGitServer, type GitServer } from './support/gitServer.js';

// The plain-git implementation of the platform interface, against a real git
// smart-HTTP server (git http-backend): what the ref listing answers, and
// what a host without a REST API cannot.

const auth = { username: 'reader', password: 'plain-git-secret' };
let server: GitServer;

beforeAll(async () => {
  server = await startGitServer({ auth: { ...auth, repos: (name) => name.startsWith('private-') } });
});

afterAll(async () => {
  await server?.close();
});

const platform = (name: string, withAuth = false) => new PlainGitPlatform(server.repoUrl(name), { timeoutMs: 10_000, ...(withAuth ? { auth } : {}) });

describe('PlainGitPlatform', () => {
  it('describes a repository and a branch head from one ref listing', async () => {
    const upstream = await createUpstream(server, 'plain/info', { branch: 'trunk' });
    await upstream.createBranch('feature');
    const git = platform('plain/info');
    expect(await git.repositoryInfo('ignored')).toEqual({ defaultBranch: 'trunk', private: false, sizeBytes: 0 });
    const before = server.repoStats('plain/info').requests;
    expect(await git.branchHead('ignored', 'feature', null)).toEqual({ changed: true, sha: await upstream.head(), etag: null });
    expect(server.repoStats('plain/info').requests).toBe(before);
    await expect(git.branchHead('ignored', 'nope', null)).rejects.toMatchObject({ failure: 'not-found' });
  });

  it('a private repository: refused without the credential, listed with it', async () => {
    await createUpstream(server, 'private-plain/repo');
    const refused = await platform('private-plain/repo').repositoryInfo('x').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(PlatformError);
    expect(refused).toMatchObject({ failure: 'auth' });
    expect((refused as Error).message).not.toContain(auth.password);
    expect(await platform('private-plain/repo', true).repositoryInfo('x')).toMatchObject({ defaultBranch: 'main', private: true });
  });

  it('a repository that does not exist is not found; a failed listing is asked again', async () => {
    const git = platform('plain/later');
    await expect(git.repositoryInfo('x')).rejects.toMatchObject({ failure: 'not-found' });
    await createUpstream(server, 'plain/later');
    expect((await git.repositoryInfo('x')).defaultBranch).toBe('main');
  });

  it('what needs a REST API is unsupported', async () => {
    const git = platform('plain/info');
    for (const call of [git.tokenOwner(), git.compare(), git.fileContent(), git.createWebhook(), git.deleteWebhook()]) {
      await expect(call).rejects.toMatchObject({ name: 'PlatformError', failure: 'unsupported' });
    }
  });
});
