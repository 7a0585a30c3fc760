// Checks rendered payloads with the vendors' own artifacts.
//
//   node check.js FILE.json
//
// FILE holds {"adf": [ADF documents], "cards": [Adaptive Card contents]}.
// ADF documents are validated with Atlassian's JSON schema
// (@atlaskit/adf-schema json-schema/v1/full.json, draft-04, with
// ajv-draft-04); cards are parsed by Microsoft's adaptivecards library,
// whose SerializationContext collects unknown elements and bad properties.
// Prints one line per problem; exits 1 if there is any.
"use strict";
const fs = require("fs");
const path = require("path");
const Ajv = require("ajv-draft-04");
const AC = require("adaptivecards/dist/adaptivecards.js");

const input = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const schema = JSON.parse(fs.readFileSync(
  path.join(__dirname, "node_modules/@atlaskit/adf-schema/json-schema/v1/full.json"), "utf8"));
const ajv = new Ajv({ allErrors: true, strict: false });
const validateAdf = ajv.compile(schema);
let problems = 0;

(input.adf || []).forEach((doc, i) => {
  if (!validateAdf(doc)) {
    problems++;
    const errs = validateAdf.errors.slice(0, 5)
      .map((e) => `${e.instancePath} ${e.message}`).join("; ");
    console.log(`adf[${i}]: ${errs}`);
  }
});

(input.cards || []).forEach((content, i) => {
  const card = new AC.AdaptiveCard();
  const ctx = new AC.SerializationContext();
  card.parse(content, ctx);
  const events = [];
  for (let k = 0; k < ctx.eventCount; k++) events.push(ctx.getEventAt(k));
  const bad = events.filter((e) => e.phase !== undefined);
  if (bad.length) {
    problems++;
    console.log(`cards[${i}]: ` + bad.slice(0, 5).map((e) => `${AC.ValidationEvent[e.event]}: ${e.message}`).join("; "));
  }
  const v = card.validateProperties();
  if (v.failures && v.failures.length) {
    problems++;
    console.log(`cards[${i}] validate: ` + v.failures.map((f) => f.errors.map((e) => e.message).join(", ")).join("; "));
  }
});

console.log(`checked ${(input.adf || []).length} ADF documents and ${(input.cards || []).length} Adaptive Cards: ${problems} with problems`);
process.exit(problems ? 1 : 0);
