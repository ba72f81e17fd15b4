// The dashboard's API types are the server's OpenAPI document (schema.gen.ts), not copies
// of it: a hand-written interface drifts from the server without anything noticing, an
// alias cannot. These tests read the sources and fail when one creeps back.

import { readdirSync, readFileSync } from 'node:fs';
import ts from 'typescript';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { RUN_STATES, TASK_STATES, type Schemas } from './types';

const API_DIR = new URL('./', import.meta.url);

/** Interfaces types.ts may declare: what the client sends that is not a body (a query). */
const CLIENT_INTERFACES = new Set(['TaskPageQuery']);

function parse(name: string, text: string): ts.SourceFile {
  return ts.createSourceFile(name, text, ts.ScriptTarget.Latest, true);
}

/** The names of `components['schemas']` in a generated schema file. */
export function schemaNames(generated: ts.SourceFile): Set<string> {
  for (const statement of generated.statements) {
    if (!ts.isInterfaceDeclaration(statement) || statement.name.text !== 'components') continue;
    for (const member of statement.members) {
      if (!ts.isPropertySignature(member) || member.name.getText(generated) !== 'schemas') continue;
      if (!member.type || !ts.isTypeLiteralNode(member.type)) break;
      return new Set(member.type.members.map((m) => m.name?.getText(generated) ?? '').filter(Boolean));
    }
  }
  throw new Error('schema.gen.ts has no components.schemas: regenerate it (npm run gen:api)');
}

/** Whether a type's text is, or is derived from, the schema of that name. */
function derivesFrom(typeText: string, schema: string): boolean {
  const quoted = `\\[\\s*['"]${schema}['"]\\s*\\]`;
  return new RegExp(`(Schemas|components\\s*\\[\\s*['"]schemas['"]\\s*\\])\\s*${quoted}`).test(typeText);
}

/**
 * What in one source copies a schema by hand: an interface named after a schema, or a
 * type of a schema's name that is not derived from that schema.
 */
export function handCopies(file: ts.SourceFile, schemas: ReadonlySet<string>, exempt: ReadonlySet<string> = new Set()): string[] {
  const found: string[] = [];
  for (const statement of file.statements) {
    if (!ts.isInterfaceDeclaration(statement) && !ts.isTypeAliasDeclaration(statement)) continue;
    const name = statement.name.text;
    if (!schemas.has(name) || exempt.has(name)) continue;
    if (ts.isInterfaceDeclaration(statement)) {
      found.push(`${file.fileName}: interface ${name} copies the schema ${name}; alias Schemas['${name}'] instead`);
    } else if (!derivesFrom(statement.type.getText(file), name)) {
      found.push(`${file.fileName}: type ${name} is not derived from Schemas['${name}']`);
    }
  }
  return found;
}

function read(name: string): ts.SourceFile {
  return parse(name, readFileSync(new URL(name, API_DIR), 'utf8'));
}

describe('the API types', () => {
  const schemas = schemaNames(read('schema.gen.ts'));
  const sources = readdirSync(API_DIR)
    .filter((name) => name.endsWith('.ts') && !name.endsWith('.test.ts') && name !== 'schema.gen.ts')
    .map(read);

  it('alias the generated schemas instead of copying them', () => {
    expect(schemas.size).toBeGreaterThan(20);
    expect(sources.flatMap((file) => handCopies(file, schemas))).toEqual([]);
  });

  it('declare interfaces only for what the document does not describe', () => {
    const types = sources.find((file) => file.fileName === 'types.ts')!;
    const interfaces = types.statements
      .filter(ts.isInterfaceDeclaration)
      .map((s) => s.name.text)
      .filter((name) => !CLIENT_INTERFACES.has(name));
    expect(interfaces).toEqual([]);
  });

  it('list every state of the document (checked by the typecheck)', () => {
    expectTypeOf<(typeof TASK_STATES)[number]>().toEqualTypeOf<Schemas['TaskState']>();
    expectTypeOf<(typeof RUN_STATES)[number]>().toEqualTypeOf<Schemas['RunState']>();
    expect(new Set(TASK_STATES).size).toBe(TASK_STATES.length);
  });

  it('tells a hand copy from an alias', () => {
    const file = parse(
      'sample.ts',
      [
        'export interface Task { id: string }',
        "export type Run = Omit<Schemas['RunSummary'], 'x'>;",
        "export type Worker = Narrow<Schemas['Worker'], { state: 'running' }>;",
        "export type Queue = components['schemas']['Queue'];",
        'export type Other = { id: string };',
      ].join('\n'),
    );
    expect(handCopies(file, new Set(['Task', 'Run', 'Worker', 'Queue']))).toEqual([
      "sample.ts: interface Task copies the schema Task; alias Schemas['Task'] instead",
      "sample.ts: type Run is not derived from Schemas['Run']",
    ]);
  });
});
