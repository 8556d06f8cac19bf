import { beforeAll, describe, expect, it } from 'vitest';
import { CodeParser, parserLanguageOf, type ParsedSymbol, type ParserLanguage, type SymbolKind } from '../src/indexing/parser.js';

const LANGUAGES: ParserLanguage[] = ['typescript', 'tsx', 'javascript', 'python', 'go', 'java', 'rust'];

function sym(name: string, kind: SymbolKind, startLine: number, endLine = startLine): ParsedSymbol {
  return { name, kind, startLine, endLine };
}

/** Source text from lines, so that fixture line numbers are easy to count. */
function lines(...text: string[]): string {
  return text.join('\n') + '\n';
}

let parser: CodeParser;

beforeAll(async () => {
  parser = await CodeParser.create();
});

describe('parserLanguageOf', () => {
  it.each([
    ['src/a.ts', 'typescript'],
    ['src/a.mts', 'typescript'],
    ['src/a.cts', 'typescript'],
    ['types/index.d.ts', 'typescript'],
    ['SRC/A.TS', 'typescript'],
    ['ui/App.tsx', 'tsx'],
    ['a.js', 'javascript'],
    ['a.mjs', 'javascript'],
    ['a.cjs', 'javascript'],
    ['a.jsx', 'javascript'],
    ['pkg/mod.py', 'python'],
    ['pkg/mod.pyi', 'python'],
    ['main.go', 'go'],
    ['src/main/java/A.java', 'java'],
    ['src/lib.rs', 'rust'],
    ['Lib.RS', 'rust'],
    ['README.md', null],
    ['Makefile', null],
    ['a.ts.orig', null],
    ['.ts', null],
    ['dir.ts/file', null],
  ])('%s → %s', (file, language) => {
    expect(parserLanguageOf(file)).toBe(language);
  });
});

describe('CodeParser.create', () => {
  it('returns one parser per process', async () => {
    expect(await CodeParser.create()).toBe(parser);
  });
});

describe('TypeScript', () => {
  const source = lines(
    "import x, { y } from './y';", // 1
    'import type { Z } from "z";',
    "import './side-effect';",
    "export * from './re-export';",
    "export { a } from './y';", // 5: a duplicate
    "import fs = require('node:fs');",
    "const lazy = await import('./lazy');",
    'const tpl = require(`./template`);',
    'const dynamic = require(`./${name}`);',
    'const computed = require(base + "/x");', // 10
    'export default function named() {}',
    'function* gen() {}',
    'export abstract class Shape<T> extends Base implements I {',
    '  abstract area(): number;',
    '  get size() { return 1; }', // 15
    '  static create = () => new Circle();',
    '  #secret() {}',
    '  constructor() { super(); }',
    '}',
    'interface I { method(): void }', // 20
    'type Alias = string | number;',
    'enum Color { Red }',
    'export const enum Flags { A }',
    'const arrow = () => 1;',
    'let expr = function () {};', // 25
    'export const LIMIT = 42, helper = async () => 0, Klass = class { run() {} };',
    'const notExported = 1;',
    'export let mutable = 1;',
    'namespace Outer {',
    '  export function inside() {}', // 30
    '  export namespace Inner { export class Deep {} }',
    '}',
    "declare module 'ambient' {",
    '  export function declared(): void;',
    '}', // 35
    'export declare class Declared { method(): void; }',
    'function local() {',
    '  const notASymbol = () => 1;',
    '  function alsoNot() {}',
    "  return require('./inside-function');", // 40
    '}',
  );

  it('finds declarations, class members and exported constants, in line order', () => {
    expect(parser.parse('typescript', source).symbols).toEqual([
      sym('named', 'function', 11),
      sym('gen', 'function', 12),
      sym('Shape', 'class', 13, 19),
      sym('area', 'method', 14),
      sym('size', 'method', 15),
      sym('create', 'method', 16),
      sym('#secret', 'method', 17),
      sym('constructor', 'method', 18),
      sym('I', 'interface', 20),
      sym('Alias', 'type', 21),
      sym('Color', 'enum', 22),
      sym('Flags', 'enum', 23),
      sym('arrow', 'function', 24),
      sym('expr', 'function', 25),
      sym('Klass', 'class', 26),
      sym('LIMIT', 'constant', 26),
      sym('helper', 'function', 26),
      sym('run', 'method', 26),
      sym('Outer', 'module', 29, 32),
      sym('inside', 'function', 30),
      sym('Deep', 'class', 31),
      sym('Inner', 'module', 31),
      sym('ambient', 'module', 33, 35),
      sym('declared', 'function', 34),
      sym('Declared', 'class', 36),
      sym('method', 'method', 36),
      sym('local', 'function', 37, 41),
    ]);
  });

  it('collects import specifiers once each, in order of first occurrence', () => {
    expect(parser.parse('typescript', source).imports).toEqual([
      './y',
      'z',
      './side-effect',
      './re-export',
      'node:fs',
      './lazy',
      './template',
      './inside-function',
    ]);
  });

  it('reads declaration files', () => {
    const dts = lines(
      'export declare const VERSION: string;',
      'export declare function f(a: string): void;',
      'export declare function f(a: number): void;',
      'declare global {',
      '  interface Window { app: unknown }',
      '}',
      'export interface Options { root: string }',
      'export declare namespace NS {',
      '  function g(): void;',
      '  class C { m(): void }',
      '}', // 11
      'export declare abstract class A { abstract x(): void }',
      'export declare const enum E { A }',
      'export declare global { interface G {} }',
      "declare module '*.css' { const classes: Record<string, string>; export default classes; }",
    );
    expect(parser.parse('typescript', dts)).toEqual({
      symbols: [
        sym('VERSION', 'constant', 1),
        sym('f', 'function', 2),
        sym('f', 'function', 3),
        sym('Window', 'interface', 5),
        sym('Options', 'interface', 7),
        sym('NS', 'module', 8, 11),
        sym('g', 'function', 9),
        sym('C', 'class', 10),
        sym('m', 'method', 10),
        sym('A', 'class', 12),
        sym('x', 'method', 12),
        sym('E', 'enum', 13),
        sym('G', 'interface', 14),
        sym('*.css', 'module', 15),
      ],
      imports: [],
    });
  });

  it('gives multi-line declarations their whole range', () => {
    const multiLine = lines(
      '/** Doc. */',
      'export function spread(',
      '  a: number,',
      '): void {',
      '  return;',
      '}',
    );
    expect(parser.parse('typescript', multiLine).symbols).toEqual([sym('spread', 'function', 2, 6)]);
  });
});

describe('TSX', () => {
  it('parses JSX', () => {
    const source = lines(
      "import React from 'react';",
      "import styles from './App.module.css';",
      '',
      'export function App({ title }: { title: string }) {',
      '  return <div className={styles.app}>{title}<br /></div>;',
      '}',
      '',
      'export const Button = (props: Props) => (',
      '  <button onClick={props.onClick}>{props.label}</button>',
      ');',
      'export class Page extends React.Component<Props> {',
      '  render() { return <App title="x" />; }',
      '}',
      'interface Props { label: string; onClick(): void }',
    );
    expect(parser.parse('tsx', source)).toEqual({
      symbols: [
        sym('App', 'function', 4, 6),
        sym('Button', 'function', 8, 10),
        sym('Page', 'class', 11, 13),
        sym('render', 'method', 12),
        sym('Props', 'interface', 14),
      ],
      imports: ['react', './App.module.css'],
    });
  });
});

describe('JavaScript', () => {
  it('finds functions, classes and CommonJS requires', () => {
    const source = lines(
      "'use strict';",
      "const path = require('path'), { readFile } = require('fs/promises');",
      '',
      'function main() {}',
      'async function* stream() {}',
      'const handler = function named() {};',
      'var legacy = () => {};',
      'class Store {',
      '  items = [];',
      '  add = (item) => this.items.push(item);',
      '  #load() {}',
      '  static of() {}',
      '}',
      'export const DEFAULT = { a: 1 };',
      'export default class { anonymous() {} }',
      'const object = { notAMethod() {} };',
      "module.exports = { main, other: require('./other') };",
      'const el = <b>jsx too</b>;',
    );
    expect(parser.parse('javascript', source)).toEqual({
      symbols: [
        sym('main', 'function', 4),
        sym('stream', 'function', 5),
        sym('handler', 'function', 6),
        sym('legacy', 'function', 7),
        sym('Store', 'class', 8, 13),
        sym('add', 'method', 10),
        sym('#load', 'method', 11),
        sym('of', 'method', 12),
        sym('DEFAULT', 'constant', 14),
        sym('anonymous', 'method', 15),
      ],
      imports: ['path', 'fs/promises', './other'],
    });
  });
});

describe('Python', () => {
  it('finds functions, classes and methods (decorated too)', () => {
    const source = lines(
      'import os.path, sys as system', // 1
      'from . import sibling',
      'from ..pkg.mod import y as z, w',
      'from x import *',
      'from . import (a,', // 5
      '    b)',
      'from __future__ import annotations',
      'import os.path',
      '',
      '@decorator', // 10
      'def top():',
      '    def nested():',
      '        pass',
      '    return nested',
      '', // 15
      'class Service(Base):',
      '    @property',
      '    def value(self):',
      '        return 1',
      '', // 20
      '    async def run(self): ...',
      '',
      '    class Inner:',
      '        def deep(self): pass',
      '', // 25
      'def load():',
      '    import json',
      '    return json',
    );
    expect(parser.parse('python', source)).toEqual({
      symbols: [
        sym('top', 'function', 10, 14),
        sym('nested', 'function', 12, 13),
        sym('Service', 'class', 16, 24),
        sym('value', 'method', 17, 19),
        sym('run', 'method', 21),
        sym('Inner', 'class', 23, 24),
        sym('deep', 'method', 24),
        sym('load', 'function', 26, 28),
      ],
      imports: ['os.path', 'sys', '.#sibling', '..pkg.mod#y', '..pkg.mod#w', 'x#*', '.#a', '.#b', '__future__#annotations', 'json'],
    });
  });
});

describe('Go', () => {
  it('finds functions, methods and types', () => {
    const source = lines(
      'package main', // 1
      '',
      'import "fmt"',
      'import (',
      '\tf "os"', // 5
      '\t_ "embed"',
      '\t"github.com/x/y"',
      ')',
      '',
      'type Server struct {', // 10
      '\taddr string',
      '}',
      'type Handler interface{ Serve() }',
      'type ID int',
      'type Alias = string', // 15
      'type (',
      '\tPair[T any] struct{ a, b T }',
      '\tFunc func()',
      ')',
      '', // 20
      'func main() {',
      '\ttype local struct{}',
      '\tfmt.Println(f.Args)',
      '}',
      'func (s *Server) Start() error { return nil }', // 25
      'func Map[T any](x T) T { return x }',
    );
    expect(parser.parse('go', source)).toEqual({
      symbols: [
        sym('Server', 'struct', 10, 12),
        sym('Handler', 'interface', 13),
        sym('ID', 'type', 14),
        sym('Alias', 'type', 15),
        sym('Pair', 'struct', 17),
        sym('Func', 'type', 18),
        sym('main', 'function', 21, 24),
        sym('Start', 'method', 25),
        sym('Map', 'function', 26),
      ],
      imports: ['fmt', 'os', 'embed', 'github.com/x/y'],
    });
  });
});

describe('Java', () => {
  it('finds types, methods and constructors', () => {
    const source = lines(
      'package com.example;', // 1
      'import java.util.List;',
      'import static org.junit.Assert.assertEquals;',
      'import java.util.*;',
      'import static org.junit.Assert.*;', // 5
      'import java.util.List;',
      '',
      '@interface Marker { String value(); }',
      'public record Point(int x, int y) { Point { } int sum() { return x + y; } }',
      'enum Level { LOW; void log() {} }', // 10
      'interface Shape { double area(); }',
      'public class Main<T> {',
      '  @Override',
      '  public Main() {}',
      '  void run() {', // 15
      '    new Thread() { public void start() {} };',
      '  }',
      '  static class Nested {}',
      '}',
    );
    expect(parser.parse('java', source)).toEqual({
      symbols: [
        sym('Marker', 'interface', 8),
        sym('Point', 'class', 9),
        sym('Point', 'method', 9),
        sym('sum', 'method', 9),
        sym('Level', 'enum', 10),
        sym('log', 'method', 10),
        sym('Shape', 'interface', 11),
        sym('area', 'method', 11),
        sym('Main', 'class', 12, 19),
        sym('Main', 'method', 13, 14),
        sym('run', 'method', 15, 17),
        sym('start', 'method', 16),
        sym('Nested', 'class', 18),
      ],
      imports: ['java.util.List', 'org.junit.Assert.assertEquals', 'java.util.*', 'org.junit.Assert.*'],
    });
  });
});

describe('Rust', () => {
  it('finds items, and methods in impls and traits', () => {
    const source = lines(
      'use std::io::{self, Read, Write as W};', // 1
      'use std::collections::HashMap;',
      'use crate::a::{b::{c, d}, e::*};',
      'use super::x as y;',
      'extern crate serde;', // 5
      'pub use std::io::Read;',
      '',
      'mod tests { fn helper() {} }',
      'mod outer;',
      'pub struct Point { x: i32 }', // 10
      'enum Kind { A, B }',
      'pub trait Shape {',
      '    fn area(&self) -> f64;',
      '    fn name(&self) -> &str { "shape" }',
      '}', // 15
      'type Map = HashMap<String, i32>;',
      'const MAX: u32 = 10;',
      'static NAME: &str = "x";',
      'impl Shape for Point {',
      '    fn area(&self) -> f64 {', // 20
      '        fn inner() {}',
      '        0.0',
      '    }',
      '}',
      'pub fn main() {}', // 25
      'macro_rules! skipped { () => {} }',
    );
    expect(parser.parse('rust', source)).toEqual({
      symbols: [
        sym('helper', 'function', 8),
        sym('tests', 'module', 8),
        sym('outer', 'module', 9),
        sym('Point', 'struct', 10),
        sym('Kind', 'enum', 11),
        sym('Shape', 'trait', 12, 15),
        sym('area', 'method', 13),
        sym('name', 'method', 14),
        sym('Map', 'type', 16),
        sym('MAX', 'constant', 17),
        sym('NAME', 'constant', 18),
        sym('area', 'method', 20, 23),
        sym('inner', 'function', 21),
        sym('main', 'function', 25),
      ],
      imports: [
        'std::io',
        'std::io::Read',
        'std::io::Write',
        'std::collections::HashMap',
        'crate::a::b::c',
        'crate::a::b::d',
        'crate::a::e::*',
        'super::x',
        'serde',
      ],
    });
  });
});

describe('robustness', () => {
  it.each(LANGUAGES)('returns nothing for an empty %s file', (language) => {
    expect(parser.parse(language, '')).toEqual({ symbols: [], imports: [] });
  });

  it.each(LANGUAGES)('does not throw on %s syntax errors', (language) => {
    const garbage = '}{ class ( def fn func ) import "x  = => :: ;; <div \u0000 \n\t@@@ ((( ]]]';
    expect(() => parser.parse(language, garbage)).not.toThrow();
  });

  it('keeps what tree-sitter recovers around a syntax error', () => {
    const source = lines(
      "import { a } from './a';",
      'export function before() {}',
      'function broken( {',
      'export class After {}',
    );
    const parsed = parser.parse('typescript', source);
    expect(parsed.imports).toEqual(['./a']);
    expect(parsed.symbols).toContainEqual(sym('before', 'function', 2));
  });

  it('reads unicode identifiers, after astral characters too', () => {
    const ts = lines('const emoji = "😀😀";', 'export function größe() {}', 'class Café { ñandú() {} }', "import x from './日本語';");
    expect(parser.parse('typescript', ts)).toEqual({
      symbols: [sym('größe', 'function', 2), sym('Café', 'class', 3), sym('ñandú', 'method', 3)],
      imports: ['./日本語'],
    });
    const py = lines('s = "😀"', 'def héllo(): pass', 'class Ωmega:', '    def μ(self): pass');
    expect(parser.parse('python', py).symbols).toEqual([sym('héllo', 'function', 2), sym('Ωmega', 'class', 3, 4), sym('μ', 'method', 4)]);
  });

  it('ignores a byte order mark', () => {
    expect(parser.parse('python', '\ufeffimport os\ndef f(): pass\n')).toEqual({ symbols: [sym('f', 'function', 2)], imports: ['os'] });
  });

  it('counts lines of CRLF files as lines', () => {
    expect(parser.parse('go', 'package p\r\n\r\nfunc A() {\r\n}\r\n').symbols).toEqual([sym('A', 'function', 3, 4)]);
  });

  it('parses many files with one parser', () => {
    for (let i = 0; i < 500; i++) {
      const parsed = parser.parse('typescript', `import { h${i} } from './h${i}';\nexport function f${i}() {}\n`);
      expect(parsed.symbols).toEqual([sym(`f${i}`, 'function', 2)]);
    }
  });
});
