// The annotation page: a local queue of decoded images, one key per decision, undo; talks to an
// AnnotationSession (fullstack_ml.annotate_app) through custom messages. Text is set with textContent only.
// Keys come from the project (`hotkeys`, one per label, "" for a label reached only through the picker);
// skip and undo take the first of their keys that no label uses. With more labels than keys, a filter box
// ("/" or any other letter to start typing, Enter to choose the first match, Escape to leave) picks by name.
// A model's suggestion (an item's `suggestion`: label, model, score) is shown under the image and its label's
// button is marked; Enter (never a label key) accepts it, any label key overrides it, the toggle hides them.
// A key never waits on the kernel: each prefetched item keeps its own decoded <img>, a key puts the next one on
// the stage at once, and the label travels to the kernel behind it. The kernel answers each label with the label
// it stored (an "ack"); the header counts only those as done, says how many are still saving, and a refusal (the
// lease was lost, the label was refused) is shown and not counted.
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }
function freeKey(candidates, taken) { return candidates.find(k => !taken.has(k.toLowerCase())) || null; }
const SMALL_SIDE = 256;  // images no bigger than this are scaled up with visible pixels, not blurred
const DECODE_WAIT_MS = 3000;  // an image whose decode has not settled by then is queued anyway (drawn when shown)
function decoded(im) { return Promise.race([im.decode().catch(() => {}), new Promise(r => setTimeout(r, DECODE_WAIT_MS))]); }

function render({ model, el: host }) {
  const root = el('div', 'fsml-annotate');
  const header = el('div', 'fsml-header');
  const who = el('span', 'fsml-who', model.get('annotator') + ' · ' + model.get('project'));
  const progress = el('span', 'fsml-progress', '');
  header.append(who, progress);
  const stage = el('div', 'fsml-stage');
  let img = el('img', 'fsml-image'); img.alt = 'item to label';  // the element on the stage; swapped per item
  const empty = el('div', 'fsml-empty', 'loading…');
  const size = el('div', 'fsml-size', '');
  stage.append(img, empty, size);
  const hintBox = el('label', 'fsml-hint-toggle'); const hintCheck = el('input'); hintCheck.type = 'checkbox';
  hintCheck.checked = model.get('show_hint'); hintBox.append(hintCheck, document.createTextNode(' show hint'));
  const hint = el('div', 'fsml-hint', '');
  const suggestion = el('div', 'fsml-suggestion', '');
  const sugBox = el('label', 'fsml-suggestion-toggle'); const sugCheck = el('input'); sugCheck.type = 'checkbox';
  sugCheck.checked = model.get('show_suggestions'); sugBox.append(sugCheck, document.createTextNode(' show suggestions'));
  const bar = el('div', 'fsml-buttons');
  const labels = model.get('labels'), keys = model.get('hotkeys'), descriptions = model.get('descriptions') || [];
  const keyToLabel = Object.create(null), taken = new Set();
  labels.forEach((label, i) => {
    const b = el('button', 'fsml-label'); b.dataset.label = label;
    if (keys[i]) { keyToLabel[keys[i]] = label; taken.add(keys[i].toLowerCase()); b.append(el('kbd', null, keys[i])); }
    b.append(el('span', 'fsml-name', label));
    if (descriptions[i]) b.title = descriptions[i];
    b.onclick = () => act('label', label, performance.now()); bar.append(b);
  });
  const skipKey = freeKey(['s', '-', '.'], taken), undoKey = freeKey(['z', ','], taken);
  const tools = el('div', 'fsml-tools');
  const undoB = el('button', 'fsml-undo'); undoB.append(el('kbd', null, '⌫' + (undoKey ? '/' + undoKey.toUpperCase() : '')), document.createTextNode(' undo'));
  const skipB = el('button', 'fsml-skip'); skipB.append(el('kbd', null, (skipKey || '').toUpperCase()), document.createTextNode(' skip'));
  undoB.onclick = () => undo(performance.now()); skipB.onclick = () => act('skip', null, performance.now());
  const acceptB = el('button', 'fsml-accept'); acceptB.append(el('kbd', null, '⏎ Enter'), document.createTextNode(' accept suggestion'));
  acceptB.onclick = () => accept(performance.now());
  tools.append(acceptB, undoB, skipB, hintBox, sugBox);
  // the picker: every label by name, for projects with more labels than keys (or to find one by name)
  const keyless = labels.filter((_, i) => !keys[i]).length;
  const picker = el('div', 'fsml-picker');
  const filter = el('input', 'fsml-filter'); filter.type = 'text'; filter.placeholder = 'type to find a label (/), Enter to choose';
  filter.setAttribute('aria-label', 'find a label');
  const matches = el('div', 'fsml-matches');
  picker.append(filter, matches);
  if (keyless === 0 && labels.length <= 10) picker.style.display = 'none';
  if (descriptions.some(d => d)) {  // a legend: what each label means, for the annotator's first hour
    const legend = el('details', 'fsml-legend'); legend.append(el('summary', null, 'label guide'));
    const list = el('dl');
    labels.forEach((label, i) => { if (descriptions[i]) list.append(el('dt', null, label), el('dd', null, descriptions[i])); });
    legend.append(list); tools.append(legend);
  }
  const notice = el('div', 'fsml-notice', '');
  root.append(header, stage, suggestion, hint, bar, picker, tools, notice); host.append(root);

  let chosen = 0;  // index among the current matches that Enter picks
  function filtered() {
    const text = filter.value.trim().toLowerCase();
    if (!text) return [];
    const starts = labels.filter(l => l.toLowerCase().startsWith(text));
    return starts.concat(labels.filter(l => !l.toLowerCase().startsWith(text) && l.toLowerCase().includes(text)));
  }
  function showMatches() {
    const found = filtered(); chosen = Math.min(chosen, Math.max(0, found.length - 1));
    matches.replaceChildren(...found.slice(0, 12).map((label, i) => {
      const b = el('button', 'fsml-match' + (i === chosen ? ' fsml-chosen' : ''), label); b.dataset.label = label;
      const d = descriptions[labels.indexOf(label)]; if (d) b.title = d;
      b.onclick = () => { pick(label); }; return b; }));
    root.dataset.matches = found.join('\n');
  }
  function pick(label) { filter.value = ''; chosen = 0; showMatches(); filter.blur(); act('label', label, performance.now()); }
  filter.addEventListener('input', () => { chosen = 0; showMatches(); });
  filter.addEventListener('keydown', (e) => {
    const found = filtered();
    if (e.key === 'Enter') { e.preventDefault(); if (found.length) pick(found[chosen]); }
    else if (e.key === 'Escape') { e.preventDefault(); filter.value = ''; showMatches(); filter.blur(); }
    else if (e.key === 'ArrowDown') { e.preventDefault(); chosen = Math.min(chosen + 1, found.length - 1); showMatches(); }
    else if (e.key === 'ArrowUp') { e.preventDefault(); chosen = Math.max(chosen - 1, 0); showMatches(); }
  });

  let queue = [], current = null, shownAt = 0, done = 0, remaining = null, exhausted = false, pending = null;
  let seq = 0, saving = 0;
  const history = [], started = performance.now(), sent = new Map();  // item id -> {seq, label, state} of its label
  const decided = new Set();  // items labelled or skipped here (not undone): a re-sent batch must not show them again
  // key -> image painted: `__fsmlPainted` at the first task after the frame that shows the swap (a rAF, then a
  // message: it runs once that frame is painted); `__fsmlPaints` at the second rAF (up to one frame later)
  window.__fsmlPaints = window.__fsmlPaints || []; window.__fsmlPainted = window.__fsmlPainted || [];
  const afterPaint = new MessageChannel(), painting = [];
  afterPaint.port1.onmessage = () => { const t0 = painting.shift(); window.__fsmlPainted.push(performance.now() - t0); };
  function measure(t0) {
    requestAnimationFrame(() => { painting.push(t0); afterPaint.port2.postMessage(null);
      requestAnimationFrame(() => window.__fsmlPaints.push(performance.now() - t0)); });
  }
  function updateStatus() {
    const hours = (performance.now() - started) / 3.6e6;
    const pace = done > 0 ? Math.round(done / hours) + '/h' : '–';
    progress.textContent = 'done ' + done + (saving ? ' · saving ' + saving : '') + ' · remaining '
      + (remaining == null ? '…' : remaining) + ' · pace ' + pace;
    root.dataset.queued = String(queue.length); root.dataset.done = String(done); root.dataset.saving = String(saving);
  }
  function place(element) {  // put this item's decoded image on the stage (no decode, no new request)
    if (element !== img) { element.className = 'fsml-image'; element.alt = 'item to label'; img.replaceWith(element); img = element; }
  }
  function show(item) {
    current = item || null;
    if (current) {
      const w = current.image ? current.image.naturalWidth : 0, h = current.image ? current.image.naturalHeight : 0;
      if (current.image) place(current.image); else img.src = current.src;
      img.classList.toggle('fsml-pixelated', w > 0 && Math.max(w, h) <= SMALL_SIDE);  // tiny: crisp pixels, scaled up
      img.dataset.item = current.id; img.style.visibility = 'visible'; empty.textContent = '';
      size.textContent = w ? w + '×' + h : '';
      hint.textContent = hintCheck.checked && current.hint != null ? current.hint : ''; }
    else { img.removeAttribute('src'); img.dataset.item = ''; img.style.visibility = 'hidden'; size.textContent = '';
      empty.textContent = exhausted ? 'all done, thank you!' : 'loading…'; hint.textContent = ''; }
    showSuggestion();
    shownAt = performance.now(); root.dataset.item = current ? current.id : ''; updateStatus();
  }
  function suggested() {  // the current item's suggestion, when there is one the page may show
    const s = current && current.suggestion;
    return s && labels.includes(s.label) ? s : null;
  }
  function showSuggestion() {
    const s = suggested(), on = sugCheck.checked && s != null;
    suggestion.textContent = on ? 'suggestion: ' + s.label + (s.score != null ? ' · ' + Math.round(s.score * 100) + '%' : '')
      + ' · Enter accepts' : '';
    root.dataset.suggestion = on ? s.label : '';
    acceptB.disabled = !on;
    bar.querySelectorAll('.fsml-label').forEach(b => b.classList.toggle('fsml-suggested', on && b.dataset.label === s.label));
  }
  function accept(t0) { if (sugCheck.checked && suggested()) act('label', suggested().label, t0, true); }
  function act(type, label, t0, accepted = false) {
    if (!current) return;
    const shown = sugCheck.checked && suggested() != null;  // the kernel records whether a suggestion was on screen
    const message = { type, id: current.id, label, shown, accepted, seconds: (performance.now() - shownAt) / 1000 };
    history.push({ item: current, type }); if (history.length > 50) history.shift();
    decided.add(current.id);
    if (type === 'label') { message.seq = ++seq; forget(current.id); sent.set(current.id, { seq, label, state: 'saving' }); saving += 1; }
    const next = queue.shift();  // the swap first: the person sees the next image before the label leaves
    if (next) { show(next); measure(t0); } else { pending = t0; show(null); }
    model.send(message);  // messages reach the kernel in the order sent: a label, then its undo
  }
  function forget(id) {  // this item's label no longer counts (undone, or about to be replaced)
    const entry = sent.get(id); if (!entry) return;
    if (entry.state === 'saving') saving -= 1; else if (entry.state === 'saved') done -= 1;
    sent.delete(id);
  }
  function acknowledged(msg) {  // the kernel stored msg.label (null: nothing) for the label numbered msg.seq
    const entry = sent.get(msg.id); if (!entry || entry.seq !== msg.seq) return;  // undone since: nothing to count
    saving -= 1;
    if (msg.label === entry.label) { entry.state = 'saved'; done += 1; }
    else { entry.state = 'refused';
      say('not saved: item ' + msg.id.slice(0, 12) + (msg.text ? ': ' + msg.text : ' (the kernel stored no such label)')); }
    if (entry.state === 'refused') root.dataset.refused = String((Number(root.dataset.refused) || 0) + 1);
    updateStatus();
  }
  function say(text) { notice.textContent = text; setTimeout(() => { if (notice.textContent === text) notice.textContent = ''; }, 4000); }
  function undo(t0) {
    const previous = history.pop(); if (!previous) return;
    if (current) queue.unshift(current);
    forget(previous.item.id); decided.delete(previous.item.id);
    show(previous.item); measure(t0);
    model.send({ type: 'undo', id: previous.item.id });
  }
  async function receive(msg) {
    if (msg.type === 'items') {
      root.dataset.batches = String((Number(root.dataset.batches) || 0) + 1);  // batches received (a blank page: were any?)
      const fresh = await Promise.all(msg.items.map(async (item) => {
        const im = new Image(); im.src = item.src; await decoded(im); item.image = im; return item; }));  // decoded off the key's path
      const known = new Set(queue.map(i => i.id)); if (current) known.add(current.id);
      fresh.forEach(item => { if (!known.has(item.id) && !decided.has(item.id)) queue.push(item); });
      remaining = msg.remaining; exhausted = msg.exhausted && queue.length === 0 && !current;
      if (!current) { const next = queue.shift(); show(next); if (next && pending != null) { measure(pending); pending = null; } }
      updateStatus();
    } else if (msg.type === 'drop') { queue = queue.filter(item => !msg.ids.includes(item.id)); updateStatus();
    } else if (msg.type === 'ack') { acknowledged(msg);
    } else if (msg.type === 'notice') { say(msg.text); }
  }
  model.on('msg:custom', receive);
  hintCheck.onchange = () => show(current);
  sugCheck.onchange = () => { sugCheck.blur(); showSuggestion(); };
  const onKey = (e) => {
    if (!root.isConnected) return;
    const tag = (e.target && e.target.tagName || '').toLowerCase();
    if (tag === 'input' || tag === 'textarea' || e.ctrlKey || e.metaKey || e.altKey) return;
    const t0 = performance.now(), key = e.key;
    if (Object.hasOwn(keyToLabel, key)) { e.preventDefault(); act('label', keyToLabel[key], t0); }
    else if (key === 'Enter') { e.preventDefault(); accept(t0); }
    else if (key === 'Backspace' || (undoKey && key.toLowerCase() === undoKey)) { e.preventDefault(); undo(t0); }
    else if (skipKey && key.toLowerCase() === skipKey) { e.preventDefault(); act('skip', null, t0); }
    else if (picker.style.display !== 'none' && (key === '/' || /^[\p{L}\p{N}]$/u.test(key))) {
      e.preventDefault(); filter.focus(); if (key !== '/') { filter.value += key; chosen = 0; showMatches(); } }
  };
  document.addEventListener('keydown', onKey);
  const beat = setInterval(() => {  // still "loading…" a heartbeat later: ask again (a first batch lost under load)
    if (!current && !exhausted && queue.length === 0) model.send({ type: 'ready' });
    else model.send({ type: 'heartbeat', current: current ? current.id : null });
  }, model.get('heartbeat_ms'));
  model.send({ type: 'ready' });
  return () => { document.removeEventListener('keydown', onKey); clearInterval(beat); };
}
export default { render };
