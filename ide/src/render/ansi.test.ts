import { describe, expect, it } from 'vitest';
import { parseAnsi, stripAnsi } from './ansi.ts';

describe('ANSI', () => {
  it('parses SGR colours and resets', () => {
    const segs = parseAnsi('\u001b[31mred\u001b[0m plain \u001b[1;38;5;196mbold\u001b[39m');
    expect(segs.map((s) => s.text)).toEqual(['red', ' plain ', 'bold']);
    expect(segs[0]?.style.fg).toBe('#e06c75');
    expect(segs[1]?.style).toEqual({});
    expect(segs[2]?.style).toMatchObject({ bold: true, fg: 'rgb(255,0,0)' });
  });
  it('drops non-SGR escapes and keeps markup as text', () => {
    expect(stripAnsi('a\u001b[2Kb\u001b]0;title\u0007c<script>')).toBe('abc<script>');
  });
  it('handles truecolour and bare resets', () => {
    const segs = parseAnsi('\u001b[38;2;1;2;3mx\u001b[my');
    expect(segs[0]?.style.fg).toBe('rgb(1,2,3)');
    expect(segs[1]?.style).toEqual({});
  });
});
