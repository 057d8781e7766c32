// User journeys through the desk as Utente DiProva (demo card `diprova`), with the real pages
// only: labels, buttons and links by their accessible names, as a person would use them.
//
//  1. Start a sole-trader business: catalog → service (authorisation checklist) → draft,
//     saved half-way and resumed from the drafts, one mistake shown and fixed, check and send;
//     the reference number, then the three protocol numbers live (no reload), the receipt.
//  2. INPS is down: its filing fails and stands out, the others arrive; once INPS is back,
//     "Invia di nuovo a INPS" sends it alone.
//  3. INAIL rejects a too-short description of the work processes: only that field is offered
//     for correction, and the corrected filing goes to INAIL alone.
//
// Every page shown goes through checkPage (axe at 1280 and 320 px, the Nu checker, screenshots);
// a page's problems are collected and reported at the end of its journey, so that they do not
// hide what comes after. The JSON API only prepares drafts for journeys 2 and 3.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import {
  PageChecks,
  apiAs,
  clickThrough,
  inDays,
  launchBrowser,
  newContext,
  newPage,
  visit,
  waitUntil,
  withSimulator,
} from './lib.mjs';

const browser = await launchBrowser();
after(() => browser.close());

/** Utente DiProva's codice fiscale (born on 1 January 1980 in Rome): also his business's. */
const DIPROVA = 'DPRTNT80A01H501Y';
const SERVICE = 'avvio-ditta-individuale';
const SERVICE_TITLE = 'Avvio di una ditta individuale';
const INSTITUTIONS = {
  'registro-imprese': 'Registro delle imprese (Camera di commercio)',
  inps: 'INPS - Istituto Nazionale della Previdenza Sociale',
  inail: 'INAIL - Istituto Nazionale Assicurazione Infortuni sul Lavoro',
};
/** The demo's protocol registers: a protocol number is `<register>-<year>-<7 digits>`. */
const REGISTERS = { 'registro-imprese': 'CCIAA-RM-RI', inps: 'INPS-AOO1', inail: 'INAIL-AOO1' };
const isProtocol = (institution, text) => new RegExp(`^${REGISTERS[institution]}-\\d{4}-\\d{7}$`).test(text ?? '');
const REFERENCE = /SPT-\d{4}-\d{7}/;
/** The demo INAIL wants at least 20 characters to classify the risk. */
const WORK_PROCESSES = 'Somministrazione di alimenti e bevande al banco';

// Journey 1's answers, section by section as the task list shows them: [label, value], a
// choice as { option: its label }.
const SECTIONS = [
  {
    id: 'business',
    title: "L'impresa",
    fields: [
      ['Denominazione o ditta', 'Caffè del Viaggio di Utente DiProva'],
      ["Codice fiscale dell'impresa", DIPROVA],
      ["Domicilio digitale (PEC) dell'impresa", 'caffe.viaggio@pec.it'],
      ["Codice ATECO dell'attività prevalente", '56.30.00'],
      ["Data di inizio dell'attività", inDays(5)],
    ],
  },
  {
    id: 'owner',
    title: 'Il titolare',
    fields: [
      ['Nome', 'Utente'],
      ['Cognome', 'DiProva'],
      ['Data di nascita', '01/01/1980'],
      ['Comune (o Stato estero) di nascita', 'Roma'],
      ['Indirizzo di residenza', 'Via Roma 1, 00184 Roma'],
    ],
  },
  {
    id: 'seat',
    title: 'La sede',
    fields: [
      ['Indirizzo della sede (via o piazza)', 'Via Nazionale'],
      ['Numero civico', '10'],
      ['CAP', '00184'],
      ['Comune', 'Roma'],
      ['Provincia', 'RM'],
    ],
  },
  { id: 'staff', title: 'Il personale', fields: [['Numero di dipendenti', '0']] },
  {
    id: 'registro-imprese',
    title: `Dati per ${INSTITUTIONS['registro-imprese']}`,
    fields: [["Descrizione dell'attività", 'Bar e caffetteria']],
  },
  {
    id: 'inps',
    title: `Dati per ${INSTITUTIONS.inps}`,
    fields: [
      ['Gestione previdenziale', { option: 'Commercianti' }],
      ['Collaboratori familiari', '0'],
    ],
  },
  {
    id: 'inail',
    title: `Dati per ${INSTITUTIONS.inail}`,
    fields: [
      ['Descrizione delle lavorazioni', WORK_PROCESSES],
      ['Retribuzioni annue presunte (euro)', '24.000,00'],
    ],
  },
];

/** The same answers as the API takes them (journeys 2 and 3 start from such a draft). */
// Long enough for the rule INAIL publishes (20 characters), but matching no item of its
// tariff: only INAIL can tell, on receipt.
const UNCLASSIFIABLE = 'Attività da definire in seguito';

function completeData(name, workProcesses) {
  return {
    'business.name': name,
    'business.tax_code': DIPROVA,
    'business.pec': 'pratiche.diprova@pec.it',
    'business.ateco': '56.30.00',
    'business.start_date': inDays(10),
    'owner.given_name': 'Utente',
    'owner.surname': 'DiProva',
    'owner.tax_code': DIPROVA,
    'owner.birth_date': '01/01/1980',
    'owner.birth_place': 'Roma',
    'owner.residence': 'Via Roma 1, 00184 Roma',
    'seat.street': 'Via del Corso',
    'seat.number': '5',
    'seat.cap': '00186',
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

async function createDraft(data, service = SERVICE) {
  const api = await apiAs('diprova');
  try {
    const answer = await api.post('/api/v1/practices', { data: { service, data } });
    const text = await answer.text();
    assert.equal(answer.status(), 201, `creating the draft: ${answer.status()} ${text}`);
    return JSON.parse(text).id;
  } finally {
    await api.dispose();
  }
}

const mainMenu = (page) => page.getByRole('navigation', { name: 'Menu principale' });
const button = (page, name) => page.getByRole('button', { name, exact: true });
const link = (page, name) => page.getByRole('link', { name, exact: true });
const h1 = (page) => page.locator('h1').innerText();

async function fillIn(page, label, value) {
  const control = page.getByLabel(label, { exact: true });
  if (typeof value === 'object') await control.selectOption({ label: value.option });
  else await control.fill(value);
}

/** The task list's entries: title → its status ("Completata", "Da completare", ...). */
async function taskStates(page) {
  return page.$$eval('ol.task-list > li', (items) =>
    Object.fromEntries(
      items.map((li) => [li.querySelector('a').textContent.trim(), li.querySelector('.tag').textContent.trim()]),
    ),
  );
}

/** Each recipient row of a practice's page, as the page shows it now. */
async function recipients(page) {
  const rows = await page.$$eval('#destinatari tr[data-institution]', (trs) =>
    trs.map((tr) => ({
      id: tr.dataset.institution,
      name: tr.querySelector('th').textContent.trim(),
      state: tr.querySelector('td .tag')?.textContent.trim(),
      protocol: tr.querySelector('td.protocol')?.textContent.trim(),
      attention: tr.classList.contains('row-attention'),
      buttons: [...tr.querySelectorAll('button')].map((b) => b.textContent.trim()),
      notes: tr.querySelector('td:last-child')?.textContent.replace(/\s+/g, ' ').trim(),
    })),
  );
  return Object.fromEntries(rows.map((r) => [r.id, r]));
}

const show = (rows) =>
  Object.values(rows ?? {})
    .map((r) => `${r.id}: ${r.state} ${r.protocol}`)
    .join('; ');

/** Waits, without reloading, until `ready(rows)` holds for the recipients on the page. */
async function waitForRecipients(page, ready, what, timeout = 20_000) {
  let last;
  await waitUntil(
    async () => {
      last = await recipients(page);
      return ready(last);
    },
    { timeout, what, describe: () => show(last) },
  );
  return last;
}

/** How each recipient row is drawn (row and header cell: background, borders, outline, shadow). */
async function rowLooks(page) {
  return page.$$eval('#destinatari tr[data-institution]', (trs) =>
    Object.fromEntries(
      trs.map((tr) => {
        const look = (e) => {
          const s = getComputedStyle(e);
          return `background ${s.backgroundColor}, border-left ${s.borderLeft}, border-top ${s.borderTop}, outline ${s.outline}, shadow ${s.boxShadow}`;
        };
        return [tr.dataset.institution, `${look(tr)} / ${look(tr.querySelector('th'))}`];
      }),
    ),
  );
}

/** The timeline's entries about one institution, as text. */
async function timelineOf(page, institution) {
  const items = await page.$$eval('#cronologia li', (lis) => lis.map((li) => li.textContent.replace(/\s+/g, ' ').trim()));
  return items.filter((text) => text.includes(`${institution}:`));
}

/**
 * At 320 px, whether the table in `region` stacks: nothing scrolls sideways and no cell ends
 * past the window's edge. Puts the width back afterwards.
 */
async function stacksAt320(page, region) {
  const size = page.viewportSize();
  await page.setViewportSize({ width: 320, height: 800 });
  try {
    return await page.evaluate((selector) => {
      const scroller = document.querySelector(`${selector} .table-scroll`);
      const cells = [...document.querySelectorAll(`${selector} tbody td, ${selector} tbody th`)];
      return {
        sideways: scroller ? scroller.scrollWidth - scroller.clientWidth : -1,
        outside: cells.filter((c) => c.getBoundingClientRect().right > window.innerWidth + 1).map((c) => c.textContent.trim()),
      };
    }, region);
  } finally {
    if (size) await page.setViewportSize(size);
  }
}

/** Marks the document, to tell later whether the page was reloaded. */
const markDocument = (page) => page.evaluate(() => { window.sportelloTestMark = true; });
const sameDocument = (page) => page.evaluate(() => window.sportelloTestMark === true);

/**
 * From a draft's own page to sending it: "Continua la compilazione" → task list (every section
 * complete) → "Controlla e invia" → "Invia la pratica"; returns the response of the practice
 * page it lands on.
 */
async function sendDraft(page, checks, id) {
  let response = await visit(page, `/pratiche/${id}`);
  assert.equal(response.status(), 200);
  await checks.check(page, 'draft', { response });
  await clickThrough(page, link(page, 'Continua la compilazione'));
  assert.equal(new URL(page.url()).pathname, `/pratiche/${id}/compila`);
  const tasks = await taskStates(page);
  assert.equal(tasks['Controlla e invia'], "Pronta per l'invio", `the task list: ${JSON.stringify(tasks)}`);
  await checks.check(page, 'tasks');
  response = await clickThrough(page, link(page, 'Controlla e invia'));
  assert.equal(response.status(), 200);
  assert.equal(await h1(page), "Controlla i dati prima dell'invio");
  await checks.check(page, 'review');
  await page.getByRole('checkbox', { name: /^Dichiaro che i dati sono veri/ }).check();
  response = await clickThrough(page, button(page, 'Invia la pratica'));
  assert.equal(response.status(), 200, `sending answered ${response.status()}: ${await h1(page)}`);
  assert.equal(new URL(page.url()).pathname, `/pratiche/${id}`);
  assert.match(await page.locator('[role="status"]').first().innerText(), REFERENCE);
  return response;
}

test('Utente DiProva starts a sole-trader business, from the catalog to the protocol numbers', async () => {
  const checks = new PageChecks('journey');
  const context = await newContext(browser, 'diprova');
  try {
    const page = await newPage(context);

    // The desk, then the catalog from the main menu.
    let response = await visit(page, '/');
    assert.equal(response.status(), 200);
    assert.equal(await h1(page), 'La mia scrivania');
    await checks.check(page, 'desk', { response });
    await clickThrough(page, mainMenu(page).getByRole('link', { name: 'Servizi integrati', exact: true }));
    assert.equal(new URL(page.url()).pathname, '/servizi');
    await checks.check(page, 'catalog');

    // The service: before typing anything, whether he may file at each institution.
    await clickThrough(page, link(page, SERVICE_TITLE));
    assert.equal(new URL(page.url()).pathname, `/servizi/${SERVICE}`);
    assert.equal(await h1(page), SERVICE_TITLE);
    const checklist = await page.$$eval('table tbody tr', (trs) =>
      trs.map((tr) => [tr.querySelector('th').textContent.trim(), tr.querySelector('.tag')?.textContent.trim()]),
    );
    assert.deepEqual(
      checklist.map(([name]) => name).sort(),
      Object.values(INSTITUTIONS).sort(),
      'the checklist names the three institutions',
    );
    for (const [name, status] of checklist) {
      // The registry offers no look-up: its profile says it checks on receipt.
      const expected =
        name === INSTITUTIONS['registro-imprese']
          ? /^Verificata dall'ente alla ricezione della pratica/
          : new RegExp(`^Autorizzato per: .*${DIPROVA}`);
      assert.match(status ?? '', expected, `${name}: ${status}`);
    }
    await checks.check(page, 'service');

    // A new draft (no data taken from earlier practices), then its task list.
    await clickThrough(page, button(page, 'Inizia la compilazione'));
    const tasksPath = new URL(page.url()).pathname;
    const id = tasksPath.match(/^\/pratiche\/([^/]+)\/compila$/)?.[1];
    assert.ok(id, `starting led to ${page.url()}, not a task list`);
    assert.equal(await h1(page), SERVICE_TITLE);
    const firstTasks = await taskStates(page);
    assert.deepEqual(
      Object.keys(firstTasks),
      [...SECTIONS.map((s) => s.title), 'Controlla e invia'],
      'one task per section, then check and send',
    );
    assert.equal(firstTasks['Controlla e invia'], 'Non ancora pronta');
    await checks.check(page, 'tasks-new');

    // The first section, half filled, saved as a draft.
    await clickThrough(page, link(page, SECTIONS[0].title));
    assert.equal(await h1(page), SECTIONS[0].title);
    await checks.check(page, 'section-business-empty');
    for (const [label, value] of SECTIONS[0].fields.slice(0, 2)) await fillIn(page, label, value);
    // Continuing with answers missing stops on this page, which names them beside their fields.
    response = await clickThrough(page, button(page, 'Salva e continua'));
    assert.equal(response.status(), 422, 'continuing with missing answers is refused on the page');
    assert.equal(await h1(page), SECTIONS[0].title, 'still on the same question page');
    const missing = await page.locator('.error-summary a').allInnerTexts();
    for (const [label] of SECTIONS[0].fields.slice(2)) {
      assert.ok(missing.some((m) => m.startsWith(label)), `the summary names ${label}: ${missing.join(' | ')}`);
    }
    assert.equal(await page.getByLabel(SECTIONS[0].fields[0][0], { exact: true }).inputValue(), SECTIONS[0].fields[0][1], 'what was typed stays');
    await checks.check(page, 'section-business-missing', { response });
    // "Salva come bozza ed esci" leaves the journey: the drafts, the one just saved among them.
    response = await clickThrough(page, button(page, 'Salva come bozza ed esci'));
    assert.equal(response.status(), 200);
    assert.equal(new URL(page.url()).pathname, '/pratiche');
    assert.match(await page.locator('[role="status"]').innerText(), /Bozza salvata/);
    assert.equal(await h1(page), 'Pratiche in bozza');
    const savedRow = page.locator('main tbody tr').filter({ has: page.locator(`a[href="/pratiche/${id}"]`) });
    assert.match(await savedRow.innerText(), /Dati da completare: [1-9]/, 'the draft says how much is missing');
    assert.match(await savedRow.innerText(), new RegExp(SECTIONS[0].fields[0][1]), 'and names the business');
    await checks.check(page, 'practices-saved');

    // He leaves, and comes back to the draft through his desk: its counts are links.
    await clickThrough(page, page.locator('a.brand-name'));
    assert.equal(new URL(page.url()).pathname, '/');
    await clickThrough(page, mainMenu(page).getByRole('link', { name: 'Le mie pratiche', exact: true }));
    await checks.check(page, 'practices');
    assert.equal(await page.getByText('Nessuna pratica in questo stato.').count(), 0, '/pratiche opens on a tab with practices');
    await clickThrough(page, page.locator('a.brand-name'));
    await clickThrough(page, page.locator('main .counts').getByRole('link', { name: /in bozza/ }));
    assert.equal(new URL(page.url()).search, '?stato=draft');
    await checks.check(page, 'practices-drafts');
    const narrowList = await stacksAt320(page, 'main');
    assert.deepEqual(narrowList, { sideways: 0, outside: [] }, `the list at 320 px: ${JSON.stringify(narrowList)}`);
    const draftLink = page.locator(`main table a[href="/pratiche/${id}"]`);
    assert.equal(await draftLink.innerText(), 'non ancora assegnato');
    await clickThrough(page, draftLink);
    assert.equal(await h1(page), SERVICE_TITLE);
    assert.equal(
      await page.getByRole('heading', { name: "Da completare prima dell'invio" }).count(),
      1,
      'the draft says what is still missing',
    );
    await checks.check(page, 'draft');
    await clickThrough(page, link(page, 'Continua la compilazione'));
    assert.equal(new URL(page.url()).pathname, tasksPath);
    await checks.check(page, 'tasks-resumed');

    // Every section, in order with "Salva e continua"; what was saved is there again.
    await clickThrough(page, link(page, SECTIONS[0].title));
    for (const [label, value] of SECTIONS[0].fields.slice(0, 2)) {
      assert.equal(await page.getByLabel(label, { exact: true }).inputValue(), value, `${label} was saved`);
    }
    await checks.check(page, 'section-business-resumed');
    // A sole trader's codice fiscale is the business's: asked once, in "L'impresa".
    const businessCode = page.getByLabel("Codice fiscale dell'impresa", { exact: true });
    const describedBy = (await businessCode.getAttribute('aria-describedby')).split(' ')[0];
    assert.match(await page.locator(`#${describedBy}`).innerText(), /Vale anche come «Codice fiscale» in «Il titolare»/);
    for (const [n, section] of SECTIONS.entries()) {
      assert.equal(await h1(page), section.title);
      if (section.id === 'owner') {
        assert.equal(await page.getByLabel('Codice fiscale', { exact: true }).count(), 0, 'the owner page does not ask it again');
      }
      assert.equal(new URL(page.url()).pathname, `/pratiche/${id}/sezioni/${section.id}`);
      if (n > 0) await checks.check(page, `section-${section.id}`);
      for (const [label, value] of section.fields) {
        // The deliberate mistake: a postcode of three digits; the birth date typed as ISO is
        // understood and shown back as dd/mm/yyyy.
        await fillIn(page, label, label === 'CAP' ? '123' : label === 'Data di nascita' ? '1980-01-01' : value);
      }
      response = await clickThrough(page, button(page, 'Salva e continua'));
      if (section.id !== 'seat') continue;

      // The mistake: the same section again, the summary at the top linking to the field,
      // the message beside the field, what was typed kept.
      assert.equal(response.status(), 422);
      assert.equal(await h1(page), section.title);
      assert.match(await page.title(), /^Errore: /);
      const summary = page.locator('.error-summary');
      assert.equal(await summary.getAttribute('role'), 'alert');
      assert.equal(await summary.getByRole('heading').innerText(), 'Ci sono dati da correggere');
      const toField = summary.getByRole('link', { name: 'CAP: il CAP deve avere 5 cifre.', exact: true });
      assert.equal(await toField.getAttribute('href'), '#campo-seat-cap');
      const cap = page.getByLabel('CAP', { exact: true });
      assert.equal(await cap.getAttribute('aria-invalid'), 'true');
      assert.ok((await cap.getAttribute('aria-describedby') ?? '').split(' ').includes('campo-seat-cap-errore'));
      const beside = page.locator('.field', { has: cap }).locator('.error-message');
      assert.equal((await beside.innerText()).replace(/\s+/g, ' ').trim(), 'Errore: CAP: il CAP deve avere 5 cifre.');
      assert.equal(await beside.getAttribute('id'), 'campo-seat-cap-errore');
      assert.equal(await cap.inputValue(), '123');
      assert.equal(await page.getByLabel('Comune', { exact: true }).inputValue(), 'Roma', 'the other answers are kept');
      await checks.check(page, 'section-seat-error', { response });
      await toField.click();
      assert.equal(
        await page.evaluate(() => document.activeElement?.id),
        'campo-seat-cap',
        'following the summary link puts the focus on the field',
      );
      await cap.fill('00184');
      response = await clickThrough(page, button(page, 'Salva e continua'));
      assert.equal(response.status(), 200, 'the corrected postcode is taken');
    }

    // After the last section: check the answers; back to the list, everything complete.
    assert.equal(new URL(page.url()).pathname, `/pratiche/${id}/riepilogo`);
    assert.equal(await h1(page), "Controlla i dati prima dell'invio");
    const answers = await page.$$eval('dl.answers .answer', (divs) =>
      divs.map((d) => [d.querySelector('dt').textContent.trim(), d.querySelector('dd').textContent.trim()]),
    );
    for (const [label, value] of [
      ['Denominazione o ditta', SECTIONS[0].fields[0][1]],
      ['Data di nascita', '01/01/1980'],
      ["Data di inizio dell'attività", inDays(5)],
      ['CAP', '00184'],
      ['Gestione previdenziale', 'Commercianti'],
      ['Descrizione delle lavorazioni', WORK_PROCESSES],
    ]) {
      assert.ok(answers.some(([l, v]) => l === label && v === value), `the review shows ${label}: ${value}`);
    }
    await checks.check(page, 'review-first');
    await clickThrough(page, link(page, "Torna all'elenco delle sezioni"));
    const done = await taskStates(page);
    for (const section of SECTIONS) assert.equal(done[section.title], 'Completata', `${section.title}: ${done[section.title]}`);
    assert.equal(done['Controlla e invia'], "Pronta per l'invio");
    await checks.check(page, 'tasks-complete');
    await clickThrough(page, link(page, 'Controlla e invia'));
    await checks.check(page, 'review');

    // Sending without the declaration: nothing is sent, the error leads to the checkbox.
    response = await clickThrough(page, button(page, 'Invia la pratica'));
    assert.equal(response.status(), 422, 'the declaration is required');
    const declaration = page.getByRole('checkbox', { name: /^Dichiaro che i dati sono veri e chiedo che la pratica sia inviata a .*INPS.* in nome di Utente DiProva/ });
    assert.equal(await page.locator('.error-summary a[href="#dichiarazione"]').count(), 1, 'the summary links the declaration');
    await checks.check(page, 'review-undeclared', { response });
    // Send: the reference number at once, then each institution's protocol number, live.
    await declaration.check();
    response = await clickThrough(page, button(page, 'Invia la pratica'));
    assert.equal(response.status(), 200, `sending answered ${response.status()}: ${await h1(page)}`);
    assert.equal(new URL(page.url()).pathname, `/pratiche/${id}`);
    const notice = await page.locator('[role="status"]').first().innerText();
    const reference = notice.match(REFERENCE)?.[0];
    assert.ok(reference, `the notice gives the reference number: ${notice}`);
    assert.equal(await page.locator('#stato-pratica dd').first().innerText(), reference);
    const next = page.getByRole('region', { name: 'Che cosa succede ora' });
    assert.match(await next.innerText(), /numero di protocollo/);
    assert.match(await next.innerText(), /PEC\) dell'impresa: caffe\.viaggio@pec\.it/, 'outcomes also reach the business PEC');
    await markDocument(page);
    const arrived = await waitForRecipients(
      page,
      (rows) => Object.keys(INSTITUTIONS).every((i) => isProtocol(i, rows[i]?.protocol)),
      'the three protocol numbers, without reloading',
    );
    assert.ok(await sameDocument(page), 'the protocol numbers came without reloading the page');
    // Each institution then accepts; the page settles.
    await waitForRecipients(
      page,
      (rows) => Object.keys(INSTITUTIONS).every((i) => rows[i]?.state === 'accolta'),
      'every institution to accept the filing',
    );
    assert.ok(await sameDocument(page), 'the outcomes came without reloading the page');
    assert.equal(await page.locator('#annuncio').innerText(), 'Stato degli enti aggiornato.', 'the update is announced');
    await checks.check(page, 'practice-sent', { response });

    // The printable receipt: the same reference and protocol numbers, and the digest.
    await clickThrough(page, link(page, 'Ricevuta stampabile'));
    assert.equal(new URL(page.url()).pathname, `/pratiche/${id}/ricevuta`);
    assert.equal(await h1(page), `Ricevuta della pratica ${reference}`);
    const receipt = await page.locator('.receipt').innerText();
    for (const i of Object.keys(INSTITUTIONS)) {
      assert.ok(receipt.includes(arrived[i].protocol), `the receipt gives ${i}'s protocol ${arrived[i].protocol}`);
    }
    assert.match(await page.locator('.receipt dd.digest').innerText(), /^[0-9a-f]{64}$/);
    await checks.check(page, 'receipt');
  } finally {
    await context.close();
  }
  checks.assertClean();
});

test('INPS is down: its filing fails and stands out, and is sent again to INPS alone', async () => {
  const checks = new PageChecks('inps-down');
  const id = await createDraft(completeData('Pasticceria Rinviata di Utente DiProva', WORK_PROCESSES));
  const context = await newContext(browser, 'diprova');
  try {
    const page = await newPage(context);
    const others = ['registro-imprese', 'inail'];
    let response;
    let rows;
    await withSimulator('inps', { down: true }, async () => {
      response = await sendDraft(page, checks, id);
      await markDocument(page);
      // The demo tries INPS four times (0.5 s, doubling) before giving up.
      rows = await waitForRecipients(
        page,
        (r) => r.inps?.state === 'non consegnata' && others.every((i) => r[i]?.state === 'accolta'),
        'INPS to fail and the other two to accept',
        30_000,
      );
    });
    assert.ok(await sameDocument(page), 'the failure showed without reloading the page');
    assert.equal(rows.inps.protocol, '—', 'no protocol number from INPS, and none to wait for');
    assert.ok(rows.inps.attention, 'the failed row is marked for attention (row-attention)');
    const looks = await rowLooks(page);
    if (looks.inps === looks['registro-imprese']) {
      checks.fail('failed', `the failed INPS row looks like the accepted ones (row-attention has no style): ${looks.inps}`);
    }
    assert.deepEqual(rows.inps.buttons, [`Invia di nuovo a ${INSTITUTIONS.inps}`]);
    for (const i of others) {
      assert.ok(isProtocol(i, rows[i].protocol), `${i}: ${rows[i].protocol}`);
      assert.ok(!rows[i].attention && rows[i].buttons.length === 0, `${i} is fine and offers nothing to resend`);
    }
    await checks.check(page, 'failed', { response });

    // INPS is back (withSimulator put it back): send again, to INPS alone.
    const before = Object.fromEntries(await Promise.all(others.map(async (i) => [i, await timelineOf(page, INSTITUTIONS[i])])));
    response = await clickThrough(page, button(page, `Invia di nuovo a ${INSTITUTIONS.inps}`));
    assert.equal(response.status(), 200);
    assert.equal(
      await page.locator('[role="status"]').first().innerText(),
      `La pratica è stata inviata di nuovo a ${INSTITUTIONS.inps}; gli altri enti non sono stati toccati.`,
    );
    await markDocument(page);
    const after = await waitForRecipients(
      page,
      (r) => isProtocol('inps', r.inps?.protocol) && r.inps.state === 'accolta',
      "INPS's protocol number after sending again",
    );
    assert.ok(await sameDocument(page), "INPS's protocol number came without reloading the page");
    assert.ok(!after.inps.attention && after.inps.buttons.length === 0, 'INPS no longer stands out');
    for (const i of others) {
      assert.equal(after[i].protocol, rows[i].protocol, `${i}'s protocol number is unchanged`);
      assert.equal(after[i].state, 'accolta');
      assert.deepEqual(await timelineOf(page, INSTITUTIONS[i]), before[i], `nothing new happened at ${i}`);
    }
    await checks.check(page, 'resent', { response });
  } finally {
    await context.close();
  }
  checks.assertClean();
});

test('INAIL rejects work processes its tariff cannot classify; corrected, it goes to INAIL alone', async () => {
  const checks = new PageChecks('inail-rejects');
  const id = await createDraft(completeData('Bar Corto di Utente DiProva', UNCLASSIFIABLE));
  const context = await newContext(browser, 'diprova');
  try {
    const page = await newPage(context);
    let response = await sendDraft(page, checks, id);
    await markDocument(page);
    const rows = await waitForRecipients(
      page,
      (r) => r.inail?.state === 'respinta' && ['registro-imprese', 'inps'].every((i) => r[i]?.state === 'accolta'),
      'INAIL to reject and the other two to accept',
    );
    assert.ok(rows.inail.attention, 'the rejected row is marked for attention (row-attention)');
    // The practice's state says so, live, and the problem comes first, linking to its form.
    let seenState;
    const stateIs = (want) => async () => (seenState = await page.locator('#stato-pratica .tag').innerText()) === want;
    await waitUntil(stateIs('da correggere'), { what: 'the state "da correggere"', describe: () => seenState });
    assert.ok(await sameDocument(page), 'the state changed without reloading the page');
    const problem = page.getByRole('region', { name: 'Questa pratica richiede un tuo intervento' });
    assert.equal(await problem.count(), 1, 'the problem is announced at the top');
    const order = await page.evaluate(() => {
      const top = document.querySelector('#problema-pratica section');
      const summary = document.querySelector('#stato-pratica');
      return top && summary ? top.compareDocumentPosition(summary) & Node.DOCUMENT_POSITION_FOLLOWING : 0;
    });
    assert.ok(order, 'the problem comes before the practice summary');
    const fix = problem.getByRole('link');
    assert.match(await fix.innerText(), /INAIL.*ha respinto la pratica/);
    assert.equal(await fix.getAttribute('href'), '#correzione-inail');
    assert.equal(await page.locator('#correzione-inail').count(), 1, 'the link leads to the correction form');
    // The desk's home and the list say the same.
    const home = await newPage(context);
    await visit(home, '/');
    const toCorrect = home.getByRole('link', { name: /da correggere/ });
    assert.match(await toCorrect.innerText(), /^[1-9]\d*\s+da correggere$/, 'the desk counts it, as a link');
    await clickThrough(home, toCorrect);
    assert.equal(await h1(home), 'Pratiche da correggere');
    assert.ok(await home.locator(`a[href="/pratiche/${id}"]`).count(), 'listed among those to correct');
    await home.close();
    const looks = await rowLooks(page);
    if (looks.inail === looks.inps) {
      checks.fail('rejected', `the rejected INAIL row looks like the accepted ones (row-attention has no style): ${looks.inail}`);
    }
    assert.match(rows.inail.notes, /Lavorazioni non riconducibili/, 'the reason INAIL gave is shown');
    // 320 px: the recipients stack; protocol numbers and the reason stay in view.
    const narrow = await stacksAt320(page, '#destinatari');
    assert.deepEqual(narrow, { sideways: 0, outside: [] }, `at 320 px: ${JSON.stringify(narrow)}`);

    // Only the field at fault, editable, with what was sent.
    const correction = page.getByRole('region', { name: `Dati da correggere per: ${INSTITUTIONS.inail}` });
    assert.equal(await correction.count(), 1, 'a correction form for INAIL');
    const controls = correction.locator('input:not([type="hidden"]), select, textarea');
    assert.equal(await controls.count(), 1, 'only the field at fault is offered');
    const field = correction.getByLabel('Descrizione delle lavorazioni', { exact: true });
    assert.equal(await field.inputValue(), UNCLASSIFIABLE);
    assert.ok(await field.isEditable());
    await checks.check(page, 'rejected', { response });

    await field.fill('Somministrazione al banco di caffè, bevande e dolci');
    response = await clickThrough(page, correction.getByRole('button', { name: `Correggi e invia di nuovo a ${INSTITUTIONS.inail}`, exact: true }));
    assert.equal(response.status(), 200, `correcting answered ${response.status()}: ${await h1(page)}`);
    assert.equal(
      await page.locator('[role="status"]').first().innerText(),
      `La pratica è stata inviata di nuovo a ${INSTITUTIONS.inail}; gli altri enti non sono stati toccati.`,
    );
    const after = await waitForRecipients(
      page,
      (r) => isProtocol('inail', r.inail?.protocol) && r.inail.state === 'accolta',
      "INAIL's protocol number after the correction",
    );
    assert.equal(await page.getByRole('region', { name: `Dati da correggere per: ${INSTITUTIONS.inail}` }).count(), 0);
    await waitUntil(stateIs('completata'), { what: 'the state "completata"', describe: () => seenState });
    assert.equal(await page.locator('#problema-pratica section').count(), 0, 'nothing left to do');
    for (const i of ['registro-imprese', 'inps']) {
      assert.equal(after[i].protocol, rows[i].protocol, `${i}'s protocol number is unchanged`);
    }
    await checks.check(page, 'corrected', { response });
  } finally {
    await context.close();
  }
  checks.assertClean();
});

test('Giuseppe Verdi, authorised at INPS only, is told on every page of the journey and cannot send', async () => {
  const checks = new PageChecks('not-authorised');
  const context = await newContext(browser, 'verdi');
  try {
    const page = await newPage(context);
    await visit(page, `/servizi/${SERVICE}`);
    await clickThrough(page, button(page, 'Inizia la compilazione'));
    const tasksPath = new URL(page.url()).pathname;
    assert.match(tasksPath, /^\/pratiche\/[^/]+\/compila$/, `starting led to ${page.url()}`);
    const warned = async (where) => {
      const warning = page.getByRole('region', { name: 'Non puoi ancora inviare questa pratica' });
      assert.equal(await warning.count(), 1, `${where}: the warning is there`);
      const text = await warning.innerText();
      assert.match(text, new RegExp(`${INSTITUTIONS.inail}: non risulti ancora abilitato`), `${where}: names INAIL`);
      assert.doesNotMatch(text, new RegExp(`${INSTITUTIONS.inps}: non risulti`), `${where}: INPS said yes`);
      assert.match(text, /la bozza resta salvata/, `${where}: the draft is kept`);
      const how = warning.getByRole('link', { name: `Come ottenere l'abilitazione presso ${INSTITUTIONS.inail} (sito dell'ente)` });
      assert.equal(await how.getAttribute('href'), 'https://www.inail.it', `${where}: where to obtain it`);
    };
    await warned('the task list');
    await checks.check(page, 'tasks');
    await clickThrough(page, link(page, SECTIONS[0].title));
    await warned('a section');
    await checks.check(page, 'section');
    await visit(page, tasksPath.replace('/compila', '/riepilogo'));
    await warned('check answers');
    assert.equal(await button(page, 'Invia la pratica').count(), 0, 'no send button while INAIL says no');
    assert.match(await page.locator('main').innerText(), /Potrai inviare la pratica quando risulterai abilitato/);
    await checks.check(page, 'review');
  } finally {
    await context.close();
  }
  checks.assertClean();
});

test('"Cambio della sede": INAIL rejects the work processes, which the change now asks; corrected, it goes to INAIL alone', async () => {
  const checks = new PageChecks('change-rejected');
  const id = await createDraft(
    {
      'business.name': 'Bar della Sede di Utente DiProva',
      'business.legal_form': 'DI',
      'business.tax_code': DIPROVA,
      'business.pec': 'bar.sede@pec.it',
      'business.rea_number': 'RM-1234567',
      'business.ateco': '56.30.00',
      'business.event_date': inDays(3),
      'owner.given_name': 'Utente',
      'owner.surname': 'DiProva',
      'owner.tax_code': DIPROVA,
      'seat.street': 'Via Nazionale',
      'seat.number': '12',
      'seat.cap': '00184',
      'seat.municipality': 'Roma',
      'seat.province': 'RM',
      'registro-imprese.change_description': 'Trasferimento della sede',
      'inps.position_number': '7012345678',
      'inail.company_code': '123456',
      'inail.pat': '987654',
      'inail.work_processes': UNCLASSIFIABLE,
    },
    'variazione-sede-attivita',
  );
  const context = await newContext(browser, 'diprova');
  try {
    const page = await newPage(context);
    let response = await sendDraft(page, checks, id);
    const rows = await waitForRecipients(
      page,
      (r) => r.inail?.state === 'respinta' && ['registro-imprese', 'inps'].every((i) => r[i]?.state === 'accolta'),
      'INAIL to reject the change and the other two to accept it',
    );
    assert.match(rows.inail.notes, /Lavorazioni non riconducibili/);
    const correction = page.getByRole('region', { name: `Dati da correggere per: ${INSTITUTIONS.inail}` });
    assert.equal(await correction.count(), 1, 'the field at fault is offered, though the change is about the seat');
    const field = correction.getByLabel('Descrizione delle lavorazioni', { exact: true });
    assert.equal(await field.inputValue(), UNCLASSIFIABLE);
    await checks.check(page, 'rejected', { response });
    await field.fill('Somministrazione al banco di caffè e bevande nella nuova sede');
    response = await clickThrough(page, correction.getByRole('button', { name: `Correggi e invia di nuovo a ${INSTITUTIONS.inail}`, exact: true }));
    assert.equal(response.status(), 200, `correcting answered ${response.status()}: ${await h1(page)}`);
    await waitForRecipients(page, (r) => isProtocol('inail', r.inail?.protocol) && r.inail.state === 'accolta', "INAIL's protocol number");
    await checks.check(page, 'corrected', { response });
  } finally {
    await context.close();
  }
  checks.assertClean();
});
