import { RE2JS } from 're2js';
import { InvalidArgumentError } from './errors';

/**
 * containerd's filter language, shared by every list/walk API:
 *
 *   filters   := selectors ("|" selectors)*      any alternative may match
 *   selectors := selector ("," selector)*        all must match
 *   selector  := fieldpath (operator value)?     no operator: the field is present
 *   fieldpath := field ("." field)*
 *   field     := quoted | [A-Za-z][A-Za-z0-9_]*
 *   operator  := "==" | "!=" | "~="             ~= is a regular expression
 *   value     := quoted | [^\s,|]+               after ~=: [^\s,]+ (containerd's, so a|b
 *                                                stays one regular expression; quote it
 *                                                to follow it with another alternative)
 *   quoted    := "..." | /.../ | |...|          (Go string escapes inside "...")
 *
 * Several filter strings given to one call are alternatives too (containerd's ParseAll).
 */

/** Returns the field's value, or undefined when the object has no such field. */
export type FieldAdaptor = (fieldpath: readonly string[]) => string | undefined;

export interface Filter {
  match(adaptor: FieldAdaptor): boolean;
}

type Operator = '==' | '!=' | '~=';
interface Selector {
  fieldpath: string[];
  operator?: Operator;
  value?: string;
  re?: RE2JS;
}

export const always: Filter = { match: () => true };

class Parser {
  private pos = 0;
  constructor(private readonly input: string) {}

  private fail(msg: string): never {
    throw new InvalidArgumentError(`invalid filter "${this.input}": ${msg} at position ${this.pos}`);
  }

  private skipSpace(): void {
    while (this.pos < this.input.length && /\s/.test(this.input[this.pos]!)) this.pos++;
  }

  private peek(): string | undefined {
    this.skipSpace();
    return this.input[this.pos];
  }

  parse(): Selector[][] {
    const alternatives: Selector[][] = [];
    for (;;) {
      alternatives.push(this.selectors());
      const ch = this.peek();
      if (ch === undefined) return alternatives;
      if (ch !== '|') this.fail(`unexpected "${ch}"`);
      this.pos++;
    }
  }

  private selectors(): Selector[] {
    const out: Selector[] = [this.selector()];
    while (this.peek() === ',') {
      this.pos++;
      out.push(this.selector());
    }
    return out;
  }

  private selector(): Selector {
    const fieldpath = [this.field()];
    while (this.peek() === '.') {
      this.pos++;
      fieldpath.push(this.field());
    }
    const ch = this.peek();
    if (ch !== '=' && ch !== '!' && ch !== '~') return { fieldpath };
    const operator = this.input.slice(this.pos, this.pos + 2);
    if (operator !== '==' && operator !== '!=' && operator !== '~=')
      this.fail(`invalid operator "${operator}"`);
    this.pos += 2;
    const value = this.value(operator);
    const sel: Selector = { fieldpath, operator, value };
    if (operator === '~=') {
      try {
        // RE2 (linear time, Go's regexp syntax), as containerd: a JS RegExp backtracks, so a
        // filter such as labels.a~=^(a+)+$ could block the daemon for as long as a client likes.
        sel.re = RE2JS.compile(value);
      } catch (e) {
        this.fail(`invalid regular expression ${JSON.stringify(value)}: ${(e as Error).message}`);
      }
    }
    return sel;
  }

  private field(): string {
    const ch = this.peek();
    if (ch === undefined) this.fail('expected field');
    if (ch === '"') return this.quoted('"');
    const m = /^[A-Za-z][A-Za-z0-9_]*/.exec(this.input.slice(this.pos));
    if (!m) this.fail(`expected field, found "${ch}"`);
    this.pos += m[0].length;
    return m[0];
  }

  private value(operator: Operator): string {
    const ch = this.peek();
    if (ch === undefined) this.fail('expected value');
    if (ch === '"' || ch === '/' || ch === '|') return this.quoted(ch);
    const m = (operator === '~=' ? /^[^\s,]+/ : /^[^\s,|]+/).exec(this.input.slice(this.pos));
    if (!m) this.fail(`expected value, found "${ch}"`);
    this.pos += m[0].length;
    return m[0];
  }

  private quoted(quote: string): string {
    const start = this.pos;
    this.pos++; // opening quote
    let out = '';
    for (;;) {
      const ch = this.input[this.pos];
      if (ch === undefined) {
        this.pos = start;
        this.fail('quoted literal not terminated');
      }
      this.pos++;
      if (ch === quote) return out;
      if (ch !== '\\') {
        out += ch;
        continue;
      }
      const esc = this.input[this.pos];
      if (esc === undefined) this.fail('quoted literal not terminated');
      this.pos++;
      if (esc === quote) out += quote;
      else if (quote !== '"')
        out += `\\${esc}`; // regex quoting keeps escapes for RegExp
      else out += this.escape(esc);
    }
  }

  private escape(esc: string): string {
    const simple: Record<string, string> = {
      a: '\x07',
      b: '\b',
      f: '\f',
      n: '\n',
      r: '\r',
      t: '\t',
      v: '\v',
      '\\': '\\',
    };
    if (simple[esc] !== undefined) return simple[esc]!;
    const digits = (n: number, re: RegExp, base: number): string => {
      const text = this.input.slice(this.pos, this.pos + n);
      if (text.length !== n || !re.test(text)) this.fail('invalid escape sequence');
      this.pos += n;
      return String.fromCodePoint(Number.parseInt(text, base));
    };
    if (/[0-7]/.test(esc)) {
      this.pos--;
      return digits(3, /^[0-7]{3}$/, 8);
    }
    if (esc === 'x') return digits(2, /^[0-9a-fA-F]{2}$/, 16);
    if (esc === 'u') return digits(4, /^[0-9a-fA-F]{4}$/, 16);
    if (esc === 'U') return digits(8, /^[0-9a-fA-F]{8}$/, 16);
    return this.fail(`invalid escape sequence "\\${esc}"`);
  }
}

function matchSelector(sel: Selector, adaptor: FieldAdaptor): boolean {
  const value = adaptor(sel.fieldpath);
  switch (sel.operator) {
    case undefined:
      return value !== undefined;
    case '==':
      return value !== undefined && value === sel.value;
    case '!=':
      return value !== sel.value;
    case '~=':
      return value !== undefined && sel.re!.test(value);
  }
}

/** Parses one filter string; the empty string matches everything. */
export function parseFilter(input: string): Filter {
  if (input.trim() === '') return always;
  const alternatives = new Parser(input).parse();
  return { match: (a) => alternatives.some((sels) => sels.every((s) => matchSelector(s, a))) };
}

/** Parses several filter strings, any of which may match; none matches everything. */
export function parseFilters(inputs: readonly string[] | undefined): Filter {
  const list = (inputs ?? []).filter((s) => s.trim() !== '');
  if (list.length === 0) return always;
  const filters = list.map(parseFilter);
  return { match: (a) => filters.some((f) => f.match(a)) };
}

/** Adapts a label map: `labels.<key>` (the key may itself contain dots when quoted). */
export function labelField(
  labels: Record<string, string> | undefined,
  fieldpath: readonly string[],
): string | undefined {
  if (!labels || fieldpath.length < 2) return undefined;
  return labels[fieldpath.slice(1).join('.')];
}
