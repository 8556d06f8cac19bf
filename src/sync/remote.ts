import type { Git, GitCallOptions } from './git.js';

export interface RemoteState {
  /** Branch the remote HEAD points at, when the server says. */
  defaultBranch: string | null;
  branches: Map<string, string>;
  tags: Map<string, string>;
}

/** CHECK for plain git hosts: one `git ls-remote`, no object transfer. */
export async function readRemote(git: Git, url: string, options: GitCallOptions): Promise<RemoteState> {
  const { stdout } = await git.run(['ls-remote', '--symref', '--', url, 'HEAD', 'refs/heads/*', 'refs/tags/*'], {
    ...options,
    url,
  });
  const state: RemoteState = { defaultBranch: null, branches: new Map(), tags: new Map() };
  for (const line of stdout.split('\n')) {
    const symref = /^ref: refs\/heads\/(\S+)\tHEAD$/.exec(line);
    if (symref?.[1]) {
      state.defaultBranch = symref[1];
      continue;
    }
    const [sha, ref] = line.split('\t');
    if (!sha || !ref || !/^[0-9a-f]{40,64}$/.test(sha)) continue;
    if (ref.startsWith('refs/heads/')) state.branches.set(ref.slice('refs/heads/'.length), sha);
    else if (ref.startsWith('refs/tags/')) {
      // A peeled tag (^{}) names the commit; it wins over the tag object.
      const name = ref.slice('refs/tags/'.length).replace(/\^\{\}$/, '');
      if (ref.endsWith('^{}') || !state.tags.has(name)) state.tags.set(name, sha);
    }
  }
  return state;
}
