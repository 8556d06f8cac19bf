import { describe, expect, it } from 'vitest';
import {
  countLines,
  countsAsCode,
  detectLicense,
  isBinary,
  isDocumentation,
  isGenerated,
  isVendored,
  languageOf,
  pickLicenseFile,
  pickReadme,
} from '../src/indexing/languages.js';

const bytes = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'latin1'));
const utf8 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'utf8'));

describe('languageOf', () => {
  it.each([
    // Common languages by extension.
    ['src/index.ts', 'TypeScript', 'programming'],
    ['src/module.mts', 'TypeScript', 'programming'],
    ['src/types.d.ts', 'TypeScript', 'programming'],
    ['src/App.tsx', 'TSX', 'programming'],
    ['lib/main.js', 'JavaScript', 'programming'],
    ['lib/main.mjs', 'JavaScript', 'programming'],
    ['lib/main.cjs', 'JavaScript', 'programming'],
    ['lib/View.jsx', 'JavaScript', 'programming'],
    ['pkg/app.py', 'Python', 'programming'],
    ['pkg/stubs.pyi', 'Python', 'programming'],
    ['cmd/server/main.go', 'Go', 'programming'],
    ['src/main/java/com/example/App.java', 'Java', 'programming'],
    ['src/lib.rs', 'Rust', 'programming'],
    ['src/zlib.c', 'C', 'programming'],
    ['include/zlib.h', 'C', 'programming'],
    ['include/vector.hpp', 'C++', 'programming'],
    ['include/vector.hh', 'C++', 'programming'],
    ['src/vector.cc', 'C++', 'programming'],
    ['docs/guide.md', 'Markdown', 'prose'],
    ['package.json', 'JSON', 'data'],
    ['tsconfig.json', 'JSON with Comments', 'data'],
    ['.github/workflows/ci.yml', 'YAML', 'data'],
    ['config/app.yaml', 'YAML', 'data'],
    ['styles/site.css', 'CSS', 'markup'],
    ['public/index.html', 'HTML', 'markup'],
    // Exact file names before extensions.
    ['Dockerfile', 'Dockerfile', 'programming'],
    ['deploy/Containerfile', 'Dockerfile', 'programming'],
    ['images/app.dockerfile', 'Dockerfile', 'programming'],
    ['Makefile', 'Makefile', 'programming'],
    ['sub/makefile', 'Makefile', 'programming'],
    ['GNUmakefile', 'Makefile', 'programming'],
    ['rules.mk', 'Makefile', 'programming'],
    ['CMakeLists.txt', 'CMake', 'programming'],
    ['go.mod', 'Go Module', 'data'],
    ['Gemfile', 'Ruby', 'programming'],
    ['Jenkinsfile', 'Groovy', 'programming'],
    // Shell.
    ['scripts/build.sh', 'Shell', 'programming'],
    ['scripts/setup.bash', 'Shell', 'programming'],
    ['home/.bashrc', 'Shell', 'programming'],
    ['.zshrc', 'Shell', 'programming'],
    // Dotfiles.
    ['.gitignore', 'Ignore List', 'data'],
    ['.editorconfig', 'EditorConfig', 'data'],
    ['.env', 'Dotenv', 'data'],
    ['.env.local', 'Dotenv', 'data'],
    ['.eslintrc', 'JSON with Comments', 'data'],
    ['.eslintrc.js', 'JavaScript', 'programming'],
    // Upper-case extensions and names: extensions fold, names fall back to folding.
    ['SRC/MAIN.PY', 'Python', 'programming'],
    ['web/App.TSX', 'TSX', 'programming'],
    ['analysis/model.R', 'R', 'programming'],
    ['MAKEFILE', 'Makefile', 'programming'],
    // Longest extension first.
    ['resources/views/home.blade.php', 'Blade', 'markup'],
    ['build.gradle.kts', 'Gradle Kotlin DSL', 'data'],
    ['src/lib.rs.in', 'Rust', 'programming'],
    // Spaces and non-ASCII characters.
    ['my docs/read me.md', 'Markdown', 'prose'],
    ['src/ünïcødé/файл.go', 'Go', 'programming'],
    ['日本語 フォルダ/スクリプト.py', 'Python', 'programming'],
  ])('%s → %s', (path, name, type) => {
    expect(languageOf(path)).toEqual({ name, type });
  });

  it.each([
    // Extensions several languages claim: the preference table …
    ['a.h', 'C'],
    ['a.m', 'Objective-C'],
    ['a.pl', 'Perl'],
    ['a.pm', 'Perl'],
    ['a.sql', 'SQL'],
    ['a.r', 'R'],
    ['a.v', 'Verilog'],
    ['a.rs', 'Rust'],
    ['a.md', 'Markdown'],
    ['a.yml', 'YAML'],
    ['a.json', 'JSON'],
    ['a.html', 'HTML'],
    ['a.php', 'PHP'],
    ['a.cs', 'C#'],
    ['a.fs', 'F#'],
    ['a.ts', 'TypeScript'],
    ['a.tsx', 'TSX'],
    ['a.txt', 'Text'],
    // … otherwise the claimant whose name sorts first.
    ['a.b', 'B'], // B, Brainfuck, Limbo
    ['a.bas', 'B4X'], // B4X, BASIC, FreeBASIC, …
    ['a.inc', 'Assembly'], // Assembly, BitBake, C++, HTML, …
    ['a.ex', 'Elixir'], // Elixir, Euphoria
  ])('resolves the ambiguous %s to %s', (path, name) => {
    expect(languageOf(path)?.name).toBe(name);
  });

  it.each([
    'notes.qqq', // unknown extension
    'archive.tar.gz', // no language claims .tar.gz or .gz
    'bin/run', // no extension, unknown name
    'Dockerfile.dev', // linguist knows Dockerfile and *.dockerfile only
    '.unknownrc',
    'README', // linguist lists no README without an extension
    'trailing.',
    'src/',
    '',
  ])('%s → null', (path) => {
    expect(languageOf(path)).toBeNull();
  });

  it('returns the same shared object for every file of a language', () => {
    const info = languageOf('a.ts');
    expect(languageOf('b/c.ts')).toBe(info);
    expect(Object.isFrozen(info)).toBe(true);
  });
});

describe('countsAsCode', () => {
  it('counts programming and markup languages only', () => {
    expect(countsAsCode({ name: 'TypeScript', type: 'programming' })).toBe(true);
    expect(countsAsCode({ name: 'HTML', type: 'markup' })).toBe(true);
    expect(countsAsCode({ name: 'JSON', type: 'data' })).toBe(false);
    expect(countsAsCode({ name: 'Markdown', type: 'prose' })).toBe(false);
    expect(countsAsCode(languageOf('a.go')!)).toBe(true);
    expect(countsAsCode(languageOf('a.css')!)).toBe(true);
    expect(countsAsCode(languageOf('a.yaml')!)).toBe(false);
    expect(countsAsCode(languageOf('README.md')!)).toBe(false);
  });
});

describe('isVendored', () => {
  it.each([
    'node_modules/react/index.js',
    'packages/app/node_modules/lodash/lodash.js',
    'bower_components/jquery/jquery.js',
    'vendor/github.com/pkg/errors/errors.go',
    'app/Vendor/lib.php',
    'src/vendors/polyfill.js',
    'third_party/zlib/inflate.c',
    'src/ThirdParty/json.hpp',
    '3rdparty/glm/glm.hpp',
    'external/catch2/catch.hpp',
    '.yarn/releases/yarn-4.1.0.cjs',
    '.yarn/plugins/plugin.cjs',
    'dist/bundle.js',
    'packages/ui/dist/index.js',
    'public/js/app.min.js',
    'public/css/site.min.css',
    'public/css/site-min.css',
    'static/jquery-3.7.1.js',
    'static/bootstrap.bundle.js',
    'types/global.d.ts',
    'gradlew',
    'gradlew.bat',
    'gradle/wrapper/gradle-wrapper.properties',
    'mvnw',
    '.mvn/wrapper/maven-wrapper.properties',
    'configure',
    'test/fixtures/repo/a.json',
    'spec/fixtures/data.yml',
    'Pods/Alamofire/Source/AF.swift',
    'Godeps/_workspace/src/x.go',
    'deps/uv/src/unix/core.c',
    'docs/_build/html/index.html',
    '.vscode/settings.json',
    '.gitignore',
    'sub/.gitattributes',
    '.DS_Store',
  ])('%s is vendored', (path) => {
    expect(isVendored(path)).toBe(true);
  });

  it.each([
    'src/index.ts',
    'src/vendors.ts',
    'src/vendor-prefix.ts',
    'src/distance.ts',
    'distribution/plan.md',
    'lib/minimal.js',
    'src/admin.js',
    'src/types.ts',
    'lib/my-dist/x.js',
    'test/fixture.ts',
    'src/external.ts',
    'README.md',
  ])('%s is not vendored', (path) => {
    expect(isVendored(path)).toBe(false);
  });
});

describe('isGenerated', () => {
  it.each([
    'package-lock.json',
    'web/yarn.lock',
    'pnpm-lock.yaml',
    'Cargo.lock',
    'go.sum',
    'composer.lock',
    'Gemfile.lock',
    'poetry.lock',
    'api/v1/service.pb.go',
    'api/v1/service.pb.gw.go',
    'proto/user_pb2.py',
    'proto/user_pb2_grpc.py',
    'gen/user_pb.js',
    'src/schema.generated.ts',
    'src/api.generated.graphql',
    'Forms/Form1.Designer.cs',
    'lib/models/user.g.dart',
    'lib/models/user.freezed.dart',
    'static/app.js.map',
    'src/components/__generated__/Query.graphql.ts',
  ])('%s is generated by its path', (path) => {
    expect(isGenerated(path)).toBe(true);
  });

  it.each(['src/index.ts', 'package.json', 'go.mod', 'Cargo.toml', 'src/generator.ts', 'src/generated.ts', 'src/lockfile.ts', 'docs/yarn.lock.md'])(
    '%s is not generated by its path',
    (path) => {
      expect(isGenerated(path)).toBe(false);
    },
  );

  it.each([
    ['Go', '// Code generated by protoc-gen-go. DO NOT EDIT.\n// versions:\n\npackage api\n'],
    ['Go stringer', '// Code generated by "stringer -type=Kind"; DO NOT EDIT.\n\npackage kind\n'],
    ['@generated', '/**\n * This file is @generated by a tool.\n */\nexport const x = 1;\n'],
    ['Facebook style', '// @generated SignedSource<<abc123>>\n'],
    ['autogenerated', '# AUTOGENERATED FILE: edit schema.yml instead\nname: x\n'],
    ['auto-generated', '// This file is auto-generated from the OpenAPI spec.\n'],
    ['.NET', '//------------------------------------------------------------------------------\n// <auto-generated>\n//     This code was generated by a tool.\n// </auto-generated>\n'],
    ['protoc', '// Generated by the protocol buffer compiler.  DO NOT EDIT!\n// source: user.proto\n'],
  ])('finds the %s marker in the head', (_kind, head) => {
    expect(isGenerated('src/file.txt', utf8(head))).toBe(true);
  });

  it('reads markers in the first 1 KiB only, from a view at any offset', () => {
    const padding = '// hand-written\n'.repeat(70); // 1120 bytes
    expect(isGenerated('src/a.go', utf8(`${padding}// Code generated by x. DO NOT EDIT.\n`))).toBe(false);
    const buffer = utf8(`xxxxxxxx// @generated\n`);
    expect(isGenerated('src/a.ts', buffer.subarray(8))).toBe(true);
    expect(isGenerated('src/a.ts', buffer.subarray(0, 8))).toBe(false);
  });

  it('is false for hand-written content and for an unknown or empty head', () => {
    expect(isGenerated('src/a.ts', utf8('/** Generates the code graph. */\nexport function generate(): void {}\n'))).toBe(false);
    expect(isGenerated('src/a.go', utf8('// Code generated by hand, edit freely.\npackage a\n'))).toBe(false);
    expect(isGenerated('src/a.ts', undefined)).toBe(false);
    expect(isGenerated('src/a.ts', new Uint8Array())).toBe(false);
  });
});

describe('isDocumentation', () => {
  it.each([
    'docs/intro.md',
    'doc/api.rst',
    'Docs/index.html',
    'Documentation/filesystems/ext4.rst',
    'kernel/Documentation/x.txt',
    'examples/basic/main.go',
    'example/app.py',
    'samples/hello.c',
    'demo/index.html',
    'javadoc/index.html',
    'README.md',
    'pkg/README',
    'Readme.txt',
    'LICENSE',
    'LICENCE.md',
    'COPYING',
    'CHANGELOG.md',
    'CONTRIBUTING.md',
    'CITATION.cff',
  ])('%s is documentation', (path) => {
    expect(isDocumentation(path)).toBe(true);
  });

  it.each(['src/index.ts', 'src/docs/page.ts', 'src/doc.ts', 'src/documentation.ts', 'lib/readme_parser.ts', 'src/examples.ts', 'mydocs/a.md', 'src/licenses.ts'])(
    '%s is not documentation',
    (path) => {
      expect(isDocumentation(path)).toBe(false);
    },
  );
});

describe('isBinary', () => {
  it('looks for a NUL byte in the first 8000 bytes', () => {
    expect(isBinary(new Uint8Array())).toBe(false);
    expect(isBinary(utf8('plain text\nwith ünïcødé\n'))).toBe(false);
    expect(isBinary(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00]))).toBe(true);
    const late = new Uint8Array(9000).fill(0x61);
    late[7999] = 0;
    expect(isBinary(late)).toBe(true);
    late[7999] = 0x61;
    late[8000] = 0;
    expect(isBinary(late)).toBe(false);
  });
});

describe('countLines', () => {
  it.each([
    ['empty', '', 0],
    ['one line without a trailing newline', 'const a = 1;', 1],
    ['one line with a trailing newline', 'const a = 1;\n', 1],
    ['two lines without a trailing newline', 'a\nb', 2],
    ['CRLF', 'a\r\nb\r\n', 2],
    ['CRLF blank lines', 'a\r\n\r\n\r\nb', 2],
    ['CR only', 'a\rb\rc', 3],
    ['CR only with blank lines', 'a\r\r  \rb\r', 2],
    ['blank lines with spaces and tabs', 'a\n   \n\t\t\n \t \nb\n', 2],
    ['vertical tab and form feed are blank', 'a\n\x0b\x0c\nb', 2],
    ['only newlines', '\n\n\n', 0],
    ['only whitespace', ' \t \r\n  ', 0],
    ['indented lines', '  if (x) {\n    y();\n  }\n', 3],
    ['mixed line ends', 'a\nb\r\nc\rd', 4],
  ])('%s', (_name, text, expected) => {
    expect(countLines(bytes(text))).toBe(expected);
  });

  it('counts a line of non-ASCII characters and ignores a leading byte order mark', () => {
    expect(countLines(utf8('ünïcødé\n日本語\n'))).toBe(2);
    expect(countLines(utf8('\uFEFF\n\n'))).toBe(0);
    expect(countLines(utf8('\uFEFFa\nb'))).toBe(2);
  });

  it('counts a view at an offset of a larger buffer', () => {
    const buffer = bytes('xxxx\nline one\n\nline two');
    expect(countLines(buffer.subarray(5))).toBe(2);
    expect(countLines(buffer.subarray(5, 9))).toBe(1);
  });

  it('agrees with splitting the decoded text on random inputs', () => {
    const alphabet = ['a', 'é', ' ', '\t', '\n', '\r', '\r\n', '\x0b', '\x0c', '{', ';'];
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 500; round++) {
      let text = '';
      const length = random(60);
      for (let i = 0; i < length; i++) text += alphabet[random(alphabet.length)];
      const expected = text.split(/\r\n|\r|\n/).filter((line) => /[^ \t\x0b\x0c]/.test(line)).length;
      expect(countLines(utf8(text)), JSON.stringify(text)).toBe(expected);
    }
  });
});

describe('pickReadme', () => {
  it.each([
    [['src', 'LICENSE', 'README.md', 'readme.txt'], 'README.md'],
    [['README', 'README.rst'], 'README'],
    [['readme.rst'], 'readme.rst'],
    [['readme.rst', 'README.txt'], 'README.txt'],
    [['README.zh-CN.md', 'README.md'], 'README.md'],
    [['readme.md', 'README.md'], 'README.md'],
    [['Readme.markdown', 'README'], 'README'],
    [['package.json', 'index.md', 'READ_ME', 'README-dev.md'], null],
    [[], null],
  ] as [string[], string | null][])('%j → %s', (names, expected) => {
    expect(pickReadme(names)).toBe(expected);
  });
});

describe('pickLicenseFile', () => {
  it.each([
    [['README.md', 'LICENSE'], 'LICENSE'],
    [['COPYING', 'LICENSE.txt'], 'LICENSE.txt'],
    [['LICENSE', 'LICENSE.md'], 'LICENSE.md'],
    [['LICENSE-MIT', 'LICENSE-APACHE'], 'LICENSE-APACHE'],
    [['COPYING.LESSER', 'COPYING'], 'COPYING'],
    [['licence'], 'licence'],
    [['LICENSE_1_0.txt'], 'LICENSE_1_0.txt'],
    [['MIT-LICENSE'], 'MIT-LICENSE'],
    [['UNLICENSE', 'COPYING'], 'COPYING'],
    [['LICENSES', 'licensing.md', 'NOTICE'], null],
    [[], null],
  ] as [string[], string | null][])('%j → %s', (names, expected) => {
    expect(pickLicenseFile(names)).toBe(expected);
  });
});

const MIT = `MIT License

Copyright (c) 2024 Jane Doe

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
`;

const APACHE = `
                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/

   TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION

   1. Definitions.

      "License" shall mean the terms and conditions for use, reproduction,
      and distribution as defined by Sections 1 through 9 of this document.
`;

const GPL3 = `                    GNU GENERAL PUBLIC LICENSE
                       Version 3, 29 June 2007

 Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>
 Everyone is permitted to copy and distribute verbatim copies
 of this license document, but changing it is not allowed.

                            Preamble

  The GNU General Public License is a free, copyleft license for
software and other kinds of works.
`;

const GPL3_SECTION_13 = `
  13. Use with the GNU Affero General Public License.

  Notwithstanding any other provision of this License, you have
permission to link or combine any covered work with a work licensed
under version 3 of the GNU Affero General Public License into a single
combined work, and to convey the resulting work.
`;

const GPL2 = `                    GNU GENERAL PUBLIC LICENSE
                       Version 2, June 1991

 Copyright (C) 1989, 1991 Free Software Foundation, Inc.,
 51 Franklin Street, Fifth Floor, Boston, MA 02110-1301 USA
 Everyone is permitted to copy and distribute verbatim copies
 of this license document, but changing it is not allowed.
`;

const LGPL21 = `                  GNU LESSER GENERAL PUBLIC LICENSE
                       Version 2.1, February 1999

 Copyright (C) 1991, 1999 Free Software Foundation, Inc.
 51 Franklin Street, Fifth Floor, Boston, MA  02110-1301  USA
 Everyone is permitted to copy and distribute verbatim copies
 of this license document, but changing it is not allowed.

[This is the first released version of the Lesser GPL.  It also counts
 as the successor of the GNU Library Public License, version 2, hence
 the version number 2.1.]
`;

const LGPL3 = `                   GNU LESSER GENERAL PUBLIC LICENSE
                       Version 3, 29 June 2007

 Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>
 Everyone is permitted to copy and distribute verbatim copies
 of this license document, but changing it is not allowed.


  This version of the GNU Lesser General Public License incorporates
the terms and conditions of version 3 of the GNU General Public
License, supplemented by the additional permissions listed below.
`;

const AGPL3 = `                    GNU AFFERO GENERAL PUBLIC LICENSE
                       Version 3, 19 November 2007

 Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>
 Everyone is permitted to copy and distribute verbatim copies
 of this license document, but changing it is not allowed.

                            Preamble

  The GNU Affero General Public License is a free, copyleft license for
software and other kinds of works, specifically designed to ensure
cooperation with the community in the case of network server software.
`;

const BSD_CONDITIONS = `Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.
`;

const BSD_DISCLAIMER = `
THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED.
`;

const BSD2 = `BSD 2-Clause License

Copyright (c) 2024, Jane Doe

${BSD_CONDITIONS}${BSD_DISCLAIMER}`;

const BSD3 = `BSD 3-Clause License

Copyright (c) 2024, Jane Doe

${BSD_CONDITIONS}
3. Neither the name of the copyright holder nor the names of its
   contributors may be used to endorse or promote products derived from
   this software without specific prior written permission.
${BSD_DISCLAIMER}`;

const ISC = `ISC License

Copyright (c) 2024, Jane Doe

Permission to use, copy, modify, and/or distribute this software for any
purpose with or without fee is hereby granted, provided that the above
copyright notice and this permission notice appear in all copies.

THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES
WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
MERCHANTABILITY AND FITNESS.
`;

const MPL2 = `Mozilla Public License Version 2.0
==================================

1. Definitions
--------------

1.1. "Contributor"
    means each individual or legal entity that creates, contributes to
    the creation of, or owns Covered Software.
`;

const UNLICENSE = `This is free and unencumbered software released into the public domain.

Anyone is free to copy, modify, publish, use, compile, sell, or
distribute this software, either in source code form or as a compiled
binary, for any purpose, commercial or non-commercial, and by any
means.
`;

const CC0 = `Creative Commons Legal Code

CC0 1.0 Universal

    CREATIVE COMMONS CORPORATION IS NOT A LAW FIRM AND DOES NOT PROVIDE
    LEGAL SERVICES. DISTRIBUTION OF THIS DOCUMENT DOES NOT CREATE AN
    ATTORNEY-CLIENT RELATIONSHIP.
`;

const BSL = `Boost Software License - Version 1.0 - August 17th, 2003

Permission is hereby granted, free of charge, to any person or organization
obtaining a copy of the software and accompanying documentation covered by
this license (the "Software") to use, reproduce, display, distribute,
execute, and transmit the Software, and to prepare derivative works of the
Software, and to permit third-parties to whom the Software is furnished to
do so, all subject to the following:
`;

const EPL2 = `Eclipse Public License - v 2.0

    THE ACCOMPANYING PROGRAM IS PROVIDED UNDER THE TERMS OF THIS ECLIPSE
    PUBLIC LICENSE ("AGREEMENT"). ANY USE, REPRODUCTION OR DISTRIBUTION
    OF THE PROGRAM CONSTITUTES RECIPIENT'S ACCEPTANCE OF THIS AGREEMENT.
`;

describe('detectLicense', () => {
  it.each([
    ['MIT', MIT],
    ['Apache-2.0', APACHE],
    ['GPL-3.0', GPL3],
    ['GPL-3.0', `${GPL3}\n${GPL3_SECTION_13}`],
    ['GPL-2.0', GPL2],
    ['LGPL-2.1', LGPL21],
    ['LGPL-3.0', LGPL3],
    ['AGPL-3.0', AGPL3],
    ['BSD-2-Clause', BSD2],
    ['BSD-3-Clause', BSD3],
    ['ISC', ISC],
    ['MPL-2.0', MPL2],
    ['Unlicense', UNLICENSE],
    ['CC0-1.0', CC0],
    ['BSL-1.0', BSL],
    ['EPL-2.0', EPL2],
  ])('recognises %s', (id, text) => {
    expect(detectLicense(text)).toBe(id);
  });

  it('folds case, whitespace and punctuation', () => {
    expect(detectLicense(MIT.toUpperCase().replace(/\n/g, '\r\n'))).toBe('MIT');
    expect(detectLicense(APACHE.replace(/\s+/g, '  '))).toBe('Apache-2.0');
    expect(detectLicense(`<h1>Apache License</h1><p>Version 2.0, January 2004</p>`)).toBe('Apache-2.0');
  });

  it('recognises the notices of source file headers', () => {
    expect(detectLicense('Licensed under the Apache License, Version 2.0 (the "License");\nyou may not use this file except in compliance with the License.')).toBe(
      'Apache-2.0',
    );
    expect(
      detectLicense(
        'This program is free software: you can redistribute it and/or modify\nit under the terms of the GNU General Public License as published by\nthe Free Software Foundation, either version 3 of the License, or\n(at your option) any later version.',
      ),
    ).toBe('GPL-3.0');
    expect(
      detectLicense(
        'This library is free software; you can redistribute it and/or\nmodify it under the terms of the GNU Lesser General Public\nLicense as published by the Free Software Foundation; either\nversion 2.1 of the License, or (at your option) any later version.',
      ),
    ).toBe('LGPL-2.1');
    expect(detectLicense('This Source Code Form is subject to the terms of the Mozilla Public\nLicense, v. 2.0.')).toBe('MPL-2.0');
  });

  it('takes an SPDX-License-Identifier line first', () => {
    expect(detectLicense('// SPDX-License-Identifier: MIT\n')).toBe('MIT');
    expect(detectLicense('/* SPDX-License-Identifier: apache-2.0 */')).toBe('Apache-2.0');
    expect(detectLicense('# SPDX-License-Identifier: MIT OR Apache-2.0\n')).toBe('MIT OR Apache-2.0');
    expect(detectLicense('<!-- SPDX-License-Identifier: GPL-3.0-or-later -->')).toBe('GPL-3.0-or-later');
    expect(detectLicense(`SPDX-License-Identifier: BSD-3-Clause\n\n${MIT}`)).toBe('BSD-3-Clause');
  });

  it.each([
    ['empty', ''],
    ['no license', 'Copyright (c) 2024 Jane Doe. All rights reserved.'],
    ['a pointer to another file', 'See the LICENSE file in the project root for license information.'],
    ['a README mentioning a license by name only', '# Project\n\nReleased under the MIT license.\n'],
    ['the GPL without a version', 'This program is distributed under the GNU General Public License.'],
    ['Apache without version 2.0', 'Apache License, Version 1.1'],
    ['a GPL version it does not know', 'GNU GENERAL PUBLIC LICENSE Version 1, February 1989'],
    ['an empty SPDX line', 'SPDX-License-Identifier:\n'],
  ])('returns null for %s', (_name, text) => {
    expect(detectLicense(text)).toBeNull();
  });
});
