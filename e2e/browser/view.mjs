// Opens the subscription endpoint's browser view in Debian's Chromium and
// reports what a person would see. Driven by browser_test.go:
//
//   node view.mjs <page url> <text a row must contain> <screenshot path> [<text after a restart>]
//
// Prints "READY" once the page is subscribed (the test then produces
// records), "ROW: <cells>" for the first row containing the text, the
// counters, and saves a screenshot. With a fourth argument it then prints
// "RESTART" (the test restarts the endpoint and produces more) and waits
// for a row containing that text, which the page must get by resuming.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, want, shot, after] = process.argv.slice(2);
if (!url || !want || !shot) {
  console.error('usage: node view.mjs <url> <text> <screenshot.png>');
  process.exit(2);
}
const profile = mkdtempSync(join(tmpdir(), 'sluice-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 860 },
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => console.log('CONSOLE:', m.type(), m.text()));
  page.on('pageerror', (e) => console.log('PAGEERROR:', e.message));
  const failed = [];
  page.on('requestfailed', (r) => failed.push(r.url()));
  await page.goto(url);
  await page.waitForSelector('#status.live', { timeout: 20000 });
  console.log('READY');
  const row = page.locator('#rows tr', { hasText: want }).first();
  await row.waitFor({ timeout: 30000 });
  const cells = await row.locator('td').allInnerTexts();
  console.log('ROW: ' + cells.join('\t'));
  // Let a full second pass so the rate chart shows the burst.
  await page.waitForTimeout(1500);
  console.log('COUNT: ' + (await page.locator('#count').innerText()));
  console.log('POS: ' + (await page.locator('#pos').innerText()));
  console.log('ROWS: ' + (await page.locator('#rows tr').count()));
  console.log('CHART: ' + (await page.evaluate(() => {
    // How many pixels of the chart's line colour were drawn.
    const c = document.getElementById('chart');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] === 63 && d[i + 1] === 180 && d[i + 2] === 255) n++;
    return n;
  })));
  if (failed.length) console.log('FAILED REQUESTS: ' + failed.join(' '));
  await page.screenshot({ path: shot, fullPage: true });
  console.log('SCREENSHOT: ' + shot);
  if (after) {
    console.log('RESTART');
    const row2 = page.locator('#rows tr', { hasText: after }).first();
    await row2.waitFor({ timeout: 40000 });
    console.log('ROW2: ' + (await row2.locator('td').allInnerTexts()).join('\t'));
    await page.waitForTimeout(300);
    console.log('COUNT2: ' + (await page.locator('#count').innerText()));
    console.log('RECONNECTS: ' + (await page.locator('#reconnects').innerText()));
    console.log('STATUS: ' + (await page.locator('#status-text').innerText()));
    const shot2 = shot.replace(/\.png$/, '') + '-resumed.png';
    await page.screenshot({ path: shot2, fullPage: false });
    console.log('SCREENSHOT2: ' + shot2);
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
