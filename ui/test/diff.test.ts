import { describe, expect, it } from "vitest";
import { diffStats, tokenize, wordDiff, type DiffPart } from "../src/diff";

const side = (parts: DiffPart[], keep: "del" | "add") => parts.filter((p) => p.op === "same" || p.op === keep).map((p) => p.text).join("");

/** Every diff must rebuild both texts. */
function check(a: string, b: string): DiffPart[] {
  const d = wordDiff(a, b);
  expect(side(d, "del")).toBe(a);
  expect(side(d, "add")).toBe(b);
  for (let i = 1; i < d.length; i++) expect(d[i].op === d[i - 1].op).toBe(false);
  return d;
}

describe("tokenize", () => {
  it("keeps whitespace as tokens, so joining gives the text back", () => {
    expect(tokenize("a  b\nc")).toEqual(["a", "  ", "b", "\n", "c"]);
    expect(tokenize("")).toEqual([]);
  });
  it("splits CJK text per character", () => {
    expect(tokenize("答案是8")).toEqual(["答", "案", "是", "8"]);
  });
});

describe("wordDiff", () => {
  it("identical texts are one same part", () => {
    expect(check("The total is $8.", "The total is $8.")).toEqual([{ op: "same", text: "The total is $8." }]);
  });

  it("pure insertion", () => {
    expect(check("The total is $8.", "The total is 4 × $2 = $8.")).toEqual([
      { op: "same", text: "The total is " },
      { op: "add", text: "4 × $2 = " },
      { op: "same", text: "$8." },
    ]);
  });

  it("insertion at the end", () => {
    expect(check("Answer: 8", "Answer: 8\nChecked.")).toEqual([
      { op: "same", text: "Answer: 8" },
      { op: "add", text: "\nChecked." },
    ]);
  });

  it("pure deletion", () => {
    expect(check("so the answer is clearly 8", "so the answer is 8")).toEqual([
      { op: "same", text: "so the answer is " },
      { op: "del", text: "clearly " },
      { op: "same", text: "8" },
    ]);
  });

  it("replacement: deletion first, then insertion", () => {
    expect(check("12 pencils cost $24.", "12 pencils cost $8.")).toEqual([
      { op: "same", text: "12 pencils cost " },
      { op: "del", text: "$24." },
      { op: "add", text: "$8." },
    ]);
  });

  it("a replaced phrase reads as one deletion and one insertion", () => {
    expect(check("a b c d", "a x y d")).toEqual([
      { op: "same", text: "a " },
      { op: "del", text: "b c" },
      { op: "add", text: "x y" },
      { op: "same", text: " d" },
    ]);
  });

  it("empty inputs", () => {
    expect(wordDiff("", "")).toEqual([]);
    expect(check("", "new text")).toEqual([{ op: "add", text: "new text" }]);
    expect(check("old text", "")).toEqual([{ op: "del", text: "old text" }]);
  });

  it("unicode: accents, emoji, CJK", () => {
    expect(check("naïve café ☕", "naïve crème ☕")).toEqual([
      { op: "same", text: "naïve " },
      { op: "del", text: "café" },
      { op: "add", text: "crème" },
      { op: "same", text: " ☕" },
    ]);
    expect(check("答案是8", "答案是12")).toEqual([
      { op: "same", text: "答案是" },
      { op: "del", text: "8" },
      { op: "add", text: "12" },
    ]);
    check("🙂 ok 👍🏽", "🙂 fine 👍🏽 done");
  });

  it("changes in several places", () => {
    const d = check("Each pencil costs $2, so 12 pencils cost $24.", "Pencils come 3 for $2, so 12 pencils cost $8.");
    expect(d.filter((p) => p.op === "same").map((p) => p.text)).toEqual(["$2, so 12 pencils cost "]);
    expect(diffStats(d)).toEqual({ added: 5, removed: 4 });
  });

  it("long texts beyond the LCS budget still rebuild both sides", () => {
    const a = Array.from({ length: 2500 }, (_, i) => `w${i}`).join(" ");
    const b = Array.from({ length: 2500 }, (_, i) => `v${i}`).join(" ");
    const d = check(`start ${a} end`, `start ${b} end`);
    expect(d[0]).toEqual({ op: "same", text: "start " });
    expect(d[d.length - 1]).toEqual({ op: "same", text: " end" });
  });
});
