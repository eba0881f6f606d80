import { render } from "preact";
import { afterEach, describe, expect, it } from "vitest";
import { DiffView } from "../src/components/DiffView";

let host: HTMLElement;
afterEach(() => {
  render(null, host);
  host.remove();
});
function mount(before: string, after: string) {
  host = document.createElement("div");
  document.body.append(host);
  render(<DiffView before={before} after={after} />, host);
  return host;
}

describe("DiffView", () => {
  it("marks insertions with <ins> and deletions with <del>, in order", () => {
    const el = mount("12 pencils cost $24.", "12 pencils cost $8. Answer: 8");
    const text = el.querySelector(".diff-text")!;
    expect([...text.children].map((c) => [c.tagName, c.textContent])).toEqual([
      ["SPAN", "12 pencils cost "],
      ["DEL", "$24."],
      ["INS", "$8. Answer: 8"],
    ]);
    expect(el.querySelector('[data-testid="diff-stats"]')!.textContent).toBe("+3 −1 words");
  });

  it("says 'no change' for identical steps and marks nothing", () => {
    const el = mount("Answer: 8", "Answer: 8");
    expect(el.querySelectorAll("ins, del")).toHaveLength(0);
    expect(el.querySelector(".diff-text")!.textContent).toBe("Answer: 8");
    expect(el.querySelector('[data-testid="diff-stats"]')!.textContent).toBe("no change");
  });
});
