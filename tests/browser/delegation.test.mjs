// Sub-delegation in the browser: Utente DiProva (card `diprova`) grants Stefania Bianco (card
// `bianco`) his three institutions for his own business and one service, for a month; each
// institution confirms; she acts on his behalf (the banner says so on every page) and starts
// a practice; he revokes, and her very next page is refused with the reason. The acts she did
// in his name are in his "Attività svolte per tuo conto".
//
// Two browser contexts, one per card; every page shown goes through checkPage, its problems
// collected and reported at the end so that they do not hide what comes after.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { PageChecks, clickThrough, inDays, launchBrowser, newContext, newPage, visit, waitUntil } from './lib.mjs';

const browser = await launchBrowser();
after(() => browser.close());

const DIPROVA = 'DPRTNT80A01H501Y';
const BIANCO = 'BNCSFN85T58G702W';
const SERVICE = 'avvio-ditta-individuale';
const SERVICE_TITLE = 'Avvio di una ditta individuale';
const INSTITUTIONS = [
  'Registro delle imprese (Camera di commercio)',
  'INPS - Istituto Nazionale della Previdenza Sociale',
  'INAIL - Istituto Nazionale Assicurazione Infortuni sul Lavoro',
];
const BANNER = `Stai operando per conto di ${DIPROVA}, con una delega.`;

const mainMenu = (page) => page.getByRole('navigation', { name: 'Menu principale' });
const menuLink = (page, name) => mainMenu(page).getByRole('link', { name, exact: true });
const button = (page, name) => page.getByRole('button', { name, exact: true });
const link = (page, name) => page.getByRole('link', { name, exact: true });
const h1 = (page) => page.locator('h1').innerText();
const path = (page) => new URL(page.url()).pathname;

/** A delegation's card on /deleghe: its standing and each institution's outcome. */
async function delegationCard(page, heading) {
  // The heading may end with the "in uso" tag.
  const card = page.locator('article.card').filter({ has: page.locator('h3', { hasText: heading }) });
  if ((await card.count()) !== 1) return null;
  const outcomes = await card.locator('tbody tr').evaluateAll((trs) =>
    trs.map((tr) => ({
      institution: tr.querySelector('th').textContent.trim(),
      state: tr.querySelector('.tag').textContent.trim(),
      detail: tr.querySelector('td:last-child').textContent.trim(),
    })),
  );
  const summary = await card.locator('dl.summary').evaluate((dl) =>
    Object.fromEntries([...dl.querySelectorAll('dt')].map((dt) => [dt.textContent.trim(), dt.nextElementSibling.textContent.trim()])),
  );
  return { standing: summary.Stato, summary, outcomes };
}

const allActive = (card) =>
  card &&
  card.outcomes.length === INSTITUTIONS.length &&
  card.outcomes.every((o) => o.state === 'attiva' && /^riferimento dell'ente \S+/.test(o.detail));

/** The acting banner on the page shown, if any. */
async function banner(page) {
  const note = page.locator('.acting-banner');
  return (await note.count()) ? (await note.innerText()).replace(/\s+/g, ' ').trim() : null;
}

test('Utente DiProva delegates Stefania Bianco, who acts on his behalf until he revokes', async () => {
  const checks = new PageChecks('delegation');
  const grantor = await newContext(browser, 'diprova');
  const delegate = await newContext(browser, 'bianco');
  try {
    // --- Utente DiProva grants -----------------------------------------------------------
    const his = await newPage(grantor);
    let response = await visit(his, '/');
    assert.equal(response.status(), 200);
    await clickThrough(his, menuLink(his, 'Deleghe'));
    assert.equal(path(his), '/deleghe');
    assert.equal(await h1(his), 'Deleghe ai collaboratori');
    await checks.check(his, 'grantor-list-before');
    await clickThrough(his, link(his, 'Concedi una delega'));
    assert.equal(path(his), '/deleghe/nuova');
    assert.equal(await his.getByLabel('Valida dal', { exact: true }).inputValue(), inDays(0), 'valid from today');
    await checks.check(his, 'grantor-form');

    await his.getByLabel('Nome e cognome del collaboratore', { exact: true }).fill('Stefania Bianco');
    await his.getByLabel('Codice fiscale del collaboratore', { exact: true }).fill(BIANCO);
    const institutions = his.getByRole('group', { name: 'Enti', exact: true });
    for (const name of INSTITUTIONS) await institutions.getByLabel(name, { exact: true }).check();
    await his.getByRole('group', { name: 'Imprese', exact: true }).getByLabel(DIPROVA).check();
    await his.getByRole('group', { name: 'Servizi', exact: true }).getByLabel(SERVICE_TITLE, { exact: true }).check();
    await his.getByLabel('Valida fino al (compreso)', { exact: true }).fill(inDays(30));
    response = await clickThrough(his, button(his, 'Concedi la delega'));
    assert.equal(response.status(), 200, `granting answered ${response.status()}: ${await his.locator('main').innerText()}`);
    assert.equal(path(his), '/deleghe');
    assert.equal(
      await his.locator('[role="status"]').innerText(),
      'Delega concessa: ogni ente coinvolto la riceve e ne comunica l\'esito qui sotto.',
    );
    // Each institution answers in its own time; the list shows it on the next visit.
    let granted = await waitUntil(
      async () => {
        const card = await delegationCard(his, `Delega a Stefania Bianco (${BIANCO})`);
        if (allActive(card)) return card;
        await his.reload();
        return null;
      },
      { timeout: 20_000, interval: 500, what: 'the three institutions to activate the delegation' },
    );
    assert.equal(granted.standing, 'valida');
    assert.equal(granted.summary['Validità'], `dal ${inDays(0)} al ${inDays(30)}`);
    assert.equal(granted.summary.Imprese, DIPROVA);
    assert.equal(granted.summary.Servizi, SERVICE_TITLE);
    assert.deepEqual(granted.outcomes.map((o) => o.institution).sort(), [...INSTITUTIONS].sort());
    await checks.check(his, 'grantor-list-granted');

    // --- Stefania Bianco acts on his behalf ----------------------------------------------
    const hers = await newPage(delegate);
    // Acting for him, every page says so (a missing banner is reported at the end).
    const expectBanner = async (name) => {
      const seen = await banner(hers);
      if (!seen?.startsWith(BANNER)) {
        checks.fail(name, `no banner "${BANNER}" while acting on his behalf (${hers.url()}): ${seen ?? 'none'}`);
      }
    };
    response = await visit(hers, '/');
    assert.equal(response.status(), 200);
    assert.equal(await banner(hers), null, 'acting for herself: no banner');
    assert.match(await hers.locator('main .lead').innerText(), /^Benvenuta, Stefania Bianco/, 'a greeting that fits her');
    const icon = await hers.request.get(new URL('/favicon.ico', hers.url()).href);
    assert.equal(icon.headers()['content-type'], 'image/svg+xml', 'the browser finds a favicon');
    await clickThrough(hers, menuLink(hers, 'Deleghe'));
    const received = await delegationCard(hers, `Delega da ${DIPROVA}`);
    assert.ok(allActive(received), `her received delegation: ${JSON.stringify(received)}`);
    await checks.check(hers, 'delegate-list');
    await clickThrough(hers, button(hers, `Opera per conto del delegante ${DIPROVA}`));
    assert.equal(path(hers), '/');
    await expectBanner('delegate-acting-desk');
    assert.equal(
      await hers.locator('.acting-banner').getByRole('link', { name: 'Cambia o smetti' }).getAttribute('href'),
      '/deleghe',
    );
    await checks.check(hers, 'delegate-acting-desk');

    await clickThrough(hers, menuLink(hers, 'Servizi integrati'));
    await expectBanner('delegate-acting-catalog');
    await checks.check(hers, 'delegate-acting-catalog');
    await clickThrough(hers, link(hers, SERVICE_TITLE));
    assert.equal(path(hers), `/servizi/${SERVICE}`);
    await expectBanner('delegate-acting-service');
    await checks.check(hers, 'delegate-acting-service');
    await hers.getByLabel('Impresa', { exact: true }).selectOption(DIPROVA);
    response = await clickThrough(hers, button(hers, 'Inizia la compilazione'));
    assert.equal(response.status(), 200, `starting answered ${response.status()}: ${await h1(hers)}`);
    const tasksPath = path(hers);
    assert.match(tasksPath, /^\/pratiche\/[^/]+\/compila$/);
    assert.equal(await h1(hers), SERVICE_TITLE);
    await expectBanner('delegate-acting-tasks');
    await checks.check(hers, 'delegate-acting-tasks');
    await clickThrough(hers, link(hers, "L'impresa"));
    assert.equal(
      await hers.getByLabel("Codice fiscale dell'impresa", { exact: true }).inputValue(),
      DIPROVA,
      'the draft is for his business',
    );
    await expectBanner('delegate-acting-section');
    await checks.check(hers, 'delegate-acting-section');
    await clickThrough(hers, menuLink(hers, 'Le mie pratiche'));
    // The list opens on a tab with practices: her draft is in his drafts.
    assert.equal(await h1(hers), 'Pratiche in bozza');
    const practiceHref = tasksPath.replace(/\/compila$/, '');
    assert.equal(await hers.locator(`main table a[href="${practiceHref}"]`).count(), 1, 'her draft is in his drafts');
    await expectBanner('delegate-acting-drafts');
    await checks.check(hers, 'delegate-acting-drafts');

    // --- he revokes; her next page is refused ------------------------------------------
    await clickThrough(his, menuLink(his, 'Deleghe'));
    // Revoking asks first, saying what it does; then it takes effect.
    response = await clickThrough(his, button(his, `Revoca la delega Stefania Bianco (${BIANCO})`));
    assert.equal(await h1(his), `Revocare la delega a Stefania Bianco (${BIANCO})?`);
    assert.match(await his.locator('main').innerText(), /non si può annullare/);
    await checks.check(his, 'revoke-confirm', { response });
    response = await clickThrough(his, button(his, 'Sì, revoca la delega'));
    assert.equal(response.status(), 200);
    assert.equal(
      await his.locator('[role="status"]').innerText(),
      'Delega revocata: ha effetto subito, e la revoca è comunicata agli enti.',
    );
    const revoked = await delegationCard(his, `Delega a Stefania Bianco (${BIANCO})`);
    assert.equal(revoked?.standing, 'revocata');
    assert.equal(await his.getByRole('button', { name: `Revoca la delega Stefania Bianco (${BIANCO})` }).count(), 0);
    await checks.check(his, 'grantor-list-revoked');

    response = await visit(hers, tasksPath);
    assert.equal(response.status(), 403, 'the very next request after the revocation is refused');
    assert.equal(await h1(hers), 'Fuori dalla delega');
    assert.equal(
      await hers.locator('[role="alert"]').innerText(),
      'La delega è stata revocata: non è più possibile operare per conto del delegante.',
    );
    await checks.check(hers, 'delegate-refused', { response });

    // That refusal ended her acting for him: "Deleghe" shows the delegation revoked and no
    // longer in use, and her own desk works again.
    await clickThrough(hers, menuLink(hers, 'Deleghe'));
    assert.equal(path(hers), '/deleghe');
    const ended = await delegationCard(hers, `Delega da ${DIPROVA}`);
    assert.equal(ended?.standing, 'revocata');
    assert.equal(await hers.getByRole('button', { name: 'Smetti di operare per conto del delegante' }).count(), 0);
    assert.equal(await hers.locator('main .tag-ok', { hasText: 'in uso' }).count(), 0, 'no longer in use');
    await checks.check(hers, 'delegate-list-revoked');
    response = await visit(hers, '/');
    assert.equal(response.status(), 200);
    assert.equal(await banner(hers), null, 'acting for herself again: no banner');

    // --- what she did in his name ----------------------------------------------------------
    await clickThrough(his, link(his, 'Attività svolte per tuo conto'));
    assert.equal(path(his), '/deleghe/attivita');
    const acts = await his.$$eval('main table tbody tr', (trs) =>
      trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.trim())),
    );
    const hersDone = acts.filter(([, who]) => who === BIANCO).map(([, , what]) => what);
    for (const what of ['inizio attività per conto del delegante', 'bozza creata', 'atto rifiutato: fuori dalla delega']) {
      assert.ok(hersDone.includes(what), `his activity lists "${what}" by ${BIANCO}: ${JSON.stringify(hersDone)}`);
    }
    await checks.check(his, 'grantor-activity');

  } finally {
    await grantor.close();
    await delegate.close();
  }
  checks.assertClean();
});
