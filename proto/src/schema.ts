// A small runtime schema language: each wire message is declared once as a schema value, from which
// the TypeScript type is inferred (Infer<>), values are validated at every trust boundary, and the C++
// header is generated (scripts/gen-cpp.ts). Kept tiny on purpose: only the shapes phos sends.

export type Schema =
  | { kind: 'uint' }
  | { kind: 'int' }
  | { kind: 'number' }
  | { kind: 'string'; pattern?: RegExp }
  | { kind: 'bool' }
  | { kind: 'bytes' }
  | { kind: 'literal'; value: string | number }
  | { kind: 'oneOf'; values: readonly string[] }
  | { kind: 'array'; of: Schema; max?: number }
  | { kind: 'object'; fields: Readonly<Record<string, Schema>> }
  | { kind: 'record'; of: Schema }
  | { kind: 'optional'; of: Schema }
  | { kind: 'nullable'; of: Schema }
  | { kind: 'unknown' };

export const s = {
  uint: () => ({ kind: 'uint' }) as const,
  int: () => ({ kind: 'int' }) as const,
  number: () => ({ kind: 'number' }) as const,
  string: (pattern?: RegExp) => (pattern ? { kind: 'string', pattern } : { kind: 'string' }) as { kind: 'string'; pattern?: RegExp },
  bool: () => ({ kind: 'bool' }) as const,
  bytes: () => ({ kind: 'bytes' }) as const,
  literal: <V extends string | number>(value: V) => ({ kind: 'literal', value }) as const,
  oneOf: <V extends readonly string[]>(values: V) => ({ kind: 'oneOf', values }) as const,
  array: <T extends Schema>(of: T, max?: number) => ({ kind: 'array', of, ...(max === undefined ? {} : { max }) }) as { kind: 'array'; of: T; max?: number },
  object: <F extends Record<string, Schema>>(fields: F) => ({ kind: 'object', fields }) as const,
  record: <T extends Schema>(of: T) => ({ kind: 'record', of }) as const,
  optional: <T extends Schema>(of: T) => ({ kind: 'optional', of }) as const,
  nullable: <T extends Schema>(of: T) => ({ kind: 'nullable', of }) as const,
  unknown: () => ({ kind: 'unknown' }) as const,
};

type OptionalKeys<F> = { [K in keyof F]: F[K] extends { kind: 'optional' } ? K : never }[keyof F];
type RequiredKeys<F> = Exclude<keyof F, OptionalKeys<F>>;

/** The TypeScript type a schema describes. */
export type Infer<S> = S extends { kind: 'uint' | 'int' | 'number' } ? number
  : S extends { kind: 'string' } ? string
  : S extends { kind: 'bool' } ? boolean
  : S extends { kind: 'bytes' } ? Uint8Array
  : S extends { kind: 'literal'; value: infer V } ? V
  : S extends { kind: 'oneOf'; values: readonly (infer V)[] } ? V
  : S extends { kind: 'array'; of: infer T } ? Infer<T>[]
  : S extends { kind: 'record'; of: infer T } ? Record<string, Infer<T>>
  : S extends { kind: 'optional'; of: infer T } ? Infer<T> | undefined
  : S extends { kind: 'nullable'; of: infer T } ? Infer<T> | null
  : S extends { kind: 'object'; fields: infer F } ? { [K in RequiredKeys<F>]: Infer<F[K]> } & { [K in OptionalKeys<F>]?: Infer<F[K]> }
  : unknown;

/** Returns the first problem found as "path: what", or null when the value matches. */
export function check(schema: Schema, value: unknown, path = '$'): string | null {
  switch (schema.kind) {
    case 'uint':
      return Number.isSafeInteger(value) && (value as number) >= 0 ? null : `${path}: expected a non-negative integer, got ${show(value)}`;
    case 'int':
      return Number.isSafeInteger(value) ? null : `${path}: expected an integer, got ${show(value)}`;
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) ? null : `${path}: expected a number, got ${show(value)}`;
    case 'string':
      if (typeof value !== 'string') return `${path}: expected a string, got ${show(value)}`;
      return schema.pattern && !schema.pattern.test(value) ? `${path}: '${value}' does not match ${schema.pattern}` : null;
    case 'bool':
      return typeof value === 'boolean' ? null : `${path}: expected a boolean, got ${show(value)}`;
    case 'bytes':
      return value instanceof Uint8Array ? null : `${path}: expected bytes, got ${show(value)}`;
    case 'literal':
      return value === schema.value ? null : `${path}: expected ${JSON.stringify(schema.value)}, got ${show(value)}`;
    case 'oneOf':
      return typeof value === 'string' && schema.values.includes(value) ? null : `${path}: expected one of ${schema.values.join('|')}, got ${show(value)}`;
    case 'array':
      return checkArray(schema, value, path);
    case 'record':
      return checkRecord(schema.of, value, path);
    case 'object':
      return checkObject(schema.fields, value, path);
    case 'optional':
      return value === undefined ? null : check(schema.of, value, path);
    case 'nullable':
      return value === null ? null : check(schema.of, value, path);
    case 'unknown':
      return null;
  }
}

function checkArray(schema: { of: Schema; max?: number }, value: unknown, path: string): string | null {
  if (!Array.isArray(value)) return `${path}: expected an array, got ${show(value)}`;
  if (schema.max !== undefined && value.length > schema.max) return `${path}: ${value.length} items, at most ${schema.max} allowed`;
  for (let i = 0; i < value.length; i++) {
    const e = check(schema.of, value[i], `${path}[${i}]`);
    if (e) return e;
  }
  return null;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function checkRecord(of: Schema, value: unknown, path: string): string | null {
  if (!isPlainObject(value)) return `${path}: expected a map, got ${show(value)}`;
  for (const [k, v] of Object.entries(value)) {
    const e = check(of, v, `${path}.${k}`);
    if (e) return e;
  }
  return null;
}

function checkObject(fields: Readonly<Record<string, Schema>>, value: unknown, path: string): string | null {
  if (!isPlainObject(value)) return `${path}: expected a map, got ${show(value)}`;
  for (const [k, f] of Object.entries(fields)) {
    const e = check(f, value[k], `${path}.${k}`);
    if (e) return e;
  }
  // Unknown fields are allowed (a newer peer may add fields without a version bump), but never used.
  return null;
}

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'a map';
  return `${typeof value} ${JSON.stringify(value)?.slice(0, 40)}`;
}
