import { describe, expect, it } from 'vitest';
import { importCandidates, resolveImport, type ImportTarget } from '../src/indexing/imports.js';
import type { ParserLanguage } from '../src/indexing/parser.js';

const paths = new Set([
  'src/index.ts',
  'src/util.ts',
  'src/view.tsx',
  'src/lib/index.ts',
  'src/lib/math.js',
  'src/data.json',
  'src/types.d.ts',
  'web/app.jsx',
  'web/legacy.cjs',
  'pkg/__init__.py',
  'pkg/models.py',
  'pkg/sub/__init__.py',
  'pkg/sub/helpers.py',
  'src/mylib/__init__.py',
  'src/mylib/core.py',
  'scripts/tool.py',
  'scripts/common.py',
  'main.py',
]);

const file = (path: string): ImportTarget => ({ kind: 'file', path });
const module = (name: string): ImportTarget => ({ kind: 'module', name });
const unresolved: ImportTarget = { kind: 'unresolved' };

describe('import resolution', () => {
  const cases: [ParserLanguage, string, string, ImportTarget][] = [
    // TypeScript / JavaScript: relative paths, extensions, index files, compiled extensions
    ['typescript', 'src/index.ts', './util', file('src/util.ts')],
    ['typescript', 'src/index.ts', './util.js', file('src/util.ts')],
    ['typescript', 'src/index.ts', './util.ts', file('src/util.ts')],
    ['typescript', 'src/index.ts', './view', file('src/view.tsx')],
    ['typescript', 'src/index.ts', './view.jsx', file('src/view.tsx')],
    ['typescript', 'src/index.ts', './lib', file('src/lib/index.ts')],
    ['typescript', 'src/index.ts', './lib/', file('src/lib/index.ts')],
    ['typescript', 'src/index.ts', './lib/math', file('src/lib/math.js')],
    ['typescript', 'src/index.ts', './data.json', file('src/data.json')],
    ['typescript', 'src/index.ts', './types', file('src/types.d.ts')],
    ['typescript', 'src/lib/index.ts', '..', file('src/index.ts')],
    ['typescript', 'src/lib/index.ts', '../util', file('src/util.ts')],
    ['javascript', 'web/app.jsx', '../src/lib/math.js', file('src/lib/math.js')],
    ['javascript', 'web/app.jsx', './legacy', file('web/legacy.cjs')],
    ['typescript', 'src/index.ts', './missing', unresolved],
    ['typescript', 'src/index.ts', '../../outside', unresolved],
    ['typescript', 'src/index.ts', '/abs/path', unresolved],
    ['typescript', 'src/index.ts', 'react', module('react')],
    ['typescript', 'src/index.ts', 'lodash/fp', module('lodash')],
    ['typescript', 'src/index.ts', '@scope/pkg/deep/x', module('@scope/pkg')],
    ['typescript', 'src/index.ts', 'node:fs/promises', module('node:fs')],
    // Python: relative imports against the package, absolute ones from the root, src/ or the script's folder
    ['python', 'pkg/models.py', '.#sub', file('pkg/sub/__init__.py')],
    ['python', 'pkg/sub/helpers.py', '..#models', file('pkg/models.py')],
    ['python', 'pkg/sub/helpers.py', '..models#Model', file('pkg/models.py')],
    ['python', 'pkg/sub/helpers.py', '.#missing_name', file('pkg/sub/__init__.py')],
    ['python', 'pkg/sub/helpers.py', '...#x', unresolved],
    ['python', 'main.py', '..#x', unresolved],
    ['python', 'main.py', 'pkg', file('pkg/__init__.py')],
    ['python', 'main.py', 'pkg.models', file('pkg/models.py')],
    ['python', 'main.py', 'pkg.sub.helpers', file('pkg/sub/helpers.py')],
    ['python', 'main.py', 'pkg#models', file('pkg/models.py')],
    ['python', 'main.py', 'pkg.models#Model', file('pkg/models.py')],
    ['python', 'main.py', 'pkg#*', file('pkg/__init__.py')],
    ['python', 'main.py', 'mylib.core', file('src/mylib/core.py')],
    ['python', 'scripts/tool.py', 'common', file('scripts/common.py')],
    ['python', 'main.py', 'common', module('common')],
    ['python', 'main.py', 'os.path', module('os')],
    ['python', 'main.py', 'numpy#array', module('numpy')],
    // Go, Java, Rust: external modules
    ['go', 'main.go', 'github.com/x/y/z', module('github.com/x/y/z')],
    ['java', 'A.java', 'java.util.List', module('java.util')],
    ['java', 'A.java', 'java.util.*', module('java.util')],
    ['java', 'A.java', 'org.junit.Assert.assertEquals', module('org.junit')],
    ['rust', 'src/main.rs', 'std::io::Read', module('std')],
    ['rust', 'src/main.rs', 'serde', module('serde')],
    ['rust', 'src/main.rs', 'crate::config::Config', unresolved],
    ['rust', 'src/main.rs', 'super::x', unresolved],
  ];
  it.each(cases)('%s %s imports %s', (language, from, specifier, expected) => {
    expect(resolveImport(language, from, specifier, paths)).toEqual(expected);
  });

  it('lists what a resolution depends on, so that a path coming or going re-resolves exactly the files it concerns', () => {
    const plan = importCandidates('typescript', 'src/index.ts', './util');
    expect(plan.candidates.slice(0, 3)).toEqual(['src/util', 'src/util.ts', 'src/util.tsx']);
    expect(plan.candidates).toContain('src/util/index.ts');
    // Adding src/util/index.ts alone changes nothing while src/util.ts exists: candidates are tried in order.
    expect(resolveImport('typescript', 'src/index.ts', './util', new Set([...paths, 'src/util/index.ts']))).toEqual(file('src/util.ts'));
    expect(resolveImport('typescript', 'src/index.ts', './util', new Set(['src/util/index.ts']))).toEqual(file('src/util/index.ts'));
    expect(importCandidates('go', 'main.go', 'fmt').candidates).toEqual([]);
  });
});
