// The W3C Nu checker (vnu.jar from the vnu-jar package) on every page the other tests saved
// in artifacts/html/ (the raw HTML the server sent), and on every same-origin stylesheet those
// pages link, in ONE Java run. scripts/browser-test runs this file last.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { test } from 'node:test';
import vnuJar from 'vnu-jar';
import { artifactsDir, caPath, portalUrl } from './lib.mjs';

function get(href) {
  return new Promise((resolve, reject) => {
    https
      .get(href, { ca: readFileSync(caPath()), timeout: 10_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${href}: ${res.statusCode}`))));
      })
      .on('error', reject);
  });
}

test('the Nu checker finds no error in the pages and the stylesheets', async (t) => {
  const htmlDir = artifactsDir('html');
  const pages = readdirSync(htmlDir).filter((f) => f.endsWith('.html'));
  if (!pages.length) {
    t.skip('no page saved in artifacts/html: run the page tests first (scripts/browser-test does)');
    return;
  }

  // The stylesheets the pages link, fetched once each.
  const cssDir = artifactsDir('css');
  rmSync(cssDir, { recursive: true, force: true });
  artifactsDir('css');
  const origin = new URL(portalUrl()).origin;
  const sheets = new Set();
  for (const file of pages) {
    const html = readFileSync(path.join(htmlDir, file), 'utf8');
    for (const [tag] of html.matchAll(/<link\b[^>]*>/gi)) {
      if (!/\brel\s*=\s*["']?stylesheet/i.test(tag)) continue;
      const href = /\bhref\s*=\s*["']?([^"'\s>]+)/i.exec(tag)?.[1];
      if (!href) continue;
      const u = new URL(href, `${origin}/`);
      if (u.origin === origin) sheets.add(u.href);
    }
  }
  for (const href of sheets) {
    const name = new URL(href).pathname.replace(/^\/+/, '').replace(/[^A-Za-z0-9._-]+/g, '_');
    writeFileSync(path.join(cssDir, name.endsWith('.css') ? name : `${name}.css`), await get(href));
  }

  const run = spawnSync(
    'java',
    [
      '-jar',
      String(vnuJar),
      '--errors-only',
      '--no-langdetect',
      '--format',
      'json',
      '--stdout',
      '--also-check-css',
      htmlDir,
      cssDir,
    ],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  assert.equal(run.error, undefined, `could not run java: ${run.error}`);
  writeFileSync(path.join(artifactsDir(), 'nu.json'), run.stdout);
  let report;
  try {
    report = JSON.parse(run.stdout);
  } catch {
    assert.fail(`the Nu checker did not answer JSON (exit ${run.status}):\n${run.stdout}\n${run.stderr}`);
  }
  const problems = report.messages.filter((m) => m.type === 'error' || m.type === 'non-document-error');
  t.diagnostic(`checked ${pages.length} pages and ${sheets.size} stylesheet(s): ${[...sheets].join(', ')}`);
  const text = problems
    .map((m) => {
      const file = m.url ? path.relative(artifactsDir(), decodeURIComponent(new URL(m.url).pathname)) : '?';
      const where = m.lastLine ? `:${m.lastLine}:${m.firstColumn ?? m.lastColumn ?? ''}` : '';
      const extract = m.extract ? `\n    ${m.extract.replace(/\n/g, ' ')}` : '';
      return `  ${file}${where}: ${m.type}: ${m.message}${extract}`;
    })
    .join('\n');
  assert.equal(problems.length, 0, `the Nu checker found ${problems.length} error(s):\n${text}`);
});
