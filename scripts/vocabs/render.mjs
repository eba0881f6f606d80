// Reference rendering of chat templates with @huggingface/jinja (the renderer transformers.js
// uses). Reads a JSON array of cases on stdin:
//   {template, bos_token, eos_token, messages, add_generation_prompt, enable_thinking}
// and prints a JSON array of {text} or {error}, one per case.
import { Template } from "@huggingface/jinja";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const out = JSON.parse(input).map((c) => {
  try {
    const { template, ...vars } = c;
    return { text: new Template(template).render(vars) };
  } catch (e) {
    return { error: String(e?.message ?? e) };
  }
});
process.stdout.write(JSON.stringify(out));
