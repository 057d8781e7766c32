// Every page of the desk, as Utente DiProva (demo card `diprova`) sees it: a breadth-first
// crawl of the same-origin links from `/` (GET only; forms are never submitted), each page
// checked by checkPage() in Italian and again with ?lang=en, plus the keyboard's first steps.
// Then the pages a visitor without a card sees, and the page a refused card gets.
//
// Before the crawl, the API puts a few practices on the desk (a draft, one accepted by the
// three institutions, one rejected by INAIL), so their lists and detail pages are reachable.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  apiAs,
  checkPage,
  launchBrowser,
  nameFor,
  pageProblems,
  newContext,
  newPage,
  portalUrl,
  url,
  visit,
} from './lib.mjs';

/** At most this many pages in the crawl (each also visited in English). */
const MAX_PAGES = 60;

/**
 * Pages under a practice (its task list, sections, review, receipt, export) are the same
 * templates for every practice: the crawl visits those of one practice of each kind only, so
 * that the practices the journeys leave on the desk do not crowd the other pages out. Every
 * practice's own page is visited (each shows another state of its recipients).
 */
const PER_PRACTICE_KIND = 1;
const ID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

/** `/pratiche/<id>/sezioni/seat?controlla=1` → `/pratiche/:id/sezioni/seat?controlla=1`; null for a page of no practice. */
function practiceKind(href) {
  const u = new URL(href);
  u.hash = '';
  u.searchParams.delete('lang');
  u.searchParams.sort();
  const kind = `${u.pathname}${u.search}`.replace(ID, ':id');
  return kind === `${u.pathname}${u.search}` || kind === '/pratiche/:id' ? null : kind;
}

const browser = await launchBrowser();
after(() => browser.close());

/** Utente DiProva's codice fiscale: born on 1 January 1980 in Rome. */
const DIPROVA = 'DPRTNT80A01H501Y';

function inDays(days) {
  const d = new Date(Date.now() + days * 86_400_000);
  const [y, m, day] = d.toLocaleDateString('sv-SE', { timeZone: 'Europe/Rome' }).split('-');
  return `${day}/${m}/${y}`;
}

function startData(workProcesses) {
  return {
    'business.name': 'Caffè DiProva',
    'business.tax_code': DIPROVA,
    'business.pec': 'caffe.diprova@pec.it',
    'business.ateco': '56.30.00',
    'business.start_date': inDays(5),
    'owner.given_name': 'Utente',
    'owner.surname': 'DiProva',
    'owner.tax_code': DIPROVA,
    'owner.birth_date': '01/01/1980',
    'owner.birth_place': 'Roma',
    'owner.residence': 'Via Roma 1, 00184 Roma',
    'seat.street': 'Via Nazionale',
    'seat.number': '10',
    'seat.cap': '00184',
    'seat.municipality': 'Roma',
    'seat.province': 'RM',
    'staff.employees': '0',
    'registro-imprese.activity_description': 'Bar e caffetteria',
    'inps.scheme': 'commercianti',
    'inps.family_collaborators': '0',
    'inail.work_processes': workProcesses,
    'inail.yearly_wages': '24.000,00',
  };
}

const FINAL = new Set(['accepted', 'rejected', 'failed']);

async function json(response, what) {
  const text = await response.text();
  assert.ok(response.ok(), `${what}: ${response.status()} ${text}`);
  return JSON.parse(text);
}

/** Creates and, unless `draftOnly`, submits a practice; waits until every recipient answered. */
async function seed(api, data, { draftOnly = false } = {}) {
  const service = 'avvio-ditta-individuale';
  const created = await json(await api.post('/api/v1/practices', { data: { service, data } }), 'create a draft');
  if (draftOnly) return created;
  await json(await api.post(`/api/v1/practices/${created.id}/submit`), `submit ${created.id}`);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const practice = await json(await api.get(`/api/v1/practices/${created.id}`), `read ${created.id}`);
    const states = (practice.deliveries ?? []).map((d) => d.state);
    if (states.length && states.every((s) => FINAL.has(s))) return practice;
    assert.ok(Date.now() < deadline, `practice ${created.id} still has deliveries ${states.join(', ')} after 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

before(async () => {
  const api = await apiAs('diprova');
  try {
    await seed(api, { 'business.name': 'Bozza di prova' }, { draftOnly: true });
    await seed(api, startData('Somministrazione di alimenti e bevande al banco'));
    // INAIL cannot classify the risk of these work processes: rejected, with the field at fault.
    await seed(api, startData('Attività da definire in seguito'));
    // A draft INAIL would refuse on receipt (too short a description): its check answers page
    // names the institution and the field, and the crawl checks that page too.
    await seed(api, startData('Bar'), { draftOnly: true });
  } finally {
    await api.dispose();
  }
});

const origin = new URL(portalUrl()).origin;

/** The crawl's key of a URL: no fragment, no `lang`, parameters sorted. */
function crawlKey(href) {
  const u = new URL(href);
  u.hash = '';
  u.searchParams.delete('lang');
  u.searchParams.sort();
  return `${u.pathname}${u.search}`;
}

function followable(href) {
  let u;
  try {
    u = new URL(href);
  } catch {
    return false;
  }
  if (u.origin !== origin) return false;
  const p = u.pathname;
  if (p.startsWith('/api/') || p.startsWith('/demo/') || p.startsWith('/static/')) return false;
  if (p === '/session' || p.startsWith('/session/')) return false;
  if (/logout/i.test(`${p}${u.search}`)) return false;
  return true;
}

/** Same-origin links of the page (anchors only: forms are never submitted). */
async function links(page) {
  const hrefs = await page.$$eval('a[href]:not([download]), area[href]:not([download])', (as) => as.map((a) => a.href));
  return hrefs.filter(followable);
}

/**
 * A linked page answers 200, or 422 when it shows what is wrong with the data (a section or
 * the check-answers page of an incomplete draft): never 401/403/404 (a broken link or a page
 * the holder may not see) nor 5xx.
 */
function assertShown(response, href) {
  assert.ok([200, 422].includes(response.status()), `${href} answered ${response.status()}`);
}

function isHtml(response) {
  return (response.headers()['content-type'] ?? '').startsWith('text/html');
}

/**
 * Opens a crawled link. A download (a receipt, an export) does not open as a page: it is only
 * checked to answer 200, and null is returned.
 */
async function open(page, href) {
  try {
    return await visit(page, href);
  } catch (error) {
    if (!/Download is starting/.test(error.message)) throw error;
    const answer = await page.request.get(href);
    assert.equal(answer.status(), 200, `the download ${href} answered ${answer.status()}`);
    return null;
  }
}

/** Pressing Tab first focuses the skip link, which is visible then; Enter moves to the content. */
async function keyboardProblems(page) {
  const problems = [];
  // A page answering a form with errors starts with the focus on its error summary.
  const onSummary = await page.evaluate(() => document.activeElement?.classList.contains('error-summary'));
  if (onSummary) return problems;
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => {
    const e = document.activeElement;
    const main = document.querySelector('main');
    const targets = [...new Set(['#contenuto', main && main.id ? `#${main.id}` : null].filter(Boolean))];
    const r = e.getBoundingClientRect();
    return {
      html: e.outerHTML.slice(0, 200),
      skip: e.tagName === 'A' && targets.includes(e.getAttribute('href')),
      visible: r.width > 1 && r.height > 1 && r.bottom > 0 && r.right > 0,
    };
  });
  if (!focused.skip) problems.push(`the first Tab focuses ${focused.html}, not the skip link`);
  else if (!focused.visible) problems.push('the skip link stays invisible when focused');
  if (focused.skip) {
    await page.keyboard.press('Enter');
    const inMain = await page.evaluate(() => {
      const main = document.querySelector('main');
      return !!main && (main === document.activeElement || main.contains(document.activeElement));
    });
    if (!inMain) problems.push('activating the skip link does not move the focus to the main content');
  }
  return problems;
}

/** How many focusable elements of a page the focus-contrast check visits with Tab. */
const FOCUS_STOPS = 25;

/**
 * Tabs through the first focusable elements: each must show a focus ring (an outline of at
 * least 2 px) whose colour reaches 3:1 against the background it is drawn on (the element's
 * own for a ring inside it, otherwise the nearest opaque background around it).
 */
async function focusContrastProblems(page) {
  // From the top of the page: the skip link, the header's links, then the content.
  await page.evaluate(() => document.querySelector('.skip-link')?.focus());
  const problems = [];
  const seen = new Set();
  for (let i = 0; i < FOCUS_STOPS; i++) {
    await page.keyboard.press('Tab');
    const ring = await page.evaluate(() => {
      const e = document.activeElement;
      if (!e || e === document.body) return null;
      const rgb = (c) => {
        const m = c.match(/rgba?\(([^)]+)\)/);
        if (!m) return null;
        const [r, g, b, a = '1'] = m[1].split(/[ ,/]+/).filter(Boolean);
        return { r: +r, g: +g, b: +b, a: +a };
      };
      const luminance = ({ r, g, b }) => {
        const lin = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
        return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
      };
      const style = getComputedStyle(e);
      const inside = parseFloat(style.outlineOffset) < 0;
      let at = inside ? e : e.parentElement;
      let background = null;
      while (at) {
        const c = rgb(getComputedStyle(at).backgroundColor);
        if (c && c.a > 0.5) { background = c; break; }
        at = at.parentElement;
      }
      background ??= { r: 255, g: 255, b: 255, a: 1 };
      const outline = rgb(style.outlineColor);
      const width = parseFloat(style.outlineWidth);
      const shown = style.outlineStyle !== 'none' && width >= 2 && outline;
      const [l1, l2] = shown ? [luminance(outline), luminance(background)].sort((x, y) => y - x) : [0, 0];
      return {
        key: e.outerHTML.slice(0, 120),
        shown: !!shown,
        ratio: shown ? (l1 + 0.05) / (l2 + 0.05) : 0,
        outline: style.outlineColor,
        background: `rgb(${background.r}, ${background.g}, ${background.b})`,
      };
    });
    if (!ring || seen.has(ring.key)) break;
    seen.add(ring.key);
    if (!ring.shown) problems.push(`no focus ring on ${ring.key}`);
    else if (ring.ratio < 3) {
      problems.push(`focus ring ${ring.outline} on ${ring.background} is ${ring.ratio.toFixed(2)}:1 (< 3:1) on ${ring.key}`);
    }
  }
  return problems;
}

/** checkPage plus the keyboard checks, reported together. */
async function checkAll(page, name, response, lang) {
  const problems = [];
  try {
    await checkPage(page, name, { response, lang });
  } catch (error) {
    problems.push(error.message);
  }
  const keys = await keyboardProblems(page);
  if (keys.length) problems.push(`${name} keyboard:\n- ${keys.join('\n- ')}`);
  const rings = await focusContrastProblems(page);
  if (rings.length) problems.push(`${name} focus:\n- ${rings.join('\n- ')}`);
  if (problems.length) throw pageProblems(problems.join('\n'));
}

describe('the desk of Utente DiProva (card diprova)', () => {
  let context;
  let page;
  const visited = [];

  before(async () => {
    context = await newContext(browser, 'diprova');
    page = await newPage(context);
  });
  after(() => context?.close());

  test('crawl from / in Italian', async (t) => {
    const queue = [url('/')];
    const seen = new Set([crawlKey(queue[0])]);
    const kinds = new Map();
    while (queue.length && visited.length < MAX_PAGES) {
      const href = queue.shift();
      const name = nameFor(href);
      visited.push(href);
      await t.test(`${new URL(href).pathname}${new URL(href).search}`, async () => {
        const response = await open(page, href);
        if (!response) return;
        if (isHtml(response)) {
          for (const link of await links(page)) {
            const key = crawlKey(link);
            const kind = practiceKind(link);
            if (!seen.has(key) && (kinds.get(kind) ?? 0) < (kind ? PER_PRACTICE_KIND : Infinity)) {
              seen.add(key);
              if (kind) kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
              const u = new URL(link);
              u.hash = '';
              u.searchParams.delete('lang');
              queue.push(u.href);
            }
          }
        }
        assertShown(response, href);
        if (isHtml(response)) await checkAll(page, name, response, 'it');
      });
    }
    const paths = visited.map((h) => new URL(h).pathname);
    const expectedPaths = ['/', '/servizi', '/pratiche', '/accessibilita', '/ricerca', '/deleghe', '/deleghe/nuova', '/deleghe/attivita'];
    for (const expected of expectedPaths) {
      assert.ok(paths.includes(expected), `the crawl did not reach ${expected} (visited: ${paths.join(', ')})`);
    }
    for (const [what, pattern] of [
      ["a practice's page", /^\/pratiche\/[^/]+$/],
      ["a service's page", /^\/servizi\/[^/]+$/],
      ["a service's help", /^\/aiuto\/servizi\/[^/]+$/],
      ["a draft's task list", /^\/pratiche\/[^/]+\/compila$/],
      ["a draft's section", /^\/pratiche\/[^/]+\/sezioni\/[^/]+$/],
      ["a draft's review", /^\/pratiche\/[^/]+\/riepilogo$/],
      ['a receipt', /^\/pratiche\/[^/]+\/ricevuta$/],
    ]) {
      assert.ok(paths.some((p) => pattern.test(p)), `the crawl reached no ${what} (visited: ${paths.join(', ')})`);
    }
    if (queue.length) t.diagnostic(`stopped at ${MAX_PAGES} pages; ${queue.length} more not visited`);
  });

  test('the same pages in English (?lang=en)', async (t) => {
    for (const href of visited) {
      const u = new URL(href);
      u.searchParams.set('lang', 'en');
      await t.test(`${u.pathname}${u.search}`, async () => {
        const response = await open(page, u.href);
        if (!response) return;
        assertShown(response, u.href);
        if (isHtml(response)) await checkAll(page, nameFor(u.href), response, 'en');
      });
    }
  });
});

describe('without a card', () => {
  let context;
  let page;

  before(async () => {
    context = await newContext(browser, null);
    page = await newPage(context);
  });
  after(() => context?.close());

  // Italian first: the language chosen with ?lang= is remembered for the next pages.
  for (const [path, status, lang] of [
    ['/', 401, 'it'],
    ['/accessibilita', 200, 'it'],
    ['/servizi', 200, 'it'],
    ['/?lang=en', 401, 'en'],
    ['/accessibilita?lang=en', 200, 'en'],
    ['/servizi?lang=en', 200, 'en'],
  ]) {
    test(`${path} answers ${status}`, async () => {
      const response = await visit(page, path);
      assert.equal(response.status(), status);
      await checkAll(page, `anonymous-${nameFor(path)}`, response, lang);
    });
  }

  test('the login page offers the demo card chooser', async () => {
    await visit(page, '/?lang=it');
    assert.equal(await page.locator('main a[href="/demo/cards"]').count(), 1);
  });

  test('the language chosen is kept on the next pages, and can be changed back', async () => {
    const fresh = await newContext(browser, null);
    try {
      const tab = await newPage(fresh);
      const lang = () => tab.evaluate(() => document.documentElement.lang);
      await visit(tab, '/accessibilita');
      assert.equal(await lang(), 'it');
      await visit(tab, '/accessibilita?lang=en');
      await visit(tab, '/servizi');
      assert.equal(await lang(), 'en');
      await visit(tab, '/servizi?lang=it');
      await visit(tab, '/accessibilita');
      assert.equal(await lang(), 'it');
    } finally {
      await fresh.close();
    }
  });
});

describe('a card the portal refuses (non-cns: no CNS policy)', () => {
  test('/ shows the login page with the reason', async () => {
    const context = await newContext(browser, 'non-cns');
    try {
      const page = await newPage(context);
      const response = await visit(page, '/');
      assert.equal(response.status(), 401);
      assert.equal(await page.locator('[role="alert"]').count(), 1, 'the refusal is announced');
      await checkAll(page, 'refused-card-home', response, 'it');
    } finally {
      await context.close();
    }
  });
});
