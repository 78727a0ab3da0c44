// The annotation page: a local queue of decoded images, one key per decision, undo; talks to an
// AnnotationSession (fullstack_ml.annotate_app) through custom messages. Text is set with textContent only.
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }
function render({ model, el: host }) {
  const root = el('div', 'fsml-annotate');
  const header = el('div', 'fsml-header');
  const who = el('span', 'fsml-who', model.get('annotator') + ' · ' + model.get('project'));
  const progress = el('span', 'fsml-progress', '');
  header.append(who, progress);
  const stage = el('div', 'fsml-stage');
  const img = el('img', 'fsml-image'); img.alt = 'item to label';
  const empty = el('div', 'fsml-empty', 'loading…');
  stage.append(img, empty);
  const hintBox = el('label', 'fsml-hint-toggle'); const hintCheck = el('input'); hintCheck.type = 'checkbox';
  hintCheck.checked = model.get('show_hint'); hintBox.append(hintCheck, document.createTextNode(' show hint'));
  const hint = el('div', 'fsml-hint', '');
  const bar = el('div', 'fsml-buttons');
  const labels = model.get('labels'), keys = model.get('hotkeys'), keyToLabel = {};
  labels.forEach((label, i) => {
    const b = el('button', 'fsml-label'); b.dataset.label = label;
    if (keys[i]) { keyToLabel[keys[i]] = label; b.append(el('kbd', null, keys[i])); }
    b.append(document.createTextNode(' ' + label)); b.onclick = () => act('label', label, performance.now()); bar.append(b);
  });
  const tools = el('div', 'fsml-tools');
  const undoB = el('button', 'fsml-undo'); undoB.append(el('kbd', null, '⌫/Z'), document.createTextNode(' undo'));
  const skipB = el('button', 'fsml-skip'); skipB.append(el('kbd', null, 'S'), document.createTextNode(' skip'));
  undoB.onclick = () => undo(performance.now()); skipB.onclick = () => act('skip', null, performance.now());
  tools.append(undoB, skipB, hintBox);
  const notice = el('div', 'fsml-notice', '');
  root.append(header, stage, hint, bar, tools, notice); host.append(root);

  let queue = [], current = null, shownAt = 0, done = 0, remaining = null, exhausted = false, pending = null;
  const history = [], started = performance.now();
  window.__fsmlPaints = window.__fsmlPaints || [];
  function measure(t0) { requestAnimationFrame(() => requestAnimationFrame(() => window.__fsmlPaints.push(performance.now() - t0))); }
  function updateStatus() {
    const hours = (performance.now() - started) / 3.6e6;
    const pace = done > 0 ? Math.round(done / hours) + '/h' : '–';
    progress.textContent = 'done ' + done + ' · remaining ' + (remaining == null ? '…' : remaining) + ' · pace ' + pace;
    root.dataset.queued = String(queue.length); root.dataset.done = String(done);
  }
  function show(item) {
    current = item || null;
    if (current) { img.src = current.src; img.dataset.item = current.id; img.style.visibility = 'visible'; empty.textContent = '';
      hint.textContent = hintCheck.checked && current.hint != null ? current.hint : ''; }
    else { img.removeAttribute('src'); img.dataset.item = ''; img.style.visibility = 'hidden';
      empty.textContent = exhausted ? 'all done, thank you!' : 'loading…'; hint.textContent = ''; }
    shownAt = performance.now(); root.dataset.item = current ? current.id : ''; updateStatus();
  }
  function act(type, label, t0) {
    if (!current) return;
    model.send({ type, id: current.id, label, seconds: (performance.now() - shownAt) / 1000 });
    history.push({ item: current, type }); if (history.length > 50) history.shift();
    if (type === 'label') done += 1;
    const next = queue.shift();
    if (next) { show(next); measure(t0); } else { pending = t0; show(null); }
  }
  function undo(t0) {
    const previous = history.pop(); if (!previous) return;
    if (current) queue.unshift(current);
    model.send({ type: 'undo', id: previous.item.id }); if (previous.type === 'label') done = Math.max(0, done - 1);
    show(previous.item); measure(t0);
  }
  async function receive(msg) {
    if (msg.type === 'items') {
      const fresh = await Promise.all(msg.items.map(async (item) => {
        const im = new Image(); im.src = item.src; try { await im.decode(); } catch (e) {} item.image = im; return item; }));
      const known = new Set(queue.map(i => i.id)); if (current) known.add(current.id);
      fresh.forEach(item => { if (!known.has(item.id)) queue.push(item); });
      remaining = msg.remaining; exhausted = msg.exhausted && queue.length === 0 && !current;
      if (!current) { const next = queue.shift(); show(next); if (next && pending != null) { measure(pending); pending = null; } }
      updateStatus();
    } else if (msg.type === 'drop') { queue = queue.filter(item => !msg.ids.includes(item.id)); updateStatus();
    } else if (msg.type === 'notice') { notice.textContent = msg.text; setTimeout(() => { notice.textContent = ''; }, 4000); }
  }
  model.on('msg:custom', receive);
  hintCheck.onchange = () => show(current);
  const onKey = (e) => {
    if (!root.isConnected) return;
    const tag = (e.target && e.target.tagName || '').toLowerCase();
    if (tag === 'input' || tag === 'textarea' || e.ctrlKey || e.metaKey || e.altKey) return;
    const t0 = performance.now();
    if (e.key in keyToLabel) { e.preventDefault(); act('label', keyToLabel[e.key], t0); }
    else if (e.key === 'Backspace' || e.key === 'z' || e.key === 'Z') { e.preventDefault(); undo(t0); }
    else if (e.key === 's' || e.key === 'S') { e.preventDefault(); act('skip', null, t0); }
  };
  document.addEventListener('keydown', onKey);
  const beat = setInterval(() => model.send({ type: 'heartbeat', current: current ? current.id : null }),
                           model.get('heartbeat_ms'));
  model.send({ type: 'ready' });
  return () => { document.removeEventListener('keydown', onKey); clearInterval(beat); };
}
export default { render };
