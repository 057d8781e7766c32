// Helpers of Sportello's browser tests: Debian's chromium driven by playwright-core, logged in
// with a demo smart card; per page, screenshots at 1280 and 320 px, axe-core (WCAG 2.1 A and
// AA) and the raw HTML saved for the W3C Nu checker (markup.test.mjs validates every saved
// page in one JVM run at the end).
//
// The tests run against a demo started by scripts/browser-test, which sets:
//   SPORTELLO_URL          the portal, e.g. https://localhost:40123
//   SPORTELLO_DATA_DIR     the demo's data folder (cards/<slug>.pem, cards/<slug>-key.pem, pki/ca.pem)
//   SPORTELLO_SIMULATORS   JSON object: institution id -> simulator URL (https://127.0.0.1:PORT)
//   SPORTELLO_ARTIFACTS    where screenshots and reports go (default: tests/browser/artifacts)
//   SPORTELLO_CHROMIUM     the browser (default: /usr/bin/chromium)

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, request as playwrightRequest } from 'playwright-core';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the browser tests with scripts/browser-test`);
  return value;
}

/** The portal's origin, e.g. `https://localhost:40123` (no trailing slash). */
export function portalUrl() {
  return env('SPORTELLO_URL').replace(/\/+$/, '');
}

/** An absolute portal URL for `path` (`/servizi`, `/pratiche?stato=bozza`, ...). */
export function url(pathAndQuery = '/') {
  return new URL(pathAndQuery, `${portalUrl()}/`).href;
}

export function dataDir() {
  return env('SPORTELLO_DATA_DIR');
}

export function artifactsDir(...sub) {
  const dir = path.join(process.env.SPORTELLO_ARTIFACTS || path.join(here, 'artifacts'), ...sub);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** The PEM files of a demo card (`diprova`, `bianco`, `verdi`, `scaduta`, `revocata`, ...). */
export function card(slug) {
  return {
    certPath: path.join(dataDir(), 'cards', `${slug}.pem`),
    keyPath: path.join(dataDir(), 'cards', `${slug}-key.pem`),
  };
}

/** The demo certification authority (it signed the portal's and the simulators' certificates). */
export function caPath() {
  return path.join(dataDir(), 'pki', 'ca.pem');
}

// Without the background-networking switches chromium keeps trying to reach Google's
// services, which this machine's closed network refuses over and over.
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Starts Debian's chromium (never a browser downloaded by playwright). One per test file. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.SPORTELLO_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/**
 * A browser context (a fresh profile): logged in with the demo card `slug` through the TLS
 * handshake, or anonymous when `slug` is null. Italian by default, as a browser in Italy sends
 * `Accept-Language: it-IT`; pass `{ locale: 'en-GB' }` or use `?lang=en` for English.
 *
 * `ignoreHTTPSErrors`: the portal's certificate comes from the demo's throw-away CA, which
 * chromium does not know; the card itself is still checked by the portal as in production.
 */
export async function newContext(browser, slug = 'diprova', options = {}) {
  const clientCertificates = slug ? [{ origin: portalUrl(), ...card(slug) }] : [];
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    locale: 'it-IT',
    timezoneId: 'Europe/Rome',
    viewport: { width: 1280, height: 800 },
    clientCertificates,
    ...options,
  });
  // A missing button or label fails in 10 s rather than playwright's 30.
  context.setDefaultTimeout(10_000);
  return context;
}

// What went wrong on a page between two checks: same-origin subresources that failed, and
// console errors (a CSP violation shows up there).
const trouble = new WeakMap();
// The last document each page received (after a click or a form sent too), for checkPage.
const lastDocument = new WeakMap();

/** A new tab in `context`, watched for failed subresources and console errors. */
export async function newPage(context) {
  const page = await context.newPage();
  const found = [];
  trouble.set(page, found);
  page.on('console', (message) => {
    // The main document's own 4xx (the login page is a 401) is logged as "Failed to load
    // resource"; failed subresources are caught below with their URL instead.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      found.push(`console error: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => found.push(`script error: ${error.message}`));
  // What the previous page left behind is not the new page's fault.
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) found.length = 0;
  });
  page.on('requestfailed', (req) => {
    // A navigation that fails says so itself (page.goto throws). ERR_ABORTED is the browser
    // giving up a request on leaving the page (a live-update stream, a download); a missing
    // resource answers 4xx instead and is caught below.
    if (req.isNavigationRequest() && req.frame() === page.mainFrame()) return;
    if (req.failure()?.errorText === 'net::ERR_ABORTED') return;
    found.push(`request failed: ${req.method()} ${req.url()}: ${req.failure()?.errorText}`);
  });
  page.on('response', (response) => {
    const req = response.request();
    if (req.isNavigationRequest() && req.frame() === page.mainFrame()) {
      lastDocument.set(page, response);
      return;
    }
    if (response.status() >= 400) found.push(`subresource ${response.status()}: ${req.url()}`);
  });
  return page;
}

/** Opens `pathOrUrl` and returns the navigation's response (keep it for checkPage). */
export async function visit(page, pathOrUrl) {
  const response = await page.goto(url(pathOrUrl), { waitUntil: 'load' });
  assert.ok(response, `no response for ${pathOrUrl}`);
  return response;
}

/** A file-name-safe name for a URL: `/pratiche?stato=bozza` → `pratiche_stato-bozza`. */
export function nameFor(pageUrl) {
  const u = new URL(pageUrl, `${portalUrl()}/`);
  const raw = `${u.pathname.replace(/^\/+/, '') || 'home'}${u.search}`;
  return raw
    .replace(/[?&]/g, '_')
    .replace(/=/g, '-')
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/_+/g, '_')
    .replace(/_$/, '')
    .slice(0, 120);
}

const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
let axeSource;

/**
 * Runs axe-core on the page (WCAG 2.0/2.1 A and AA rules) and returns its violations.
 *
 * The portal's CSP (`default-src 'self'`) blocks inline scripts, and page.addScriptTag()
 * inserts the file's text as an inline <script>, so it is refused. page.evaluate() goes
 * through the DevTools protocol, which the page's CSP does not govern, so axe is injected
 * that way (as @axe-core/playwright does). The context keeps its CSP: nothing is bypassed
 * for the pages themselves.
 */
export async function runAxe(page) {
  axeSource ??= readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) {
    await page.evaluate(axeSource);
  }
  const results = await page.evaluate(
    (tags) => window.axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] }),
    AXE_TAGS,
  );
  return results.violations;
}

/** axe violations as text a person can act on. */
export function formatAxe(violations) {
  return violations
    .map((v) => {
      const nodes = v.nodes
        .map((n) => {
          const summary = n.failureSummary.replace(/\n/g, '\n      ');
          return `    at ${n.target.join(' ')}\n      ${n.html}\n      ${summary}`;
        })
        .join('\n');
      return `  axe ${v.id} (${v.impact}): ${v.help}\n    ${v.helpUrl}\n${nodes}`;
    })
    .join('\n');
}

/** Checks that need no interaction: language, one h1, the main landmark and its skip link. */
export async function structure(page) {
  return page.evaluate(() => {
    const main = document.querySelector('main');
    const targets = [...new Set(['#contenuto', main && main.id ? `#${main.id}` : null].filter(Boolean))];
    const focusable = [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')].filter(
      (e) => e.tabIndex >= 0 && !e.disabled,
    );
    const first = focusable[0];
    return {
      lang: document.documentElement.getAttribute('lang'),
      h1: document.querySelectorAll('h1').length,
      mains: document.querySelectorAll('main, [role="main"]').length,
      skipTargets: targets,
      firstFocusable: first ? first.outerHTML.slice(0, 200) : null,
      firstIsSkipLink: !!first && first.tagName === 'A' && targets.includes(first.getAttribute('href')),
      skipTargetExists: targets.some((t) => document.querySelector(t)),
      // In-page links (an error summary's links to its fields, a table of contents) that lead nowhere.
      brokenFragments: [...document.querySelectorAll('a[href^="#"]')]
        .map((a) => a.getAttribute('href'))
        .filter((href) => {
          if (href.length < 2) return false;
          const id = decodeURIComponent(href.slice(1));
          return !document.getElementById(id) && document.getElementsByName(id).length === 0;
        }),
      title: document.title,
    };
  });
}

/**
 * Every check a page gets, collected and reported together:
 *  - the raw HTML as the server sent it saved to artifacts/html/<name>.html (for the Nu
 *    checker, run once for all pages by markup.test.mjs);
 *  - html[lang] is `lang` (default: `en` with ?lang=en in the URL, else `it`), a title,
 *    exactly one h1, one main landmark, a skip link to it as the first focusable element, and
 *    every in-page link (`#id`) leads to an element;
 *  - full-page screenshots at 1280 and 320 px (artifacts/screenshots/<name>-{1280,320}.png),
 *    and no horizontal scroll at 320 px (WCAG 1.4.10 reflow);
 *  - axe-core finds no WCAG 2.1 A/AA violation at either width (artifacts/axe/<name>.json
 *    when it does);
 *  - no failed subresource and no console error (pages opened with newPage()).
 *
 * `response` is the navigation's response (from visit() or page.goto()); without it, the
 * last document the page received is used (pages opened with newPage(), also after a click
 * or a form sent), or else the current URL is fetched again with the context's card and
 * cookies.
 */
export async function checkPage(page, name, { response, lang } = {}) {
  const problems = [];
  const pageUrl = page.url();
  name = name.replace(/[^A-Za-z0-9._-]+/g, '_');

  // (c) the server's HTML, not the DOM serialisation.
  const withoutHash = (u) => u.split('#')[0];
  response ??= lastDocument.get(page);
  let raw;
  if (response && withoutHash(response.url()) === withoutHash(pageUrl)) {
    raw = await response.text().catch(() => undefined);
  }
  raw ??= await (await page.request.get(pageUrl)).text();
  writeFileSync(path.join(artifactsDir('html'), `${name}.html`), raw);

  const s = await structure(page);
  const wantLang = lang ?? (new URL(pageUrl).searchParams.get('lang') === 'en' ? 'en' : 'it');
  if (s.lang !== wantLang) problems.push(`html[lang] is ${JSON.stringify(s.lang)}, expected "${wantLang}"`);
  if (!s.title.trim()) problems.push('empty <title>');
  if (s.h1 !== 1) problems.push(`${s.h1} h1 elements, expected exactly 1`);
  if (s.mains !== 1) problems.push(`${s.mains} main landmarks, expected exactly 1`);
  if (!s.firstIsSkipLink) {
    const to = s.skipTargets.join(' or ');
    problems.push(`the first focusable element is not a skip link to ${to}: ${s.firstFocusable}`);
  }
  if (!s.skipTargetExists) problems.push(`the skip link's target ${s.skipTargets.join(' or ')} is missing`);
  if (s.brokenFragments.length) problems.push(`in-page links to nothing: ${s.brokenFragments.join(', ')}`);

  // (a) screenshots; reflow at 320 px.
  const viewport = page.viewportSize() ?? { width: 1280, height: 800 };
  const shots = artifactsDir('screenshots');
  try {
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.screenshot({ path: path.join(shots, `${name}-1280.png`), fullPage: true });

    // (b) axe, at both widths: some rules (a table that scrolls sideways on a phone, hidden
    // menus) only apply to the narrow layout.
    const axeFound = { 1280: await runAxe(page) };
    await page.setViewportSize({ width: 320, height: 640 });
    const widths = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      client: document.documentElement.clientWidth,
      wide: [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
        .slice(0, 5)
        .map((e) => {
          const id = e.id ? `#${e.id}` : '';
          const classes = e.className ? `.${String(e.className).trim().split(/\s+/).join('.')}` : '';
          const text = e.textContent.trim().replace(/\s+/g, ' ').slice(0, 40);
          const right = Math.round(e.getBoundingClientRect().right);
          return `<${e.tagName.toLowerCase()}${id}${classes}> "${text}" right=${right}`;
        }),
    }));
    await page.screenshot({ path: path.join(shots, `${name}-320.png`), fullPage: true });
    if (widths.scroll > 320 + 1) {
      problems.push(`horizontal scroll at 320 px: scrollWidth ${widths.scroll}; too wide: ${widths.wide.join(', ')}`);
    }
    axeFound[320] = await runAxe(page);
    const count = axeFound[1280].length + axeFound[320].length;
    if (count) {
      writeFileSync(path.join(artifactsDir('axe'), `${name}.json`), JSON.stringify(axeFound, null, 2));
      for (const width of [1280, 320]) {
        if (axeFound[width].length) {
          problems.push(`${axeFound[width].length} axe violation(s) at ${width} px:\n${formatAxe(axeFound[width])}`);
        }
      }
    }
  } finally {
    await page.setViewportSize(viewport);
  }

  const found = trouble.get(page);
  if (found?.length) problems.push(...found.splice(0));

  if (problems.length) throw pageProblems(`${name} (${pageUrl}):\n- ${problems.join('\n- ')}`);
}

/**
 * An error that reads as a list of a page's problems: the test report shows the message
 * without a long stack trace.
 */
export function pageProblems(message) {
  const error = new Error(message);
  error.stack = `${message}\n    at the page checks (tests/browser/lib.mjs)`;
  return error;
}

/**
 * The JSON API as the holder of card `slug` (for setting up data before a page test):
 * `const api = await apiAs('diprova'); await api.post('/api/v1/practices', { data: {...} })`.
 * Dispose of it with `api.dispose()`.
 */
export async function apiAs(slug = 'diprova') {
  return playwrightRequest.newContext({
    baseURL: portalUrl(),
    ignoreHTTPSErrors: true,
    clientCertificates: [{ origin: portalUrl(), ...card(slug) }],
    extraHTTPHeaders: { accept: 'application/json' },
  });
}

/** The simulator URLs by institution id (`inps`, `inail`, `registro-imprese`). */
export function simulators() {
  return JSON.parse(env('SPORTELLO_SIMULATORS'));
}

function simulatorCall(id, method, body) {
  const base = simulators()[id];
  if (!base) throw new Error(`no simulated institution ${id}; known: ${Object.keys(simulators()).join(', ')}`);
  const target = new URL('/_sim/behaviour', base);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request(
      target,
      {
        method,
        ca: readFileSync(caPath()),
        headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
        timeout: 10_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`${method} ${target}: ${res.statusCode} ${text}`));
          else resolve(JSON.parse(text));
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${target}: timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** A simulated institution's current behaviour (`GET /_sim/behaviour`). */
export function simulatorBehaviour(id) {
  return simulatorCall(id, 'GET');
}

/** Replaces a simulated institution's behaviour (`PUT /_sim/behaviour`). */
export function setSimulatorBehaviour(id, behaviour) {
  return simulatorCall(id, 'PUT', behaviour);
}

/**
 * Runs `fn` with institution `id` changed by `patch` (e.g. `{ down: true }`), and puts the
 * behaviour back afterwards, whatever happens.
 */
export async function withSimulator(id, patch, fn) {
  const before = await simulatorBehaviour(id);
  await setSimulatorBehaviour(id, { ...before, ...patch });
  try {
    return await fn();
  } finally {
    await setSimulatorBehaviour(id, before);
  }
}

/** The date `days` from today in Rome, as the forms want it: `dd/mm/yyyy`. */
export function inDays(days) {
  const d = new Date(Date.now() + days * 86_400_000);
  const [y, m, day] = d.toLocaleDateString('sv-SE', { timeZone: 'Europe/Rome' }).split('-');
  return `${day}/${m}/${y}`;
}

/**
 * Polls `probe` (an async function) every `interval` ms until it returns something truthy,
 * and returns that; after `timeout` ms fails with `what` and the last value seen (as
 * `describe(value)`), like an expect() that retries.
 */
export async function waitUntil(probe, { timeout = 20_000, interval = 250, what = 'the condition', describe } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) {
      const seen = describe ? describe(last) : JSON.stringify(last);
      throw new Error(`waited ${timeout / 1000} s for ${what}; last seen: ${seen}`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/**
 * checkPage for a journey: every page is checked, but a page's problems do not stop the
 * journey; they are collected and `assertClean()` reports all of them at the end, so one
 * test run shows both what the person could not do and every page that is not accessible.
 */
export class PageChecks {
  constructor(prefix) {
    this.prefix = prefix;
    this.problems = [];
    this.names = new Set();
  }

  /** checkPage(page, `<prefix>-<name>`, options), its failure kept for assertClean(). */
  async check(page, name, options = {}) {
    const full = `${this.prefix}-${name}`;
    assert.ok(!this.names.has(full), `checked twice under the name ${full}`);
    this.names.add(full);
    try {
      await checkPage(page, full, options);
    } catch (error) {
      this.problems.push(error.message);
    }
  }

  /** Another problem of a page (what the journey expected to see), reported with the rest. */
  fail(name, message) {
    this.problems.push(`${this.prefix}-${name}: ${message}`);
  }

  assertClean() {
    if (this.problems.length) throw pageProblems(this.problems.join('\n'));
  }
}

/**
 * Clicks `locator` (a link, or a form's button) and waits for the page it leads to; returns
 * that page's response (after redirects: a form's POST answered 303 gives the page shown).
 */
export async function clickThrough(page, locator) {
  const [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), locator.click()]);
  assert.ok(response, `clicking ${locator} loaded no page`);
  return response;
}
