/**
 * Column alignment with the semantics of Go's text/tabwriter, which ctr prints through,
 * so berth's tables line up exactly as ctr's: a cell is text terminated by a tab; the
 * text after a line's last tab is not part of any column; a column's width is set by the
 * block of consecutive lines that have a cell in it.
 */
export interface TabWriterOptions {
  /** Minimal cell width, padding included. */
  minWidth: number;
  /** Width of a tab when padChar is '\t'. */
  tabWidth: number;
  /** Added to the widest cell of a column. */
  padding: number;
  /** ' ' pads with spaces; '\t' pads with tabs (the terminal aligns them). */
  padChar: ' ' | '\t';
}

/** The options ctr uses for most tables: tabwriter.NewWriter(w, 1, 8, 1, ' ', 0). */
export const CTR_SPACES: TabWriterOptions = { minWidth: 1, tabWidth: 8, padding: 1, padChar: ' ' };
/** ctr's content tables: tabwriter.NewWriter(w, 1, 8, 1, '\t', 0). */
export const CTR_TABS: TabWriterOptions = { minWidth: 1, tabWidth: 8, padding: 1, padChar: '\t' };
/** ctr's plugins table: tabwriter.NewWriter(w, 4, 8, 4, ' ', 0). */
export const CTR_PLUGINS: TabWriterOptions = { minWidth: 4, tabWidth: 8, padding: 4, padChar: ' ' };

const cellWidth = (text: string): number => [...text].length;

/** Formats text (lines of tab-terminated cells) into aligned columns. */
export function formatTable(text: string, opts: TabWriterOptions = CTR_SPACES): string {
  const trailingNewline = text.endsWith('\n');
  const rawLines = (trailingNewline ? text.slice(0, -1) : text).split('\n');
  const lines = rawLines.map((l) => l.split('\t'));
  const widths: number[] = [];
  const out: string[] = [];

  const pad = (textWidth: number, colWidth: number): string => {
    if (opts.padChar === '\t') {
      if (opts.tabWidth === 0) return '';
      const cellw = Math.ceil(colWidth / opts.tabWidth) * opts.tabWidth;
      return '\t'.repeat(Math.ceil((cellw - textWidth) / opts.tabWidth));
    }
    return ' '.repeat(colWidth - textWidth);
  };

  const writeLines = (from: number, to: number): void => {
    for (let i = from; i < to; i++) {
      const cells = lines[i]!;
      let s = '';
      cells.forEach((cell, j) => {
        s += cell;
        if (j < widths.length) s += pad(cellWidth(cell), widths[j]!);
      });
      out.push(s);
    }
  };

  // Go's Writer.format: recursive over column blocks.
  const format = (line0: number, line1: number): void => {
    const column = widths.length;
    for (let i = line0; i < line1; i++) {
      if (column >= lines[i]!.length - 1) continue;
      // A cell in this column starts a block: lines before it are done at this depth.
      writeLines(line0, i);
      line0 = i;
      let width = opts.minWidth;
      for (; i < line1; i++) {
        const cells = lines[i]!;
        if (column >= cells.length - 1) break;
        width = Math.max(width, cellWidth(cells[column]!) + opts.padding);
      }
      widths.push(width);
      format(line0, i);
      widths.pop();
      line0 = i;
    }
    writeLines(line0, line1);
  };

  format(0, lines.length);
  return out.join('\n') + (trailingNewline ? '\n' : '');
}

/** Rows of cells -> aligned text; every cell is tab-terminated, as ctr's "a\tb\t\n" rows. */
export function table(
  rows: readonly (readonly string[])[],
  opts: TabWriterOptions = CTR_SPACES,
  terminateLast = true,
): string {
  const text = rows.map((r) => (terminateLast ? `${r.join('\t')}\t` : r.join('\t'))).join('\n');
  return formatTable(rows.length > 0 ? `${text}\n` : '', opts);
}
