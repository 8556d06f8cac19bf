import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { domainToUnicode } from 'node:url';
import ipaddr from 'ipaddr.js';
import { BadUserInputError } from '../errors.js';

export interface RepositoryUrlPolicy {
  allowPrivateHosts: boolean;
  /** Resolves a host name to IP addresses; defaults to the system resolver. */
  lookup?: (host: string) => Promise<string[]>;
}

export interface ParsedRepositoryUrl {
  url: string;
  host: string;
  hostname: string;
  name: string;
  provider: 'GITHUB' | 'GITLAB' | 'GIT';
  webUrlBranch?: string;
}

export interface RepositoryUrlOptions extends RepositoryUrlPolicy {
  providerHosts?: { github?: string[]; gitlab?: string[] };
}

const MAX_LENGTH = 2048;
const bad = (message: string): BadUserInputError => new BadUserInputError(message);

/**
 * Validates a repository URL given by a user and normalises it to a clone URL.
 * Error messages never echo the input, so a credential pasted into it cannot
 * leak through them.
 */
export async function parseRepositoryUrl(input: string, options: RepositoryUrlOptions): Promise<ParsedRepositoryUrl> {
  const text = input.trim();
  if (text === '') throw bad('repository URL is required');
  if (text.length > MAX_LENGTH) throw bad(`repository URL is longer than ${MAX_LENGTH} characters`);
  if (text.startsWith('-')) throw bad('repository URL must not start with "-" (it would be read as a git option)');
  if (/[\s\p{Cc}\p{Cf}]/u.test(text)) throw bad('repository URL must not contain whitespace or control characters');
  // WHATWG URL parsing treats "\" as "/" but git does not; refuse instead of guessing.
  if (text.includes('\\')) throw bad('repository URL must not contain backslashes');
  if (/^[a-z][a-z0-9+.-]*::/i.test(text)) throw bad('git remote-helper syntax (such as ext::) is not allowed');

  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    if (/^[^/:]*[@.][^/:]*:/.test(text)) throw bad('SSH (user@host:path) URLs are not supported; use the https:// clone URL');
    throw bad('repository URL must be an absolute https:// URL');
  }
  if (scheme === 'http' && !options.allowPrivateHosts) throw bad('plain http:// is not allowed; use https://');
  if (scheme !== 'https' && scheme !== 'http') throw bad(`URL scheme "${scheme}:" is not allowed; use https://`);

  // Look at the authority and path as typed: the URL parser silently drops
  // empty credentials, extra slashes and ".." segments, and rewrites IPv4 forms.
  const rest = text.slice(scheme.length + 3);
  const authority = /^[^/?#]*/.exec(rest)![0];
  const rawPath = /^[^?#]*/.exec(rest.slice(authority.length))![0];
  if (authority.includes('@')) throw bad('repository URL must not contain credentials; attach a provider credential instead');
  const rawHost = (authority.startsWith('[') ? authority.slice(0, authority.indexOf(']') + 1) : authority.split(':')[0]!).toLowerCase();
  if (rawHost === '') throw bad('repository URL has no host');
  if (rawPath.split('/').some((segment) => ['.', '..'].includes(segment.replace(/%2e/gi, '.')))) {
    throw bad('repository URL path must not contain "." or ".." segments');
  }

  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw bad('repository URL is not a valid URL');
  }
  if (url.username || url.password) throw bad('repository URL must not contain credentials; attach a provider credential instead');
  if (isIP(url.hostname) === 4 && url.hostname !== rawHost) {
    throw bad('IP addresses in repository URLs must be written in dotted-decimal form (a.b.c.d)');
  }

  let hostname = url.hostname.replace(/\.$/, '');
  if (hostname === 'www.github.com') hostname = 'github.com';
  if (hostname === '') throw bad('repository URL has no host');
  if (mixesLookAlikeScripts(hostname)) {
    throw bad(`repository host ${hostname} mixes Latin letters with look-alike letters of another script (an IDN homograph such as a Cyrillic "і" in "github")`);
  }
  const host = url.port ? `${hostname}:${url.port}` : hostname;

  const path = url.pathname.replace(/\/+$/, '');
  if (path === '') throw bad('repository URL must include the repository path');

  const matches = (list: string[] | undefined) => list?.some((h) => h.toLowerCase() === hostname) ?? false;
  const provider =
    hostname === 'github.com' || matches(options.providerHosts?.github) ? 'GITHUB'
    : hostname === 'gitlab.com' || matches(options.providerHosts?.gitlab) ? 'GITLAB'
    : 'GIT';

  const origin = `${url.protocol}//${host}`;
  let result: ParsedRepositoryUrl;
  if (provider === 'GIT') {
    const name = path.slice(1).replace(/\.git$/i, '');
    if (name === '') throw bad('repository URL must include the repository path');
    result = { url: origin + path, host, hostname, name, provider };
  } else {
    const { name, branch } = providerPath(provider, path);
    result = { url: `${origin}/${name}.git`, host, hostname, name, provider, ...(branch ? { webUrlBranch: branch } : {}) };
  }
  await checkHostAddresses(hostname, options);
  return result;
}

/** Scripts whose letters pass for Latin ones (Cyrillic "а", "і", "о"; Greek "ο"; …). */
const lookAlikeScripts = [/\p{Script=Cyrillic}/u, /\p{Script=Greek}/u, /\p{Script=Armenian}/u, /\p{Script=Cherokee}/u];

/** A label of the host (Unicode form of its punycode) that mixes Latin letters with those of a look-alike script. */
function mixesLookAlikeScripts(hostname: string): boolean {
  return domainToUnicode(hostname)
    .split('.')
    .some((label) => /\p{Script=Latin}/u.test(label) && lookAlikeScripts.some((script) => script.test(label)));
}

/** owner/name (GitLab: group/…/name) and a /tree/<branch> from a clone or web URL path. */
function providerPath(provider: 'GITHUB' | 'GITLAB', path: string): { name: string; branch?: string } {
  const segments = path.split('/').filter(Boolean);
  // GitLab separates the project path from pages with "/-/"; GitHub projects are always owner/repo.
  const dash = segments.indexOf('-');
  const projectEnd = provider === 'GITHUB' ? 2 : dash === -1 ? segments.length : dash;
  const project = segments.slice(0, projectEnd);
  const last = project.length - 1;
  if (last >= 0) project[last] = project[last]!.replace(/\.git$/i, '');
  if (project.length < 2 || project.some((part) => !/^[A-Za-z0-9_.-]+$/.test(part) || /^\.+$/.test(part))) {
    throw bad(`${provider === 'GITHUB' ? 'GitHub' : 'GitLab'} URL must name a repository as ${provider === 'GITHUB' ? 'owner/name' : 'group/name'}`);
  }
  const page = segments.slice(provider === 'GITHUB' ? 2 : projectEnd + 1);
  let branch: string | undefined;
  if (page[0] === 'tree' && page.length > 1) {
    try {
      branch = decodeURIComponent(page.slice(1).join('/'));
    } catch {
      throw bad('branch in repository URL is not validly percent-encoded');
    }
  }
  return { name: project.join('/'), ...(branch ? { branch } : {}) };
}

async function checkHostAddresses(hostname: string, policy: RepositoryUrlPolicy): Promise<void> {
  const literal = hostname.replace(/^\[(.*)\]$/, '$1');
  let addresses: string[];
  if (isIP(literal)) {
    addresses = [literal];
  } else {
    addresses = await (policy.lookup ?? systemLookup)(hostname).catch(() => []);
    if (addresses.length === 0) throw bad(`could not resolve host ${hostname}`);
  }
  for (const ip of addresses) {
    const reason = isRefusedAddress(ip, policy.allowPrivateHosts);
    if (reason) throw bad(`repository host ${hostname} is not allowed: ${reason} ${ip}`);
  }
}

async function systemLookup(hostname: string): Promise<string[]> {
  return (await dnsLookup(hostname, { all: true })).map((entry) => entry.address);
}

const rangeLabels: Record<string, string> = {
  unspecified: 'unspecified address',
  broadcast: 'broadcast address',
  multicast: 'multicast address',
  linkLocal: 'link-local address',
  loopback: 'loopback address',
  private: 'private address',
  uniqueLocal: 'private (unique local) address',
  carrierGradeNat: 'private (carrier-grade NAT) address',
  reserved: 'reserved address',
};
const allowedWhenPrivate = new Set(['loopback', 'private', 'uniqueLocal', 'carrierGradeNat']);

/** Why a connection to `ip` must be refused, or null when it is allowed. */
export function isRefusedAddress(ip: string, allowPrivateHosts: boolean): string | null {
  const bare = ip.replace(/%.*$/, ''); // resolvers may add a zone id (fe80::1%eth0)
  if (!isIP(bare)) return 'invalid IP address';
  const address = ipaddr.process(bare); // turns ::ffff:a.b.c.d into a.b.c.d
  const range = address.range();
  if (address.kind() === 'ipv6') {
    const parts = (address as ipaddr.IPv6).parts;
    // 64:ff9b::/96 embeds an IPv4 address in its last 32 bits: judge that one.
    if (parts.slice(0, 6).join() === [0x64, 0xff9b, 0, 0, 0, 0].join()) {
      const v4 = [parts[6]! >> 8, parts[6]! & 255, parts[7]! >> 8, parts[7]! & 255].join('.');
      const reason = isRefusedAddress(v4, allowPrivateHosts);
      return reason && `NAT64 form of a ${reason}`;
    }
    // Only global unicast (2000::/3) is routable on the internet; this also
    // covers deprecated IPv4-compatible (::a.b.c.d) and site-local addresses.
    if (range === 'unicast' && (parts[0]! & 0xe000) !== 0x2000) return 'reserved address';
  }
  if (range === 'unicast') return null;
  if (allowPrivateHosts && allowedWhenPrivate.has(range)) return null;
  return rangeLabels[range] ?? `reserved address (${range})`;
}
