// Quarry's web app: plain DOM, no framework. Every piece of
// text from the server (answers, document text, titles, file names) goes into text nodes, never into markup.
'use strict';

(function () {
  var KEY = 'quarry.apiKey';
  var state = { citations: [], docOffset: 0, docLimit: 25, docTotal: 0, polling: null, evalPolling: null, auth: true };

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') { node.textContent = attrs[k]; } else if (k === 'class') { node.className = attrs[k]; } else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return node;
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  function say(message, isError) {
    var s = $('status');
    s.textContent = message || '';
    s.className = isError ? 'error' : '';
  }

  function apiKey() { try { return localStorage.getItem(KEY) || ''; } catch (e) { return ''; } }

  function headers(extra) {
    var h = extra || {};
    var k = apiKey();
    if (k) { h.Authorization = 'Bearer ' + k; }
    return h;
  }

  // The message of an error response ({"error": {"message"}}), or the status line.
  function failure(resp) {
    return resp.text().then(function (t) {
      var msg = resp.status + ' ' + resp.statusText;
      try { msg = JSON.parse(t).error.message || msg; } catch (e) { /* not JSON */ }
      if (resp.status === 401) { msg += ' (paste a key under "API key")'; }
      var err = new Error(msg);
      err.status = resp.status;
      throw err;
    });
  }

  function api(method, path, body, extraHeaders) {
    var opts = { method: method, headers: headers(extraHeaders) };
    if (body !== undefined) {
      if (body instanceof Blob) { opts.body = body; } else { opts.body = JSON.stringify(body); opts.headers['Content-Type'] = 'application/json'; }
    }
    return fetch(path, opts).then(function (resp) { return resp.ok ? resp : failure(resp); });
  }

  function getJson(path) { return api('GET', path).then(function (r) { return r.json(); }); }

  // Document ids may hold '/', which the route keeps; every other character is escaped per segment.
  function docPath(id) { return '/api/documents/' + id.split('/').map(encodeURIComponent).join('/'); }

  // ---- panels -------------------------------------------------------------------------------------

  function show(panel) {
    document.querySelectorAll('.tab').forEach(function (t) {
      if (t.getAttribute('data-panel') === panel) { t.setAttribute('aria-current', 'page'); } else { t.removeAttribute('aria-current'); }
    });
    document.querySelectorAll('.panel').forEach(function (p) { p.hidden = p.id !== 'panel-' + panel; });
    if (panel === 'documents') { loadDocuments(); loadJobs(); }
    if (panel === 'eval') { loadRuns(true); }
    if (panel === 'settings') { $('api-key').focus(); }
  }

  // ---- ask ----------------------------------------------------------------------------------------

  // Server-Sent Events from a fetch body: calls onEvent(name, data) per event.
  function readEvents(resp, onEvent) {
    var reader = resp.body.getReader();
    var decoder = new TextDecoder();
    var buffer = '';
    function dispatch(block) {
      var name = 'message';
      var data = [];
      block.split('\n').forEach(function (line) {
        if (line.indexOf('event:') === 0) { name = line.slice(6).trim(); } else if (line.indexOf('data:') === 0) { data.push(line.slice(5).replace(/^ /, '')); }
      });
      if (data.length) { onEvent(name, data.join('\n')); }
    }
    function pump() {
      return reader.read().then(function (r) {
        if (r.done) { if (buffer.trim()) { dispatch(buffer); } return; }
        buffer += decoder.decode(r.value, { stream: true }).replace(/\r\n/g, '\n');
        var at;
        while ((at = buffer.indexOf('\n\n')) >= 0) {
          dispatch(buffer.slice(0, at));
          buffer = buffer.slice(at + 2);
        }
        return pump();
      });
    }
    return pump();
  }

  function citationFor(n) {
    for (var i = 0; i < state.citations.length; i++) { if (state.citations[i].n === n) { return state.citations[i]; } }
    return null;
  }

  function citeButton(c) {
    var b = el('button', { type: 'button', class: 'cite', 'data-n': String(c.n), 'data-doc-id': c.doc_id, 'aria-label': 'Show source ' + c.n + ' in its document', text: '[' + c.n + ']' });
    b.addEventListener('click', function () { openDocument(c.doc_id, c.start, c.end); });
    return b;
  }

  // The final answer, its [n] markers turned into buttons that open the cited passage.
  function renderAnswer(text) {
    var box = $('answer');
    clear(box);
    var re = /\[(\d+)\]/g;
    var last = 0;
    var m;
    while ((m = re.exec(text)) !== null) {
      var c = citationFor(parseInt(m[1], 10));
      if (!c) { continue; }
      box.appendChild(document.createTextNode(text.slice(last, m.index)));
      box.appendChild(citeButton(c));
      last = m.index + m[0].length;
    }
    box.appendChild(document.createTextNode(text.slice(last)));
  }

  function renderSources() {
    var list = $('citations');
    clear(list);
    var seen = {};
    state.citations.forEach(function (c) {
      if (seen[c.n]) { return; }
      seen[c.n] = true;
      var where = c.source + (c.section && c.section.length ? ' — ' + c.section.join(' › ') : '') + (c.page ? ' (page ' + c.page + ')' : '');
      list.appendChild(el('li', { value: String(c.n) }, [citeButton(c), ' ' + where, el('span', { class: 'snippet', text: c.text })]));
    });
  }

  function ask(event) {
    event.preventDefault();
    var question = $('question').value.trim();
    if (!question) { return; }
    var box = $('answer');
    var button = $('ask-button');
    clear(box);
    clear($('citations'));
    state.citations = [];
    box.setAttribute('data-state', 'streaming');
    box.setAttribute('data-tokens', '0');
    box.setAttribute('aria-busy', 'true');
    button.disabled = true;
    say('Retrieving and answering…');
    var body = { question: question, stream: true };
    if ($('generator').value) { body.generator = $('generator').value; }
    var finalText = null;
    var abstained = false;
    api('POST', '/api/ask', body, { Accept: 'text/event-stream' }).then(function (resp) {
      return readEvents(resp, function (name, data) {
        var v = JSON.parse(data);
        if (name === 'token') {
          box.appendChild(document.createTextNode(v.text));
          box.setAttribute('data-tokens', String(parseInt(box.getAttribute('data-tokens'), 10) + 1));
        } else if (name === 'citations') {
          state.citations = v;
        } else if (name === 'verification') {
          finalText = v.answer;
          abstained = v.abstained;
        } else if (name === 'done') {
          box.setAttribute('data-query-id', v.query_id || '');
          say('Answered by ' + v.generator + ' in ' + Math.round((v.timings && v.timings.total_ms) || 0) + ' ms.');
        } else if (name === 'error') {
          throw new Error(v.error ? v.error.message : 'answering failed');
        }
      });
    }).then(function () {
      if (finalText === null) { throw new Error('the answer stream ended early'); }
      renderAnswer(finalText);
      renderSources();
      box.setAttribute('data-state', abstained ? 'abstained' : 'done');
    }).catch(function (e) {
      box.setAttribute('data-state', 'error');
      say(e.message, true);
    }).then(function () {
      box.setAttribute('aria-busy', 'false');
      button.disabled = false;
    });
  }

  // ---- the document viewer ------------------------------------------------------------------------

  // Shows a document with characters [start, end) highlighted. Offsets count Unicode code points, as
  // the server does; JavaScript strings count UTF-16 units, hence Array.from.
  function openDocument(id, start, end) {
    var viewer = $('viewer');
    var text = $('viewer-text');
    viewer.hidden = false;
    viewer.setAttribute('data-state', 'loading');
    clear(text);
    return getJson(docPath(id)).then(function (d) {
      $('viewer-title').textContent = d.title || d.id;
      $('viewer-source').textContent = d.source + ' · ' + d.chunks + ' chunks · ' + d.characters + ' characters';
      viewer.setAttribute('data-doc-id', d.id);
      var chars = Array.from(d.text);
      if (typeof start === 'number' && end > start && end <= chars.length) {
        var mark = el('mark', { id: 'highlight', text: chars.slice(start, end).join('') });
        text.appendChild(document.createTextNode(chars.slice(0, start).join('')));
        text.appendChild(mark);
        text.appendChild(document.createTextNode(chars.slice(end).join('')));
        mark.scrollIntoView({ block: 'center' });
      } else {
        text.textContent = d.text;
      }
      viewer.setAttribute('data-state', 'ready');
      text.focus({ preventScroll: true });
    }).catch(function (e) {
      viewer.setAttribute('data-state', 'error');
      say(e.message, true);
    });
  }

  // ---- documents and uploads ----------------------------------------------------------------------

  function loadDocuments() {
    var q = '?offset=' + state.docOffset + '&limit=' + state.docLimit;
    return getJson('/api/documents' + q).then(function (r) {
      var body = $('documents').tBodies[0];
      clear(body);
      state.docTotal = r.total;
      r.documents.forEach(function (d) {
        var view = el('button', { type: 'button', text: 'View', 'aria-label': 'View ' + (d.title || d.id) });
        view.addEventListener('click', function () { openDocument(d.id); });
        body.appendChild(el('tr', {}, [
          el('td', { text: d.title || '(untitled)' }), el('td', { text: d.source }),
          el('td', { class: 'n', text: String(d.chunks) }), el('td', { class: 'n', text: String(d.characters) }),
          el('td', {}, [view])
        ]));
      });
      var shown = r.documents.length ? (r.offset + 1) + '–' + (r.offset + r.documents.length) : '0';
      $('doc-count').textContent = '(' + shown + ' of ' + r.total + ')';
      $('docs-prev').disabled = state.docOffset === 0;
      $('docs-next').disabled = state.docOffset + state.docLimit >= r.total;
    }).catch(function (e) { say(e.message, true); });
  }

  function jobResult(j) {
    if (j.error) { return j.error; }
    var s = j.summary;
    if (!s) { return ''; }
    var parts = [s.documents_added + ' added', s.documents_updated + ' updated', s.documents_unchanged + ' unchanged', s.chunks_written + ' chunks'];
    if (s.skipped && s.skipped.length) { parts.push('skipped: ' + s.skipped.join(', ')); }
    if (s.errors && s.errors.length) { parts.push('errors: ' + s.errors.join('; ')); }
    return parts.join(', ');
  }

  function loadJobs() {
    return getJson('/api/jobs?limit=20').then(function (r) {
      var body = $('jobs').tBodies[0];
      clear(body);
      var busy = false;
      r.jobs.forEach(function (j) {
        busy = busy || j.state === 'queued' || j.state === 'running';
        body.appendChild(el('tr', {}, [
          el('td', { text: j.target }), el('td', { class: 'state-' + j.state, text: j.state }),
          el('td', { text: jobResult(j) }), el('td', { text: new Date(j.created * 1000).toLocaleTimeString() })
        ]));
      });
      if (busy && !state.polling) {
        state.polling = setTimeout(function () { state.polling = null; loadJobs().then(loadDocuments); }, 1000);
      }
    }).catch(function (e) {
      if (e.status === 403) { say('Uploads need a key with the ingest scope.'); } else { say(e.message, true); }
    });
  }

  function upload(event) {
    event.preventDefault();
    var files = Array.prototype.slice.call($('files').files);
    var groups = $('groups').value.trim();
    if (!files.length) { return; }
    say('Uploading ' + files.length + ' file(s)…');
    files.reduce(function (done, f) {
      return done.then(function () {
        var q = '?name=' + encodeURIComponent(f.name) + (groups ? '&groups=' + encodeURIComponent(groups) : '');
        return api('POST', '/api/ingest/file' + q, f, { 'Content-Type': 'application/octet-stream' });
      });
    }, Promise.resolve()).then(function () {
      say('Uploaded; indexing runs in the background.');
      $('upload-form').reset();
      return loadJobs();
    }).catch(function (e) { say(e.message, true); });
  }

  // ---- evaluation runs ---------------------------------------------------------------------------

  // Shows a finished run: its means, and quarry-eval's report in a frame that may not run scripts.
  function showRun(id) {
    return getJson('/api/eval/runs/' + encodeURIComponent(id)).then(function (run) {
      $('eval-shown').textContent = '(' + run.name + ', ' + run.mode + ', ' + new Date(run.created * 1000).toLocaleString() + ')';
      var body = $('eval-metrics').tBodies[0];
      clear(body);
      // In the order the run asked for them (the metrics object is keyed alphabetically).
      run.measures.filter(function (m) { return m in run.metrics; }).forEach(function (m) {
        body.appendChild(el('tr', {}, [el('td', { text: m }), el('td', { class: 'n', text: run.metrics[m].toFixed(4) })]));
      });
      $('eval-metrics').setAttribute('data-run', run.id);
      return api('GET', '/api/eval/runs/' + encodeURIComponent(id) + '/report');
    }).then(function (resp) { return resp.text(); }).then(function (html) {
      var frame = $('eval-report');
      frame.srcdoc = html;
      frame.hidden = false;
    }).catch(function (e) { say(e.message, true); });
  }

  // Lists the runs; with `showLatest`, shows the newest finished one. Polls while one is queued or running.
  function loadRuns(showLatest) {
    return getJson('/api/eval/runs?limit=20').then(function (r) {
      var body = $('eval-runs').tBodies[0];
      clear(body);
      var busy = false;
      var latest = null;
      r.runs.forEach(function (run) {
        busy = busy || run.state === 'queued' || run.state === 'running';
        if (run.state === 'done' && !latest) { latest = run.id; }
        var action = run.state === 'done' ? el('button', { type: 'button', text: 'Show', 'aria-label': 'Show the report of ' + run.name }) : el('span', { text: run.error || '' });
        if (run.state === 'done') { action.addEventListener('click', function () { showRun(run.id); }); }
        body.appendChild(el('tr', {}, [
          el('td', { text: run.name }), el('td', { class: 'state-' + run.state, text: run.state }),
          el('td', { class: 'n', text: run.questions + ' (' + run.judged + ')' }), el('td', { class: 'n', text: String(run.gold_not_visible) }),
          el('td', { text: new Date(run.created * 1000).toLocaleTimeString() }), el('td', {}, [action])
        ]));
      });
      if (showLatest && latest && $('eval-metrics').getAttribute('data-run') !== latest) { showRun(latest); }
      if (busy && !state.evalPolling) {
        state.evalPolling = setTimeout(function () { state.evalPolling = null; loadRuns(true); }, 1000);
      }
    }).catch(function (e) {
      if (e.status === 403) { say('Evaluation needs a key with the eval scope.'); } else { say(e.message, true); }
    });
  }

  function startRun(event) {
    event.preventDefault();
    var file = $('eval-file').files[0];
    var read = file ? file.text() : Promise.resolve($('eval-text').value);
    read.then(function (text) {
      if (!text.trim()) { throw new Error('choose or paste an eval set'); }
      var body = { eval_set: text };
      if ($('eval-name').value.trim()) { body.name = $('eval-name').value.trim(); }
      if ($('eval-mode').value) { body.mode = $('eval-mode').value; }
      return api('POST', '/api/eval/runs', body);
    }).then(function () {
      say('Evaluation queued; it runs in the background.');
      $('eval-form').reset();
      return loadRuns(true);
    }).catch(function (e) { say(e.message, true); });
  }

  // ---- settings and start-up ----------------------------------------------------------------------

  function saveKey(event) {
    event.preventDefault();
    var k = $('api-key').value.trim();
    try { if (k) { localStorage.setItem(KEY, k); } else { localStorage.removeItem(KEY); } } catch (e) { say('this browser does not keep the key', true); return; }
    $('api-key').value = '';
    say(k ? 'Key saved in this browser.' : 'Key removed.');
    describeKey();
  }

  function forgetKey() {
    try { localStorage.removeItem(KEY); } catch (e) { /* nothing kept */ }
    say('Key removed from this browser.');
    describeKey();
  }

  function describeKey() {
    var k = apiKey();
    var kept = k ? 'a key is saved (' + k.split('_').slice(0, 2).join('_') + '_…)' : 'no key saved';
    $('api-key').setAttribute('placeholder', state.auth ? kept : 'this server runs without keys');
  }

  function start() {
    document.querySelectorAll('.tab').forEach(function (t) {
      t.addEventListener('click', function () { show(t.getAttribute('data-panel')); });
    });
    $('ask-form').addEventListener('submit', ask);
    $('upload-form').addEventListener('submit', upload);
    $('key-form').addEventListener('submit', saveKey);
    $('eval-form').addEventListener('submit', startRun);
    $('key-forget').addEventListener('click', forgetKey);
    $('viewer-close').addEventListener('click', function () { $('viewer').hidden = true; });
    $('docs-prev').addEventListener('click', function () { state.docOffset = Math.max(0, state.docOffset - state.docLimit); loadDocuments(); });
    $('docs-next').addEventListener('click', function () { state.docOffset += state.docLimit; loadDocuments(); });
    show('ask');
    fetch('/ready').then(function (r) { return r.json(); }).then(function (r) {
      state.auth = r.auth !== false;
      $('server').textContent = (r.documents !== undefined ? r.documents + ' documents, ' + r.chunks + ' chunks · ' : '') +
        'generator: ' + (r.generator || '?') + (state.auth ? '' : ' · no keys needed (--no-auth)');
      if (state.auth && !apiKey()) { say('This server needs an API key: paste one under "API key".'); }
      describeKey();
    }).catch(function () { say('The server is not ready.', true); }).then(function () {
      document.body.setAttribute('data-ready', '1');
    });
  }

  if (document.readyState === 'loading') { document.addEventListener('DOMContentLoaded', start); } else { start(); }
})();
