import { describe, expect, it } from 'vitest';
import { BadUserInputError } from '../src/errors.js';
import { isRefusedAddress, parseRepositoryUrl, type RepositoryUrlPolicy } from '../src/sync/repositoryUrl.js';

// Fake resolver: no test needs the network except the real lookup of `localhost`.
const fakeDns: Record<string, string[]> = {
  'github.com': ['140.82.112.3'],
  'gitlab.com': ['172.65.251.78'],
  'git.example.org': ['140.82.112.3', '2606:50c0:8000::153'],
  'ghe.corp.example': ['140.82.112.4'],
  'loopy.example': ['140.82.112.3', '127.0.0.1'],
  'internal.example': ['10.0.0.1'],
  'metadata.example': ['169.254.169.254'],
  'mapped.example': ['::ffff:7f00:1'],
  'nat64.example': ['64:ff9b::a9fe:a9fe'],
  'xn--bcher-kva.example': ['140.82.112.3'],
};
const lookup = async (host: string): Promise<string[]> => {
  const ips = fakeDns[host];
  if (!ips) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return ips;
};
const strict: RepositoryUrlPolicy = { allowPrivateHosts: false, lookup };
const permissive: RepositoryUrlPolicy = { allowPrivateHosts: true, lookup };

describe('parseRepositoryUrl refuses', () => {
  const cases: Array<[string, string, RepositoryUrlPolicy?]> = [
    ['file:///etc/passwd', 'file scheme'],
    ['file://host/x', 'file scheme with host'],
    ['ext::sh -c touch% /tmp/pwned', 'ext:: remote helper'],
    ['ext::sh', 'ext:: without whitespace'],
    ['--upload-pack=touch /tmp/x', 'option-like'],
    ['-oProxyCommand=x', 'option-like ssh'],
    ['ssh://-oProxyCommand=x/r', 'ssh scheme'],
    ['ssh://git@github.com/o/r.git', 'ssh scheme with user'],
    ['git://github.com/o/r.git', 'git protocol'],
    ['git@github.com:o/r.git', 'scp-like'],
    ['https://user:s3cr3tP4ss@github.com/o/r.git', 'user:password'],
    ['https://ghp_s3cr3tT0ken@github.com/o/r', 'token as user'],
    ['https://:s3cr3tP4ss@github.com/o/r', 'password without user'],
    ['https://@github.com/o/r', 'empty userinfo'],
    ['https://github.com@evil.example/o/r', 'host confusion via userinfo'],
    ['http://github.com/o/r', 'plain http without allowPrivateHosts'],
    ['https://127.0.0.1/r.git', 'loopback literal'],
    ['https://localhost/r.git', 'localhost (real resolver)', { allowPrivateHosts: false }],
    ['https://loopy.example/r.git', 'one of several addresses is loopback'],
    ['https://internal.example/r.git', 'name resolving to private'],
    ['https://metadata.example/r.git', 'name resolving to metadata'],
    ['https://mapped.example/r.git', 'name resolving to IPv4-mapped loopback'],
    ['https://nat64.example/r.git', 'name resolving to NAT64 of link-local'],
    ['https://[::1]/r.git', 'IPv6 loopback'],
    ['https://0x7f000001/r.git', 'hex IPv4'],
    ['https://2130706433/r.git', 'decimal IPv4'],
    ['https://0177.0.0.1/r.git', 'octal IPv4'],
    ['https://127.1/r.git', 'short IPv4'],
    ['https://127.0.0.1./r.git', 'IPv4 with trailing dot'],
    ['https://%31%32%37.0.0.1/r.git', 'percent-encoded IPv4'],
    ['https://169.254.169.254/latest', 'cloud metadata'],
    ['https://[fe80::1]/r', 'IPv6 link-local'],
    ['https://[::ffff:127.0.0.1]/r', 'IPv4-mapped loopback'],
    ['https://[::ffff:7f00:1]/r', 'IPv4-mapped loopback, hex'],
    ['https://[64:ff9b::7f00:1]/r', 'NAT64 loopback'],
    ['https://[fc00::1]/r', 'unique local'],
    ['https://10.0.0.5/r', 'private 10/8'],
    ['https://192.168.1.1/r', 'private 192.168/16'],
    ['https://172.16.0.1/r', 'private 172.16/12'],
    ['https://100.64.0.1/r', 'CGNAT'],
    ['https://0.0.0.0/r', 'unspecified v4'],
    ['https://[::]/r', 'unspecified v6'],
    ['https://224.0.0.1/r', 'multicast'],
    ['https://255.255.255.255/r', 'broadcast'],
    ['https://240.0.0.1/r', 'reserved'],
    ['', 'empty'],
    ['   \t ', 'whitespace only'],
    ['https://github.com/o/r\n.git', 'newline inside'],
    ['https://github.com/o/r\u0000', 'NUL inside'],
    ['https://github.com/o/ r', 'space inside'],
    ['https://github.com/o/r\u200b', 'zero-width space inside'],
    [`https://github.com/o/${'a'.repeat(3000)}`, 'overlong'],
    ['https://github.com/', 'no path'],
    ['https://github.com/o', 'GitHub URL without repository'],
    ['https://git.example.org/', 'generic host without path'],
    ['https:///github.com/o/r', 'empty host'],
    ['https://host/a/../b', 'dot-dot segment'],
    ['https://host/a/%2e%2E/b', 'encoded dot-dot segment'],
    ['https://github.com\\o\\r', 'backslashes'],
    ['javascript:alert(1)', 'javascript scheme'],
    ['github.com/o/r', 'no scheme'],
    ['https://no-such-host.example/r.git', 'unresolvable host'],
    ['https://xn--/r', 'broken punycode'],
    ['https://169.254.169.254/latest', 'metadata with allowPrivateHosts', permissive],
    ['https://[fe80::1]/r', 'link-local v6 with allowPrivateHosts', permissive],
    ['http://metadata.example/r', 'name resolving to metadata with allowPrivateHosts', permissive],
    ['http://0x7f000001/r', 'hex IPv4 with allowPrivateHosts', permissive],
  ];

  it.each(cases)('%s (%s)', async (input, _why, policy = strict) => {
    const error = await parseRepositoryUrl(input, policy).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(BadUserInputError);
    const message = (error as Error).message;
    expect(message.length).toBeGreaterThan(0);
    for (const secret of ['s3cr3tP4ss', 'ghp_s3cr3tT0ken']) expect(message).not.toContain(secret);
  });

  it('names the problem', async () => {
    await expect(parseRepositoryUrl('https://no-such-host.example/r', strict)).rejects.toThrow('could not resolve host no-such-host.example');
    await expect(parseRepositoryUrl('https://localhost/r', { allowPrivateHosts: false })).rejects.toThrow(/loopback/);
    await expect(parseRepositoryUrl('https://169.254.169.254/r', permissive)).rejects.toThrow(/link-local/);
    await expect(parseRepositoryUrl('https://u:s3cr3tP4ss@github.com/o/r', strict)).rejects.toThrow(/credentials/);
  });
});

describe('parseRepositoryUrl accepts', () => {
  it.each([
    ['https://github.com/o/r', { url: 'https://github.com/o/r.git', name: 'o/r', provider: 'GITHUB' }],
    ['  https://GitHub.com/o/r.git/  ', { url: 'https://github.com/o/r.git', name: 'o/r', host: 'github.com' }],
    ['https://www.github.com/o/r?tab=readme#top', { url: 'https://github.com/o/r.git', name: 'o/r', provider: 'GITHUB' }],
    ['https://github.com:443/o/r.git', { url: 'https://github.com/o/r.git', host: 'github.com' }],
    ['https://github.com/o/r/tree/main', { url: 'https://github.com/o/r.git', webUrlBranch: 'main' }],
    ['https://github.com/o/r/tree/feature/x%2By', { url: 'https://github.com/o/r.git', webUrlBranch: 'feature/x+y' }],
    ['https://github.com/o/r/blob/main/README.md', { url: 'https://github.com/o/r.git' }],
    ['https://gitlab.com/g/sub/r', { url: 'https://gitlab.com/g/sub/r.git', name: 'g/sub/r', provider: 'GITLAB' }],
    ['https://gitlab.com/g/sub/r.git', { url: 'https://gitlab.com/g/sub/r.git', name: 'g/sub/r' }],
    ['https://gitlab.com/g/sub/r/-/tree/x', { url: 'https://gitlab.com/g/sub/r.git', name: 'g/sub/r', webUrlBranch: 'x' }],
    ['https://gitlab.com/g/r/-/merge_requests/1', { url: 'https://gitlab.com/g/r.git', name: 'g/r' }],
    ['https://git.example.org/scm/team/r.git/', { url: 'https://git.example.org/scm/team/r.git', name: 'scm/team/r', provider: 'GIT', hostname: 'git.example.org' }],
    ['https://git.example.org:8443/r', { url: 'https://git.example.org:8443/r', host: 'git.example.org:8443', name: 'r', provider: 'GIT' }],
    ['https://ghe.corp.example/o/r/tree/dev', { url: 'https://ghe.corp.example/o/r.git', provider: 'GITHUB', webUrlBranch: 'dev' }],
    ['https://bücher.example/r.git', { url: 'https://xn--bcher-kva.example/r.git', hostname: 'xn--bcher-kva.example', provider: 'GIT' }],
    ['https://140.82.112.3/r.git', { url: 'https://140.82.112.3/r.git', provider: 'GIT' }],
  ])('%s', async (input, expected) => {
    const parsed = await parseRepositoryUrl(input, { ...strict, providerHosts: { github: ['GHE.corp.example'] } });
    expect(parsed).toMatchObject(expected);
    expect(parsed.webUrlBranch).toBe((expected as { webUrlBranch?: string }).webUrlBranch);
  });

  it.each([
    ['http://127.0.0.1:8080/r.git', 'http://127.0.0.1:8080/r.git'],
    ['https://10.0.0.5/r', 'https://10.0.0.5/r'],
    ['https://[::1]/r.git', 'https://[::1]/r.git'],
    ['https://internal.example/r.git', 'https://internal.example/r.git'],
  ])('with allowPrivateHosts: %s', async (input, url) => {
    await expect(parseRepositoryUrl(input, permissive)).resolves.toMatchObject({ url, provider: 'GIT' });
  });

  it('resolves with the system resolver by default', async () => {
    await expect(parseRepositoryUrl('http://localhost:3000/r.git', { allowPrivateHosts: true })).resolves.toMatchObject({
      url: 'http://localhost:3000/r.git',
      host: 'localhost:3000',
    });
  });
});

describe('isRefusedAddress', () => {
  it.each([
    ['140.82.112.3', false, null],
    ['2606:50c0:8000::153', false, null],
    ['64:ff9b::8c52:7003', false, null], // NAT64 of a public address
    ['127.0.0.1', true, null],
    ['10.1.2.3', true, null],
    ['fd00::1', true, null],
    ['127.0.0.1', false, 'loopback address'],
    ['::1', false, 'loopback address'],
    ['::ffff:127.0.0.1', false, 'loopback address'],
    ['::ffff:a9fe:a9fe', true, 'link-local address'],
    ['64:ff9b::a00:1', false, 'NAT64 form of a private address'],
    ['fe80::1%eth0', true, 'link-local address'],
    ['::7f00:1', true, 'reserved address'],
    ['fec0::1', true, expect.stringContaining('reserved')],
    ['not-an-ip', true, 'invalid IP address'],
    ['127.1', true, 'invalid IP address'],
  ])('%s (allowPrivateHosts=%s)', (ip, allowPrivate, expected) => {
    expect(isRefusedAddress(ip, allowPrivate)).toEqual(expected);
  });
});
