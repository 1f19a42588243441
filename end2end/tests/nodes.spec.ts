import { expect, test, type Locator, type Page } from "@playwright/test";
import { createUser, failOnConsoleProblems, hydrated, logIn, register } from "./helpers";

failOnConsoleProblems(test);

const POOLS = ["new", "free", "down", "gone", "held"];

/** A number shown in `locator`'s text. */
async function shown(locator: Locator): Promise<number> {
  return Number((await locator.textContent())?.trim());
}

/** How many nodes the listing on the page says match its filters. */
async function matching(page: Page): Promise<number> {
  return Number(await page.getByTestId("node-total").getAttribute("data-total"));
}

/**
 * Opens /nodes once discovery has filled the nodes (the embedded reference testbed starts with the server,
 * and discovery reads it within seconds); answers how many nodes are listed.
 */
async function nodesListed(page: Page): Promise<number> {
  let total = 0;
  await expect
    .poll(
      async () => {
        await page.goto("/nodes");
        total = Number(await page.getByTestId("node-total").getAttribute("data-total", { timeout: 10_000 }));
        return total;
      },
      { message: "discovery lists the testbed's nodes", timeout: 90_000, intervals: [1_000] },
    )
    .toBeGreaterThan(0);
  return total;
}

test("a signed-in user lists the nodes, filters them and opens one", async ({ page }) => {
  test.setTimeout(150_000);
  await register(page, `nora+${Date.now()}@example.org`, "Nora Nodes");
  await expect(page.getByRole("link", { name: "Nodes" })).toBeVisible();
  await expect(page.getByRole("link", { name: "Sites" })).toBeVisible();
  await expect(page.getByRole("link", { name: "Operators" })).toHaveCount(0);

  const all = await nodesListed(page);
  await hydrated(page);
  // The counts per pool are of everything listed; discovered nodes are new until tested.
  const counts = await Promise.all(
    POOLS.map(async (pool) => Number(await page.getByTestId(`pool-${pool}`).getAttribute("data-count"))),
  );
  expect(counts.reduce((a, b) => a + b, 0)).toBe(all);
  expect(counts[POOLS.indexOf("new")]).toBeGreaterThan(0);
  const rows = page.getByTestId("nodes").locator("tbody tr");
  await expect(rows).toHaveCount(Math.min(all, 50));

  // Choosing a link class updates the URL and the listing at once: fewer nodes, all of that class.
  await page.getByTestId("filter-class").selectOption("dsl");
  await expect(page).toHaveURL(/\/nodes\?class=dsl$/);
  const classes = async () => [...new Set(await rows.locator("td:nth-child(3)").allTextContents())];
  await expect.poll(classes).toEqual(["dsl"]);
  expect(await matching(page)).toBeLessThan(all);

  // Back to every class; then typing in the search box narrows the listing to matching hostnames.
  await page.getByTestId("filter-class").selectOption("");
  await expect.poll(() => matching(page)).toBe(all);
  const hostname = (await rows.nth(1).locator("td").first().textContent())!.trim();
  await page.getByTestId("filter-q").pressSequentially(hostname);
  await expect(page).toHaveURL(new RegExp(`[?&]q=${hostname.replace(/[.]/g, "\\.")}`));
  // (The listing follows each keystroke: wait for the answer to the whole text.)
  const hostnames = () => rows.locator("td:nth-child(1)").allTextContents();
  await expect.poll(async () => (await hostnames()).every((h) => h.includes(hostname))).toBe(true);
  expect(await hostnames()).toContain(hostname);
  expect(await matching(page)).toBeLessThan(all);
  await expect(page.getByTestId("filter-q")).toHaveValue(hostname);
  await expect(page.getByTestId("filter-q")).toBeFocused();

  // The node's page: attributes, metrics unknown until slivers report them, no experiments yet.
  await rows.getByRole("link", { name: hostname, exact: true }).click();
  await expect(page.getByRole("heading", { name: hostname })).toBeVisible();
  await expect(page.getByTestId("attributes")).toContainText("Link class");
  await expect(page.getByTestId("metrics")).toContainText("unknown");
  await expect(page.getByTestId("experiments")).toHaveText("none");
  await expect(page.getByTestId("identity")).toContainText("appeared");
  await page.reload(); // served whole, and hydrated
  await hydrated(page);
  await expect(page.getByTestId("experiments")).toHaveText("none");

  // Sites, with node counts; the operators' page is not for this user.
  await page.getByRole("link", { name: "Sites" }).click();
  await expect(page.getByTestId("sites").locator("tbody tr").first()).toBeVisible();
  await page.goto("/operators");
  await expect(page.getByTestId("operators-only")).toContainText("Operators only");
});

test("an operator sees what thresholds would admit before saving them", async ({ page, context }) => {
  test.setTimeout(150_000);
  const email = `olga+${Date.now()}@example.org`;
  createUser(email, "Olga Ops", { operator: true });
  await logIn(page, email, "Olga Ops");
  await nodesListed(page);
  await hydrated(page);
  await page.getByRole("link", { name: "Operators" }).click();
  await expect(page.getByRole("heading", { name: "Admission thresholds" })).toBeVisible();

  const passing = () => shown(page.getByTestId("what-if-passing"));
  const candidates = () => shown(page.getByTestId("what-if-candidates"));
  const field = (name: string) => page.getByTestId(`threshold-${name}`);

  // The default thresholds need metrics that only nodes whose service sliver reported have (and a few
  // nodes' disks are too full): not every candidate passes.
  await expect(field("max_load")).toHaveValue("4");
  await expect.poll(candidates).toBeGreaterThan(0);
  expect(await passing()).toBeLessThan(await candidates());
  await expect(page.getByTestId("what-if-reasons")).not.toBeEmpty();

  // Turning the metric thresholds off: every candidate would pass, and nothing is saved yet.
  for (const name of ["max_load", "min_disk_free_pct", "min_memory_free_mb", "max_metric_age_s"]) {
    await field(name).fill("");
  }
  await expect.poll(passing).toBeGreaterThan(0);
  await expect.poll(async () => (await passing()) === (await candidates())).toBe(true);
  await expect(page.getByTestId("what-if-reasons")).toBeEmpty();
  const stored = await context.newPage();
  await stored.goto("/operators");
  await expect(stored.getByTestId("threshold-max_load")).toHaveValue("4");
  expect(await shown(stored.getByTestId("what-if-passing"))).toBeLessThan(
    await shown(stored.getByTestId("what-if-candidates")),
  );
  await stored.close();

  // A load threshold no node meets (unknown loads never pass one): nothing passes again.
  await field("max_load").fill("0.0001");
  await expect.poll(passing).toBe(0);

  // A load threshold of 0 is refused (400) with a message naming the field.
  await field("max_load").fill("0");
  const refused = page.waitForResponse((r) => r.url().endsWith("/sf/put_admission"));
  await page.getByTestId("save-thresholds").click();
  expect((await refused).status()).toBe(400);
  await expect(page.getByTestId("save-error")).toContainText("max_load must be above 0");

  // Off, and saved: a fresh load of the page shows the stored thresholds and what they admit.
  await field("max_load").fill("");
  const accepted = page.waitForResponse((r) => r.url().endsWith("/sf/put_admission"));
  await page.getByTestId("save-thresholds").click();
  expect((await accepted).status()).toBe(200);
  await expect(page.getByTestId("saved")).toBeVisible();
  await expect(page.getByTestId("save-error")).toBeEmpty();
  await page.reload();
  await hydrated(page);
  await expect(field("max_load")).toHaveValue("");
  await expect(field("min_disk_free_pct")).toHaveValue("");
  await expect(field("max_path_age_s")).toHaveValue("3600");
  await expect(field("exclude_after_failures")).toHaveValue("2");
  await expect(field("allow_untested")).toBeChecked();
  await expect.poll(passing).toBeGreaterThan(0);

  // Discovery's runs are listed; no identity is waiting for a decision on a fresh testbed.
  await expect(page.getByTestId("runs")).toContainText("nodes");
  await expect(page.getByTestId("decisions")).toBeVisible();
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("the node filters are a plain form", async ({ page }) => {
    await page.goto("/register");
    await page.getByLabel("Email").fill(`nojs-nodes+${Date.now()}@example.org`);
    await page.getByLabel("Name").fill("No Script");
    await page.getByLabel("Password (at least 10 characters)").fill("correct horse battery");
    await page.getByRole("button", { name: "Create account" }).click();
    await expect(page.getByTestId("who")).toHaveText("No Script");
    await nodesListed(page);
    await page.getByTestId("filter-class").selectOption("dsl");
    await page.getByRole("button", { name: "Filter" }).click();
    await expect(page).toHaveURL(/\/nodes\?.*class=dsl/);
    const classes = await page.getByTestId("nodes").locator("tbody td:nth-child(3)").allTextContents();
    expect(classes.length).toBeGreaterThan(0);
    expect(new Set(classes)).toEqual(new Set(["dsl"]));
  });
});
