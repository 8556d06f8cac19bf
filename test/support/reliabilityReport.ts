import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// docs/reliability.md is written by the suites that inject faults and bad
// inputs: each owns one "## " section, which its run renders from what it
// recorded, and the "## Summary" on top adds up every section's totals line.
// REPOLENS_WRITE_RELIABILITY_REPORT=1 writes the sections; without it, each
// suite fails when the committed section (or the summary) is not what it
// produced.

export const reportPath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs/reliability.md');
export const writingReport = process.env.REPOLENS_WRITE_RELIABILITY_REPORT === '1';

const SUMMARY = '## Summary';

function sectionBounds(document: string, title: string): { start: number; end: number } | null {
  const found = document.startsWith(`${title}\n`) ? 0 : document.indexOf(`\n${title}\n`);
  if (found === -1) return null;
  const start = found === 0 ? 0 : found + 1;
  const next = document.slice(start + title.length).search(/\n## /);
  return { start, end: next === -1 ? document.length : start + title.length + next + 1 };
}

/** The section that starts with the heading `title`, up to the next "## " heading; null when absent. */
export function currentSection(document: string, title: string): string | null {
  const bounds = sectionBounds(document, title);
  return bounds ? document.slice(bounds.start, bounds.end).trimEnd() : null;
}

/** The document with the section `title` replaced, or appended when absent; other sections stay as they are. */
export function replaceSection(document: string, title: string, section: string): string {
  const bounds = sectionBounds(document, title);
  const body = `${section.trimEnd()}\n`;
  if (!bounds) return `${document.trimEnd()}\n\n${body}`;
  const rest = document.slice(bounds.end);
  return `${document.slice(0, bounds.start)}${body}${rest ? `\n${rest}` : ''}`;
}

/** "**131 bad inputs tried, 131 refused cleanly, …**" and "**7 faults injected, 7 survived, 0 data lost**" lines, added up. */
export function renderSummary(document: string): string {
  let inputs = 0;
  let refused = 0;
  for (const match of document.matchAll(/^\*\*(\d+) bad inputs tried, (\d+) refused cleanly/gm)) {
    inputs += Number(match[1]);
    refused += Number(match[2]);
  }
  let faults = 0;
  let survived = 0;
  let lost = 0;
  const sections: string[] = [];
  for (const match of document.matchAll(/^## (Faults: [^\n]+)\n[\s\S]*?^\*\*(\d+) faults? injected, (\d+) survived, (\d+) data lost\*\*/gm)) {
    sections.push(match[1]!);
    faults += Number(match[2]);
    survived += Number(match[3]);
    lost += Number(match[4]);
  }
  return [
    SUMMARY,
    '',
    'Added up from the sections below, each written by the suite that ran it.',
    '',
    '| | Total |',
    '| --- | ---: |',
    `| Fault suites | ${sections.length} |`,
    `| Faults injected | ${faults} |`,
    `| Faults survived | ${survived} |`,
    `| Data lost (accepted triggers, commits, copies, archives) | ${lost} |`,
    `| Bad inputs tried | ${inputs} |`,
    `| Bad inputs refused cleanly | ${refused} |`,
    '',
  ].join('\n');
}

/** The document with `section` in place and the summary recomputed from every section. */
export function withSection(document: string, title: string, section: string): string {
  let next = replaceSection(document, title, section);
  if (!sectionBounds(next, SUMMARY)) next = next.replace(/^# Reliability\n+/, `# Reliability\n\n${SUMMARY}\n\n`);
  return replaceSection(next, SUMMARY, renderSummary(next));
}

/** Read-modify-write under a lock: suites run in parallel workers and share the file. */
export async function writeSection(title: string, section: string): Promise<void> {
  const lock = `${reportPath}.lock`;
  await mkdir(path.dirname(reportPath), { recursive: true });
  for (let attempt = 0; ; attempt++) {
    try {
      await mkdir(lock);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 600) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  try {
    const existing = existsSync(reportPath) ? await readFile(reportPath, 'utf8') : '# Reliability\n';
    await writeFile(reportPath, withSection(existing, title, section));
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

/** The committed section is the one this run rendered, and the summary adds up what is committed. */
export async function expectSectionCurrent(title: string, section: string, command: string): Promise<void> {
  const committed = existsSync(reportPath) ? await readFile(reportPath, 'utf8') : '';
  const stale = `docs/reliability.md is out of date: run REPOLENS_WRITE_RELIABILITY_REPORT=1 ${command}`;
  expect(currentSection(committed, title), stale).toBe(section.trimEnd());
  expect(currentSection(committed, SUMMARY), stale).toBe(renderSummary(committed).trimEnd());
}

// ---------------------------------------------------------------------------------------------
// Fault scenarios

export interface FaultSpec {
  /** The fault injected, as the report states it. */
  fault: string;
  /** What the scenario checks afterwards. */
  checks: string;
}

interface FaultRecord extends FaultSpec {
  title: string;
  survived: boolean;
  lost: boolean;
}

/** Handed to a scenario: marks the checks whose failure means something accepted was lost. */
export interface FaultContext {
  /** Runs `check`; when it throws, the report counts the scenario as data lost. */
  nothingLost<T>(check: () => Promise<T>): Promise<T>;
}

export interface FaultSuite {
  /** An it() that records the scenario's fault, checks and outcome for the report. */
  scenario(title: string, spec: FaultSpec, body: (context: FaultContext) => Promise<void>, timeoutMs?: number): void;
  /** The test that the committed section is this run's: call it after the last scenario. */
  reportCheck(): void;
}

/**
 * A suite of fault scenarios that owns the section "## Faults: <name>": each
 * scenario is a test, and the section lists them with their outcome. Call at
 * the top level of a test file, and end the file with reportCheck().
 */
export function faultSuite(options: { name: string; file: string; intro: string[] }): FaultSuite {
  const title = `## Faults: ${options.name}`;
  const command = `npx vitest run ${options.file}`;
  const records: FaultRecord[] = [];
  const declared: string[] = [];

  const render = () => {
    const survived = records.filter((record) => record.survived).length;
    const lost = records.filter((record) => record.lost).length;
    const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
    return [
      title,
      '',
      `Generated by \`${options.file}\` (\`REPOLENS_WRITE_RELIABILITY_REPORT=1 ${command}\`; without the variable the`,
      'same run fails when this section is out of date).',
      ...options.intro,
      '',
      `**${records.length} ${records.length === 1 ? 'fault' : 'faults'} injected, ${survived} survived, ${lost} data lost**`,
      '',
      '| # | Scenario | Fault | Checked afterwards | Result |',
      '| ---: | --- | --- | --- | --- |',
      ...records.map(
        (record, index) =>
          `| ${index + 1} | ${cell(record.title)} | ${cell(record.fault)} | ${cell(record.checks)} | ${record.survived ? 'survived' : record.lost ? '**data lost**' : '**failed**'} |`,
      ),
      '',
    ].join('\n');
  };

  afterAll(async () => {
    if (writingReport && records.length === declared.length) await writeSection(title, render());
  });

  return {
    scenario(title, spec, body, timeoutMs) {
      declared.push(title);
      it(
        title,
        async () => {
          const record: FaultRecord = { ...spec, title, survived: false, lost: false };
          const context: FaultContext = {
            async nothingLost(check) {
              try {
                return await check();
              } catch (error) {
                record.lost = true;
                throw error;
              }
            },
          };
          records.push(record);
          await body(context);
          record.survived = true;
        },
        timeoutMs,
      );
    },
    reportCheck() {
      describe('report', () => {
        it.skipIf(writingReport)(`docs/reliability.md "${title.slice(3)}" is what this run produced`, async () => {
          expect(records.map((record) => record.title), 'run the whole file: every scenario records a row').toEqual(declared);
          await expectSectionCurrent(title, render(), command);
        });
      });
    },
  };
}
