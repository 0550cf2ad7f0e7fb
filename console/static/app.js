// omnisync agent console. Plain JavaScript, no build step.
//
// Customer data is hostile input: it only ever reaches the page as text
// nodes (h() and append() below) or attribute values, never as markup.
'use strict';

(() => {
  const TOKEN_KEY = 'omnisync.token';
  const $ = (id) => document.getElementById(id);
  const main = $('main');

  // ---------------------------------------------------------------- DOM

  // h builds an element: props are attributes (class, testid → data-testid,
  // on* → listeners), children are nodes or strings (added as text).
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'testid') el.setAttribute('data-testid', v);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c == null || c === false) continue;
      el.append(c instanceof Node ? c : String(c)); // strings become text nodes
    }
    return el;
  }

  // safeURL returns u when it is an http(s) URL, else null (no javascript: links).
  function safeURL(u) {
    try {
      const url = new URL(u, location.href);
      return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
    } catch {
      return null;
    }
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const enc = encodeURIComponent;

  // ------------------------------------------------------------- format

  const CHANNELS = {
    WEB: 'Web', APP: 'App', MINIPROGRAM: 'Mini-program', WECHAT: 'WeChat', PHONE: 'Phone',
    CRM: 'CRM', IMPORT: 'Import', AGENT: 'Agent', UNKNOWN: 'Unknown',
  };
  const FIELD_LABELS = {
    name: 'Name', phone: 'Phone', email: 'E-mail', gender: 'Gender', birthday: 'Birthday',
    vip_level: 'VIP level', tags: 'Tags', address: 'Address', id_number: 'ID number',
  };
  const FIELD_ORDER = Object.keys(FIELD_LABELS);
  const STATUS_LABELS = {
    OPEN: 'Open', KEPT_CURRENT: 'Kept current', TOOK_CANDIDATE: 'Took candidate', SET_VALUE: 'Set value',
  };
  // A merge suggestion is a conflict on the pseudo-field "merge": confirmed
  // by taking the candidate (the API requests the merge), rejected by
  // keeping the current.
  const MERGE_FIELD = 'merge';
  const MERGE_STATUS_LABELS = { OPEN: 'Open', KEPT_CURRENT: 'Rejected', TOOK_CANDIDATE: 'Merged' };
  const statusLabel = (x, status) => (x.field === MERGE_FIELD ? MERGE_STATUS_LABELS : STATUS_LABELS)[status] || status;

  function fieldLabel(f) {
    if (f === MERGE_FIELD) return 'Same person?';
    if (FIELD_LABELS[f]) return FIELD_LABELS[f];
    if (f.startsWith('attributes.')) return f.slice(11).replace(/_/g, ' ');
    return f;
  }

  function channelBadge(ch, extra) {
    const c = ch in CHANNELS ? ch : 'UNKNOWN';
    return h('span', { class: `badge ch-${c.toLowerCase()}`, title: extra || null, 'data-channel': c }, CHANNELS[c]);
  }

  // valueText renders a field value (any JSON) as one line of text.
  function valueText(v) {
    if (v == null) return '—';
    if (Array.isArray(v)) return v.join(', ');
    if (typeof v === 'object') {
      return ['country', 'province', 'city', 'district', 'street', 'postal_code']
        .map((k) => v[k]).filter(Boolean).join(' ');
    }
    return String(v);
  }

  function valueNode(v) {
    if (v == null) return h('span', { class: 'muted', title: 'cleared' }, '— cleared');
    if (Array.isArray(v)) return h('span', { class: 'chips' }, v.map((t) => h('span', { class: 'chip' }, t)));
    return h('span', { class: 'value' }, valueText(v));
  }

  const rtf = new Intl.RelativeTimeFormat('en', { numeric: 'auto', style: 'short' });
  function ago(iso) {
    if (!iso) return '—';
    let s = (Date.parse(iso) - Date.now()) / 1000;
    for (const [unit, size] of [['second', 60], ['minute', 60], ['hour', 24], ['day', 30], ['month', 12]]) {
      if (Math.abs(s) < size) return rtf.format(Math.round(s), unit);
      s /= size;
    }
    return rtf.format(Math.round(s), 'year');
  }
  const fullTime = (iso) => (iso ? `${new Date(iso).toLocaleString()} (${iso})` : '');
  const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const day = (iso) => new Date(iso).toLocaleDateString([], { weekday: 'short', year: 'numeric', month: 'short', day: 'numeric' });
  const mmss = (ms) => `${Math.floor(ms / 60000)}:${String(Math.floor(ms / 1000) % 60).padStart(2, '0')}`;

  function timeAgo(iso, prefix) {
    return h('time', { datetime: iso, title: fullTime(iso) }, (prefix || '') + ago(iso));
  }

  // --------------------------------------------------------------- API

  class APIError extends Error {
    constructor(status, reason) {
      super(reason);
      this.status = status;
    }
  }

  // Credentials: an API token (the bootstrap link's admin token, or one
  // pasted in) is sent as a bearer token; without one the browser sends the
  // session cookie of a name-and-password sign-in, and state-changing calls
  // carry the session's CSRF token (from the omnisync_csrf cookie).
  const token = () => localStorage.getItem(TOKEN_KEY) || '';
  const csrf = () => (document.cookie.match(/(?:^|; )omnisync_csrf=([^;]*)/) || [])[1] || '';
  let me = null; // GET /session: {name, role, via}

  function authHeaders(method) {
    const headers = { Accept: 'application/json' };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    else if (method !== 'GET') headers['X-CSRF-Token'] = decodeURIComponent(csrf());
    return headers;
  }

  async function api(path, opts = {}) {
    const headers = authHeaders(opts.method || 'GET');
    if (opts.body) headers['Content-Type'] = 'application/json';
    let resp;
    try {
      resp = await fetch(`/api/v1${path}`, {
        method: opts.method || 'GET', headers, cache: 'no-store',
        body: opts.body ? JSON.stringify(opts.body) : undefined,
      });
    } catch (e) {
      showBanner(`The server does not answer (${e.message}).`);
      throw new APIError(0, 'the server does not answer');
    }
    let body = null;
    try {
      body = await resp.json();
    } catch {
      // not JSON: the status says enough
    }
    if (resp.ok) {
      hideBanner();
      return body;
    }
    const reason = (body && (body.reason || body.error)) || resp.statusText;
    if (resp.status === 401 && !opts.signingIn) {
      signOut(`Signed out: ${reason}`);
    } else if (resp.status === 503) {
      showBanner(`The service is temporarily unavailable: ${reason}.`);
    }
    throw new APIError(resp.status, reason);
  }

  // ------------------------------------------------------ chrome & auth

  function showBanner(text) {
    $('banner-text').textContent = text;
    $('banner').hidden = false;
  }
  function hideBanner() {
    $('banner').hidden = true;
  }
  $('banner-retry').addEventListener('click', () => {
    hideBanner();
    route();
  });

  function toast(text) {
    const t = h('div', { class: 'toast', role: 'status', testid: 'toast' }, text);
    document.body.append(t);
    setTimeout(() => t.remove(), 4000);
  }

  // takeTokenFromFragment moves #token=… into localStorage and out of the
  // address bar (and so out of the history).
  function takeTokenFromFragment() {
    if (!location.hash.startsWith('#token=')) return;
    const t = new URLSearchParams(location.hash.slice(1)).get('token');
    if (t) localStorage.setItem(TOKEN_KEY, t);
    history.replaceState(null, '', `${location.pathname}${location.search}#/customers`);
  }

  function signOut(message, local) {
    if (!token() && me && !local) api('/session', { method: 'DELETE' }).catch(() => {});
    localStorage.removeItem(TOKEN_KEY);
    me = null;
    live.stop();
    stopView();
    main.replaceChildren();
    $('nav').hidden = $('whoami').hidden = true;
    $('signin').hidden = false;
    $('signin-error').textContent = message || '';
    $('signin-error').hidden = !message;
    $('signin-name').focus();
  }

  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('signin-name').value.trim();
    const secret = $('signin-password').value;
    $('signin-password').value = '';
    if (!name) {
      // No name: the secret is an API token (the admin token).
      localStorage.setItem(TOKEN_KEY, secret.trim());
    } else {
      localStorage.removeItem(TOKEN_KEY);
      try {
        await api('/session', { method: 'POST', body: { name, password: secret }, signingIn: true });
      } catch (err) {
        $('signin-error').textContent = `Not signed in: ${err.message}`;
        $('signin-error').hidden = false;
        return;
      }
    }
    route();
  });
  $('sign-out').addEventListener('click', () => signOut(''));

  function renderWhoami() {
    $('agent-name').textContent = me && me.name ? `${me.name} · ${me.role}` : '';
    $('nav-audit').hidden = !(me && me.role === 'admin');
  }

  // ask shows the modal prompt and resolves to the trimmed answer, or null.
  function ask(title, hint, initial) {
    const dlg = $('ask');
    $('ask-title').textContent = title;
    $('ask-hint').textContent = hint;
    $('ask-input').value = initial || '';
    dlg.showModal();
    $('ask-input').select();
    return new Promise((resolve) => {
      const done = (v) => {
        $('ask-form').onsubmit = $('ask-cancel').onclick = dlg.oncancel = null;
        if (dlg.open) dlg.close();
        resolve(v);
      };
      $('ask-form').onsubmit = (e) => {
        e.preventDefault();
        const v = $('ask-input').value.trim();
        done(v || null);
      };
      $('ask-cancel').onclick = () => done(null);
      dlg.oncancel = () => done(null);
    });
  }

  // ---------------------------------------------------------- live push

  // live follows GET /api/v1/live (Server-Sent Events, read with fetch so a
  // bearer token works as well as the session cookie) and hands each change
  // to the open view; it reconnects with Last-Event-ID, and on "resync"
  // reloads the view.
  const live = {
    ctl: null,
    lastID: '',
    handlers: new Set(),
    start() {
      if (this.ctl) return;
      const ctl = new AbortController();
      this.ctl = ctl;
      (async () => {
        while (!ctl.signal.aborted) {
          try {
            await this.follow(ctl.signal);
          } catch {
            // dropped: reconnect below
          }
          if (!ctl.signal.aborted) await sleep(1000);
        }
      })();
    },
    stop() {
      if (this.ctl) this.ctl.abort();
      this.ctl = null;
      this.lastID = '';
    },
    async follow(signal) {
      const headers = authHeaders('GET');
      headers.Accept = 'text/event-stream';
      if (this.lastID) headers['Last-Event-ID'] = this.lastID;
      const resp = await fetch('/api/v1/live', { headers, signal, cache: 'no-store' });
      if (resp.status === 401) {
        signOut('Signed out: the session ended', true);
        return;
      }
      if (!resp.ok) throw new Error(`live: ${resp.status}`);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += value;
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let event = 'message', data = '', id = '';
          for (const line of frame.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
            else if (line.startsWith('id: ')) id = line.slice(4);
          }
          if (id) this.lastID = id;
          if (event === 'change') this.emit(JSON.parse(data));
          else if (event === 'resync') this.emit({ resync: true });
        }
      }
    },
    emit(ev) {
      for (const fn of this.handlers) fn(ev);
    },
  };

  // onLive runs fn for each change while the current view is shown.
  function onLive(fn) {
    live.handlers.add(fn);
    const stop = stopCurrent;
    stopCurrent = () => {
      live.handlers.delete(fn);
      if (stop) stop();
    };
  }

  // debounce runs fn at most once per ms, after the last call.
  function debounce(fn, ms) {
    let t = null;
    return () => {
      clearTimeout(t);
      t = setTimeout(fn, ms);
    };
  }

  // The review count follows the changes that open or close conflicts.
  const countLater = debounce(() => refreshReviewCount(), 300);
  live.handlers.add((ev) => {
    if (ev.resync || ev.changes.includes('conflict') || ev.changes.includes('resolution') || ev.changes.includes('record')) countLater();
  });

  async function refreshReviewCount() {
    try {
      const p = await api('/conflicts?status=open&limit=500');
      const n = p.items.length;
      $('review-count').textContent = p.next_cursor ? `${n}+` : String(n);
      $('review-count').hidden = n === 0;
    } catch {
      // the views report errors; the badge just stays as it was
    }
  }

  // ------------------------------------------------------------ routing

  let generation = 0; // bumped on every route; stale async work checks it
  let stopCurrent = null;

  function stopView() {
    generation++;
    if (stopCurrent) stopCurrent();
    stopCurrent = null;
  }

  async function route() {
    if (!me) {
      try {
        me = await api('/session', { signingIn: true });
      } catch (err) {
        if (err.status === 401 || !token()) {
          signOut(token() ? `The token was not accepted: ${err.message}` : '', true);
          return;
        }
        // The API is down (the banner says so): show the view; it retries.
      }
    }
    live.start();
    stopView();
    $('signin').hidden = true;
    $('nav').hidden = $('whoami').hidden = false;
    renderWhoami();
    const [path] = location.hash.replace(/^#\/?/, '').split('?');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const view = parts[0] || 'customers';
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.route === view);
    if (view === 'review') reviewView();
    else if (view === 'sync') syncView();
    else if (view === 'audit') auditView();
    else customersView(parts[1] || null);
    refreshReviewCount();
  }

  window.addEventListener('hashchange', route);
  document.addEventListener('keydown', (e) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
    if (e.key === '/' && !typing && !$('ask').open) {
      e.preventDefault();
      if (!location.hash.startsWith('#/customers')) location.hash = '#/customers';
      setTimeout(() => $('search') && $('search').focus(), 0);
    }
  });

  function errorBox(err, what) {
    const text = err.status === 404 ? `${what}: not found.` : `${what} failed: ${err.message}`;
    return h('div', { class: 'empty error-state', testid: 'error' }, text);
  }

  // ---------------------------------------------------------- customers

  // The search pane survives moving between customers.
  const search = { q: '', items: [], next: '', active: -1, pane: null, timer: null };

  function customersView(id) {
    if (!search.pane) search.pane = buildSearchPane();
    const detail = h('section', { class: 'detail', id: 'customer-pane' });
    main.replaceChildren(h('div', { class: 'customers-layout' }, search.pane, detail));
    renderResults();
    runSearch(false);
    if (id) showCustomer(id, detail);
    else {
      detail.append(h('div', { class: 'empty' },
        h('p', {}, 'Search for a customer by name, phone number, e-mail or ID.'),
        h('p', { class: 'muted' }, 'Press / to search from anywhere; ↑ ↓ and Enter pick a result.')));
      $('search').focus();
    }
  }

  function buildSearchPane() {
    const input = h('input', {
      id: 'search', type: 'search', placeholder: 'Search customers…', autocomplete: 'off', spellcheck: 'false',
      'aria-label': 'Search customers', 'aria-controls': 'results', testid: 'search',
    });
    input.addEventListener('input', () => {
      clearTimeout(search.timer);
      search.timer = setTimeout(() => runSearch(true), 200);
    });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        const n = search.items.length;
        const step = e.key === 'ArrowDown' ? 1 : -1;
        if (n) search.active = search.active < 0 ? (step > 0 ? 0 : n - 1) : (search.active + step + n) % n;
        renderResults();
      } else if (e.key === 'Enter') {
        e.preventDefault();
        clearTimeout(search.timer);
        const pick = search.items[Math.max(search.active, 0)];
        if (pick && search.q === input.value.trim()) location.hash = `#/customers/${enc(pick.id)}`;
        else runSearch(true).then(() => search.items[0] && (location.hash = `#/customers/${enc(search.items[0].id)}`));
      } else if (e.key === 'Escape') {
        input.value = '';
        runSearch(true);
      }
    });
    return h('aside', { class: 'search-pane' },
      h('form', { role: 'search', onsubmit: (e) => e.preventDefault() }, input),
      h('div', { id: 'results-status', class: 'muted small', 'aria-live': 'polite' }),
      h('ul', { id: 'results', class: 'results', role: 'listbox', testid: 'results' }),
      h('button', { id: 'results-more', class: 'link', type: 'button', hidden: true, onclick: () => runSearch(false, true) }, 'More results'));
  }

  // runSearch queries the API; force re-runs an unchanged query, more loads the next page.
  async function runSearch(force, more) {
    if (!search.pane || !search.pane.isConnected) return; // another view is shown
    const q = $('search').value.trim();
    if (!force && !more && q === search.q && search.items.length) return;
    const cursor = more ? search.next : '';
    $('results-status').textContent = 'Searching…';
    try {
      const p = await api(`/customers?limit=30&q=${enc(q)}${cursor ? `&cursor=${enc(cursor)}` : ''}`);
      if (!search.pane.isConnected || $('search').value.trim() !== q) return; // left, or typed on meanwhile
      search.items = more ? search.items.concat(p.items) : p.items;
      search.q = q;
      search.next = p.next_cursor;
      if (!more) search.active = -1;
      $('results-status').textContent = search.items.length ? '' : q ? `No customer matches “${q}”.` : 'No customers yet.';
    } catch (e) {
      if (!search.pane.isConnected) return;
      $('results-status').textContent = `Search failed: ${e.message}`;
    }
    renderResults();
  }

  function renderResults() {
    const current = decodeURIComponent((location.hash.match(/^#\/customers\/([^?]+)/) || [])[1] || '');
    const list = $('results');
    list.replaceChildren(...search.items.map((c, i) => h('li', { role: 'option', 'aria-selected': String(i === search.active) },
      h('a', {
        href: `#/customers/${enc(c.id)}`, testid: 'result', 'data-customer-id': c.id,
        class: `result${i === search.active ? ' active' : ''}${c.id === current ? ' current' : ''}`,
      },
      h('div', { class: 'result-top' },
        h('strong', { class: 'result-name' }, c.name || 'Unnamed customer'),
        c.open_conflicts ? h('span', { class: 'pill warn', title: 'Open conflicts' }, `${c.open_conflicts} to review`) : null),
      h('div', { class: 'muted small ellipsis' }, [c.phone, c.email].filter(Boolean).join(' · ') || c.id),
      h('div', { class: 'result-bottom' },
        h('span', { class: 'badges' }, c.channels.map((ch) => channelBadge(ch))),
        c.last_contact_at ? h('span', { class: 'muted small' }, timeAgo(c.last_contact_at)) : null)))));
    const active = list.querySelector('.result.active');
    if (active) active.scrollIntoView({ block: 'nearest' });
    $('results-more').hidden = !search.next;
  }

  // showCustomer loads and shows a customer; a refresh (live) keeps what
  // is shown until the new state is there.
  async function showCustomer(id, pane, refresh) {
    const gen = generation;
    if (!refresh) pane.replaceChildren(h('div', { class: 'empty muted' }, 'Loading…'));
    let c, timeline;
    try {
      [c, timeline] = await Promise.all([api(`/customers/${enc(id)}`), loadTimeline(id)]);
    } catch (e) {
      if (gen === generation) pane.replaceChildren(errorBox(e, `Customer ${id}`));
      return;
    }
    if (gen !== generation) return;
    renderCustomer(pane, c, timeline);
    if (!pane.dataset.live) {
      pane.dataset.live = id;
      const again = debounce(() => gen === generation && showCustomer(id, pane, true), 100);
      onLive((ev) => {
        if (ev.resync || (ev.customer_id === id && ev.version > (pane.dataset.version | 0))) again();
      });
    }
    pane.dataset.version = c.version;
  }

  // loadTimeline reads up to 2,000 messages, oldest first.
  async function loadTimeline(id) {
    const out = { items: [], truncated: false };
    let cursor = '';
    do {
      const p = await api(`/customers/${enc(id)}/timeline?limit=500${cursor ? `&cursor=${enc(cursor)}` : ''}`);
      out.items.push(...p.items);
      cursor = p.next_cursor;
    } while (cursor && out.items.length < 2000);
    out.truncated = Boolean(cursor);
    return out;
  }

  function renderCustomer(pane, c, timeline) {
    const name = c.fields.name && typeof c.fields.name.value === 'string' ? c.fields.name.value : null;
    const open = c.conflicts.filter((x) => x.status === 'OPEN');
    const closed = c.conflicts.filter((x) => x.status !== 'OPEN');
    const header = h('div', { class: 'customer-head' },
      h('div', {},
        h('h1', { id: 'customer-name', testid: 'customer-name' }, name || 'Unnamed customer'),
        h('div', { class: 'muted small' },
          h('span', { class: 'mono', title: 'Customer ID' }, c.id), ` · version ${c.version}`,
          c.last_contact_at ? [' · last contact ', timeAgo(c.last_contact_at), ' via ', channelBadge(c.last_contact_channel)] : null)),
      h('div', { class: 'badges' },
        c.needs_review ? h('span', { class: 'pill warn', testid: 'needs-review' }, 'Needs review') : null,
        c.channels.map((ch) => channelBadge(ch))));
    if (c.redirected_from) {
      header.append(h('div', { class: 'redirect-note muted small', testid: 'redirected-from' },
        `${c.redirected_from} was merged into this customer.`));
    }
    if (c.deleted) {
      pane.replaceChildren(header, h('div', { class: 'empty' }, "This customer's data was erased (privacy request)."));
      return;
    }
    const side = h('div', { class: 'side' },
      open.length ? h('section', { class: 'card conflicts', id: 'conflicts', testid: 'conflicts' },
        h('h2', {}, `To review (${open.length})`),
        open.map((x) => conflictCard(x, c, () => {
          showCustomer(c.id, pane);
          runSearch(true); // the result's "to review" count changed
        }))) : null,
      h('section', { class: 'card' }, h('h2', {}, 'Profile'), profileTable(c)),
      h('section', { class: 'card' }, h('h2', {}, 'Identities'), identityList(c.identities)),
      c.also_known_as && c.also_known_as.length ? h('section', { class: 'card', id: 'also-known-as', testid: 'also-known-as' },
        h('h2', {}, 'Also known as'), h('ul', { class: 'plain aka' }, c.also_known_as.map((a) => akaLine(c, a, pane)))) : null,
      closed.length ? h('section', { class: 'card' },
        h('details', { id: 'resolved-conflicts' },
          h('summary', {}, `Resolved conflicts (${closed.length})`),
          h('ul', { class: 'plain' }, closed.map(resolvedLine)))) : null);
    const tl = h('section', { class: 'card timeline-card' },
      h('h2', {}, 'Timeline ', h('span', { class: 'h2-note' }, `${timeline.items.length} messages across ${new Set(timeline.items.map((m) => m.channel)).size} channels`)),
      timelineNode(timeline));
    pane.replaceChildren(header, h('div', { class: 'customer-grid' }, side, tl));
    const scroller = tl.querySelector('.timeline');
    scroller.scrollTop = scroller.scrollHeight; // newest in view
  }

  // akaLine shows a customer merged into c: who decided, on what evidence,
  // and the unmerge action (direct absorptions only: a chain is undone
  // from its own survivor).
  function akaLine(c, a, pane) {
    const status = h('span', { class: 'resolve-status', 'aria-live': 'polite' });
    const button = a.via ? null : h('button', { type: 'button', class: 'link', testid: 'unmerge', onclick: () => unmerge(c, a, button, status, pane) }, 'Unmerge');
    return h('li', { testid: 'aka', 'data-customer-id': a.id },
      h('span', { class: 'mono' }, a.id), ' ',
      h('span', { class: 'muted small' }, `merged ${ago(a.merged_at)}`, a.decided_by ? ` by ${a.decided_by}` : '',
        a.via ? ` via ${a.via}` : '', a.evidence.length ? ` · ${a.evidence.map(identityText).join(', ')}` : ''),
      ' ', button, status);
  }

  const identityText = (i) => `${i.kind.replace(/_/g, ' ')} ${i.value}`;

  // unmerge asks the API to split a merged customer off again and waits
  // until the materializer did.
  async function unmerge(c, a, button, status, pane) {
    button.disabled = true;
    status.className = 'resolve-status spinner';
    status.textContent = 'Unmerging…';
    try {
      await api(`/customers/${enc(c.id)}/unmerge`, { method: 'POST', body: { merge_id: a.merge_id } });
    } catch (e) {
      button.disabled = false;
      status.className = 'resolve-status error';
      status.textContent = `Not unmerged: ${e.message}`;
      return;
    }
    for (const deadline = Date.now() + 30000; Date.now() < deadline;) {
      await sleep(400);
      try {
        const now = await api(`/customers/${enc(c.id)}`);
        if (!now.also_known_as.some((x) => x.merge_id === a.merge_id)) {
          toast(`${a.id} is a customer of its own again`);
          showCustomer(c.id, pane);
          runSearch(true);
          return;
        }
      } catch {
        // keep waiting
      }
    }
    status.className = 'resolve-status error';
    status.textContent = 'Sent, but not applied yet: the materializer may be behind. Check again shortly.';
  }

  function profileTable(c) {
    const verifiedPhone = c.identities.find((i) => i.kind === 'phone' && i.verified);
    if (!c.fields.phone && verifiedPhone) {
      // The number a channel vouched for (a caller's): shown where no
      // source set the field, below every source in authority.
      c = { ...c, fields: { ...c.fields, phone: { value: verifiedPhone.value, identity: true } } };
    }
    const names = Object.keys(c.fields).sort((a, b) => {
      const ia = FIELD_ORDER.indexOf(a), ib = FIELD_ORDER.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
    });
    if (!names.length) return h('p', { class: 'muted' }, 'No profile fields yet.');
    const disputed = new Set(c.conflicts.filter((x) => x.status === 'OPEN').map((x) => x.field));
    return h('table', { class: 'fields', id: 'profile' }, h('tbody', {}, names.map((f) => {
      const v = c.fields[f];
      return h('tr', { testid: 'field', 'data-field': f, class: disputed.has(f) ? 'disputed' : null },
        h('th', { scope: 'row' }, fieldLabel(f)),
        h('td', {}, valueNode(f === 'gender' && typeof v.value === 'string' ? v.value.charAt(0) + v.value.slice(1).toLowerCase() : v.value)),
        h('td', { class: 'prov' }, provenance(v)));
    })));
  }

  function provenance(f) {
    if (f.identity) {
      return h('span', { class: 'provenance muted small', title: 'A verified identity of the customer; no source set the field', testid: 'provenance' }, 'verified identity');
    }
    const title = `Set by ${CHANNELS[f.channel] || f.channel} (${f.source}) at ${fullTime(f.occurred_at)}; event ${f.event_id}`;
    return h('span', { class: 'provenance', title, testid: 'provenance' },
      channelBadge(f.channel, title), ' ', h('span', { class: 'muted small' }, ago(f.occurred_at)));
  }

  function identityList(ids) {
    if (!ids.length) return h('p', { class: 'muted' }, 'No channel identities.');
    return h('ul', { class: 'identities', id: 'identities' }, ids.map((i) => h('li', {},
      h('span', { class: 'id-kind' }, i.kind.replace(/_/g, ' ')),
      h('span', { class: 'mono ellipsis', title: i.scope ? `${i.value} (${i.scope})` : i.value }, i.value))));
  }

  function resolvedLine(x) {
    return h('li', { testid: 'resolved-conflict', 'data-conflict-id': x.id, 'data-status': x.status },
      h('strong', {}, fieldLabel(x.field)), ': ', h('span', { class: 'pill ok' }, statusLabel(x, x.status)), ' ',
      h('span', { class: 'muted small' }, x.field === MERGE_FIELD ? `with ${x.candidate.customer_id}` : `${valueText(x.current)} vs ${valueText(x.candidate)}`,
        x.resolved_by ? ` · by ${x.resolved_by}` : '', x.resolved_at ? [' · ', timeAgo(x.resolved_at)] : ''));
  }

  // conflictCard shows an open conflict with its actions; onResolved runs
  // once the materializer closed it.
  function conflictCard(x, customer, onResolved) {
    if (x.field === MERGE_FIELD) return suggestionCard(x, onResolved);
    const cur = customer && customer.fields[x.field];
    const card = h('div', { class: 'conflict', testid: 'conflict', 'data-conflict-id': x.id, 'data-status': x.status },
      h('div', { class: 'conflict-head' }, h('strong', {}, fieldLabel(x.field)), ' ', h('span', { class: 'muted small' }, timeAgo(x.detected_at, 'detected '))),
      h('div', { class: 'compare' },
        h('div', {}, h('div', { class: 'label' }, 'Current'), valueNode(x.current), cur ? h('div', {}, provenance(cur)) : null),
        h('div', {}, h('div', { class: 'label' }, 'Candidate'), valueNode(x.candidate),
          h('div', {}, channelBadge(x.candidate_channel), ' ', h('span', { class: 'muted small' }, x.candidate_source)))),
      resolveActions(x, onResolved));
    return card;
  }

  // suggestionCard shows a merge suggestion: the other customer, the
  // identities an event showed of both, which channel and when.
  function suggestionCard(x, onResolved) {
    return h('div', { class: 'conflict suggestion', testid: 'conflict', 'data-conflict-id': x.id, 'data-status': x.status },
      h('div', { class: 'conflict-head' }, h('strong', {}, 'Same person?'), ' ', h('span', { class: 'muted small' }, timeAgo(x.detected_at, 'seen '))),
      suggestionBody(x),
      resolveActions(x, onResolved));
  }

  function suggestionBody(x) {
    const other = x.candidate.customer_id;
    return h('div', { class: 'suggestion-body' },
      h('div', {}, 'May be the same person as ', h('a', { href: `#/customers/${enc(other)}`, class: 'mono', testid: 'suggested-customer' }, other)),
      h('div', { class: 'muted small' }, channelBadge(x.candidate_channel, x.candidate_source), ' showed ',
        x.candidate.evidence.map(identityText).join(', ') || 'their identities'));
  }

  function resolveActions(x, onResolved) {
    const status = h('span', { class: 'resolve-status', testid: 'resolve-status', 'aria-live': 'polite' });
    const choices = x.field === MERGE_FIELD ? [['keep_current', 'Not the same'], ['take_candidate', 'Merge']]
      : [['keep_current', 'Keep current'], ['take_candidate', 'Take candidate'], ['set_value', 'Set value…']];
    const buttons = choices
      .map(([choice, label]) => h('button', {
        type: 'button', 'data-action': choice, testid: `resolve-${choice}`, class: choice === 'take_candidate' ? 'primary' : null,
        onclick: () => resolve(x, choice, buttons, status, onResolved),
      }, label));
    return h('div', { class: 'actions' }, buttons, status);
  }

  // resolve sends the agent's decision and waits until the materializer
  // applied it (the API only puts the RESOLVE event into Kafka).
  async function resolve(x, choice, buttons, status, onResolved) {
    let value;
    if (choice === 'set_value') {
      value = await ask(`Set ${fieldLabel(x.field)}`, 'The value every channel will see from now on.', valueText(x.current));
      if (value == null) return;
    }
    const busy = (on, text, cls) => {
      buttons.forEach((b) => (b.disabled = on));
      status.className = `resolve-status ${cls || ''}`;
      status.textContent = text;
    };
    busy(true, 'Resolving…', 'spinner');
    const row = status.closest('tr');
    if (row) row.dataset.resolving = '1';
    try {
      await api(`/conflicts/${enc(x.id)}/resolve`, { method: 'POST', body: { choice, value } });
    } catch (e) {
      if (e.status !== 409) {
        busy(false, `Not resolved: ${e.message}`, 'error');
        return;
      }
      // 409: someone resolved it meanwhile; fall through and show the outcome
    }
    for (const deadline = Date.now() + 30000; Date.now() < deadline;) {
      await sleep(400);
      try {
        const c = await api(`/customers/${enc(x.customer_id)}`);
        const now = c.conflicts.find((y) => y.id === x.id);
        if (!now || now.status !== 'OPEN') {
          busy(true, `Resolved: ${now ? statusLabel(x, now.status) : 'closed'}`, 'ok');
          toast(`${fieldLabel(x.field)}: ${now ? statusLabel(x, now.status) : 'resolved'}`);
          refreshReviewCount();
          onResolved(now);
          return;
        }
      } catch {
        // keep waiting; a banner says when the API is down
      }
    }
    busy(false, 'Sent, but not applied yet: the materializer may be behind. Check again shortly.', 'error');
  }

  // ----------------------------------------------------------- timeline

  // timelineItems groups consecutive transcript segments of one call.
  function timelineItems(messages) {
    const items = [];
    for (const m of messages) {
      const t = m.content_type === 'TRANSCRIPT' && m.transcript;
      const last = items[items.length - 1];
      if (t && last && last.call && last.call === t.call_id) last.segments.push(m);
      else if (t) items.push({ call: t.call_id, segments: [m], at: m.occurred_at });
      else items.push({ message: m, at: m.occurred_at });
    }
    return items;
  }

  function timelineNode(timeline) {
    if (!timeline.items.length) {
      return h('div', { class: 'timeline empty muted', id: 'timeline', testid: 'timeline' }, 'No messages on any channel yet.');
    }
    const box = h('div', { class: 'timeline', id: 'timeline', testid: 'timeline' });
    if (timeline.truncated) box.append(h('p', { class: 'muted small center' }, `Showing the first ${timeline.items.length} messages.`));
    let lastDay = '';
    for (const it of timelineItems(timeline.items)) {
      const d = day(it.at);
      if (d !== lastDay) box.append(h('div', { class: 'day' }, h('span', {}, d)));
      lastDay = d;
      box.append(it.call ? callCard(it) : messageNode(it.message));
    }
    return box;
  }

  function isAgentSide(m) {
    return m.direction === 'OUTBOUND' || m.sender_type === 'AGENT' || m.sender_type === 'BOT';
  }

  function messageNode(m) {
    if (m.content_type === 'EVENT') {
      return h('div', { class: 'system', testid: 'message', 'data-channel': m.channel, 'data-message-id': m.id },
        channelBadge(m.channel), ' ', m.text || 'event', ' · ', h('time', { title: fullTime(m.occurred_at) }, clock(m.occurred_at)));
    }
    const side = isAgentSide(m) ? 'agent' : 'customer';
    const who = side === 'agent' ? `${m.sender_type === 'BOT' ? 'Bot' : 'Agent'}${m.sender_id ? ` ${m.sender_id}` : ''}` : 'Customer';
    return h('div', { class: `msg ${side}`, testid: 'message', 'data-channel': m.channel, 'data-message-id': m.id },
      h('div', { class: 'bubble' }, messageBody(m)),
      h('div', { class: 'meta' }, channelBadge(m.channel, `${m.source} · conversation ${m.conversation_id}`), ' ', who, ' · ',
        h('time', { datetime: m.occurred_at, title: fullTime(m.occurred_at) }, clock(m.occurred_at))));
  }

  function messageBody(m) {
    const parts = [];
    const kind = { IMAGE: 'Image', VOICE: 'Voice message', VIDEO: 'Video', FILE: 'File', LINK: 'Link', LOCATION: 'Location' }[m.content_type];
    if (kind) parts.push(h('div', { class: 'kind' }, kind));
    if (m.text) parts.push(h('p', { class: 'text', testid: 'message-text' }, m.text));
    if (m.location) {
      const l = m.location;
      parts.push(h('p', { class: 'small' }, `${l.Label || l.label || ''} (${l.Latitude ?? l.latitude}, ${l.Longitude ?? l.longitude})`));
    }
    for (const a of m.attachments || []) {
      const url = safeURL(a.url);
      const label = `${a.mime_type || 'attachment'}${a.size_bytes ? ` · ${Math.ceil(a.size_bytes / 1024)} KB` : ''}`;
      parts.push(url ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', class: 'attachment' }, label)
        : h('span', { class: 'attachment' }, label));
    }
    if (!parts.length) parts.push(h('span', { class: 'muted' }, `(${(m.content_type || 'empty').toLowerCase()})`));
    return parts;
  }

  function callCard(it) {
    const segs = it.segments.slice().sort((a, b) => a.transcript.segment - b.transcript.segment);
    const first = segs[0];
    const end = Math.max(...segs.map((s) => s.transcript.end_ms));
    const meta = first.metadata || {};
    const direction = meta.call_direction || first.direction;
    const dir = direction === 'OUTBOUND' ? 'Outbound call' : direction === 'INBOUND' ? 'Inbound call' : 'Call';
    const number = (segs.find((s) => s.sender_type === 'CUSTOMER') || {}).sender_id;
    return h('div', { class: 'call', testid: 'call', 'data-channel': 'PHONE', 'data-call-id': it.call },
      h('div', { class: 'call-head' }, channelBadge(first.channel, first.source), ' ', h('strong', {}, dir), ' ',
        h('span', { class: 'muted small' }, [number, meta.agent_id && `agent ${meta.agent_id}`, mmss(end), `${segs.length} turns`].filter(Boolean).join(' · '), ' · ',
          h('time', { datetime: first.occurred_at, title: fullTime(first.occurred_at) }, clock(first.occurred_at)))),
      h('ol', { class: 'turns' }, segs.map((s) => {
        const t = s.transcript;
        const agent = /agent/i.test(t.speaker) || s.sender_type === 'AGENT';
        const low = t.confidence > 0 && t.confidence < 0.8;
        return h('li', { class: `turn ${agent ? 'agent' : 'customer'}`, testid: 'turn' },
          h('span', { class: 'speaker' }, t.speaker || (agent ? 'agent' : 'customer')),
          h('span', { class: 'ts muted small' }, mmss(t.start_ms)),
          h('span', { class: `text${low ? ' low' : ''}`, title: `confidence ${Math.round(t.confidence * 100)}%` }, s.text || ''));
      })));
  }

  // -------------------------------------------------------- review queue

  async function reviewView() {
    const gen = generation;
    const body = h('tbody', {});
    const more = h('button', { type: 'button', class: 'link', id: 'review-more', hidden: true });
    const table = h('table', { class: 'grid', id: 'review-table', testid: 'review-table' },
      h('thead', {}, h('tr', {}, ['Detected', 'Customer', 'Field', 'Current', 'Candidate', 'Decision'].map((t) => h('th', {}, t)))), body);
    const status = h('div', { class: 'muted' }, 'Loading…');
    main.replaceChildren(h('div', { class: 'page' },
      h('h1', {}, 'Review queue'),
      h('p', { class: 'muted' }, 'Key-field writes held back because they disagree with the current value, and customers that may be one person. Oldest first.'),
      status, table, more));
    let cursor = '';
    const load = async () => {
      try {
        const p = await api(`/conflicts?status=open&limit=100${cursor ? `&cursor=${enc(cursor)}` : ''}`);
        if (gen !== generation) return;
        for (const x of p.items) body.append(reviewRow(x));
        cursor = p.next_cursor;
        more.hidden = !cursor;
        status.replaceChildren(body.children.length ? '' : h('div', { class: 'empty', testid: 'review-empty' },
          'Nothing to review. Disagreeing key-field writes appear here.'));
        table.hidden = !body.children.length;
      } catch (e) {
        if (gen === generation) status.replaceChildren(errorBox(e, 'Loading the review queue'));
      }
    };
    more.textContent = 'Load more';
    more.onclick = load;
    // Live: new conflicts join the table; rows resolved elsewhere show
    // their outcome and who decided.
    onLive(debounce(async () => {
      if (gen !== generation) return;
      let p;
      try {
        p = await api('/conflicts?status=open&limit=100');
      } catch {
        return;
      }
      if (gen !== generation) return;
      const shown = new Map([...body.children].map((r) => [r.dataset.conflictId, r]));
      const open = new Set(p.items.map((x) => x.id));
      for (const x of p.items) if (!shown.has(x.id)) body.append(reviewRow(x));
      if (!p.next_cursor) {
        for (const [id, row] of shown) {
          if (open.has(id) || row.classList.contains('done') || row.dataset.resolving) continue;
          try {
            const x = await api(`/conflicts/${enc(id)}`);
            if (x.status === 'OPEN') continue;
            row.dataset.status = x.status;
            row.classList.add('done');
            row.lastElementChild.replaceChildren(h('span', { class: 'pill ok' }, STATUS_LABELS[x.status] || x.status),
              x.resolved_by ? ` by ${x.resolved_by}` : '');
          } catch {
            // shown as it was
          }
        }
      }
      status.replaceChildren(body.children.length ? '' : h('div', { class: 'empty', testid: 'review-empty' },
        'Nothing to review. Disagreeing key-field writes appear here.'));
      table.hidden = !body.children.length;
    }, 300));
    await load();
  }

  function reviewRow(x) {
    const row = h('tr', { testid: 'review-row', 'data-conflict-id': x.id, 'data-status': x.status },
      h('td', {}, timeAgo(x.detected_at)),
      h('td', {}, h('a', { href: `#/customers/${enc(x.customer_id)}`, testid: 'review-customer' }, x.customer_name || x.customer_id)),
      h('td', {}, fieldLabel(x.field)),
      ...(x.field === MERGE_FIELD ? [h('td', { colspan: 2 }, suggestionBody(x))] : [
        h('td', {}, valueNode(x.current)),
        h('td', {}, valueNode(x.candidate), ' ', channelBadge(x.candidate_channel, x.candidate_source))]),
      h('td', {}, resolveActions(x, (now) => {
        row.dataset.status = now ? now.status : 'CLOSED';
        row.classList.add('done');
      })));
    return row;
  }

  // --------------------------------------------------------- audit trail

  // auditView lists the decisions on record, newest first (admins).
  async function auditView() {
    const gen = generation;
    const body = h('tbody', {});
    const more = h('button', { type: 'button', class: 'link', hidden: true }, 'Load more');
    const actor = h('input', { type: 'search', placeholder: 'Actor', 'aria-label': 'Actor', testid: 'audit-actor' });
    const status = h('div', { class: 'muted' }, 'Loading…');
    main.replaceChildren(h('div', { class: 'page' },
      h('h1', {}, 'Audit trail'),
      h('p', { class: 'muted' }, 'Every resolution and account, token and session change, by the account that made it. Newest first.'),
      h('form', { onsubmit: (e) => { e.preventDefault(); cursor = ''; body.replaceChildren(); load(); } }, actor),
      status,
      h('table', { class: 'grid', testid: 'audit-table' },
        h('thead', {}, h('tr', {}, ['When', 'Actor', 'Action', 'Customer', 'Target', 'Details'].map((t) => h('th', {}, t)))), body),
      more));
    let cursor = '';
    const load = async () => {
      try {
        const q = `limit=100${actor.value.trim() ? `&actor=${enc(actor.value.trim())}` : ''}${cursor ? `&cursor=${enc(cursor)}` : ''}`;
        const p = await api(`/audit?${q}`);
        if (gen !== generation) return;
        for (const e of p.items) {
          body.append(h('tr', { testid: 'audit-row', 'data-action': e.action },
            h('td', {}, timeAgo(e.at)),
            h('td', {}, e.actor, h('span', { class: 'muted small' }, ` ${e.actor_role}`)),
            h('td', { class: 'mono' }, e.action),
            h('td', {}, e.customer_id ? h('a', { href: `#/customers/${enc(e.customer_id)}` }, e.customer_id) : '—'),
            h('td', { class: 'mono small' }, e.target),
            h('td', { class: 'small' }, Object.entries(e.details).map(([k, v]) => `${k}: ${v}`).join(' · '))));
        }
        cursor = p.next_cursor;
        more.hidden = !cursor;
        status.textContent = body.children.length ? '' : 'Nothing on record yet.';
      } catch (e) {
        if (gen === generation) status.replaceChildren(errorBox(e, 'Loading the audit trail'));
      }
    };
    more.onclick = load;
    await load();
  }

  // ---------------------------------------------------- sync dashboard

  function syncView() {
    const gen = generation;
    const box = h('div', { id: 'sync-body' }, h('div', { class: 'muted' }, 'Loading…'));
    const updated = h('span', { class: 'muted small', id: 'sync-updated' });
    main.replaceChildren(h('div', { class: 'page' },
      h('div', { class: 'page-head' }, h('h1', {}, 'Sync'), updated),
      box));
    let timer = null;
    const tick = async () => {
      try {
        const s = await api('/sync/status');
        if (gen !== generation) return;
        box.replaceChildren(...syncBody(s));
        updated.textContent = `Updated ${new Date(s.generated_at).toLocaleTimeString()} · figures over the last ${Math.round(s.window_seconds)} s · updated live`;
      } catch (e) {
        if (gen !== generation) return;
        updated.textContent = `Not updated: ${e.message}`;
        if (!box.querySelector('table')) box.replaceChildren(errorBox(e, 'Loading the sync status'));
      }
      if (gen === generation) timer = setTimeout(tick, 10000);
    };
    stopCurrent = () => clearTimeout(timer);
    // Every committed change refreshes the figures (at most once a second).
    const soon = debounce(() => {
      clearTimeout(timer);
      if (gen === generation) tick();
    }, 1000);
    onLive(soon);
    tick();
  }

  const num = (v, digits = 0) => (v == null ? '—' : Number(v).toLocaleString(undefined, { maximumFractionDigits: digits }));
  const msText = (p) => (p && p.p50 != null ? `${num(p.p50, 1)} / ${num(p.p95, 1)} / ${num(p.p99, 1)} ms` : '—');

  function syncBody(s) {
    const out = [];
    if (s.errors && s.errors.length) out.push(h('div', { class: 'warnbox' }, s.errors.map((e) => h('div', {}, e))));
    out.push(h('h2', {}, 'Channels'), h('table', { class: 'grid numbers', id: 'sync-channels', testid: 'sync-channels' },
      h('thead', {}, h('tr', {}, ['Channel', 'Ingest rate', 'Requests', 'Success', 'Rejected', 'Dead letters', 'Produce latency p50 / p95 / p99']
        .map((t) => h('th', {}, t)))),
      h('tbody', {}, s.channels.map((c) => h('tr', { testid: 'sync-channel', 'data-channel': c.channel },
        h('td', {}, channelBadge(c.channel.toUpperCase())),
        h('td', {}, `${num(c.ingest_rate, 2)} /s`),
        h('td', {}, num(c.requests)),
        h('td', { class: c.success_rate != null && c.success_rate < 0.99 ? 'bad' : null }, c.success_rate == null ? '—' : `${num(c.success_rate * 100, 1)} %`),
        h('td', {}, Object.entries(c.rejected).map(([k, v]) => `${k} ${num(v)}`).join(', ') || '0'),
        h('td', { class: c.dead_letters ? 'bad' : null }, num(c.dead_letters)),
        h('td', {}, msText(c.produce_latency_ms)))))));
    out.push(h('h2', {}, 'Consumer groups'));
    if (!s.consumer_groups.length) out.push(h('div', { class: 'empty' }, 'No consumer groups yet.'));
    out.push(h('div', { class: 'groups' }, s.consumer_groups.map((g) => {
      const behind = g.lag_by_partition.filter((p) => p.lag > 0);
      return h('section', { class: 'card group', testid: 'sync-group', 'data-group': g.group },
        h('div', { class: 'group-head' }, h('h3', { class: 'mono' }, g.group),
          h('span', { class: `pill ${g.state === 'Stable' ? 'ok' : g.state === 'Dead' ? 'warn' : ''}` }, g.state || 'state unknown'),
          h('span', { class: 'muted small' }, `${g.members} member${g.members === 1 ? '' : 's'}`)),
        h('dl', { class: 'figures' },
          figure('Apply rate', `${num(g.apply_rate, 2)} /s`),
          figure('End-to-end p50 / p95 / p99', msText(g.end_to_end_latency_ms)),
          figure('Lag', g.lag == null ? '—' : `${num(g.lag)} records`, g.lag > 0 ? 'warn' : null),
          figure('Dead letters', num(g.dead_letters), g.dead_letters ? 'bad' : null),
          figure('Conflicts opened / resolved', `${num(g.conflicts.opened)} / ${num(g.conflicts.resolved)}`)),
        behind.length ? h('details', {}, h('summary', {}, `${behind.length} partitions behind`),
          h('ul', { class: 'plain small mono' }, behind.map((p) => h('li', {}, `${p.topic}[${p.partition}] ${num(p.lag)}`))))
          : g.lag != null ? h('div', { class: 'muted small' }, 'All partitions caught up.') : null);
    })));
    return out;
  }

  function figure(label, value, cls) {
    return h('div', { class: `figure ${cls || ''}` }, h('dt', {}, label), h('dd', {}, value));
  }

  // --------------------------------------------------------------- boot

  takeTokenFromFragment();
  route();
})();
