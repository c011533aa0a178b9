// The Retrace web console. Plain JavaScript, no build step, no dependencies: it asks the
// same public JSON API as the `retrace` command, with the token the person pasted, and
// shows only what `GET /v1/whoami` says the caller may do (the server enforces it anyway).
// Every element is built with `h`, which sets text, never HTML, so archived data cannot
// inject markup.
'use strict';

const TOKEN_KEY = 'retrace.token';
const PAGE_SIZE = 25;
/// How often a page waiting for a replay's events asks again, and for how long.
const POLL_MS = 1000;
const POLL_FOR_MS = 120000;

const state = {
  me: null,
  // Bumped on every navigation: a page still loading, or polling, for an older view stops.
  view: 0,
  home: { since: '1h', topic: '', type: '', service: '', cursors: [null] },
  subject: { id: null, cursors: [null] },
  incidents: { status: 'all', cursors: [null] },
  incident: { id: null, cursors: [null], subjectCursors: [null] },
  // The new-incident banner's requests: whether they run, and while they wait for the next
  // round, what asks now.
  banner: { running: false, wake: null },
  audit: { since: '24h', actor: '', target: '', cursors: [null] },
};

// ---------------------------------------------------------------- helpers

/// Gives `el` its attributes (`on…` ones become listeners; absent and false ones are left out)
/// and its children (strings as text).
function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
/// An SVG element, for the charts the page draws itself.
const svg = (tag, attrs, ...children) => build(document.createElementNS('http://www.w3.org/2000/svg', tag), attrs, children);

const $ = (selector, root = document) => root.querySelector(selector);
/// Replaces an element's children, leaving out the absent ones (`cond ? node : null`).
const put = (el, ...children) => el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
const enc = encodeURIComponent;
const can = (permission) => !!state.me && state.me.permissions.includes(permission);
const current = (view) => view === state.view;
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function announce(text) {
  const live = $('#announce');
  live.textContent = '';
  // A change of text is what screen readers announce.
  setTimeout(() => { live.textContent = text; }, 50);
}

const TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
const TIME_FORMAT = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: '2-digit',
  hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3,
  hourCycle: 'h23',
});
/// The time of day alone, for the attempts of an event that all happen on one day.
const CLOCK_FORMAT = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3, hourCycle: 'h23',
});

function when(iso, format = TIME_FORMAT) {
  if (!iso) return '';
  return h('time', { datetime: iso, title: iso + ' (UTC)' }, format.format(new Date(iso)));
}

function duration(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  if (ms < 3600000) return `${(ms / 60000).toFixed(1)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

/// A key for one replay request. crypto.randomUUID exists only on HTTPS and loopback pages;
/// until TLS lands the console may be served over plain HTTP elsewhere.
function requestKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

const badge = (status, text) => h('span', { class: `badge ${status}` }, text || status.replace('_', ' '));
/// A transaction's page, opened at `event` when given.
const txLink = (id, event) => h('a', { href: event ? `#/tx/${enc(id)}/${enc(event)}` : `#/tx/${enc(id)}`, class: 'mono' }, id);
const subjectLink = (id) => h('a', { href: `#/subject/${enc(id)}`, class: 'mono' }, id);

function errorBox(error) {
  return h('div', { class: 'error', role: 'alert' }, error.message || String(error));
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/// One request to the public API; an answer other than 2xx becomes an ApiError carrying the
/// server's sentence. A 401 signs out: the token is no longer good.
async function api(path, { method = 'GET', query, body, headers = {} } = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== null && value !== undefined && value !== '') url.searchParams.set(key, value);
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  const sent = { Accept: 'application/json', ...headers };
  if (token) sent.Authorization = `Bearer ${token}`;
  if (body !== undefined) sent['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(url, {
      method, headers: sent, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, `Cannot reach the Retrace server at ${location.origin} (${e.message}); check it is running, then retry.`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: text }; }
  }
  showBehind(url.pathname, data);
  if (response.status === 401) {
    const message = `The server refused the token: ${data && data.error ? data.error : 'not signed in'}`;
    signOut(message);
    throw new ApiError(401, message);
  }
  if (!response.ok) {
    const message = data && data.error ? data.error : `${method} ${url.pathname} answered HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

/// Answers that read the archive say which partitions it is behind on (`behind`), since
/// what they lack may be on Kafka and not archived yet; the banner says so until an answer
/// of the same kind comes without it.
const READS_ARCHIVE = /^\/v1\/(transactions|events|subjects|messages|exports)(\/|$)/;

function showBehind(path, data) {
  if (!READS_ARCHIVE.test(path)) return;
  const banner = $('#behind');
  const behind = data && Array.isArray(data.behind) ? data.behind : [];
  if (behind.length === 0) {
    banner.hidden = true;
    return;
  }
  const total = behind.reduce((sum, b) => sum + b.lag, 0);
  const since = behind.map((b) => b.since).sort()[0];
  const first = `${behind[0].topic}/${behind[0].partition}`;
  const where = behind.length === 1 ? first
    : `${first} and ${behind.length - 1} other partition${behind.length === 2 ? '' : 's'}`;
  banner.textContent = `The archive is ${total.toLocaleString('en')} message${total === 1 ? '' : 's'} behind on ${where} (since ${TIME_FORMAT.format(new Date(since))}): what you see may be incomplete until it catches up.`;
  banner.hidden = false;
}

/// Builds a page's content and shows it, unless the person has moved on meanwhile.
function show(view, ...nodes) {
  if (!current(view)) return false;
  put($('#main'), ...nodes);
  return true;
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h('a', { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

/// Listings page forward with the server's cursor; going back replays the cursors seen.
function pager(cursors, nextCursor, onMove, [back, forward] = ['← Newer', 'Older →']) {
  const page = cursors.length;
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    h('button', { type: 'button', class: 'secondary', disabled: page <= 1,
      onclick: () => { cursors.pop(); onMove(); } }, back),
    h('span', {}, `Page ${page}`),
    h('button', { type: 'button', class: 'secondary', disabled: !nextCursor,
      onclick: () => { cursors.push(nextCursor); onMove(); } }, forward));
}

// ---------------------------------------------------------------- sign-in

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.me = null;
  renderWho();
  loginPage(message);
}

function loginPage(message) {
  state.view += 1;
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', required: true,
    'aria-describedby': 'token-help', spellcheck: 'false' });
  const problem = h('div', { id: 'login-problem' }, message ? errorBox({ message }) : null);
  const form = h('form', { class: 'login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Sign in to Retrace'),
    h('p', { id: 'token-help' },
      'Paste an API token (rtk_…) or an OIDC bearer token (a JWT from your identity provider). ',
      'It is kept in this browser tab only and sent with each request; closing the tab forgets it. ',
      h('code', {}, 'retrace dev'), ' prints an admin token and writes it to ', h('code', {}, 'retrace-data/dev.json'), '.'),
    h('label', { for: 'token' }, 'Token'), ' ', input, ' ',
    h('button', { type: 'submit', id: 'sign-in' }, 'Sign in'),
    problem);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    state.me = null;
    await route();
  });
  put($('#main'), form);
  input.focus();
}

function renderWho() {
  const who = $('#who');
  const out = $('#sign-out');
  if (!state.me) {
    who.textContent = '';
    out.hidden = true;
    const banner = $('#incident-banner');
    banner.hidden = true;
    delete banner.dataset.key;
    delete banner.dataset.newest;
  } else {
    who.textContent = `${state.me.actor} · ${state.me.role}`;
    out.hidden = false;
  }
  for (const link of document.querySelectorAll('#nav a[data-needs]')) {
    link.parentElement.hidden = !can(link.dataset.needs);
  }
}

// ---------------------------------------------------------------- routing

const ROUTES = [
  [/^#?\/?$/, homePage, 'Failed transactions'],
  [/^#\/incidents$/, incidentsPage, 'Incidents'],
  [/^#\/incident\/([^/]+)$/, incidentPage, 'Incident'],
  [/^#\/tx\/([^/]+)(?:\/([^/]+))?$/, transactionPage, 'Transaction'],
  [/^#\/find\/(.+)$/, findPage, 'Search'],
  [/^#\/subject\/(.+)$/, subjectPage, 'Subject'],
  [/^#\/jobs$/, jobsPage, 'Jobs'],
  [/^#\/audit$/, auditPage, 'Audit'],
];

async function route() {
  const view = ++state.view;
  const main = $('#main');
  if (!sessionStorage.getItem(TOKEN_KEY)) return loginPage();
  if (!state.me) {
    try {
      state.me = await api('/v1/whoami');
    } catch (error) {
      if (error.status !== 401) show(view, errorBox(error));
      return;
    }
    renderWho();
  }
  if (!can('trace:read')) {
    show(view, h('h1', {}, 'Nothing to show'), h('p', { class: 'note' },
      `${state.me.actor} (role ${state.me.role}) may not read traces; the console needs the trace:read permission. Ask an admin, or sign out and use another token.`));
    return;
  }
  watchIncidents();
  for (const [pattern, page, title] of ROUTES) {
    const match = location.hash.match(pattern);
    if (!match) continue;
    document.title = `${title} · Retrace`;
    for (const link of document.querySelectorAll('#nav a')) {
      if (link.getAttribute('href') === (location.hash || '#/')) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    put(main, h('p', {}, 'Loading…'));
    try {
      await page(view, ...match.slice(1).map((part) => part && decodeURIComponent(part)));
    } catch (error) {
      if (error.status !== 401) show(view, errorBox(error));
    }
    // A new page: keyboard and screen-reader users start at its content, not where they were.
    if (current(view) && !main.contains(document.activeElement)) main.focus({ preventScroll: true });
    return;
  }
  show(view, h('h1', {}, 'No such page'), h('p', {}, h('a', { href: '#/' }, 'Back to failed transactions')));
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

/// The search box: a subject id has a colon (`beneficiary:42`); anything else is looked up
/// as a transaction, then an event, then a subject.
function search(text) {
  const q = text.trim();
  if (!q) return;
  go(q.includes(':') ? `#/subject/${enc(q)}` : `#/find/${enc(q)}`);
}

async function findPage(view, q) {
  for (const lookup of [
    async () => { await api(`/v1/transactions/${enc(q)}`); return `#/tx/${enc(q)}`; },
    async () => {
      const event = await api(`/v1/events/${enc(q)}`);
      const copy = event.copies.find((c) => c.transaction_id);
      return copy ? `#/tx/${enc(copy.transaction_id)}/${enc(q)}` : null;
    },
    async () => {
      const page = await api(`/v1/subjects/${enc(q)}/transactions`, { query: { limit: 1 } });
      return page.items.length ? `#/subject/${enc(q)}` : null;
    },
  ]) {
    let target = null;
    try {
      target = await lookup();
    } catch (error) {
      if (error.status !== 404) throw error;
    }
    if (target && current(view)) {
      location.replace(target);
      return;
    }
  }
  show(view, h('h1', {}, 'Nothing found'),
    h('p', {}, `No transaction, event or subject has the id “${q}”. Check it, or search a subject with its prefix, e.g. beneficiary:42.`));
}

// ---------------------------------------------------------------- home: failed transactions

async function homePage(view) {
  const filters = state.home;
  const field = (name, label, hint) => h('label', {},
    label, h('input', { name, value: filters[name], placeholder: hint, spellcheck: 'false' }));
  const form = h('form', { class: 'filters', 'aria-label': 'Filters' },
    h('label', {}, 'Failed within',
      h('select', { name: 'since' }, ['15m', '1h', '6h', '24h', '7d', '30d'].map((v) =>
        h('option', { value: v, selected: v === filters.since }, v)))),
    field('topic', 'Topic', 'registrations'),
    field('type', 'Event type', 'birth.registration.submitted.v1'),
    field('service', 'Service (published or handled an event)', 'validation'),
    h('button', { type: 'submit' }, 'Apply'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    for (const name of ['since', 'topic', 'type', 'service']) filters[name] = form.elements[name].value.trim();
    filters.cursors = [null];
    route();
  });
  const page = await api('/v1/transactions', { query: {
    status: 'failed', since: filters.since, topic: filters.topic, type: filters.type,
    service: filters.service, limit: PAGE_SIZE, cursor: filters.cursors[filters.cursors.length - 1],
  } });
  const rows = page.items.map((t) => h('tr', {},
    h('td', {}, when(t.failure && t.failure.time)),
    h('td', {}, txLink(t.transaction_id)),
    h('td', {}, t.failure ? [h('b', {}, t.failure.consumer), ' on ', t.failure.topic, h('br'), h('span', { class: 'mono' }, t.failure.type)] : ''),
    h('td', {}, t.failure ? t.failure.error : ''),
    h('td', {}, t.subject_ids.map((s) => [subjectLink(s), ' ']))));
  show(view,
    h('h1', {}, 'Failed transactions'),
    h('p', { class: 'meta' }, `Newest failure first. Times in ${TIME_ZONE}.`),
    form,
    rows.length
      ? h('table', { id: 'failed' },
        h('caption', { class: 'visually-hidden' }, 'Failed transactions'),
        h('thead', {}, h('tr', {}, ['Failed at', 'Transaction', 'Failed step', 'Error', 'Subjects'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, rows))
      : h('p', { class: 'note' }, 'No failed transaction matches these filters.'),
    pager(filters.cursors, page.next_cursor, route));
}

// ---------------------------------------------------------------- incidents

const MINUTE_MS = 60000;
/// How many minutes one bar of a chart may stand for.
const BAR_MINUTES = [1, 5, 15, 60, 360, 1440];
const MINUTE_FORMAT = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
});

/// Failures over time as a bar chart the page draws itself (an inline SVG): `counts` are
/// `{minute, failures}`, oldest first, minutes without a failure given as zero or left out.
/// A bar stands for as few minutes as keep the bars to `bars`, and there are `least` at
/// least (the time before the first failure, empty); `axes` labels the highest count and
/// when the chart starts and ends.
function failureChart(counts, { bars, least = 1, width, height, axes = false, id }) {
  if (!counts.length) return h('p', { id }, 'No failure recorded.');
  const end = Date.parse(counts[counts.length - 1].minute) + MINUTE_MS;
  const span = end - Date.parse(counts[0].minute);
  const minutes = BAR_MINUTES.find((m) => span <= bars * m * MINUTE_MS) || Math.ceil(span / (bars * MINUTE_MS));
  const step = minutes * MINUTE_MS;
  const totals = new Array(Math.max(Math.ceil(span / step), least)).fill(0);
  const first = end - totals.length * step;
  for (const c of counts) totals[Math.floor((Date.parse(c.minute) - first) / step)] += c.failures;
  const most = Math.max(1, ...totals);
  const per = minutes === 1 ? 'minute' : `${minutes} minutes`;
  const [left, top, bottom] = axes ? [36, 6, 18] : [0, 1, 0];
  const plot = { width: width - left, height: height - top - bottom };
  const slot = plot.width / totals.length;
  const gap = slot >= 3 ? slot * 0.2 : 0;
  const label = `Failures per ${per} from ${MINUTE_FORMAT.format(first)} to ${MINUTE_FORMAT.format(end)}: `
    + `${totals.reduce((a, b) => a + b, 0)} in all, at most ${most} per ${per}`;
  const baseline = top + plot.height;
  return svg('svg', { id, class: axes ? 'chart large' : 'chart', role: 'img', 'aria-label': label,
    viewBox: `0 0 ${width} ${height}`, width, height },
  svg('line', { class: 'baseline', x1: left, x2: width, y1: baseline, y2: baseline }),
  totals.map((n, i) => {
    if (!n) return null;
    const tall = Math.max((n / most) * plot.height, 1.5);
    return svg('rect', { class: 'column', x: (left + i * slot + gap / 2).toFixed(2), y: (baseline - tall).toFixed(2),
      width: (slot - gap).toFixed(2), height: tall.toFixed(2) },
    svg('title', {}, `${MINUTE_FORMAT.format(first + i * step)}: ${plural(n, 'failure')}`));
  }),
  axes ? [
    svg('text', { x: left - 6, y: top + 10, 'text-anchor': 'end' }, most),
    svg('text', { x: left - 6, y: baseline, 'text-anchor': 'end' }, 0),
    svg('text', { x: left, y: height - 3 }, MINUTE_FORMAT.format(first)),
    svg('text', { x: width, y: height - 3, 'text-anchor': 'end' }, MINUTE_FORMAT.format(end)),
  ] : null);
}

const incidentLink = (i) => h('a', { href: `#/incident/${enc(i.incident_id)}` }, i.cause);
/// Where an incident's failures happen: `registrations · birth.registration.submitted.v1 → validation`.
const incidentStep = (i) => `${i.topic} · ${i.type} → ${i.consumer}`;
const incidentBadge = (i) => (i.status === 'open' ? badge('failed', 'open') : badge('ok', 'resolved'));

async function incidentsPage(view) {
  const filters = state.incidents;
  const form = h('form', { class: 'filters', 'aria-label': 'Filters' },
    h('label', {}, 'Status',
      h('select', { name: 'status' }, ['all', 'open', 'resolved'].map((v) =>
        h('option', { value: v, selected: v === filters.status }, v)))),
    h('button', { type: 'submit' }, 'Apply'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    filters.status = form.elements.status.value;
    filters.cursors = [null];
    route();
  });
  const page = await api('/v1/incidents', { query: {
    status: filters.status === 'all' ? null : filters.status,
    limit: PAGE_SIZE, cursor: filters.cursors[filters.cursors.length - 1],
  } });
  const rows = page.items.map((i) => h('tr', { 'data-incident-id': i.incident_id },
    h('td', {}, incidentBadge(i), i.reopened ? h('div', { class: 'gap' }, `reopened ${i.reopened}×`) : null),
    h('td', {}, incidentLink(i)),
    h('td', {}, incidentStep(i)),
    h('td', { class: 'count' }, `${i.failing} / ${i.transactions}`),
    h('td', {}, when(i.first_seen)),
    h('td', {}, when(i.last_seen)),
    h('td', {}, failureChart(i.recent, { bars: 60, width: 180, height: 28 }))));
  show(view,
    h('h1', {}, 'Incidents'),
    h('p', { class: 'meta' }, `Failed steps grouped by where and why they failed; the latest failure first. Times in ${TIME_ZONE}.`),
    form,
    rows.length
      ? h('table', { id: 'incidents' },
        h('caption', { class: 'visually-hidden' }, 'Incidents'),
        h('thead', {}, h('tr', {}, ['Status', 'Cause', 'Step', 'Failing / transactions', 'First seen', 'Last seen', 'Failures per minute, the hour to last seen']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, rows))
      : h('p', { class: 'note' }, filters.status === 'all' ? 'No step has failed.' : `No ${filters.status} incident.`),
    pager(filters.cursors, page.next_cursor, route));
}

async function incidentPage(view, id) {
  const paging = state.incident;
  if (paging.id !== id) Object.assign(paging, { id, cursors: [null], subjectCursors: [null] });
  const page = { id, view, detail: null, sections: {
    summary: h('div', { id: 'incident-summary' }),
    transactions: h('section', { id: 'incident-transactions', 'aria-labelledby': 'transactions-title' }),
  } };
  await fetchIncident(page);
  renderIncident(page);
  // Nothing to replay once none of its transactions fails.
  const replay = can('replay') && page.detail.incident.failing > 0 ? incidentReplay(page) : null;
  show(view, page.sections.summary, replay, page.sections.transactions, await incidentSubjects(page));
}

async function fetchIncident(page) {
  const cursors = state.incident.cursors;
  page.detail = await api(`/v1/incidents/${enc(page.id)}`, { query: { limit: PAGE_SIZE, cursor: cursors[cursors.length - 1] } });
}

function renderIncident(page) {
  const { incident: i, minutes, transactions, next_cursor: next, subjects } = page.detail;
  put(page.sections.summary,
    h('h1', {}, 'Incident: ', i.cause, ' ', incidentBadge(i)),
    h('div', { class: 'meta' },
      h('span', {}, 'Step ', h('b', {}, incidentStep(i))),
      h('span', {}, i.cause_kind === 'code' ? 'Cause: the error code the consumer gave' : 'Cause: the error text, its numbers and ids left out')),
    h('div', { class: 'meta' },
      h('span', {}, 'First seen ', h('b', {}, when(i.first_seen))),
      h('span', {}, 'Last seen ', h('b', {}, when(i.last_seen))),
      i.reopened ? h('span', {}, `Reopened ${i.reopened}× (last `, when(i.opened_at), ')') : null,
      i.resolved_at ? h('span', {}, 'Resolved ', h('b', {}, when(i.resolved_at))) : null,
      h('span', {}, `Times in ${TIME_ZONE}`)),
    h('dl', { class: 'stats', id: 'incident-stats' },
      [['Still failing', i.failing], ['Transactions', i.transactions], ['Failures', i.failures], ['Subjects', subjects]]
        .map(([label, value]) => [h('dt', {}, label), h('dd', {}, value)])),
    h('p', {}, 'Latest error: ', h('span', { class: 'error-text' }, i.example_error)),
    failureChart(minutes, { bars: 120, least: 30, width: 760, height: 160, axes: true, id: 'incident-chart' }),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'secondary', onclick: () => reloadIncident(page) }, 'Refresh')));
  put(page.sections.transactions,
    h('h2', { id: 'transactions-title' }, 'Transactions'),
    h('p', { class: 'meta' }, 'Those still failing first; each opens at its failed event.'),
    h('table', { id: 'incident-transaction-list' },
      h('thead', {}, h('tr', {}, ['Transaction', 'State', 'Failures', 'First failed', 'Last failed', 'Subjects'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, transactions.map((t) => h('tr', { 'data-failing': String(t.failing) },
        h('td', {}, txLink(t.transaction_id, t.failing_event_ids[0])),
        h('td', {}, t.failing ? badge('failed', 'failing') : [badge('ok', 'recovered'), ' ', when(t.recovered_at)]),
        h('td', {}, t.failures),
        h('td', {}, when(t.first_failed_at)),
        h('td', {}, when(t.last_failed_at)),
        h('td', {}, t.subject_ids.map((s) => [subjectLink(s), ' '])))))),
    pager(state.incident.cursors, next, route));
}

async function reloadIncident(page) {
  await fetchIncident(page);
  if (current(page.view)) renderIncident(page);
}

/// The subjects an incident touched, a page at a time, and their export.
async function incidentSubjects(page) {
  const cursors = state.incident.subjectCursors;
  const list = await api(`/v1/incidents/${enc(page.id)}/subjects`, { query: { limit: PAGE_SIZE, cursor: cursors[cursors.length - 1] } });
  return h('section', { id: 'incident-subject-list', 'aria-labelledby': 'subjects-title' },
    h('h2', { id: 'subjects-title' }, 'Subjects'),
    h('p', { class: 'meta' }, `${plural(page.detail.subjects, 'subject')}, each with the incident's transactions that carry it.`),
    exportButtons({ path: `/v1/exports/incidents/${enc(page.id)}/subjects`, name: `retrace-incident-${page.id}`,
      columns: INCIDENT_CSV_COLUMNS, row: (s) => s, noun: 'subject' }),
    h('table', { id: 'incident-subjects' },
      h('thead', {}, h('tr', {}, ['Subject', 'State', 'Transactions'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, list.items.map((s) => h('tr', {},
        h('td', {}, subjectLink(s.subject_id)),
        h('td', {}, s.failing ? badge('failed', 'failing') : badge('ok', 'recovered')),
        h('td', {}, s.transaction_ids.map((t) => [txLink(t), ' '])))))),
    pager(cursors, list.next_cursor, route));
}

/// The columns of `retrace export --incident ID --format csv`.
const INCIDENT_CSV_COLUMNS = ['subject_id', 'transaction_ids', 'failing'];

function incidentReplay(page) {
  const number = (name, label, value) => h('label', {}, label, ' ',
    h('input', { type: 'number', name, value, min: 1, required: true }));
  const form = replayForm({
    choices: h('fieldset', {}, h('legend', {}, 'What to replay'),
      h('p', {}, 'The failed events of the transactions still failing with this cause.'),
      number('rate', 'Messages per second', 100),
      number('max', 'Refuse a plan of more messages than', 1000)),
    body: () => ({ incident: page.id, rate: form.elements.rate.valueAsNumber, max: form.elements.max.valueAsNumber }),
    post: (request, headers) => api('/v1/replays', { method: 'POST', body: request, headers }),
    started: 'The incident resolves as the consumers report the replayed events processed.',
    follow: (replay, plan) => followIncidentReplay(page, replay, plan),
  });
  return h('section', { 'aria-labelledby': 'replay-title' }, h('h2', { id: 'replay-title' }, 'Replay incident'), form);
}

/// Follows the replay (`GET /v1/replays/{id}`) until it has published its messages, then the
/// incident until it is resolved, for POLL_FOR_MS at most.
async function followIncidentReplay(page, replay, plan) {
  const progress = h('p', { id: 'replay-progress', role: 'status' }, `Publishing: 0/${replay.planned}…`);
  plan.append(progress);
  let published = null;
  const done = await pollUntil(page.view, async () => {
    try {
      if (!published) {
        const now = await api(`/v1/replays/${enc(replay.replay_id)}`);
        if (now.state === 'failed') {
          progress.textContent = `Replay failed after ${now.published}/${now.planned} messages: ${now.error}`;
          return true;
        }
        progress.textContent = `Publishing: ${now.published}/${now.planned}…`;
        if (now.state !== 'done') return false;
        published = now;
      }
      await reloadIncident(page);
      const i = page.detail.incident;
      progress.textContent = i.status === 'resolved'
        ? `Replay done: ${plural(published.published, 'message')} published; the incident is resolved.`
        : `Replay done: ${plural(published.published, 'message')} published; ${plural(i.failing, 'transaction')} still failing, waiting for the consumers' outcomes…`;
      return i.status === 'resolved';
    } catch (error) {
      progress.textContent = `Could not follow the replay (${error.message}); still trying.`;
      return false;
    }
  });
  if (!current(page.view)) return;
  if (!done) progress.textContent += ' Press Refresh to look again.';
  announce(progress.textContent);
}

/// How often the banner asks whether an incident has opened.
const BANNER_POLL_MS = 30000;
const HOUR_MS = 3600000;

/// The banner on every page while an incident opened in the last hour is still open, for as
/// long as someone is signed in. One request at a time: the next BANNER_POLL_MS after the
/// last answer, or as soon as the person opens a page; none while the tab is hidden.
async function watchIncidents() {
  const banner = state.banner;
  if (banner.running) {
    if (banner.wake) banner.wake();
    return;
  }
  banner.running = true;
  while (state.me) {
    if (!document.hidden) {
      try {
        showNewIncidents(await api('/v1/incidents', { query: { status: 'open', since: '1h', limit: PAGE_SIZE } }));
      } catch {
        // The next round asks again; a page the person opened reports what is wrong.
      }
    }
    await new Promise((resolve) => {
      banner.wake = resolve;
      setTimeout(resolve, BANNER_POLL_MS);
    });
    banner.wake = null;
  }
  banner.running = false;
}

function showNewIncidents(page) {
  const banner = $('#incident-banner');
  const recent = page.items.filter((i) => Date.now() - Date.parse(i.opened_at) < HOUR_MS);
  const key = recent.map((i) => `${i.incident_id}:${i.failing}`).join(' ');
  if (!state.me || banner.dataset.key === key) return;
  banner.dataset.key = key;
  banner.hidden = !recent.length;
  if (!recent.length) return;
  // The latest to fail first, as the listing orders them. Announced once, not at each count.
  const [i, ...others] = recent;
  if (banner.dataset.newest !== i.incident_id) announce(`New incident: ${i.cause} at ${incidentStep(i)}`);
  banner.dataset.newest = i.incident_id;
  put(banner, h('b', {}, 'New incident: '), h('a', { href: `#/incident/${enc(i.incident_id)}` }, i.cause),
    ` at ${incidentStep(i)} — ${i.failing} failing`,
    others.length ? [' · ', h('a', { href: '#/incidents' }, `${plural(others.length, 'other new incident')}`)] : null);
}

// ---------------------------------------------------------------- transaction

/// A consumer's worst latest word decides an event's colour.
const SEVERITY = ['', 'processed', 'skipped', 'retrying', 'failed', 'dead_lettered'];

/// Every outcome about an event, each under the record it reports on, in the records' order.
const outcomesOf = (event) => event.records.flatMap((r) => r.outcomes);

function eventOutcome(event) {
  const latest = new Map();
  for (const outcome of outcomesOf(event)) latest.set(outcome.consumer, outcome.status);
  let worst = '';
  for (const status of latest.values()) {
    if (SEVERITY.indexOf(status) > SEVERITY.indexOf(worst)) worst = status;
  }
  return worst;
}

async function transactionPage(view, id, focusEvent) {
  const page = { id, view, payloads: false, trace: null, focusEvent, open: new Set(), waiting: null };
  page.trace = await api(`/v1/transactions/${enc(id)}`);
  const sections = {
    summary: h('div', { id: 'tx-summary' }),
    timeline: h('section', { id: 'timeline', 'aria-labelledby': 'timeline-title' }),
    tree: h('section', { id: 'tree', 'aria-labelledby': 'tree-title' }),
    replays: h('section', { id: 'replays', 'aria-labelledby': 'replays-title' }),
  };
  page.sections = sections;
  renderTrace(page);
  const replay = can('replay') ? replayPanel(page) : null;
  if (!show(view, sections.summary, sections.timeline, replay, sections.tree, sections.replays)) return;
  if (focusEvent) {
    const row = document.querySelector(`[data-event-id="${CSS.escape(focusEvent)}"]`);
    if (row) { row.open = true; row.scrollIntoView({ block: 'center' }); $('summary', row).focus(); }
  }
}

async function fetchTrace(page) {
  page.trace = await api(`/v1/transactions/${enc(page.id)}`, { query: { payload: page.payloads ? 'true' : null } });
}

async function reloadTrace(page) {
  await fetchTrace(page);
  if (current(page.view)) renderTrace(page);
}

function renderTrace(page) {
  const t = page.trace;
  // Keep open what the person opened (rows, attempts, headers), closed what they closed.
  for (const fold of document.querySelectorAll('#timeline details[data-key]')) {
    if (fold.open) page.open.add(fold.dataset.key);
    else page.open.delete(fold.dataset.key);
  }
  const subjects = [...new Set(t.events.flatMap((e) => e.subject_ids || []))];
  put(page.sections.summary,
    h('h1', {}, 'Transaction ', h('span', { class: 'mono' }, t.transaction_id), ' ', badge(t.status)),
    h('div', { class: 'meta' },
      h('span', {}, 'Started ', h('b', {}, when(t.started_at))),
      h('span', {}, 'Took ', h('b', {}, duration(t.duration_ms))),
      h('span', {}, h('b', {}, t.events.length), ' events'),
      h('span', {}, `Times in ${TIME_ZONE}`)),
    subjects.length ? h('p', {}, 'Subjects: ', subjects.map((s) => [subjectLink(s), ' '])) : null,
    t.failure
      ? h('div', { class: 'failure', id: 'failure' },
        h('b', {}, `Failed at ${t.failure.consumer}`), ` handling ${t.failure.type} on ${t.failure.topic}, `,
        when(t.failure.time), ': ', h('span', { class: 'error-text' }, t.failure.error))
      : null,
    h('div', { class: 'actions' },
      can('payload:read')
        ? h('button', { type: 'button', id: 'toggle-payloads', class: 'secondary', 'aria-pressed': String(page.payloads),
          onclick: async () => { page.payloads = !page.payloads; await reloadTrace(page); } },
        page.payloads ? 'Hide payloads' : 'Show payloads')
        : null,
      h('button', { type: 'button', class: 'secondary', onclick: () => reloadTrace(page) }, 'Refresh'),
      page.waiting ? h('span', { id: 'replay-progress', role: 'status' }, page.waiting.text) : null));
  put(page.sections.timeline, h('h2', { id: 'timeline-title' }, 'Timeline'), ...waterfall(page));
  put(page.sections.tree, h('h2', { id: 'tree-title' }, 'Causation'), causationTree(t));
  put(page.sections.replays, h('h2', { id: 'replays-title' }, 'Replays'),
    t.replays.length
      ? h('table', {},
        h('thead', {}, h('tr', {}, ['Requested', 'By', 'Reason', 'What', 'State', 'Published'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, t.replays.map((r) => h('tr', { 'data-replay-id': r.replay_id },
          h('td', {}, when(r.requested_at)), h('td', {}, r.requested_by), h('td', {}, r.reason),
          h('td', {}, r.selection), h('td', {}, badge(r.state === 'done' ? 'ok' : r.state === 'failed' ? 'failed' : 'in_progress', r.state), r.error ? [' ', r.error] : ''),
          h('td', {}, `${r.published}/${r.planned}`)))))
      : h('p', {}, 'This transaction has not been replayed.'));
}

function waterfall(page) {
  const t = page.trace;
  const start = Date.parse(t.started_at);
  const end = Math.max(start, Date.parse(t.last_at), ...t.events.map((e) => Date.parse(e.last_at)));
  const span = Math.max(end - start, 1);
  const rows = t.events.map((e) => {
    const at = Date.parse(e.time);
    const worst = eventOutcome(e);
    const key = `${e.topic}/${e.partition}/${e.offset}`;
    const left = ((at - start) / span) * 100;
    const width = Math.max(((Date.parse(e.last_at) - at) / span) * 100, 0.6);
    const label = worst ? worst.replace('_', ' ') : 'no outcome';
    const replayed = !!e.replay_id || e.records.some((r) => r.role === 'replayed');
    const row = h('details', {
      class: e.replay_id ? 'replayed-copy' : null, 'data-key': key, 'data-event-id': e.event_id || null,
      'data-outcome': worst || 'none', open: page.open.has(key),
    },
    h('summary', {},
      h('span', {}, when(e.time)),
      h('span', { class: 'gap', title: 'time since the previous event' }, `+${duration(e.since_previous_ms)}`),
      h('span', {}, h('span', { class: 'mono' }, e.type || e.kind), replayed ? [' ', badge('replay', '↻ replayed')] : null,
        e.records.length > 1 ? h('span', { class: 'gap' }, ` · ${plural(attempts(e), 'attempt')}`) : null),
      h('span', {}, e.topic, e.source ? [' · ', e.source] : ''),
      h('span', {}, worst ? badge(worst) : h('span', { class: 'gap' }, 'no outcome')),
      h('span', { class: 'track', role: 'img', 'aria-label': `${label}, ${duration(e.duration_ms)} from publication to its last record or outcome` },
        h('span', { class: `bar ${worst}`, 'data-left': left.toFixed(2), 'data-width': width.toFixed(2) }))),
    eventDetail(page, e, key));
    return h('li', {}, row);
  });
  const list = h('ol', { class: 'waterfall', 'aria-label': 'Events in time order' }, rows);
  // Positions are set from script, not a style attribute: the page's policy forbids inline styles.
  for (const bar of list.querySelectorAll('.bar')) {
    bar.style.left = `${bar.dataset.left}%`;
    bar.style.width = `${bar.dataset.width}%`;
  }
  return [
    h('div', { class: 'legend', 'aria-hidden': 'true' },
      ['processed', 'retrying', 'failed', 'dead_lettered'].map((s) => badge(s)), badge('', 'no outcome yet'), badge('replay', '↻ replayed')),
    list,
  ];
}

function eventDetail(page, e, key) {
  const headersKey = `${key}/headers`;
  const payload = e.payload
    ? h('div', {}, h('h3', {}, 'Payload', e.payload.content_type ? ` (${e.payload.content_type})` : ''),
      h('pre', { class: 'payload' }, e.payload.json !== undefined ? JSON.stringify(e.payload.json, null, 2) : e.payload.text || e.payload.base64 || ''),
      e.payload.headers.length ? h('details', { 'data-key': headersKey, open: page.open.has(headersKey) }, h('summary', {}, 'Kafka headers'),
        h('pre', { class: 'payload' }, e.payload.headers.map(([k, v]) => `${k}: ${v === null ? '' : v}`).join('\n'))) : null)
    : null;
  const outcomes = outcomesOf(e);
  return h('div', { class: 'event-detail' },
    h('p', { class: 'meta' },
      h('span', {}, 'Event ', h('span', { class: 'mono' }, e.event_id || '—')),
      e.causation_id ? h('span', {}, 'caused by ', h('span', { class: 'mono' }, e.causation_id)) : null,
      h('span', {}, `${e.topic} partition ${e.partition} offset ${e.offset}`),
      e.replay_id ? h('span', {}, 'replay ', h('span', { class: 'mono' }, e.replay_id)) : null,
      e.erased_at ? h('span', {}, 'payload erased ', when(e.erased_at)) : null,
      // How other languages publish (proto/README.md): worth knowing, not a warning.
      e.kind === 'headers_only' && !e.problem ? h('span', {}, 'traced from its retrace-* headers') : null),
    e.problem ? h('p', { class: 'warning' }, h('b', {}, `⚠ ${e.kind}: `), e.problem) : null,
    // Carried by several records (retried, dead-lettered, redriven, replayed): its attempts,
    // each outcome under the record it reports on. Carried by one: its outcomes.
    e.records.length > 1 ? attemptsFold(page, e, `${key}/attempts`)
      : outcomes.length
        ? h('table', { class: 'outcomes' },
          h('thead', {}, h('tr', {}, ['Consumer', 'Outcome', 'Attempt', 'When', 'Error'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, outcomes.map((o) => h('tr', {},
            h('td', {}, o.consumer), h('td', {}, badge(o.status)), h('td', {}, o.attempt),
            h('td', {}, when(o.time)), h('td', {}, o.error || '')))))
        : h('p', {}, 'No consumer has reported on this event yet.'),
    payload,
    can('replay') && e.event_id && !e.replay_id
      ? h('button', { type: 'button', class: 'secondary', onclick: () => page.replayFrom && page.replayFrom(e.event_id) }, 'Replay from this event')
      : null);
}

/// The records that run an event (again): its publication, the worker's retries, a redrive, a
/// replay's copy. Not a retried publish or a copy held until it is due, which repeat an attempt
/// already counted, nor a dead-letter copy, which nothing runs.
const ATTEMPT_ROLES = new Set(['published', 'retry', 'redriven', 'replayed']);
const attempts = (event) => event.records.filter((r) => ATTEMPT_ROLES.has(r.role)).length;

/// What a record that carries an event is, where and when it was written, as
/// `retry due 12:00:03.005 (after 2.00 s) on retrace.jobs.certificates.retry`; `at` shows a
/// time.
const RECORD_LINES = {
  published: (r, at) => ['published to ', r.topic, ' at ', at(r.time)],
  republished: (r, at) => ['written again (a retried publish) to ', r.topic, ' at ', at(r.time)],
  retry: (r, at) => ['retry due ', dueAfter(r, at), ' on ', r.topic],
  deferred: (r, at) => ['held for later: due ', dueAfter(r, at), ' on ', r.topic],
  dead_lettered: (r, at) => [`dead-lettered to ${r.topic} at `, at(r.time), ` after attempt ${r.attempt}`],
  redriven: (r, at) => [`redriven by ${r.redriven_by || 'an unnamed caller'} to ${r.topic} at `, at(r.time)],
  replayed: (r, at) => ['to ', r.topic, ' at ', at(r.time)],
};

const dueAfter = (r, at) => (r.due_at
  ? [at(r.due_at), ` (after ${duration(Date.parse(r.due_at) - Date.parse(r.time))})`]
  : ['unknown (written ', at(r.time), ')']);

function recordLine(r, at) {
  const line = RECORD_LINES[r.role] || ((x) => [`${x.role.replace('_', ' ')} on ${x.topic} at `, at(x.time)]);
  return r.replay_id
    ? [badge('replay', '↻ replayed'), ' ', line(r, at), ' (replay ', h('span', { class: 'mono' }, r.replay_id), ')']
    : line(r, at);
}

const outcomeLine = (o, at) => h('li', { 'data-status': o.status },
  o.attempt ? `attempt ${o.attempt} · ` : '', `${o.consumer} `, badge(o.status), ' at ', at(o.time),
  o.error ? [' · ', o.error] : null);

/// An event's records in the order written, folded: "3 attempts, dead-lettered". Their times
/// go without the date when they all fall on the day of the event's publication.
function attemptsFold(page, e, key) {
  const worst = eventOutcome(e);
  const day = (iso) => new Date(iso).toDateString();
  const format = day(e.time) === day(e.last_at) ? CLOCK_FORMAT : TIME_FORMAT;
  const at = (iso) => when(iso, format);
  return h('details', { class: 'attempts', 'data-key': key, open: page.open.has(key) },
    h('summary', {}, `${plural(attempts(e), 'attempt')}, ${worst ? worst.replace('_', '-') : 'no outcome yet'}`,
      h('span', { class: 'gap' }, ` · ${plural(e.records.length, 'Kafka record')} over ${duration(e.duration_ms)}`)),
    h('ol', { class: 'records' }, e.records.map((r) => h('li', {
      'data-role': r.role, title: `written ${r.time} (UTC), ${r.topic} partition ${r.partition} offset ${r.offset}`,
    },
    h('span', { class: 'record' }, recordLine(r, at)),
    r.outcomes.length ? h('ul', { class: 'record-outcomes' }, r.outcomes.map((o) => outcomeLine(o, at))) : null))));
}

function causationTree(t) {
  const node = (n) => h('li', {},
    h('button', { type: 'button', onclick: () => {
      const row = document.querySelector(`#timeline [data-event-id="${CSS.escape(n.event_id)}"]`);
      if (row) { row.open = true; $('summary', row).focus(); }
    } }, n.type || n.event_id), ` on ${n.topic}`,
    n.children.length ? h('ul', {}, n.children.map(node)) : null);
  return t.tree.length ? h('div', { class: 'tree' }, h('ul', {}, t.tree.map(node))) : h('p', {}, 'No causation recorded.');
}

// ---------------------------------------------------------------- replay

/// The steps of every replay the console starts: what to replay (`choices`, the form's own
/// fields, and `body()`, their part of the request), a reason, the plan from a dry run, then
/// confirm. `post(request, headers)` sends a request; once the replay has started, the page
/// says so with `started`, and `follow(replay, plan)` follows it (`plan` is where the plan was).
function replayForm({ choices, body, post, started, follow }) {
  // aria-required, not required: the page explains a missing reason itself, in words.
  const reason = h('textarea', { id: 'replay-reason', name: 'reason', rows: 2, 'aria-required': 'true', 'aria-describedby': 'reason-help' });
  const plan = h('div', { id: 'replay-plan', 'aria-live': 'polite' });
  const form = h('form', { class: 'replay-form panel', id: 'replay-form' },
    choices,
    h('label', { for: 'replay-reason' }, 'Reason'),
    reason,
    h('p', { id: 'reason-help', class: 'meta' }, 'Required: recorded in the audit trail and on every replayed message.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'plan-replay' }, 'Show plan (dry run)')),
    plan);
  const request = (dryRun) => ({ reason: reason.value.trim(), dry_run: dryRun, ...body() });
  // A plan shown is the plan confirmed: any change of choice asks for a new one.
  form.addEventListener('input', () => put(plan));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const dry = request(true);
    if (!dry.reason) {
      put(plan, errorBox({ message: 'Give a reason: say why these messages are replayed, for the audit trail.' }));
      reason.focus();
      return;
    }
    let answer;
    try {
      answer = await post(dry, {});
    } catch (error) {
      put(plan, errorBox(error));
      return;
    }
    const messages = answer.plan.messages;
    const confirm = h('button', { type: 'button', id: 'confirm-replay', class: 'danger' },
      `Replay ${plural(messages.length, 'message')}`);
    confirm.addEventListener('click', async () => {
      confirm.disabled = true;
      let replay;
      try {
        // A double click, or a retry after a lost answer, starts one replay, not two.
        const key = confirm.dataset.key || (confirm.dataset.key = requestKey());
        replay = (await post(request(false), { 'Idempotency-Key': key })).replay;
      } catch (error) {
        confirm.disabled = false;
        plan.append(errorBox(error));
        return;
      }
      put(plan, h('p', { class: 'note', id: 'replay-started' },
        `Replay ${replay.replay_id} started: ${plural(replay.planned, 'message')}. ${started}`));
      await follow(replay, plan);
    });
    const shown = messages.slice(0, PLAN_ROWS);
    const several = answer.plan.transactions > 1;
    put(plan,
      h('h3', {}, 'Plan (nothing is published yet)'),
      several || shown.length < messages.length
        ? h('p', {}, `${plural(messages.length, 'message')} of ${plural(answer.plan.transactions, 'transaction')}`,
          shown.length < messages.length ? `; the first ${shown.length}:` : ':')
        : null,
      h('table', { id: 'plan-table' },
        h('thead', {}, h('tr', {}, ['#', several ? 'Transaction' : null, 'Event', 'Type', 'From', 'To topic'].filter(Boolean).map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, shown.map((m, i) => h('tr', {},
          h('td', {}, i + 1), several ? h('td', {}, txLink(m.transaction_id)) : null,
          h('td', { class: 'mono' }, m.event_id), h('td', {}, m.type),
          h('td', {}, `${m.topic} ${m.partition}:${m.offset}`), h('td', {}, m.target_topic))))),
      h('div', { class: 'actions' }, confirm,
        h('button', { type: 'button', class: 'secondary', onclick: () => put(plan) }, 'Cancel')));
    confirm.focus();
    announce(`Plan: ${plural(messages.length, 'message')} would be replayed. Confirm to replay.`);
  });
  return form;
}

/// The plan's messages shown at most; a bulk replay's plan can hold thousands.
const PLAN_ROWS = 20;

function replayPanel(page) {
  const originals = page.trace.events.filter((e) => e.event_id && !e.replay_id);
  const scope = (value, label, extra) => h('label', {},
    h('input', { type: 'radio', name: 'scope', value, checked: value === (page.trace.failure ? 'failed' : 'whole') }), ' ', label, extra || '');
  const fromEvent = h('select', { name: 'from', 'aria-label': 'Event to replay from' },
    originals.map((e) => h('option', { value: e.event_id }, `${e.type} (${e.topic}, ${TIME_FORMAT.format(new Date(e.time))})`)));
  const form = replayForm({
    choices: h('fieldset', {}, h('legend', {}, 'What to replay'),
      scope('failed', 'Only failed events'),
      scope('whole', 'The whole transaction'),
      scope('from', 'From this event on: ', fromEvent)),
    body: () => {
      const chosen = form.elements.scope.value;
      return { only_failed: chosen === 'failed', from_event_id: chosen === 'from' ? fromEvent.value : null };
    },
    post: (request, headers) => api(`/v1/transactions/${enc(page.id)}/replay`, { method: 'POST', body: request, headers }),
    started: 'The timeline shows the replayed events as they arrive.',
    follow: (replay) => followReplay(page, replay.replay_id, replay.planned),
  });
  page.replayFrom = (eventId) => {
    form.elements.scope.value = 'from';
    fromEvent.value = eventId;
    put($('#replay-plan', form));
    form.scrollIntoView({ block: 'center' });
    form.elements.reason.focus();
  };
  return h('section', { 'aria-labelledby': 'replay-title' }, h('h2', { id: 'replay-title' }, 'Replay'), form);
}

/// Calls `step` every POLL_MS while the page of `view` is shown, until it answers true
/// (then true) or POLL_FOR_MS have passed (false). One request at a time: the next is asked
/// POLL_MS after the answer to the last.
async function pollUntil(view, step) {
  const until = Date.now() + POLL_FOR_MS;
  while (current(view) && Date.now() < until) {
    await delay(POLL_MS);
    if (!current(view)) return false;
    if (await step()) return true;
  }
  return false;
}

/// Asks for the trace until the replay's copies are all in it and the consumers have
/// reported on them (the status is no longer `replayed`), or for POLL_FOR_MS at most.
async function followReplay(page, replayId, planned) {
  const copies = () => page.trace.events.flatMap((e) => e.records)
    .filter((r) => r.role === 'replayed' && r.replay_id === replayId).length;
  const progress = () => (copies() < planned
    ? `Waiting for the replayed events (${copies()}/${planned})…`
    : `${plural(planned, 'replayed event')} in the timeline; waiting for the consumers' outcomes…`);
  page.waiting = { text: progress() };
  renderTrace(page);
  const done = await pollUntil(page.view, async () => {
    try {
      await fetchTrace(page);
      if (copies() >= planned && page.trace.status !== 'replayed') {
        page.waiting = { text: `Replay done: ${plural(planned, 'replayed event')} in the timeline; status is now ${page.trace.status.replace('_', ' ')}.` };
        renderTrace(page);
        announce(page.waiting.text);
        return true;
      }
      page.waiting = { text: progress() };
    } catch (error) {
      page.waiting = { text: `Could not refresh the trace (${error.message}); still trying.` };
    }
    renderTrace(page);
    return false;
  });
  if (!done && current(page.view)) {
    page.waiting = { text: copies() < planned
      ? 'The replayed events have not all arrived yet; press Refresh to look again.'
      : 'The replayed events are in the timeline, but not every consumer has reported on them yet; press Refresh to look again.' };
    renderTrace(page);
  }
}

// ---------------------------------------------------------------- subject

const CSV_COLUMNS = ['transaction_id', 'status', 'started_at', 'last_at', 'events', 'topics', 'subject_ids', 'failed_step', 'error'];

/// The same rows as `retrace export`.
function exportRow(t) {
  return {
    transaction_id: t.transaction_id, status: t.status, started_at: t.started_at, last_at: t.last_at,
    events: t.events, topics: t.topics, subject_ids: t.subject_ids,
    failed_step: t.failure ? `${t.failure.topic}/${t.failure.type}/${t.failure.consumer}` : null,
    error: t.failure ? t.failure.error : null,
  };
}

/// As the CLI's `csv_field`: a cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`,
/// tab, CR first) gets a leading apostrophe, so an id or error text stays text.
function csvField(value) {
  const raw = Array.isArray(value) ? value.join(';') : value === null || value === undefined ? '' : String(value);
  const text = /^[=+\-@\t\r]/.test(raw) ? `'${raw}` : raw;
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/// Every page of an export (`path`, one of the API's export listings), saved as a CSV or
/// JSON file named after `name`: `columns` are the CSV's, `row(item)` makes an item's row, a
/// `noun` each.
async function exportAll({ path, name, columns, row, noun }, format, status) {
  status.textContent = 'Exporting…';
  const rows = [];
  let cursor = null;
  do {
    const page = await api(path, { query: { limit: 500, cursor } });
    rows.push(...page.items.map(row));
    cursor = page.next_cursor;
  } while (cursor);
  const file = `${name.replace(/[^A-Za-z0-9._-]+/g, '_')}.${format}`;
  if (format === 'csv') {
    const lines = [columns.join(','), ...rows.map((r) => columns.map((c) => csvField(r[c])).join(','))];
    download(file, 'text/csv', lines.join('\r\n') + '\r\n');
  } else {
    download(file, 'application/json', JSON.stringify(rows, null, 2) + '\n');
  }
  status.textContent = `Exported ${plural(rows.length, noun)} to ${file}.`;
}

/// The export buttons of a page, for callers who may export (see `exportAll`).
function exportButtons(spec) {
  if (!can('export')) return null;
  const status = h('span', { id: 'export-status', role: 'status' });
  const button = (format) => h('button', { type: 'button', class: 'secondary', id: `export-${format}`,
    onclick: () => exportAll(spec, format, status).catch((e) => { status.textContent = e.message; }) }, `Export ${format.toUpperCase()}`);
  return h('div', { class: 'actions' }, button('csv'), button('json'), status);
}

async function subjectPage(view, subject) {
  const paging = state.subject;
  if (paging.id !== subject) Object.assign(paging, { id: subject, cursors: [null] });
  const page = await api(`/v1/subjects/${enc(subject)}/transactions`, {
    query: { limit: PAGE_SIZE, cursor: paging.cursors[paging.cursors.length - 1] },
  });
  show(view,
    h('h1', {}, 'Subject ', h('span', { class: 'mono' }, subject)),
    h('p', { class: 'meta' }, `Every transaction that touched it, newest first. Times in ${TIME_ZONE}.`),
    exportButtons({ path: `/v1/exports/subjects/${enc(subject)}/transactions`, name: `retrace-${subject}`,
      columns: CSV_COLUMNS, row: exportRow, noun: 'transaction' }),
    page.items.length
      ? h('table', { id: 'subject-transactions' },
        h('thead', {}, h('tr', {}, ['Started', 'Transaction', 'Status', 'Events', 'Topics', 'Failure'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, page.items.map((t) => h('tr', {},
          h('td', {}, when(t.started_at)), h('td', {}, txLink(t.transaction_id)), h('td', {}, badge(t.status)),
          h('td', {}, t.events), h('td', {}, t.topics.join(', ')),
          h('td', {}, t.failure ? `${t.failure.consumer}: ${t.failure.error}` : '')))))
      : h('p', { class: 'note' }, 'No archived transaction names this subject.'),
    pager(paging.cursors, page.next_cursor, route));
}

// ---------------------------------------------------------------- jobs

async function jobsPage(view) {
  let queues;
  try {
    queues = await api('/v1/jobs/queues');
  } catch (error) {
    if (error.status !== 404) throw error;
    show(view, h('h1', {}, 'Jobs'), h('div', { class: 'note', id: 'no-worker' },
      h('p', {}, `No worker answers on this address (${location.origin}): the worker serves its queues on its own address, port 7072 by default. `,
        'With ', h('code', {}, 'retrace dev'), ' everything shares one address; in production, run ',
        h('code', {}, 'retrace jobs status --server http://<worker-host>:7072'), '.')));
    return;
  }
  const cards = await Promise.all(queues.map((q) => queueCard(q)));
  show(view, h('h1', {}, 'Jobs'),
    h('p', { class: 'meta' }, 'Counts are the worker process’s since it started; pending is the queue’s backlog in Kafka.'),
    queues.length ? h('div', { class: 'cards' }, cards) : h('p', { class: 'note' }, 'The worker has no queues configured.'));
}

async function queueCard(q) {
  const dlq = `retrace.jobs.${q.queue}.dlq`;
  let letters = [];
  let problem = null;
  try {
    letters = (await api('/v1/messages', { query: { topic: dlq, payload: 'true', limit: 50 } })).items;
  } catch (error) {
    problem = error;
  }
  const errorOf = (m) => {
    const errors = (m.payload ? m.payload.headers : []).filter(([k]) => k === 'retrace-job-error');
    return errors.length ? errors[errors.length - 1][1] : '';
  };
  const stat = (label, value) => [h('dt', {}, label), h('dd', {}, value === null || value === undefined ? '—' : value)];
  const redrive = can('redrive') && letters.length ? redriveForm(q.queue, letters) : null;
  return h('section', { class: 'panel', 'aria-labelledby': `queue-${q.queue}` },
    h('h2', { id: `queue-${q.queue}` }, q.queue, ' ', badge(q.gate_open ? 'ok' : 'failed', q.gate_open ? 'gate open' : 'gate closed')),
    h('p', {}, q.gate_reason),
    h('dl', { class: 'stats' },
      stat('Pending', q.pending === null ? `unknown (${q.pending_error || 'Kafka did not answer'})` : q.pending),
      stat('Running', q.running), stat('Done', q.done), stat('Retrying', q.retrying),
      stat('Dead-lettered', q.dead_lettered), stat('Failed', q.failed), stat('Per second', q.rate_per_s.toFixed(2))),
    h('h3', {}, `Dead letters (${dlq})`),
    problem ? errorBox(problem) : letters.length
      ? h('table', {},
        h('thead', {}, h('tr', {}, [redrive ? 'Pick' : null, 'Job', 'Transaction', 'Dead-lettered', 'Last error'].filter(Boolean).map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, letters.map((m) => h('tr', {},
          redrive ? h('td', {}, h('input', { type: 'checkbox', class: 'pick-job', value: m.event_id, 'aria-label': `Pick job ${m.event_id}` })) : null,
          h('td', { class: 'mono' }, m.event_id), h('td', {}, m.transaction_id ? txLink(m.transaction_id) : ''),
          h('td', {}, when(m.time)), h('td', {}, errorOf(m))))))
      : h('p', {}, 'No job has been dead-lettered.'),
    redrive);
}

function redriveForm(queue, letters) {
  const reason = h('textarea', { rows: 2, id: `redrive-reason-${queue}`, 'aria-required': 'true' });
  const out = h('div', { 'aria-live': 'polite' });
  const section = h('div', { class: 'replay-form' },
    h('label', { for: `redrive-reason-${queue}` }, 'Reason for the redrive (required)'), reason,
    h('div', { class: 'actions' },
      h('button', { type: 'button', onclick: () => plan(false) }, 'Plan redrive of picked jobs'),
      h('button', { type: 'button', class: 'secondary', onclick: () => plan(true) }, `Plan redrive of all ${letters.length}`)),
    out);
  const body = (all, dryRun) => {
    const picked = [...section.closest('section').querySelectorAll('.pick-job:checked')].map((c) => c.value);
    return all ? { all: true, dry_run: dryRun, reason: reason.value.trim() } : { jobs: picked, dry_run: dryRun, reason: reason.value.trim() };
  };
  const send = (request) => api(`/v1/jobs/queues/${enc(queue)}/redrive`, { method: 'POST', body: request });
  async function plan(all) {
    const request = body(all, true);
    if (!request.reason) { put(out, errorBox({ message: 'Give a reason: say why these jobs are redriven, for the audit trail.' })); reason.focus(); return; }
    if (!all && !request.jobs.length) { put(out, errorBox({ message: 'Pick at least one job, or plan a redrive of all.' })); return; }
    try {
      const report = await send(request);
      const moving = Object.entries(report.redriven);
      const confirm = h('button', { type: 'button', class: 'danger', disabled: !moving.length }, `Redrive ${plural(moving.length, 'job')}`);
      confirm.addEventListener('click', async () => {
        confirm.disabled = true;
        try {
          const done = await send({ ...request, dry_run: false });
          put(out, h('p', { class: 'note' }, `Redriven ${plural(Object.keys(done.redriven).length, 'job')}.`,
            done.not_found.length ? ` Not found: ${done.not_found.join(', ')}.` : ''));
        } catch (error) { out.append(errorBox(error)); }
      });
      put(out, h('p', {}, moving.length ? 'Would move (nothing moved yet):' : 'Nothing to move.'),
        h('ul', {}, moving.map(([job, lane]) => h('li', {}, h('span', { class: 'mono' }, job), ` → ${lane}`))),
        report.not_found.length ? h('p', {}, `Not found in the dead-letter topic: ${report.not_found.join(', ')}`) : null,
        h('div', { class: 'actions' }, confirm));
    } catch (error) { put(out, errorBox(error)); }
  }
  return section;
}

// ---------------------------------------------------------------- audit

async function auditPage(view) {
  if (!can('audit:read')) {
    show(view, h('h1', {}, 'Audit'), h('p', { class: 'note' }, `Your role (${state.me.role}) may not read the audit trail; ask an admin.`));
    return;
  }
  const filters = state.audit;
  const form = h('form', { class: 'filters', 'aria-label': 'Filters' },
    h('label', {}, 'Within', h('select', { name: 'since' }, ['1h', '24h', '7d', '30d', '365d'].map((v) => h('option', { value: v, selected: v === filters.since }, v)))),
    h('label', {}, 'Actor', h('input', { name: 'actor', value: filters.actor, spellcheck: 'false' })),
    h('label', {}, 'Target (transaction, subject, query)', h('input', { name: 'target', value: filters.target, spellcheck: 'false' })),
    h('button', { type: 'submit' }, 'Apply'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    filters.since = form.elements.since.value;
    filters.actor = form.elements.actor.value.trim();
    filters.target = form.elements.target.value.trim();
    filters.cursors = [null];
    route();
  });
  const verdict = h('span', { role: 'status', id: 'verify-result' });
  const verify = h('button', { type: 'button', class: 'secondary', onclick: async () => {
    verdict.textContent = 'Checking…';
    try {
      const v = await api('/v1/audit/verify');
      verdict.textContent = v.intact ? `Chain intact: ${v.records} records.` : `Chain broken: ${v.problems.join('; ')}`;
    } catch (error) { verdict.textContent = error.message; }
  } }, 'Verify the hash chain');
  const page = await api('/v1/audit', { query: { since: filters.since, actor: filters.actor, target: filters.target, limit: PAGE_SIZE, cursor: filters.cursors[filters.cursors.length - 1] } });
  show(view, h('h1', {}, 'Audit trail'),
    h('p', { class: 'meta' }, `Oldest first, in the order the chain records them. Times in ${TIME_ZONE}.`), form, h('div', { class: 'actions' }, verify, verdict),
    h('table', { id: 'audit' },
      h('thead', {}, h('tr', {}, ['#', 'When', 'Who', 'From', 'Action', 'Target', 'Reason', 'Result'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, page.items.map((r) => h('tr', {},
        h('td', {}, r.seq), h('td', {}, when(r.at)), h('td', {}, `${r.actor} (${r.role})`), h('td', { class: 'mono' }, r.origin),
        h('td', {}, r.action), h('td', { class: 'mono' }, r.target), h('td', {}, r.reason || ''), h('td', {}, r.result))))),
    pager(filters.cursors, page.next_cursor, route, ['← Earlier', 'Later →']));
}

// ---------------------------------------------------------------- start

document.addEventListener('DOMContentLoaded', () => {
  $('#search').addEventListener('submit', (event) => {
    event.preventDefault();
    search($('#search-box').value);
  });
  $('#sign-out').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', route);
  route();
});
