/** Word-level diff between two texts, for showing what a refinement step changed. */
export type DiffOp = "same" | "add" | "del";
export interface DiffPart {
  op: DiffOp;
  text: string;
}

// Whitespace runs, single CJK characters (those scripts do not separate words), and other runs.
const TOKEN =
  /\s+|[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]|[^\s\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]+/gu;

/** Splits a text into word and whitespace tokens; joining them gives the text back. */
export function tokenize(text: string): string[] {
  return text.match(TOKEN) ?? [];
}

/** Above this many LCS cells the changed middle is shown as one deletion plus one insertion. */
const MAX_CELLS = 4_000_000;

/**
 * LCS over word tokens (whitespace kept as tokens). Joining the "same" and "del" parts gives `a`;
 * joining the "same" and "add" parts gives `b`. Within each changed stretch deletions come before
 * insertions, and whitespace that merely separates two changes is folded into them, so a replaced
 * phrase reads as one deletion followed by one insertion.
 */
export function wordDiff(a: string, b: string): DiffPart[] {
  const x = tokenize(a);
  const y = tokenize(b);
  // Common prefix and suffix first: refinements usually keep most of the text.
  let pre = 0;
  while (pre < x.length && pre < y.length && x[pre] === y[pre]) pre++;
  let suf = 0;
  while (
    suf < x.length - pre &&
    suf < y.length - pre &&
    x[x.length - 1 - suf] === y[y.length - 1 - suf]
  )
    suf++;
  const xs = x.slice(pre, x.length - suf);
  const ys = y.slice(pre, y.length - suf);

  const raw: DiffPart[] = [];
  for (let i = 0; i < pre; i++) raw.push({ op: "same", text: x[i] });
  middle(xs, ys, raw);
  for (let i = x.length - suf; i < x.length; i++) raw.push({ op: "same", text: x[i] });
  return group(raw);
}

function middle(xs: string[], ys: string[], out: DiffPart[]) {
  const n = xs.length;
  const m = ys.length;
  if (n === 0 || m === 0 || (n + 1) * (m + 1) > MAX_CELLS) {
    for (const t of xs) out.push({ op: "del", text: t });
    for (const t of ys) out.push({ op: "add", text: t });
    return;
  }
  // dp[i*(m+1)+j] = LCS length of xs[i..] and ys[j..].
  const w = m + 1;
  const dp = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      dp[i * w + j] =
        xs[i] === ys[j] ? dp[(i + 1) * w + j + 1] + 1 : Math.max(dp[(i + 1) * w + j], dp[i * w + j + 1]);
    }
  }
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (xs[i] === ys[j]) {
      out.push({ op: "same", text: xs[i] });
      i++;
      j++;
    } else if (dp[(i + 1) * w + j] >= dp[i * w + j + 1]) {
      out.push({ op: "del", text: xs[i++] });
    } else {
      out.push({ op: "add", text: ys[j++] });
    }
  }
  while (i < n) out.push({ op: "del", text: xs[i++] });
  while (j < m) out.push({ op: "add", text: ys[j++] });
}

function group(raw: DiffPart[]): DiffPart[] {
  // Whitespace-only equalities between two changes become part of the change on both sides.
  const parts = raw.flatMap((p, k): DiffPart[] => {
    if (
      p.op === "same" &&
      /^\s+$/u.test(p.text) &&
      k > 0 &&
      k < raw.length - 1 &&
      raw[k - 1].op !== "same" &&
      raw[k + 1].op !== "same"
    ) {
      return [
        { op: "del", text: p.text },
        { op: "add", text: p.text },
      ];
    }
    return [p];
  });
  const out: DiffPart[] = [];
  let del = "";
  let add = "";
  const flush = () => {
    if (del) out.push({ op: "del", text: del });
    if (add) out.push({ op: "add", text: add });
    del = add = "";
  };
  for (const p of parts) {
    if (p.op === "del") del += p.text;
    else if (p.op === "add") add += p.text;
    else {
      flush();
      const last = out[out.length - 1];
      if (last && last.op === "same") last.text += p.text;
      else out.push({ ...p });
    }
  }
  flush();
  return out;
}

/** How many words a diff adds and removes (whitespace not counted). */
export function diffStats(parts: DiffPart[]): { added: number; removed: number } {
  let added = 0;
  let removed = 0;
  for (const p of parts) {
    const words = tokenize(p.text).filter((t) => !/^\s+$/u.test(t)).length;
    if (p.op === "add") added += words;
    if (p.op === "del") removed += words;
  }
  return { added, removed };
}
