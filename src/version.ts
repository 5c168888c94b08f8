import { readFileSync } from "node:fs";

// Read at run time: package.json sits two levels up from both src/ and dist/ files.
const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };

export const VERSION: string = pkg.version;
