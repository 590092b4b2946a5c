/**
 * protocol.ts's field tables against docs/nbws.v1.schema.json, which is generated from
 * nbws/protocol/messages.py: a field renamed, added, dropped, made optional or given
 * another kind or limit on either side fails here.
 */
import * as fs from 'fs';
import * as path from 'path';

import {
  BATCH_ITEM_FIELDS,
  EVENT_FIELDS,
  FieldSpec,
  MAX_REF_LENGTH,
  REQUEST_FIELDS,
  STREAM_NAME
} from '../protocol';

interface PropertySchema {
  type?: string | string[];
  enum?: (string | null)[];
  const?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  maxLength?: number;
  items?: MessageSchema & { type?: string };
}

interface MessageSchema {
  properties: Record<string, PropertySchema>;
  required: string[];
}

const SCHEMA = JSON.parse(
  fs.readFileSync(path.join(__dirname, '..', '..', '..', 'docs', 'nbws.v1.schema.json'), 'utf-8')
) as { $defs: Record<string, MessageSchema & { oneOf?: { $ref: string }[] }> };

const TABLES: Record<string, Readonly<Record<string, readonly FieldSpec[]>>> = {
  request: REQUEST_FIELDS,
  event: EVENT_FIELDS
};

function messageDefs(direction: string): string[] {
  return (SCHEMA.$defs[direction].oneOf ?? []).map(ref =>
    ref.$ref.replace(`#/$defs/${direction}.`, '')
  );
}

/** The schema a field of this spec has (what messages.py `_schema_of` writes). */
function expectedSchema(spec: FieldSpec): PropertySchema {
  const schema = kindSchema(spec);
  return spec.max === undefined ? schema : { ...schema, maximum: spec.max };
}

function kindSchema(spec: FieldSpec): PropertySchema {
  const nullable = (type: string | string[]): string | string[] => {
    const types = Array.isArray(type) ? type : [type];
    return spec.required ? type : [...types, 'null'];
  };
  switch (spec.kind) {
    case 'stream':
      return { type: nullable('string'), pattern: STREAM_NAME.source };
    case 'int':
      return { type: nullable('integer') };
    case 'nat':
      return { type: nullable('integer'), minimum: 0 };
    case 'positive':
      return { type: nullable('integer'), minimum: 1 };
    case 'str':
      return spec.limit
        ? { type: nullable('string'), maxLength: spec.limit }
        : { type: nullable('string') };
    case 'number':
      return { type: nullable('number') };
    case 'bool':
      return { type: nullable('boolean') };
    case 'ref':
      return { type: nullable(['string', 'integer']), maxLength: MAX_REF_LENGTH };
    case 'enum':
      return { enum: spec.required ? [...(spec.choices ?? [])] : [...(spec.choices ?? []), null] };
    case 'object':
      return { type: nullable('object') };
    default:
      return {};
  }
}

function withoutDescription(schema: PropertySchema & { description?: string }): PropertySchema {
  const { description: _description, ...rest } = schema;
  return rest;
}

describe.each(['request', 'event'])('%s field tables match the JSON Schema', direction => {
  const table = TABLES[direction];

  it('have exactly the schema message types', () => {
    expect(Object.keys(table).sort()).toEqual(messageDefs(direction).sort());
  });

  it.each(messageDefs(direction))('%s: same fields in the same order', type => {
    const schema = SCHEMA.$defs[`${direction}.${type}`];
    const fields = Object.keys(schema.properties).filter(
      name => name !== 'type' && !(type === 'message' && name === 'binary')
    );
    expect(table[type].map(spec => spec.wire)).toEqual(fields);
    expect(schema.properties.type).toEqual({ const: type });
  });

  it.each(messageDefs(direction))('%s: same required fields', type => {
    const schema = SCHEMA.$defs[`${direction}.${type}`];
    const required = table[type].filter(spec => spec.required).map(spec => spec.wire);
    expect(schema.required).toEqual(['type', ...required]);
  });

  it.each(messageDefs(direction))('%s: same kinds, limits and choices', type => {
    const schema = SCHEMA.$defs[`${direction}.${type}`];
    for (const spec of table[type]) {
      if (type === 'batch' && spec.wire === 'messages') {
        continue; // an array of message elements: compared below
      }
      expect([spec.wire, withoutDescription(schema.properties[spec.wire])]).toEqual([
        spec.wire,
        expectedSchema(spec)
      ]);
    }
  });
});

it('batch elements are messages without stream and epoch, field for field', () => {
  const messages = SCHEMA.$defs['event.batch'].properties.messages;
  expect(messages.type).toBe('array');
  const items = messages.items as MessageSchema;
  expect(Object.keys(items.properties).filter(name => name !== 'binary')).toEqual(
    BATCH_ITEM_FIELDS.map(spec => spec.wire)
  );
  expect(items.required).toEqual(BATCH_ITEM_FIELDS.filter(s => s.required).map(s => s.wire));
  for (const spec of BATCH_ITEM_FIELDS) {
    expect(withoutDescription(items.properties[spec.wire])).toEqual(expectedSchema(spec));
  }
});

it('the stream name rule is the schema pattern', () => {
  const stream = SCHEMA.$defs['request.subscribe'].properties.stream;
  expect(new RegExp(stream.pattern as string).source).toBe(STREAM_NAME.source);
});
