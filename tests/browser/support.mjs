// What both browser scripts share: reading their settings, launching Debian's Chromium, logging
// steps, and failing with a clear message (plus a screenshot of every open page).

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const started = Date.now();

/** Prints a step with the seconds since the script started. */
export function step(message) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);
}

/** The environment variable `name`, or a failure naming it when it is unset and has no default. */
export function setting(name, fallback) {
  const value = process.env[name];
  if (value !== undefined && value !== '') return value;
  if (fallback !== undefined) return fallback;
  throw new Failure(`environment variable ${name} is required`);
}

/** A failed expectation: its message is what the run prints. */
export class Failure extends Error {}

/** Fails with `message` unless `condition` holds. */
export function expect(condition, message) {
  if (!condition) throw new Failure(message);
}

/** Failed expectations of steps that the rest does not depend on, reported together at the end. */
const deferred = [];

/**
 * Runs the independent check `body`; a failed expectation in it is reported at the end (the run
 * still fails) instead of stopping the steps after it, so they and their screenshots still run.
 */
export async function softly(body) {
  try {
    await body();
  } catch (error) {
    if (!(error instanceof Failure)) throw error;
    step(`FAILED (reported at the end): ${error.message}`);
    deferred.push(error.message);
  }
}

/** Awaits `promise`; on any error fails with `message` and the error's first line. */
export async function within(promise, message) {
  try {
    return await promise;
  } catch (error) {
    throw new Failure(`${message}: ${String(error.message || error).split('\n')[0]}`);
  }
}

/** Headless Chromium from `CHROMIUM` (default /usr/bin/chromium), as Debian's package installs it. */
export async function launch() {
  const executablePath = setting('CHROMIUM', '/usr/bin/chromium');
  expect(fs.existsSync(executablePath), `${executablePath} is missing: run scripts/setup-test-tools`);
  return chromium.launch({ executablePath, headless: true });
}

/**
 * Names `name` in SCREENSHOT_DIR/verified.txt: a screenshot taken once every expectation about its
 * page held, fit for the documentation even when a later, unrelated step fails.
 */
export function vouch(name) {
  fs.appendFileSync(path.join(setting('SCREENSHOT_DIR'), 'verified.txt'), `${name}\n`);
}

/** Screenshots go to `SCREENSHOT_DIR`; `shoot` saves one of the whole page and returns its path. */
export function screenshots() {
  const dir = setting('SCREENSHOT_DIR');
  fs.mkdirSync(dir, { recursive: true });
  return async (page, name) => {
    const file = path.join(dir, name);
    await page.screenshot({ path: file, fullPage: true });
    step(`screenshot ${file}`);
    return file;
  };
}

/** Records what a page logs as errors, so a failure can say why (a CORS refusal, a script error). */
export function watch(page, label, log) {
  page.on('console', (message) => {
    if (message.type() === 'error') log.push(`${label} console: ${message.text()}`);
  });
  page.on('pageerror', (error) => log.push(`${label} page error: ${error.message}`));
  page.on('requestfailed', (request) => log.push(`${label} request failed: ${request.method()} ${request.url()} (${request.failure()?.errorText})`));
}

/**
 * Runs `body(browser)`; on failure prints the message, every open page's URL and text, the pages'
 * errors, saves a screenshot of each page (`failure-<n>.png`) and exits 1.
 */
export async function run(body) {
  const errors = [];
  const browser = await launch();
  try {
    await body(browser, errors);
    if (deferred.length === 1) throw new Failure(deferred[0]);
    if (deferred.length > 1) throw new Failure(`${deferred.length} expectations failed:\n  ${deferred.join('\n  ')}`);
    step('all expectations met');
  } catch (error) {
    console.error(`\nFAILED: ${error instanceof Failure ? error.message : error.stack || error}`);
    let index = 0;
    for (const context of browser.contexts()) {
      for (const page of context.pages()) {
        index += 1;
        const text = await page.locator('body').innerText({ timeout: 1000 }).catch(() => '(no text)');
        console.error(`page ${index}: ${page.url()}\n  ${text.replace(/\s+/g, ' ').slice(0, 600)}`);
        const dir = process.env.SCREENSHOT_DIR;
        if (dir) {
          await page.screenshot({ path: path.join(dir, `failure-${index}.png`), fullPage: true }).catch(() => {});
        }
      }
    }
    if (errors.length) console.error(`what the pages reported:\n  ${errors.join('\n  ')}`);
    await browser.close().catch(() => {});
    process.exit(1);
  }
  await browser.close();
}
