import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { expect, type Locator, type Page, test } from "@playwright/test";
import { failOnConsoleProblems, hydrated, PASSWORD } from "./helpers";

failOnConsoleProblems(test);

/*
 * These tests need nodes whose service slivers came up and heartbeat. On the suite's shared portal (the real
 * 684-node world, the mild profile) the first one is free only after half an hour or more, so this file runs
 * a portal of its own: the same binary, on a generated world of 24 nodes whose testbed instantiates slivers
 * in seconds and never fails by chance, with agents heartbeating every 2 s. All its nodes are free and
 * reporting within a minute.
 */
const port = Number(process.env.E2E_LIVENESS_PORT ?? Number(process.env.E2E_PORT ?? 3917) + 1);
const dataDir = path.resolve(__dirname, "..", process.env.E2E_LIVENESS_DATA_DIR ?? "../target/e2e-data-liveness");
const binary = path.resolve(__dirname, "../../target/debug/portolan");
const base = `http://127.0.0.1:${port}`;

const QUICK_TESTBED = `
[instantiation]
median_s = 3.0
sigma = 0.3
max_s = 30.0
fail_probability = 0.0

[node_manager]
create_fail_probability = 0.0
create_min_s = 1.0
create_max_s = 3.0

[churn]
down_per_hour = 0.0
up_per_hour = 0.0
leave_per_hour = 0.0
join_per_hour = 0.0
identity_change_per_hour = 0.0
initially_down = 0.0

[lease]
skew_probability = 0.0

[api]
fault_probability = 0.0
http_5xx_probability = 0.0
timeout_probability = 0.0
generation = "node-manager"

[world]
nodes = 24
`;

const environment = () => ({
  ...process.env,
  PORTOLAN_LISTEN: `127.0.0.1:${port}`,
  PORTOLAN_DATA_DIR: dataDir,
  PORTOLAN_SITE_ROOT: path.resolve(__dirname, "../../target/site"),
  PORTOLAN_LOG: "warn",
  PORTOLAN_TESTBED_LISTEN: "127.0.0.1:0",
  PORTOLAN_TESTBED_PROFILE: path.join(dataDir, "quick-testbed.toml"),
  PORTOLAN_HEARTBEAT_S: "2",
});

let portal: ChildProcess | undefined;

test.use({ baseURL: base });

test.beforeAll(async () => {
  test.setTimeout(90_000);
  fs.rmSync(dataDir, { recursive: true, force: true });
  fs.mkdirSync(dataDir, { recursive: true });
  fs.writeFileSync(path.join(dataDir, "quick-testbed.toml"), QUICK_TESTBED);
  portal = spawn(binary, ["serve"], { env: environment(), stdio: ["ignore", "inherit", "inherit"] });
  await expect
    .poll(
      async () => {
        try {
          return (await fetch(`${base}/login`)).status;
        } catch {
          return 0;
        }
      },
      { message: "this file's portal starts", timeout: 60_000, intervals: [500] },
    )
    .toBe(200);
});

test.afterAll(async () => {
  if (portal && portal.exitCode === null) {
    const exited = new Promise((resolve) => portal!.once("exit", resolve));
    portal.kill("SIGTERM");
    await exited;
  }
});

/**
 * An account on this file's portal (`portolan admin create-user` on its database), logged in; `javaScript`:
 * whether the page runs the bundle (then the form is filled once hydrated).
 */
async function signedIn(page: Page, name: string, { operator = false, javaScript = true } = {}) {
  const email = `${name.split(" ")[0].toLowerCase()}+${Date.now()}@example.org`;
  const args = ["admin", "create-user", "--email", email, "--name", name];
  if (operator) args.push("--operator");
  execFileSync(binary, args, { input: `${PASSWORD}\n`, env: environment(), stdio: ["pipe", "pipe", "inherit"] });
  await page.goto("/login");
  if (javaScript) await hydrated(page);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByTestId("who")).toHaveText(name);
}

/** The path of the page of a node in `pool`, once liveness has put one there. */
async function nodeIn(page: Page, pool: string): Promise<string> {
  let href: string | null = null;
  await expect
    .poll(
      async () => {
        await page.goto(`/nodes?pool=${pool}`);
        const links = page.getByTestId("nodes").locator("tbody tr td:first-child a");
        href = (await links.count()) > 0 ? await links.first().getAttribute("href") : null;
        return href;
      },
      { message: `liveness puts a node in ${pool}`, timeout: 90_000, intervals: [2_000] },
    )
    .not.toBeNull();
  return href!;
}

/** Opens the node page at `path` until its chart shows the load its heartbeats reported. */
async function chartShown(page: Page, path: string) {
  const drawn = page.locator('[data-testid="plot-load"] :is(polyline, circle)');
  await expect
    .poll(
      async () => {
        await page.goto(path);
        return drawn.count();
      },
      { message: "the service sliver's heartbeats are charted", timeout: 120_000, intervals: [2_000] },
    )
    .toBeGreaterThan(0);
}

/** When a queue row says its node is due, in milliseconds since the epoch. */
async function dueOf(row: Locator): Promise<number> {
  return Date.parse((await row.getByTestId("due").getAttribute("data-due"))!);
}

test("a free node's page charts its metrics and shows its liveness", async ({ page }) => {
  test.setTimeout(300_000);
  await signedIn(page, "Lina Live");
  const node = await nodeIn(page, "free");
  await chartShown(page, node);
  await hydrated(page);
  // Small multiples, one SVG per metric, drawn on the server; the node's liveness above them.
  await expect(page.getByTestId("metrics-chart").locator("svg")).toHaveCount(5);
  await expect(page.getByTestId("plot-load")).toBeVisible();
  await expect(page.getByTestId("plot-load")).toHaveAttribute("aria-label", "CPU load (1 min)");
  await expect(page.getByTestId("pool-history")).toContainText("new → free");
  await expect(page.getByTestId("sliver-health")).toHaveText("up");
  await expect(page.getByTestId("setup-success")).toHaveText(/^[1-9]\d*\/[1-9]\d* \(/);
  await expect(page.getByTestId("availability-day")).toHaveText(/ %$/);

  // The nodes page plots the pools over the week above the list: free, down, new and held.
  await page.getByRole("link", { name: "Nodes" }).click();
  await expect(page.getByTestId("pool-history-plot")).toBeVisible();
  await expect(page.getByTestId("pool-history-plot").locator("polyline")).toHaveCount(4);
});

test("an operator re-tests a node from the queue and it is due at once", async ({ page }) => {
  test.setTimeout(300_000);
  await signedIn(page, "Rita Retest", { operator: true });
  await nodeIn(page, "free");
  await page.getByRole("link", { name: "Operators" }).click();
  await hydrated(page);
  const rows = page.getByTestId("retest-queue").locator("tbody tr");
  await expect(rows.first()).toBeVisible();
  await expect(page.getByTestId("provisioning-steps")).toContainText("heartbeat");
  await page.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));

  // The node due last: a free node is next checked some 20 minutes after its first good check.
  const last = rows.last();
  const nodeId = await last.getAttribute("data-node");
  const row = page.locator(`[data-testid="retest-queue"] tr[data-node="${nodeId}"]`);
  // A liveness pass (every 5 s) may check the node between the click and the list's refresh, and schedule
  // it later again: then click again.
  let due = 0;
  for (let attempt = 0; attempt < 3; attempt++) {
    const before = await dueOf(row);
    expect(before - Date.now()).toBeGreaterThan(120_000);
    const answered = page.waitForResponse((r) => r.url().endsWith("/sf/retest_node"));
    const clicked = Date.now();
    await row.getByRole("button", { name: "Re-test now" }).click();
    // Answered as the hydrated page's own request (a plain form post would be redirected, and reload the
    // page, forgetting the mark set above).
    expect((await answered).status()).toBe(200);
    await expect.poll(() => dueOf(row), { message: "the row's due time changes" }).not.toBe(before);
    due = await dueOf(row);
    if (Math.abs(due - clicked) < 60_000) break;
  }
  expect(Math.abs(due - Date.now())).toBeLessThan(60_000);
  expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);
  // Soonest first: it moved up to the top of the queue.
  await expect(rows.first()).toHaveAttribute("data-node", nodeId!);
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("a node's chart and the pools' plot are drawn by the server", async ({ page }) => {
    test.setTimeout(300_000);
    await signedIn(page, "Nadia Noscript", { javaScript: false });
    const node = await nodeIn(page, "free");
    await chartShown(page, node);
    await expect(page.getByTestId("plot-load")).toBeVisible();
    await expect(page.getByTestId("pool-history")).toContainText("new → free");
    await page.goto("/nodes");
    await expect(page.getByTestId("pool-history-plot").locator("polyline")).toHaveCount(4);
  });
});
