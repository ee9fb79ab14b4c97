// Drives Darkroom's page in headless Chromium (the system's, by
// playwright-core) against a running app, as a person would:
//
//   node tests/browser/page.mjs BASE_URL PHOTO_PATH SCREENSHOT_DIR
//
// It picks a photograph through the file input and waits for its card to
// reach `completed` with the thumbnail rendered (natural width 200), checks
// that the card showed the job unfinished first and followed its event
// stream (server-sent events), picks a text file named
// `.jpg` and expects the 415 message, checks the controls are labelled and
// reachable by keyboard on a narrow screen, and that the console stayed
// clean. Prints one JSON line with what it saw; exits 1 on the first
// failed expectation.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, photo, shots] = process.argv.slice(2);
if (!base || !photo || !shots) {
  console.error("usage: node page.mjs BASE_URL PHOTO_PATH SCREENSHOT_DIR");
  process.exit(2);
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const seen = {};
try {
  // A phone-sized window: the page must work on a narrow screen.
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // The browser itself logs the expected 415 as a failed resource load.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
      problems.push(`console: ${m.text()}`);
    }
  });
  await page.goto(`${base}/`);

  const picker = page.getByLabel("Choose images");
  expect(await picker.count() === 1, "the file input has the label 'Choose images'");
  expect(await page.getByLabel("Image URL").count() === 1, "the URL field is labelled");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement?.id);
  expect(["file", "url"].includes(focused), `Tab reaches the controls (focused: ${focused})`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow <= 0, `no horizontal scrolling on a narrow screen (${overflow}px too wide)`);

  await picker.setInputFiles(photo);
  const card = page.locator(".card").first();
  await card.locator("img.thumbnail").waitFor({ timeout: 90_000 });
  await page.waitForFunction(() => {
    const img = document.querySelector(".card img.thumbnail");
    return img && img.complete && img.naturalWidth > 0;
  }, null, { timeout: 30_000 });
  seen.state = await card.getAttribute("data-state");
  seen.states = (await card.getAttribute("data-seen")).split(" ");
  seen.thumbnailWidth = await card.locator("img.thumbnail").evaluate((img) => img.naturalWidth);
  seen.events = Number(await card.getAttribute("data-events"));
  seen.rows = await card.locator("table tr").count();
  expect(seen.state === "completed", `the card is completed (${seen.state})`);
  expect(seen.thumbnailWidth === 200, `the thumbnail is 200 px wide (${seen.thumbnailWidth})`);
  expect(seen.states[0] !== "completed" && seen.states.includes("completed"),
    `the card showed the job unfinished before completed (${seen.states.join(" → ")})`);
  expect(seen.events >= 5, `the card followed the event stream: queued, processing, three outputs, completed (${seen.events} events)`);
  expect(seen.rows === 5, `a size row for the original and each output (${seen.rows} rows)`);
  expect(await card.getByRole("link", { name: "thumbnail" }).count() === 1, "a download link per file");
  expect(await card.getByRole("button", { name: "Delete" }).count() === 1, "a delete button");

  await picker.setInputFiles({ name: "notes.jpg", mimeType: "image/jpeg", buffer: Buffer.from("these are notes, not a photo\n") });
  const refused = page.locator(".card").first();
  await refused.locator(".error").waitFor({ timeout: 30_000 });
  seen.refusal = await refused.locator(".error").textContent();
  expect(seen.refusal.includes("not an image Darkroom can read"), `the 415 is shown in plain words (${seen.refusal})`);
  expect(seen.refusal.includes("supported formats"), `with the problem's detail (${seen.refusal})`);

  mkdirSync(shots, { recursive: true });
  seen.screenshot = join(shots, "page.png");
  await page.screenshot({ path: seen.screenshot, fullPage: true });

  const docs = await browser.newPage();
  docs.on("pageerror", (e) => problems.push(`docs page error: ${e.message}`));
  await docs.goto(`${base}/api/docs`);
  await docs.getByRole("heading", { name: "POST /api/images", exact: true }).waitFor({ timeout: 10_000 });

  expect(problems.length === 0, `no console errors: ${problems.join("; ")}`);
  console.log(JSON.stringify({ ok: true, ...seen }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: e.message, ...seen }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
