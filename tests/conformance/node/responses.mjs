// The openai Node SDK against a live ftserve: `node responses.mjs BASE_URL MODEL QUESTION`.
// Prints `RESULT {json}`: the streamed event types, the text put together from the deltas, and the
// final response's text.
import OpenAI from "openai";

const [baseURL, model, question] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY || "none" });
const stream = await client.responses.create({
  model, input: question, stream: true, temperature: 0, max_output_tokens: 32,
});
const types = [];
let text = "";
let final = null;
for await (const event of stream) {
  types.push(event.type);
  if (event.type === "response.output_text.delta") text += event.delta;
  if (event.type === "response.completed") final = event.response;
}
const stored = await client.responses.retrieve(final.id);
console.log("RESULT " + JSON.stringify({ types, text, final: stored.output_text }));
