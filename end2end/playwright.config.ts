import { defineConfig } from "@playwright/test";

// The portal under test: the debug build, on a fresh SQLite database in a temporary data directory.
// `scripts/test` builds the browser bundle (target/site) first; the binary is the one its `cargo test` built.
const port = Number(process.env.E2E_PORT ?? 3917);
const dataDir = process.env.E2E_DATA_DIR ?? "../target/e2e-data";

export default defineConfig({
  testDir: "./tests",
  timeout: 60_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
  },
  projects: [
    {
      name: "chromium",
      use: {
        browserName: "chromium",
        launchOptions: {
          executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
          args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
          ],
        },
      },
    },
  ],
  webServer: {
    command: `rm -rf ${dataDir} && ../target/debug/portolan serve`,
    url: `http://127.0.0.1:${port}/login`,
    reuseExistingServer: false,
    timeout: 60_000,
    env: {
      PORTOLAN_LISTEN: `127.0.0.1:${port}`,
      PORTOLAN_DATA_DIR: dataDir,
      PORTOLAN_SITE_ROOT: "../target/site",
      PORTOLAN_LOG: "warn",
      PORTOLAN_TESTBED_LISTEN: "127.0.0.1:0",
    },
  },
});
