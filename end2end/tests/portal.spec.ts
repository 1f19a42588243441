import { expect, test } from "@playwright/test";
import { hydrated, register } from "./helpers";

// A real public key (ssh-keygen -t ed25519 -C ada@lab) and its fingerprint as `ssh-keygen -l` prints it.
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPI+DjeFyvcJhwoBHObkxNxeuORd3QSsOorXq16R8qpd ada@lab";
const FINGERPRINT = "SHA256:qssXkA28cUCYLhXmSlC2AYhnAMm6Kfva0BVaSunHiWQ";

// Every page is served with a Content-Security-Policy (no inline script without the page's nonce).
// Chromium reports each refusal on the console ("… violates the following Content Security Policy
// directive …"): any such message fails the test it happened in.
let cspViolations: string[] = [];
test.beforeEach(({ page }) => {
  cspViolations = [];
  page.on("console", (message) => {
    if (message.text().includes("Content Security Policy")) cspViolations.push(message.text());
  });
});
test.afterEach(() => {
  expect(cspViolations, "CSP violations reported in the console").toEqual([]);
});

test("register, create a project, add a key, create a token, log out", async ({ page }) => {
  const email = `ada+${Date.now()}@example.org`;
  await register(page, email, "Ada Lovelace");

  // Create a project from the dashboard.
  await expect(page.getByRole("heading", { name: "Your projects" })).toBeVisible();
  await page.getByLabel("Name", { exact: true }).fill("wanlab");
  await page.getByLabel("Description").fill("Wide-area latency study");
  await page.getByRole("button", { name: "Create project" }).click();
  const projects = page.getByTestId("projects");
  await expect(projects).toContainText("wanlab");
  await expect(projects).toContainText("leader");

  // The project page lists its leader.
  await projects.getByRole("link", { name: "wanlab" }).click();
  await expect(page.getByRole("heading", { name: "wanlab" })).toBeVisible();
  await expect(page.getByTestId("members")).toContainText(email);

  // Add an SSH key on the profile page: its fingerprint is shown.
  await page.getByRole("link", { name: "Profile" }).click();
  await page.getByLabel("Public key").fill(KEY);
  await page.getByRole("button", { name: "Add key" }).click();
  await expect(page.getByTestId("keys")).toContainText(FINGERPRINT);

  // A bad key gets a clear message.
  await page.getByLabel("Public key").fill("ssh-rsa not-really-a-key");
  await page.getByRole("button", { name: "Add key" }).click();
  await expect(page.getByRole("alert")).toContainText("not an OpenSSH public key");

  // Create a token: shown once, listed without its secret.
  await page.getByPlaceholder("laptop scripts").fill("ci");
  await page.getByRole("button", { name: "Create token" }).click();
  const fresh = page.getByTestId("new-token");
  await expect(fresh).toContainText("ptl_");
  const secret = (await fresh.locator("code").textContent())!.trim();
  await expect(page.getByTestId("tokens")).toContainText("ci");
  await expect(page.getByTestId("tokens")).not.toContainText(secret);

  // The token works for scripts.
  const me = await page.request.get("/api/v1/me", { headers: { Authorization: `Bearer ${secret}` } });
  expect(me.status()).toBe(200);
  expect((await me.json()).email).toBe(email);

  // Log out: the navigation offers to log in again, and the session is gone.
  await page.getByRole("button", { name: "Log out" }).click();
  await expect(page.getByRole("link", { name: "Log in" })).toBeVisible();
  const after = await page.request.get("/api/v1/me");
  expect(after.status()).toBe(401);
});

test("the project-name check runs in the browser once hydrated", async ({ page }) => {
  await register(page, `grace+${Date.now()}@example.org`, "Grace Hopper");
  const check = page.getByTestId("name-check");
  await expect(check).toContainText("3 to 32 characters");
  const name = page.getByLabel("Name", { exact: true });
  await name.pressSequentially("Bad Name");
  await expect(check).toContainText("lower-case letters");
  await name.fill("");
  await name.pressSequentially("good_name");
  await expect(check).toContainText("good_name is a valid project name");
});

test("pages hydrate under their Content-Security-Policy", async ({ page }) => {
  const response = await page.goto("/login");
  const csp = response?.headers()["content-security-policy"] ?? "";
  expect(csp).toContain("script-src 'self' 'nonce-");
  expect(csp).not.toContain("unsafe-inline");
  const nonce = /'nonce-([^']+)'/.exec(csp)?.[1];
  expect(nonce).toBeTruthy();
  await hydrated(page);
  // The policy is enforced, not only sent: an injected inline script without the nonce is refused.
  await page.evaluate(() => {
    const script = document.createElement("script");
    script.textContent = "window.__cspBypassed = true";
    document.body.appendChild(script);
  });
  await expect.poll(() => cspViolations.length).toBeGreaterThan(0);
  expect(await page.evaluate(() => (window as unknown as { __cspBypassed?: boolean }).__cspBypassed)).toBeUndefined();
  cspViolations = []; // that refusal was the point; the page itself caused none
});

test("log in with wrong credentials shows one clear error", async ({ page }) => {
  await page.goto("/login");
  await hydrated(page);
  await page.getByLabel("Email").fill("nobody@example.org");
  await page.getByLabel("Password").fill("wrong password");
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByRole("alert")).toHaveText("wrong email or password");
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("forms still register, create a project and log out", async ({ page }) => {
    await page.goto("/register");
    await page.getByLabel("Email").fill(`nojs+${Date.now()}@example.org`);
    await page.getByLabel("Name").fill("No Script");
    await page.getByLabel("Password (at least 10 characters)").fill("correct horse battery");
    await page.getByRole("button", { name: "Create account" }).click();
    await expect(page.getByRole("heading", { name: "Your projects" })).toBeVisible();
    await expect(page.getByTestId("who")).toHaveText("No Script");
    await page.getByLabel("Name", { exact: true }).fill("plainforms");
    await page.getByRole("button", { name: "Create project" }).click();
    await expect(page.getByTestId("projects")).toContainText("plainforms");
    await page.getByRole("button", { name: "Log out" }).click();
    await expect(page.getByRole("link", { name: "Log in" })).toBeVisible();
  });

  test("a failed log-in comes back with its error", async ({ page }) => {
    await page.goto("/login");
    await page.getByLabel("Email").fill("nobody@example.org");
    await page.getByLabel("Password").fill("wrong password");
    await page.getByRole("button", { name: "Log in" }).click();
    await expect(page).toHaveURL(/\/login\?/);
    await expect(page.getByRole("alert")).toHaveText("wrong email or password");
  });

  test("a failed form inside a page comes back with its error", async ({ page }) => {
    await page.goto("/register");
    await page.getByLabel("Email").fill(`nojs-err+${Date.now()}@example.org`);
    await page.getByLabel("Name").fill("No Script");
    await page.getByLabel("Password (at least 10 characters)").fill("correct horse battery");
    await page.getByRole("button", { name: "Create account" }).click();
    await page.getByLabel("Name", { exact: true }).fill("Not A Valid Name!");
    await page.getByRole("button", { name: "Create project" }).click();
    await expect(page.getByRole("alert")).toContainText("a project name has 3 to 32 characters");
  });
});
