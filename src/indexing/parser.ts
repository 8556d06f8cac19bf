import { createRequire } from 'node:module';
import path from 'node:path';
import { Language, Parser, Query, type Node, type QueryCapture, type QueryMatch, type QueryOptions } from 'web-tree-sitter';

/** The grammars CodeParser knows: tree-sitter-wasms' builds of the tree-sitter-cli 0.20 era. */
export type ParserLanguage = 'typescript' | 'tsx' | 'javascript' | 'python' | 'go' | 'java' | 'rust';

/** What a symbol declares. */
export type SymbolKind = 'function' | 'class' | 'method' | 'interface' | 'type' | 'enum' | 'struct' | 'trait' | 'module' | 'constant';

/** One declaration found in a file. */
export interface ParsedSymbol {
  name: string;
  kind: SymbolKind;
  /** 1-based. */
  startLine: number;
  /** 1-based, inclusive. */
  endLine: number;
}

/** What CodeParser.parse extracts from one file. */
export interface ParsedFile {
  /** Sorted by startLine, then name. */
  symbols: ParsedSymbol[];
  /** Raw specifiers as written (see CodeParser.parse), deduplicated, in order of first occurrence. */
  imports: string[];
}

const LANGUAGES: readonly ParserLanguage[] = ['typescript', 'tsx', 'javascript', 'python', 'go', 'java', 'rust'];

const EXTENSIONS: ReadonlyMap<string, ParserLanguage> = new Map([
  ['.ts', 'typescript'],
  ['.mts', 'typescript'],
  ['.cts', 'typescript'],
  ['.tsx', 'tsx'],
  ['.js', 'javascript'],
  ['.mjs', 'javascript'],
  ['.cjs', 'javascript'],
  ['.jsx', 'javascript'],
  ['.py', 'python'],
  ['.pyi', 'python'],
  ['.go', 'go'],
  ['.java', 'java'],
  ['.rs', 'rust'],
]);

/**
 * The language of a file, by its extension (case-insensitive): .ts .mts .cts (and so .d.ts) →
 * typescript; .tsx → tsx; .js .mjs .cjs .jsx → javascript; .py .pyi → python; .go → go;
 * .java → java; .rs → rust; anything else → null.
 */
export function parserLanguageOf(filePath: string): ParserLanguage | null {
  return EXTENSIONS.get(path.extname(filePath).toLowerCase()) ?? null;
}

// Queries. Each definition pattern captures the declaring node as `def.<kind>` and its name as
// `name`; a few pseudo-kinds are settled in resolveKind. Import patterns capture `import.<how>`.
//
// Walking a tree is what a query costs (~0.2 µs a node here), and most nodes are in function
// bodies, where TS/JS and Go declare nothing worth indexing. So their queries start no pattern
// deeper than WINDOW levels below the node they run on (`maxStartDepth`): the program, then each
// `scope` they capture (namespace and `declare module`/`global` bodies, `export declare …`).
// Pattern roots sit at most two levels down (`export` › declaration, `const` › declarator).

const WINDOW = 2;

const MEMBER_NAME = '[(property_identifier) (private_property_identifier) (string)]';
const FUNCTION_VALUE = '[(arrow_function) (function_expression) (generator_function)]';

/** The query of the JavaScript grammar, or (typescript) of the TypeScript and TSX ones. */
function jsQuery(typescript: boolean): string {
  const members = typescript
    ? `[(method_definition name: ${MEMBER_NAME} @name)
        (method_signature name: ${MEMBER_NAME} @name)
        (abstract_method_signature name: ${MEMBER_NAME} @name)
        (public_field_definition name: ${MEMBER_NAME} @name value: ${FUNCTION_VALUE})]`
    : `[(method_definition name: ${MEMBER_NAME} @name)
        (field_definition property: ${MEMBER_NAME} @name value: ${FUNCTION_VALUE})]`;
  const classBody = `body: (class_body ${members} @def.method)`;
  const classes = typescript ? ['class_declaration', 'abstract_class_declaration'] : ['class_declaration'];
  const patterns = [
    '(function_declaration name: (identifier) @name) @def.function',
    '(generator_function_declaration name: (identifier) @name) @def.function',
    ...classes.flatMap((type) => [`(${type} name: (_) @name) @def.class`, `(${type} ${classBody})`]),
    `(export_statement value: (class ${classBody}))`,
    ...['lexical_declaration', 'variable_declaration'].flatMap((type) => [
      `(${type} (variable_declarator name: (identifier) @name value: ${FUNCTION_VALUE}) @def.function)`,
      `(${type} (variable_declarator name: (identifier) @name value: (class)) @def.class)`,
      `(${type} (variable_declarator value: (class ${classBody})))`,
    ]),
    '(program (export_statement declaration: (lexical_declaration "const" (variable_declarator name: (identifier) @name value: (_) @value) @def.constant)))',
    '(import_statement source: (string) @import.string)',
    '(export_statement source: (string) @import.string)',
  ];
  if (typescript) {
    patterns.push(
      '(function_signature name: (identifier) @name) @def.function',
      '(interface_declaration name: (_) @name) @def.interface',
      '(type_alias_declaration name: (_) @name) @def.type',
      '(enum_declaration name: (_) @name) @def.enum',
      '(internal_module name: (_) @name) @def.module',
      '(internal_module body: (statement_block) @scope)',
      '(module name: (_) @name) @def.module',
      '(module body: (statement_block) @scope)',
      '(ambient_declaration (statement_block) @scope)',
      '(export_statement declaration: (ambient_declaration) @scope)',
      '(program (export_statement declaration: (ambient_declaration (lexical_declaration "const" (variable_declarator name: (identifier) @name) @def.constant))))',
      '(import_statement (import_require_clause source: (string) @import.string))',
    );
  }
  return patterns.join('\n');
}

/** `require('x')` and `import('x')` anywhere; run over the whole tree, and only when CALL_HINT finds one. */
const JS_CALLS_QUERY = `
(call_expression function: [(identifier) (import)] @callee arguments: (arguments . [(string) (template_string)] @import.call .))
`;

const CALL_HINT = /\b(?:require|import)\s*\(/;

const PYTHON_QUERY = `
(function_definition name: (identifier) @name) @def.callable
(class_definition name: (identifier) @name) @def.class
(import_statement) @import.python
(import_from_statement) @import.pythonFrom
(future_import_statement) @import.pythonFrom
`;

const GO_QUERY = `
(function_declaration name: (identifier) @name) @def.function
(method_declaration name: (field_identifier) @name) @def.method
(type_spec name: (type_identifier) @name type: (_) @value) @def.goType
(type_alias name: (type_identifier) @name) @def.type
(import_declaration [(import_spec path: (_) @import.string) (import_spec_list (import_spec path: (_) @import.string))])
`;

const JAVA_QUERY = `
(class_declaration name: (identifier) @name) @def.class
(record_declaration name: (identifier) @name) @def.class
(interface_declaration name: (identifier) @name) @def.interface
(annotation_type_declaration name: (identifier) @name) @def.interface
(enum_declaration name: (identifier) @name) @def.enum
(method_declaration name: (identifier) @name) @def.method
(constructor_declaration name: (identifier) @name) @def.method
(compact_constructor_declaration name: (identifier) @name) @def.method
(import_declaration) @import.java
`;

const RUST_QUERY = `
(function_item name: (identifier) @name) @def.callable
(function_signature_item name: (identifier) @name) @def.callable
(struct_item name: (type_identifier) @name) @def.struct
(enum_item name: (type_identifier) @name) @def.enum
(trait_item name: (type_identifier) @name) @def.trait
(type_item name: (type_identifier) @name) @def.type
(mod_item name: (identifier) @name) @def.module
(const_item name: (identifier) @name) @def.constant
(static_item name: (identifier) @name) @def.constant
(use_declaration argument: (_) @import.rust)
(extern_crate_declaration name: (identifier) @import.text)
`;

interface LanguageQueries {
  query: string;
  /** Run query over every node (Python, Java, Rust: declarations nest anywhere), or a WINDOW from each scope. */
  windowed: boolean;
  calls?: string;
}

const QUERIES: Record<ParserLanguage, LanguageQueries> = {
  typescript: { query: jsQuery(true), windowed: true, calls: JS_CALLS_QUERY },
  tsx: { query: jsQuery(true), windowed: true, calls: JS_CALLS_QUERY },
  javascript: { query: jsQuery(false), windowed: true, calls: JS_CALLS_QUERY },
  python: { query: PYTHON_QUERY, windowed: false },
  go: { query: GO_QUERY, windowed: true },
  java: { query: JAVA_QUERY, windowed: false },
  rust: { query: RUST_QUERY, windowed: false },
};

/** Values that make `const x = …` a function or class rather than a constant. */
const CODE_VALUES = new Set(['arrow_function', 'function_expression', 'generator_function', 'function', 'class']);

/** Where a function is a method: the node holding it, and that node's parent. */
const METHOD_CONTAINERS: Partial<Record<ParserLanguage, { body: string; owners: ReadonlySet<string> }>> = {
  python: { body: 'block', owners: new Set(['class_definition']) },
  rust: { body: 'declaration_list', owners: new Set(['impl_item', 'trait_item']) },
};

interface Grammar {
  language: Language;
  query: Query;
  /** The options of query.matches: a WINDOW, or none. */
  window: QueryOptions;
  calls: Query | null;
}

/** A position-tagged import, sorted into source order before deduplication. */
interface FoundImport {
  at: number;
  specifier: string;
}

/** What the matches of one file add up to. */
interface Findings {
  symbols: ParsedSymbol[];
  imports: FoundImport[];
  /** Nodes still to query (windowed grammars). */
  scopes: Node[];
  /** Ids of the symbols' and scopes' nodes: nested windows can overlap (`export declare global {}`). */
  seen: Set<number>;
}

let runtime: Promise<CodeParser> | undefined;

/**
 * Extracts symbols and import specifiers from source files with tree-sitter (web-tree-sitter and
 * the grammars of tree-sitter-wasms). One instance per process: `create` loads the runtime and
 * all seven grammars once, and compiles each language's queries once.
 */
export class CodeParser {
  private readonly parsers = new Map<ParserLanguage, Parser>();

  private constructor(private readonly grammars: ReadonlyMap<ParserLanguage, Grammar>) {}

  /** The process' parser, loaded on first use. A failed load is retried by the next call. */
  static create(): Promise<CodeParser> {
    runtime ??= CodeParser.load().catch((error: unknown) => {
      runtime = undefined;
      throw error;
    });
    return runtime;
  }

  /**
   * Symbols and imports of `source`. Synchronous; a file with syntax errors still yields what
   * tree-sitter recovered.
   *
   * Symbols: in TS/JS, declarations at module level, in namespaces and `declare` blocks, and
   * class members (methods, and fields holding functions); not what function bodies declare,
   * nor methods of object literals. In Go, top-level declarations. In Python, Java and Rust,
   * declarations anywhere; a function is a method directly in a class (Python, decorated or
   * not) or in an `impl`/`trait` (Rust). Python ranges include decorators.
   *
   * Imports are raw specifiers:
   * - TS/JS: `import`/`export … from` sources, `import x = require()`, and `require()`/`import()`
   *   calls whose one argument is a plain string (or a template without substitutions);
   * - Python: `import a.b` → "a.b"; `from X import n` → "X#n" (X keeps its leading dots; `*` too);
   * - Go: import paths; Java: the imported name (`a.b.*` for on-demand imports);
   * - Rust: one `a::b::c` path per leaf of a `use` tree (`self` in a group is its prefix; `as`
   *   keeps the original path), and `extern crate` names.
   */
  parse(language: ParserLanguage, source: string): ParsedFile {
    const grammar = this.grammars.get(language);
    if (!grammar) throw new Error(`no grammar loaded for ${language}`);
    // A byte order mark is not code; dropping it moves no line.
    const text = source.charCodeAt(0) === 0xfeff ? source.slice(1) : source;
    const tree = this.parserFor(language, grammar.language).parse(text);
    if (!tree) return { symbols: [], imports: [] };
    try {
      const found: Findings = { symbols: [], imports: [], scopes: [tree.rootNode], seen: new Set() };
      for (let scope = found.scopes.pop(); scope; scope = found.scopes.pop()) {
        collect(language, grammar.query.matches(scope, grammar.window), found);
      }
      if (grammar.calls && CALL_HINT.test(text)) collect(language, grammar.calls.matches(tree.rootNode), found);
      found.symbols.sort(bySourceOrder);
      return { symbols: found.symbols, imports: uniqueInOrder(found.imports) };
    } finally {
      tree.delete();
    }
  }

  private parserFor(language: ParserLanguage, grammar: Language): Parser {
    let parser = this.parsers.get(language);
    if (!parser) {
      parser = new Parser();
      parser.setLanguage(grammar);
      this.parsers.set(language, parser);
    }
    return parser;
  }

  private static async load(): Promise<CodeParser> {
    await Parser.init();
    const dir = grammarDirectory();
    const grammars = new Map<ParserLanguage, Grammar>();
    // One at a time: web-tree-sitter links concurrently loaded grammars wrongly ("bad export type
    // for 'tree_sitter_python_external_scanner_create'").
    for (const language of LANGUAGES) {
      const grammar = await Language.load(path.join(dir, `tree-sitter-${language}.wasm`));
      const { query, windowed, calls } = QUERIES[language];
      grammars.set(language, {
        language: grammar,
        query: new Query(grammar, query),
        window: windowed ? { maxStartDepth: WINDOW } : {},
        calls: calls ? new Query(grammar, calls) : null,
      });
    }
    return new CodeParser(grammars);
  }
}

/** node_modules/tree-sitter-wasms/out, wherever the package is installed. */
function grammarDirectory(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve('tree-sitter-wasms/package.json')), 'out');
}

function collect(language: ParserLanguage, matches: QueryMatch[], found: Findings): void {
  for (const { captures } of matches) {
    for (const capture of captures) {
      if (capture.name.startsWith('def.')) {
        const symbol = symbolOf(language, capture, captures);
        if (symbol && firstSight(capture.node, found)) found.symbols.push(symbol);
      } else if (capture.name.startsWith('import.')) {
        importsOf(capture, captures, found.imports);
      } else if (capture.name === 'scope') {
        if (firstSight(capture.node, found)) found.scopes.push(capture.node);
      }
    }
  }
}

function firstSight(node: Node, found: Findings): boolean {
  if (found.seen.has(node.id)) return false;
  found.seen.add(node.id);
  return true;
}

function bySourceOrder(a: ParsedSymbol, b: ParsedSymbol): number {
  if (a.startLine !== b.startLine) return a.startLine - b.startLine;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function uniqueInOrder(found: FoundImport[]): string[] {
  found.sort((a, b) => a.at - b.at);
  return [...new Set(found.map((entry) => entry.specifier))];
}

function captured(captures: QueryCapture[], name: string): Node | undefined {
  return captures.find((capture) => capture.name === name)?.node;
}

// Symbols

function symbolOf(language: ParserLanguage, definition: QueryCapture, captures: QueryCapture[]): ParsedSymbol | null {
  const nameNode = captured(captures, 'name');
  if (!nameNode) return null;
  const name = nameNode.type === 'string' ? unquote(nameNode.text) : nameNode.text;
  const node = language === 'python' ? withDecorators(definition.node) : definition.node;
  const kind = resolveKind(language, definition.name.slice('def.'.length), node, captured(captures, 'value'));
  if (!kind || !name) return null;
  return { name, kind, startLine: node.startPosition.row + 1, endLine: endLineOf(node) };
}

/** A Python definition with its decorators: they belong to what they decorate. */
function withDecorators(definition: Node): Node {
  const parent = definition.parent;
  return parent?.type === 'decorated_definition' ? parent : definition;
}

/** The kind a `def.*` capture names, the pseudo-kinds settled; null to drop the match. */
function resolveKind(language: ParserLanguage, captureKind: string, node: Node, value: Node | undefined): SymbolKind | null {
  switch (captureKind) {
    case 'callable':
      return isMethod(language, node) ? 'method' : 'function';
    case 'goType':
      return value?.type === 'struct_type' ? 'struct' : value?.type === 'interface_type' ? 'interface' : 'type';
    case 'constant':
      return value && CODE_VALUES.has(value.type) ? null : 'constant';
    default:
      return captureKind as SymbolKind;
  }
}

function isMethod(language: ParserLanguage, node: Node): boolean {
  const container = METHOD_CONTAINERS[language];
  const body = node.parent;
  if (!container || body?.type !== container.body) return false;
  const owner = body.parent;
  return owner !== null && container.owners.has(owner.type);
}

/** The last line a node covers: one ending at the start of a line does not cover that line. */
function endLineOf(node: Node): number {
  const end = node.endPosition;
  return end.column === 0 && end.row > node.startPosition.row ? end.row : end.row + 1;
}

// Imports

function importsOf(capture: QueryCapture, captures: QueryCapture[], found: FoundImport[]): void {
  const node = capture.node;
  const add = (specifier: string): void => {
    if (specifier) found.push({ at: node.startIndex, specifier });
  };
  switch (capture.name) {
    case 'import.string':
      return add(unquote(node.text));
    case 'import.call':
      return importCall(node, captured(captures, 'callee'), add);
    case 'import.text':
      return add(compact(node.text));
    case 'import.python':
      return pythonImport(node, add);
    case 'import.pythonFrom':
      return pythonFromImport(node, add);
    case 'import.java':
      return javaImport(node, add);
    case 'import.rust':
      return rustUse(node, '', add);
  }
}

/** `require('x')` or `import('x')`: a plain string, or a template without substitutions. */
function importCall(argument: Node, callee: Node | undefined, add: (specifier: string) => void): void {
  if (!callee || (callee.type !== 'import' && callee.text !== 'require')) return;
  if (argument.type === 'template_string' && argument.namedChildren.some((child) => child?.type === 'template_substitution')) return;
  add(unquote(argument.text));
}

/** `import a.b, c as d` → "a.b", "c". */
function pythonImport(statement: Node, add: (specifier: string) => void): void {
  for (const name of statement.childrenForFieldName('name')) {
    const dotted = name?.type === 'aliased_import' ? name.childForFieldName('name') : name;
    if (dotted) add(compact(dotted.text));
  }
}

/** `from ..m import a, b as c` → "..m#a", "..m#b"; `from m import *` → "m#*". */
function pythonFromImport(statement: Node, add: (specifier: string) => void): void {
  const module = statement.type === 'future_import_statement' ? '__future__' : compact(statement.childForFieldName('module_name')?.text ?? '');
  if (!module) return;
  for (const child of statement.namedChildren) {
    if (child?.type === 'wildcard_import') add(`${module}#*`);
  }
  for (const name of statement.childrenForFieldName('name')) {
    const dotted = name?.type === 'aliased_import' ? name.childForFieldName('name') : name;
    if (dotted) add(`${module}#${compact(dotted.text)}`);
  }
}

/** `import a.b.C;`, `import static a.b.C.m;` → the name; `import a.b.*;` → "a.b.*". */
function javaImport(declaration: Node, add: (specifier: string) => void): void {
  let name = '';
  let onDemand = false;
  for (const child of declaration.namedChildren) {
    if (child?.type === 'scoped_identifier' || child?.type === 'identifier') name = compact(child.text);
    else if (child?.type === 'asterisk') onDemand = true;
  }
  if (name) add(onDemand ? `${name}.*` : name);
}

/** One path per leaf of a `use` tree, each under `prefix`. */
function rustUse(node: Node, prefix: string, add: (specifier: string) => void): void {
  switch (node.type) {
    case 'use_as_clause': {
      const original = node.childForFieldName('path');
      if (original) rustUse(original, prefix, add);
      return;
    }
    case 'scoped_use_list': {
      const scope = node.childForFieldName('path');
      const list = node.childForFieldName('list');
      const inner = scope ? joinRustPath(prefix, compact(scope.text)) : prefix;
      if (list) rustUse(list, inner, add);
      return;
    }
    case 'use_list':
      for (const item of node.namedChildren) {
        if (item && !item.isExtra) rustUse(item, prefix, add);
      }
      return;
    case 'self':
      return add(prefix || 'self');
    default:
      return add(joinRustPath(prefix, compact(node.text)));
  }
}

function joinRustPath(prefix: string, tail: string): string {
  return prefix ? `${prefix}::${tail}` : tail;
}

/** A string or template literal's text without its delimiters (escapes stay as written). */
function unquote(literal: string): string {
  return literal.length >= 2 ? literal.slice(1, -1) : '';
}

/** Source text with its whitespace (line breaks in long paths) removed. */
function compact(text: string): string {
  return /\s/.test(text) ? text.replace(/\s+/g, '') : text;
}
