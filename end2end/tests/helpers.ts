import { execFileSync } from "node:child_process";
import path from "node:path";
import { expect, type Page, type TestType } from "@playwright/test";

export const PASSWORD = "correct horse battery";

/** The portal's data directory, as `playwright.config.ts` gives it to the server (relative to end2end/). */
const dataDir = path.resolve(__dirname, "..", process.env.E2E_DATA_DIR ?? "../target/e2e-data");

/**
 * Fails each test during which the browser's console reported a Content-Security-Policy refusal (every page
 * is served with one; no inline script may run without the page's nonce), a failed hydration or a panic of
 * the WASM bundle.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function failOnConsoleProblems(test: TestType<any, any>) {
  const problems = ["Content Security Policy", "hydration error", "panicked at"];
  let reported: string[] = [];
  test.beforeEach(({ context }) => {
    reported = [];
    context.on("console", (message) => {
      if (problems.some((p) => message.text().includes(p))) reported.push(message.text());
    });
  });
  test.afterEach(() => {
    expect(reported, "problems reported in the browser's console").toEqual([]);
  });
}

/** Waits until the WASM bundle has hydrated the page. */
export async function hydrated(page: Page) {
  await page.locator("html[data-hydrated]").waitFor({ state: "attached" });
}

export async function register(page: Page, email: string, name: string) {
  await page.goto("/register");
  await hydrated(page);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Name", { exact: true }).fill(name);
  await page.getByLabel("Password (at least 10 characters)").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByTestId("who")).toHaveText(name);
}

/**
 * Creates an account the way an administrator does, with `portolan admin create-user` on the server's
 * database (the password on standard input); `operator` makes it an operator.
 */
export function createUser(email: string, name: string, { operator = false } = {}) {
  const args = ["admin", "create-user", "--email", email, "--name", name];
  if (operator) args.push("--operator");
  execFileSync(path.resolve(__dirname, "../../target/debug/portolan"), args, {
    input: `${PASSWORD}\n`,
    env: { ...process.env, PORTOLAN_DATA_DIR: dataDir, PORTOLAN_LOG: "warn" },
    stdio: ["pipe", "pipe", "inherit"],
  });
}

export async function logIn(page: Page, email: string, name: string) {
  await page.goto("/login");
  await hydrated(page);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByTestId("who")).toHaveText(name);
}
