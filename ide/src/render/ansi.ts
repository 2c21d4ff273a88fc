// ANSI SGR escape sequences (colours, bold, underline) as kernels emit them in
// streams and tracebacks, turned into styled segments. Only SGR is interpreted;
// every other escape sequence is dropped. The result is rendered as text nodes, so
// nothing in a stream can become markup.
export interface AnsiStyle {
  fg?: string;
  bg?: string;
  bold?: boolean;
  italic?: boolean;
  underline?: boolean;
}
export interface AnsiSegment {
  readonly text: string;
  readonly style: Readonly<AnsiStyle>;
}

const BASIC = ['#3e4451', '#e06c75', '#50a14f', '#c18401', '#4078f2', '#a626a4', '#0184bc', '#a0a1a7'];
const BRIGHT = ['#5c6370', '#ff7b86', '#7ec16e', '#e5c07b', '#61afef', '#c678dd', '#56b6c2', '#ffffff'];

function color256(n: number): string | undefined {
  if (n < 0 || n > 255) return undefined;
  if (n < 8) return BASIC[n];
  if (n < 16) return BRIGHT[n - 8];
  if (n < 232) {
    const v = n - 16;
    const c = (x: number): number => (x === 0 ? 0 : 55 + x * 40);
    return `rgb(${c(Math.floor(v / 36))},${c(Math.floor(v / 6) % 6)},${c(v % 6)})`;
  }
  const g = 8 + (n - 232) * 10;
  return `rgb(${g},${g},${g})`;
}

function applySgr(style: AnsiStyle, codes: number[]): AnsiStyle {
  const s = { ...style };
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i] as number;
    if (c === 0) {
      for (const k of Object.keys(s)) delete s[k as keyof AnsiStyle];
    } else if (c === 1) s.bold = true;
    else if (c === 3) s.italic = true;
    else if (c === 4) s.underline = true;
    else if (c === 22) delete s.bold;
    else if (c === 23) delete s.italic;
    else if (c === 24) delete s.underline;
    else if (c >= 30 && c <= 37) s.fg = BASIC[c - 30];
    else if (c >= 90 && c <= 97) s.fg = BRIGHT[c - 90];
    else if (c >= 40 && c <= 47) s.bg = BASIC[c - 40];
    else if (c >= 100 && c <= 107) s.bg = BRIGHT[c - 100];
    else if (c === 39) delete s.fg;
    else if (c === 49) delete s.bg;
    else if (c === 38 || c === 48) {
      const key = c === 38 ? 'fg' : 'bg';
      if (codes[i + 1] === 5) {
        const col = color256(codes[i + 2] ?? -1);
        if (col) s[key] = col;
        i += 2;
      } else if (codes[i + 1] === 2) {
        const [r, g, b] = [codes[i + 2], codes[i + 3], codes[i + 4]].map((x) => Math.min(255, Math.max(0, x ?? 0)));
        s[key] = `rgb(${r},${g},${b})`;
        i += 4;
      }
    }
  }
  return s;
}

// CSI sequences (ESC [ params final) and OSC (ESC ] ... BEL/ST); SGR is CSI ending in 'm'.
const ESC_RE = /\u001b\[([0-9;?]*)([@-~])|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)?|\u001b[@-Z\\-_]/g;

export function parseAnsi(input: string): AnsiSegment[] {
  const out: AnsiSegment[] = [];
  let style: AnsiStyle = {};
  let last = 0;
  const push = (t: string): void => {
    if (!t) return;
    const prev = out[out.length - 1];
    if (prev && prev.style === style) out[out.length - 1] = { text: prev.text + t, style };
    else out.push({ text: t, style });
  };
  for (const m of input.matchAll(ESC_RE)) {
    push(input.slice(last, m.index));
    last = (m.index ?? 0) + m[0].length;
    if (m[2] === 'm') {
      const codes = (m[1] ?? '').split(';').filter((x) => x !== '').map(Number);
      style = applySgr(style, codes.length ? codes : [0]);
    }
  }
  push(input.slice(last));
  return out;
}

export function stripAnsi(input: string): string {
  return parseAnsi(input).map((s) => s.text).join('');
}

/** Renders ANSI text into `el` as text nodes and styled spans (never HTML). */
export function renderAnsi(el: HTMLElement, input: string): void {
  const frag = document.createDocumentFragment();
  for (const seg of parseAnsi(input)) {
    const st = seg.style;
    if (!st.fg && !st.bg && !st.bold && !st.italic && !st.underline) {
      frag.appendChild(document.createTextNode(seg.text));
      continue;
    }
    const span = document.createElement('span');
    span.textContent = seg.text;
    if (st.fg) span.style.color = st.fg;
    if (st.bg) span.style.backgroundColor = st.bg;
    if (st.bold) span.style.fontWeight = 'bold';
    if (st.italic) span.style.fontStyle = 'italic';
    if (st.underline) span.style.textDecoration = 'underline';
    frag.appendChild(span);
  }
  el.replaceChildren(frag);
}
