// The npm package: its exports exist, its types check, and its generated
// files (declarations from the JSDoc, API types from openapi.json) are current.
// node --test web/
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const bin = (name) => join(here, "node_modules", ".bin", name);
const missing = ["tsc", "openapi-typescript"].filter((name) => !existsSync(bin(name)));
if (missing.length) {
  const message = `${missing.join(" and ")} missing: run \`npm ci --prefix web\``;
  if (process.env.CI) throw new Error(`CI must check the package's types, but ${message}`);
  console.error(`\n!!! SKIPPED the package's type checks: ${message} !!!\n`);
}
const out = mkdtempSync(join(tmpdir(), "presence-client-"));
after(() => rmSync(out, { recursive: true, force: true }));

const read = (path) => readFileSync(path, "utf8");
const run = (name, args) => {
  const result = spawnSync(bin(name), args, { cwd: here, encoding: "utf8" });
  assert.equal(result.status, 0, `${name} ${args.join(" ")}\n${result.stdout}${result.stderr}`);
};

test("the package ships what it exports, with no runtime dependency", () => {
  const pkg = JSON.parse(read(join(here, "package.json")));
  assert.equal(pkg.dependencies, undefined, "no runtime dependencies");
  assert.ok(pkg.peerDependencies.react, "React is a peer dependency");
  const targets = Object.values(pkg.exports).flatMap((target) => (typeof target === "string" ? [target] : Object.values(target)));
  for (const target of [...targets, pkg.main, pkg.types]) {
    assert.ok(existsSync(join(here, target)), `${target} exists`);
    const file = target.replace(/^\.\//, "");
    assert.ok(file === "package.json" || pkg.files.includes(file), `${file} is in "files"`);
  }
});

test("the JSDoc and the declarations type-check as an application uses them", { skip: missing.length > 0 }, () => {
  // tsconfig.json: presence.js and react.js against their JSDoc (checkJs,
  // strict), and types-check.ts importing the package by its name.
  run("tsc", ["-p", "tsconfig.json"]);
});

test("the declarations are the ones the JSDoc generates", { skip: missing.length > 0 }, () => {
  run("tsc", ["-p", "tsconfig.declarations.json", "--outDir", out]);
  for (const name of ["presence.d.ts", "react.d.ts"]) {
    assert.equal(read(join(here, name)), read(join(out, name)), `${name} is stale: run \`npm run declarations --prefix web\``);
  }
});

test("the API types are the ones openapi.json generates", { skip: missing.length > 0 }, () => {
  run("openapi-typescript", ["openapi.json", "--output", join(out, "api.d.ts")]);
  assert.equal(read(join(here, "api.d.ts")), read(join(out, "api.d.ts")), "api.d.ts is stale: run `npm run api-types --prefix web`");
});
