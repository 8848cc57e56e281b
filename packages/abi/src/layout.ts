/**
 * Byte layouts of Xen's C structs, read and written in place.
 *
 * A {@link StructLayout} names a C struct, its `sizeof` and each field with its
 * `offsetof`. Fields are accessors over a `DataView` at a base offset, so a hot
 * path reads one field without building an object:
 *
 * ```ts
 * const flags = grant_entry_v1.fields.flags.get(view, entryOffset);
 * ```
 *
 * {@link decodeStruct} and {@link encodeStruct} convert a whole struct to and
 * from a plain object where convenience matters more than speed.
 *
 * Every layout is checked against the real C headers by the conformance test
 * (`packages/abi/test/conformance.test.ts`): `sizeof` of the struct, and the
 * offset and size of every field.
 *
 * All values are little-endian, as on x86_64.
 *
 * @module
 */

/** The scalar C types that appear in Xen's public structs. */
export type ScalarKind = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "u64" | "i64";

/** What every field knows: where it is and how big it is. */
interface FieldBase {
  /** Byte offset inside the enclosing struct (C `offsetof`). */
  readonly offset: number;
  /** Size in bytes (C `sizeof` of the member). */
  readonly size: number;
  /**
   * The member designator in C when it differs from the TypeScript name, for
   * example `console.domU.mfn` for a field inside an anonymous union.
   */
  readonly cMember: string | undefined;
}

/** A scalar field whose value fits a JavaScript number (up to 32 bits). */
export interface NumberField extends FieldBase {
  /** The C type. */
  readonly kind: Exclude<ScalarKind, "u64" | "i64">;
  /** Reads the field of the struct at `base`. */
  get(view: DataView, base: number): number;
  /** Writes the field of the struct at `base`. */
  set(view: DataView, base: number, value: number): void;
}

/** A 64-bit scalar field, read and written as a bigint so no bit is lost. */
export interface BigIntField extends FieldBase {
  /** The C type. */
  readonly kind: "u64" | "i64";
  /** Reads the field of the struct at `base`. */
  get(view: DataView, base: number): bigint;
  /** Writes the field of the struct at `base`. */
  set(view: DataView, base: number, value: bigint): void;
}

/** A fixed-length byte array such as `char magic[32]` or `uint8_t mac[6]`. */
export interface BytesField extends FieldBase {
  /** Marks a byte array. */
  readonly kind: "bytes";
  /** A copy of the bytes of the struct at `base`. */
  get(view: DataView, base: number): Uint8Array;
  /** Copies `value` in, zero-filling the rest; longer input is an error. */
  set(view: DataView, base: number, value: Uint8Array): void;
}

/** A struct embedded in another struct. */
export interface NestedField<L extends StructLayout = StructLayout> extends FieldBase {
  /** Marks a nested struct. */
  readonly kind: "struct";
  /** The layout of the embedded struct. */
  readonly layout: L;
  /** The base offset of the embedded struct, given the base of the outer one. */
  at(base: number): number;
}

/** A fixed-length array of scalars or structs, such as `seg[11]`. */
export interface ArrayField<E extends ElementField = ElementField> extends FieldBase {
  /** Marks an array. */
  readonly kind: "array";
  /** Number of elements. */
  readonly length: number;
  /** Distance in bytes between consecutive elements. */
  readonly stride: number;
  /** The element, described as a field at offset 0 of element `i`'s base. */
  readonly element: E;
  /** The base offset of element `i`, given the base of the enclosing struct. */
  at(base: number, i: number): number;
}

/** What an array can hold. */
export type ElementField = NumberField | BigIntField | NestedField;

/** Any field of a struct. */
export type Field = NumberField | BigIntField | BytesField | NestedField | ArrayField;

/** The fields of a struct, by their C member names. */
export type Fields = Readonly<Record<string, Field>>;

/** A C struct: its type name, `sizeof` and fields. */
export interface StructLayout<F extends Fields = Fields> {
  /** The C type as the headers spell it, e.g. `struct shared_info`. */
  readonly cType: string;
  /** `sizeof` the struct. */
  readonly size: number;
  /** The fields, each an accessor at its offset. */
  readonly fields: F;
}

/** The plain value a field decodes to. */
export type FieldValue<T extends Field> = T extends NumberField
  ? number
  : T extends BigIntField
    ? bigint
    : T extends BytesField
      ? Uint8Array
      : T extends NestedField<infer L>
        ? StructValue<L>
        : T extends ArrayField<infer E>
          ? FieldValue<E>[]
          : never;

/** The plain object a struct decodes to. */
export type StructValue<L extends StructLayout> = { -readonly [K in keyof L["fields"]]: FieldValue<L["fields"][K]> };

const LE = true;

function number(kind: NumberField["kind"], offset: number, cMember?: string): NumberField {
  const base = { kind, offset, cMember };
  switch (kind) {
    case "u8":
      return { ...base, size: 1, get: (v, b) => v.getUint8(b + offset), set: (v, b, x) => v.setUint8(b + offset, x) };
    case "i8":
      return { ...base, size: 1, get: (v, b) => v.getInt8(b + offset), set: (v, b, x) => v.setInt8(b + offset, x) };
    case "u16":
      return { ...base, size: 2, get: (v, b) => v.getUint16(b + offset, LE), set: (v, b, x) => v.setUint16(b + offset, x, LE) };
    case "i16":
      return { ...base, size: 2, get: (v, b) => v.getInt16(b + offset, LE), set: (v, b, x) => v.setInt16(b + offset, x, LE) };
    case "u32":
      return { ...base, size: 4, get: (v, b) => v.getUint32(b + offset, LE), set: (v, b, x) => v.setUint32(b + offset, x, LE) };
    case "i32":
      return { ...base, size: 4, get: (v, b) => v.getInt32(b + offset, LE), set: (v, b, x) => v.setInt32(b + offset, x, LE) };
  }
}

/** An unsigned 8-bit field (`uint8_t`). */
export const u8 = (offset: number, cMember?: string): NumberField => number("u8", offset, cMember);
/** A signed 8-bit field (`int8_t`). */
export const i8 = (offset: number, cMember?: string): NumberField => number("i8", offset, cMember);
/** An unsigned 16-bit field (`uint16_t`, `domid_t`). */
export const u16 = (offset: number, cMember?: string): NumberField => number("u16", offset, cMember);
/** A signed 16-bit field (`int16_t`). */
export const i16 = (offset: number, cMember?: string): NumberField => number("i16", offset, cMember);
/** An unsigned 32-bit field (`uint32_t`, `grant_ref_t`, `evtchn_port_t`, `RING_IDX`). */
export const u32 = (offset: number, cMember?: string): NumberField => number("u32", offset, cMember);
/** A signed 32-bit field (`int32_t`, `int`). */
export const i32 = (offset: number, cMember?: string): NumberField => number("i32", offset, cMember);

/** An unsigned 64-bit field (`uint64_t`, `unsigned long`, `xen_pfn_t`, `xen_ulong_t`). */
export function u64(offset: number, cMember?: string): BigIntField {
  return {
    kind: "u64",
    offset,
    size: 8,
    cMember,
    get: (v, b) => v.getBigUint64(b + offset, LE),
    set: (v, b, x) => v.setBigUint64(b + offset, x, LE),
  };
}

/** A signed 64-bit field (`int64_t`, `long`). */
export function i64(offset: number, cMember?: string): BigIntField {
  return {
    kind: "i64",
    offset,
    size: 8,
    cMember,
    get: (v, b) => v.getBigInt64(b + offset, LE),
    set: (v, b, x) => v.setBigInt64(b + offset, x, LE),
  };
}

/** A byte array field of `length` bytes (`char name[N]`, `uint8_t mac[6]`). */
export function bytes(offset: number, length: number, cMember?: string): BytesField {
  return {
    kind: "bytes",
    offset,
    size: length,
    cMember,
    get: (v, b) => viewBytes(v, b + offset, length).slice(),
    set: (v, b, x) => {
      if (x.length > length) throw new RangeError(`${x.length} bytes do not fit a ${length}-byte field`);
      const dst = viewBytes(v, b + offset, length);
      dst.set(x);
      dst.fill(0, x.length);
    },
  };
}

/**
 * The `length` bytes at `at` of a view, as a Uint8Array over the same memory.
 * Like DataView's own accessors, refuses to reach outside the view.
 */
function viewBytes(view: DataView, at: number, length: number): Uint8Array {
  if (at < 0 || at + length > view.byteLength) {
    throw new RangeError(`bytes ${at}..${at + length} lie outside a ${view.byteLength}-byte view`);
  }
  return new Uint8Array(view.buffer, view.byteOffset + at, length);
}

/** A struct embedded at `offset`. */
export function nested<L extends StructLayout>(offset: number, layout: L, cMember?: string): NestedField<L> {
  return { kind: "struct", offset, size: layout.size, cMember, layout, at: (b) => b + offset };
}

/**
 * An array of `length` elements at `offset`. The element is given as a field
 * at offset 0 (`u32(0)`, `nested(0, layout)`); the stride is its size.
 */
export function array<E extends ElementField>(offset: number, length: number, element: E, cMember?: string): ArrayField<E> {
  if (element.offset !== 0) throw new RangeError("an array element is described at offset 0");
  const stride = element.size;
  return { kind: "array", offset, size: stride * length, cMember, length, stride, element, at: (b, i) => b + offset + i * stride };
}

/**
 * Declares a C struct layout. Throws if a field does not fit inside `size`,
 * which catches a mistyped offset as soon as the module loads.
 */
export function struct<F extends Fields>(cType: string, size: number, fields: F): StructLayout<F> {
  for (const [name, f] of Object.entries(fields)) {
    if (f.offset < 0 || f.offset + f.size > size) {
      throw new RangeError(`${cType}.${name}: bytes ${f.offset}..${f.offset + f.size} lie outside sizeof ${size}`);
    }
  }
  return { cType, size, fields };
}

const fieldLists = new WeakMap<StructLayout, readonly (readonly [string, Field])[]>();

/** The fields of a layout as a list, computed once per layout. */
function fieldList(layout: StructLayout): readonly (readonly [string, Field])[] {
  let list = fieldLists.get(layout);
  if (list === undefined) fieldLists.set(layout, (list = Object.entries(layout.fields)));
  return list;
}

function decodeField(f: Field, view: DataView, base: number): unknown {
  switch (f.kind) {
    case "struct":
      return decodeStruct(f.layout, view, f.at(base));
    case "array": {
      const out: unknown[] = new Array(f.length);
      for (let i = 0; i < f.length; i++) out[i] = decodeField(f.element, view, f.at(base, i));
      return out;
    }
    default:
      return f.get(view, base);
  }
}

/** Reads a whole struct at `base` into a plain object (allocates; for cold paths and tests). */
export function decodeStruct<L extends StructLayout>(layout: L, view: DataView, base = 0): StructValue<L> {
  const out: Record<string, unknown> = {};
  for (const [name, f] of fieldList(layout)) out[name] = decodeField(f, view, base);
  return out as StructValue<L>;
}

function encodeField(f: Field, view: DataView, base: number, value: unknown): void {
  switch (f.kind) {
    case "struct":
      encodeStruct(f.layout, view, f.at(base), value as Record<string, unknown>);
      return;
    case "array": {
      const items = value as readonly unknown[];
      if (items.length > f.length) throw new RangeError(`${items.length} elements do not fit an array of ${f.length}`);
      items.forEach((item, i) => encodeField(f.element, view, f.at(base, i), item));
      return;
    }
    case "u64":
    case "i64":
      f.set(view, base, BigInt(value as bigint | number));
      return;
    case "bytes":
      f.set(view, base, value as Uint8Array);
      return;
    default:
      f.set(view, base, value as number);
  }
}

/**
 * Writes the given fields of a struct at `base`. Fields left out are not
 * touched; call `zeroStruct` first for a clean struct.
 */
export function encodeStruct<L extends StructLayout>(
  layout: L,
  view: DataView,
  base: number,
  value: Partial<StructValue<L>> | Readonly<Record<string, unknown>>,
): void {
  const entries = Object.entries(value);
  // Check every name before writing anything, so a typo leaves the struct as it was.
  for (const [name] of entries) if (!Object.hasOwn(layout.fields, name)) throw new TypeError(`${layout.cType} has no field ${name}`);
  for (const [name, v] of entries) if (v !== undefined) encodeField(layout.fields[name]!, view, base, v);
}

/** Zeroes the `sizeof` bytes of a struct at `base`. */
export function zeroStruct(layout: StructLayout, view: DataView, base = 0): void {
  viewBytes(view, base, layout.size).fill(0);
}
