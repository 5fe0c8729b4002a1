/*
 * Browser client for the voice agent demo.
 *
 * - Captures the microphone with an AudioWorklet (16 kHz mono Int16, 20 ms
 *   frames) and streams it to the server over a WebSocket (/ws).
 * - Plays the agent's PCM replies back to back, cuts them on barge-in and
 *   reports when each utterance actually starts playing.
 * - Renders the live transcript, a per-turn latency waterfall and clear
 *   banners for microphone / connection problems, with automatic reconnect.
 * - Sends the access token, when the server needs one, as a WebSocket
 *   subprotocol (never in a URL): it comes from the page's #token=... fragment
 *   (removed from the address bar at once) or from the form shown when the
 *   server refuses the socket for want of it; it is kept for this tab only.
 */
(() => {
  "use strict";

  const SAMPLE_RATE = 16000;
  const FRAME_SAMPLES = 320; // 20 ms at 16 kHz
  const MAX_RETRIES = 5;
  const FIRST_RETRY_MS = 500;
  const PAGE_PROTOCOL = "voice-agent";
  const TOKEN_PROTOCOL_PREFIX = "access-token.";
  const TOKEN_KEY = "voice-agent-access-token";
  const POLICY_CLOSE = 1008; // the server refused the socket (access, or the input bounds)

  // Stage name -> colour, in pipeline order (also used for the legend).
  const OUTCOME_TEXT = {
    answered: "answered",
    interrupted: "interrupted before the answer",
    error: "failed: apology played",
    no_answer: "no answer",
  };
  const STAGE_COLORS = {
    vad_stop: "#94a3b8",
    stt: "#3b82f6",
    end_of_turn: "#06b6d4",
    llm_request: "#8b5cf6",
    llm_ttft: "#ec4899",
    first_clause: "#f59e0b",
    tts: "#22c55e",
    output: "#0f766e",
    playout: "#f97316",
  };
  const UNKNOWN_STAGE_COLOR = "#cbd5e1";

  // Runs on the audio thread: Float32 -> little-endian Int16, 320-sample frames.
  // If the browser refused a 16 kHz context, it decimates to 16 kHz itself.
  const WORKLET_SOURCE = `
class MicFrames extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / ${SAMPLE_RATE};
    this.pos = 0;
    this.count = 0;
    this.frame = new DataView(new ArrayBuffer(${FRAME_SAMPLES * 2}));
  }
  push(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.frame.setInt16(this.count * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    if (++this.count === ${FRAME_SAMPLES}) {
      this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
      this.frame = new DataView(new ArrayBuffer(${FRAME_SAMPLES * 2}));
      this.count = 0;
    }
  }
  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (input) {
      for (; this.pos < input.length; this.pos += this.step) this.push(input[this.pos | 0]);
      this.pos -= input.length;
    }
    return true;
  }
}
registerProcessor("mic-frames", MicFrames);
`;

  const ui = Object.fromEntries(
    ["start", "status", "provider", "activity", "banner", "transcript", "latency", "legend", "stats", "access", "access-token"]
      .map((id) => [id, document.getElementById(id)]),
  );

  // Read by automated browser tests.
  const va = (window.voiceAgent = { turns: [], playoutReports: 0, audioChunks: 0 });

  const app = {
    gen: 0, // bumped on every start/teardown so stale async work can bail out
    running: false, // user pressed Start and not Stop
    busy: false,
    ws: null,
    everOpened: false,
    sessionReady: false,
    hadSession: false,
    retries: 0,
    reconnectTimer: null,
    ctx: null,
    workletLoaded: null,
    stream: null,
    micNodes: [],
    playRate: SAMPLE_RATE,
    nextPlayTime: 0,
    sources: [],
    playoutTimers: [],
    budgetMs: 800,
    interimEl: null,
    userTurnEl: null,
    botEl: null,
    botTextEl: null,
    botStopped: true,
    lastKind: null, // "user" | "bot": kind of the last final bubble
  };

  // ---------------------------------------------------------------- UI basics

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }

  function fmtMs(value) {
    const v = Number(value);
    return value == null || !Number.isFinite(v) ? "—" : `${Math.round(v)} ms`;
  }

  function setState(state) {
    ui.status.textContent = state;
    ui.status.className = `pill ${state}`;
    document.body.dataset.state = state;
  }

  function updateButton() {
    ui.start.textContent = app.running ? "Stop" : "Start";
    ui.start.classList.toggle("stop", app.running);
  }

  function showBanner(text, kind = "error") {
    ui.banner.textContent = text;
    ui.banner.className = `banner ${kind}`;
    ui.banner.hidden = !text;
  }

  function hideBanner() {
    ui.banner.textContent = "";
    ui.banner.hidden = true;
  }

  function setActivity(text) {
    ui.activity.textContent = text;
    ui.activity.hidden = !text;
  }

  // ------------------------------------------------------------ start / stop

  async function start() {
    const gen = ++app.gen;
    Object.assign(app, { running: true, busy: false, retries: 0, everOpened: false });
    updateButton();
    hideBanner();
    resetViews();
    setState("connecting");

    const ctx = ensureAudioContext(); // synchronous: still inside the click gesture
    if (!ctx) return teardown("error", "This browser does not support Web Audio; try a recent Chrome, Edge, Firefox or Safari.");
    const resumed = ctx.resume().catch(() => {});

    try {
      const stream = await openMic();
      if (gen !== app.gen) return stopTracks(stream);
      app.stream = stream;
      await resumed;
      await startCapture(ctx, stream);
      if (gen !== app.gen) return stopMic();
    } catch (err) {
      if (gen === app.gen) teardown("error", micErrorMessage(err));
      return;
    }
    connect();
  }

  function stop() {
    teardown("idle");
    hideBanner();
  }

  // Ends everything; `state` is the resulting connection state.
  function teardown(state, message, kind = "error") {
    app.gen++;
    app.running = false;
    clearTimeout(app.reconnectTimer);
    app.reconnectTimer = null;
    closeSocket();
    stopMic();
    stopPlayback();
    removeInterim();
    setActivity("");
    setState(state);
    updateButton();
    if (message) showBanner(message, kind);
  }

  // -------------------------------------------------------------- microphone

  function ensureAudioContext() {
    if (app.ctx) return app.ctx;
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    try {
      app.ctx = new Ctx({ sampleRate: SAMPLE_RATE, latencyHint: "interactive" });
    } catch (_) {
      app.ctx = new Ctx({ latencyHint: "interactive" }); // the worklet resamples
    }
    return app.ctx;
  }

  function openMic() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      const err = new Error("getUserMedia is unavailable");
      err.name = "InsecureContext";
      return Promise.reject(err);
    }
    return navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
  }

  function micErrorMessage(err) {
    const name = (err && err.name) || "";
    if (name === "InsecureContext") {
      return "The microphone is only available on secure pages: open this demo via http://localhost or https://.";
    }
    if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
      return "Microphone access was denied. Allow the microphone for this site (the icon in the address bar, or the browser's site settings), then press Start again.";
    }
    if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
      return "No microphone was found. Connect one (or enable it in your system settings) and press Start again.";
    }
    if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
      return "The microphone could not be started; another application may be using it. Close it and press Start again.";
    }
    return `Could not start the microphone: ${(err && err.message) || err}.`;
  }

  async function startCapture(ctx, stream) {
    if (!ctx.audioWorklet) throw new Error("this browser does not support AudioWorklet");
    if (!app.workletLoaded) {
      const url = URL.createObjectURL(new Blob([WORKLET_SOURCE], { type: "application/javascript" }));
      app.workletLoaded = ctx.audioWorklet
        .addModule(url)
        .catch((err) => { app.workletLoaded = null; throw err; })
        .finally(() => URL.revokeObjectURL(url));
    }
    await app.workletLoaded;

    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "mic-frames", {
      numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: "explicit",
    });
    const mute = ctx.createGain(); // keeps the worklet pulled without reaching the speakers
    mute.gain.value = 0;
    node.port.onmessage = (e) => sendAudio(e.data);
    source.connect(node);
    node.connect(mute);
    mute.connect(ctx.destination);
    app.micNodes = [source, node, mute];
  }

  function stopTracks(stream) {
    if (stream) stream.getTracks().forEach((t) => t.stop());
  }

  function stopMic() {
    for (const node of app.micNodes) {
      if (node.port) node.port.onmessage = null;
      node.disconnect();
    }
    app.micNodes = [];
    stopTracks(app.stream);
    app.stream = null;
  }

  function sendAudio(frame) {
    const ws = app.ws;
    if (ws && ws.readyState === WebSocket.OPEN && app.sessionReady) ws.send(frame);
  }

  // --------------------------------------------------------------- websocket

  function wsUrl() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  }

  function accessToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (_) { return ""; }
  }

  function rememberToken(token) {
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (_) { /* storage disabled: ask again next time */ }
  }

  // A link such as http://host/#token=... carries the token; keep it for this tab and drop it from the address bar.
  function takeTokenFromUrl() {
    const match = /^#token=([A-Za-z0-9._~-]+)$/.exec(location.hash);
    if (!match) return;
    rememberToken(match[1]);
    history.replaceState(null, "", location.pathname + location.search);
  }

  function protocols() {
    const token = accessToken();
    return token ? [PAGE_PROTOCOL, TOKEN_PROTOCOL_PREFIX + token] : [PAGE_PROTOCOL];
  }

  function onRefused(reason) {
    const needsToken = /access token/.test(reason);
    if (needsToken && accessToken()) rememberToken(""); // the one we had was refused
    teardown("error", needsToken
      ? "This server needs an access token: enter it below (or open the page from a link that carries it)."
      : `The server closed the call: ${reason || "refused"}.`);
    ui.access.hidden = !needsToken;
    if (needsToken) ui["access-token"].focus();
  }

  function connect() {
    let ws;
    try {
      ws = new WebSocket(wsUrl(), protocols());
    } catch (err) {
      return teardown("error", `Cannot open a connection to ${wsUrl()}: ${err.message}`);
    }
    ws.binaryType = "arraybuffer";
    app.ws = ws;
    app.sessionReady = false;
    let opened = false;
    ws.onopen = () => { opened = true; app.everOpened = true; };
    ws.onmessage = (e) => { if (app.ws === ws) onSocketMessage(e.data); };
    ws.onclose = (e) => {
      if (app.ws !== ws) return;
      if (e.code === POLICY_CLOSE && app.running) return onRefused(e.reason);
      onSocketClosed(opened);
    };
    ws.onerror = () => {}; // the close event that follows carries what we need
  }

  function closeSocket() {
    const ws = app.ws;
    app.ws = null;
    app.sessionReady = false;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try { ws.close(1000, "client stop"); } catch (_) { /* already closed */ }
  }

  function onSocketClosed(opened) {
    app.ws = null;
    app.sessionReady = false;
    stopPlayback();
    removeInterim();
    setActivity("");
    if (!app.running || app.busy) return;
    if (!opened && !app.everOpened) {
      return teardown("error", `Cannot reach the voice server at ${wsUrl()}. Make sure the server is running and this page is opened from it, then press Start again.`);
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (app.retries >= MAX_RETRIES) {
      return teardown("error", `Connection lost and ${MAX_RETRIES} reconnection attempts failed. Check the server, then press Start again.`);
    }
    const delay = FIRST_RETRY_MS * 2 ** app.retries;
    app.retries += 1;
    setState("reconnecting");
    showBanner(`connection lost, reconnecting… (attempt ${app.retries} of ${MAX_RETRIES})`, "warn");
    app.reconnectTimer = setTimeout(() => {
      app.reconnectTimer = null;
      if (app.running) connect();
    }, delay);
  }

  function sendJson(obj) {
    const ws = app.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  function onSocketMessage(data) {
    if (typeof data !== "string") return playChunk(data);
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (_) {
      return console.warn("ignoring non-JSON text message", data);
    }
    const handler = HANDLERS[msg && msg.type];
    if (handler) handler(msg);
  }

  const HANDLERS = {
    session: onSession,
    busy: (m) => {
      app.busy = true;
      teardown("busy", m.message || "The agent is busy; try again in a minute.", "warn");
    },
    error: (m) => showBanner(m.message || "The server reported an error.", "error"),
    user_started: () => setActivity("listening…"),
    user_stopped: () => { app.userTurnEl = null; setActivity("thinking…"); },
    bot_started: () => { app.botStopped = false; setActivity("speaking…"); },
    bot_stopped: () => { app.botStopped = true; setActivity(""); },
    transcript: onTranscript,
    bot_text: onBotText,
    interrupt: onInterrupt,
    turn: onTurn,
    answer_start: onAnswerStart,
  };

  function onSession(msg) {
    if (app.hadSession) {
      // Reconnected: the server started a fresh session (turn numbers restart).
      addDivider("new session");
      clearLatency();
    }
    app.hadSession = true;
    app.sessionReady = true;
    app.retries = 0;
    app.budgetMs = Number(msg.budget_ms) || app.budgetMs;
    app.playRate = Number(msg.sample_rate) || SAMPLE_RATE;
    ui.provider.textContent = [msg.provider, msg.model].filter(Boolean).join(" · ") || "—";
    setState("connected");
    hideBanner();
    renderLegend();
    renderLatency();
  }

  // ---------------------------------------------------------------- playback

  function playChunk(buffer) {
    const ctx = app.ctx;
    const samples = buffer.byteLength >> 1;
    if (!ctx || !app.running || samples === 0) return;
    if (ctx.state === "suspended") ctx.resume().catch(() => {});

    const view = new DataView(buffer);
    const floats = new Float32Array(samples);
    for (let i = 0; i < samples; i++) floats[i] = view.getInt16(i * 2, true) / 32768;
    const audio = ctx.createBuffer(1, samples, app.playRate);
    audio.copyToChannel(floats, 0);

    const src = ctx.createBufferSource();
    src.buffer = audio;
    src.connect(ctx.destination);
    const now = ctx.currentTime;
    const startAt = Math.max(now + 0.01, app.nextPlayTime);
    src.onended = () => { app.sources = app.sources.filter((s) => s !== src); };
    src.start(startAt);
    app.nextPlayTime = startAt + audio.duration;
    app.lastChunkStartsAt = startAt;
    app.sources.push(src);
    va.audioChunks += 1;
  }

  // The server sends `answer_start` right after the answer's first audio chunk (an acknowledgement may have played
  // before it): report when that chunk starts playing, so the server knows when the caller heard the answer.
  function onAnswerStart() {
    if (!app.ctx || app.lastChunkStartsAt == null) return;
    reportPlayoutAfter((app.lastChunkStartsAt - app.ctx.currentTime) * 1000);
  }

  function reportPlayoutAfter(delayMs) {
    const timer = setTimeout(() => {
      app.playoutTimers = app.playoutTimers.filter((t) => t !== timer);
      sendJson({ type: "playout_started" });
      va.playoutReports += 1;
    }, Math.max(0, delayMs));
    app.playoutTimers.push(timer);
  }

  function isPlaying() {
    return !!app.ctx && app.sources.length > 0 && app.nextPlayTime > app.ctx.currentTime;
  }

  function stopPlayback() {
    for (const src of app.sources) {
      src.onended = null;
      try { src.stop(); } catch (_) { /* not started yet or already stopped */ }
      src.disconnect();
    }
    app.sources = [];
    app.nextPlayTime = 0;
    app.playoutTimers.forEach(clearTimeout);
    app.playoutTimers = [];
  }

  // -------------------------------------------------------------- transcript

  function scrollToEnd(box) {
    box.scrollTop = box.scrollHeight;
  }

  function addBubble(cls) {
    const bubble = el("div", `msg ${cls}`);
    // Agent text goes above a pending interim user bubble, user text at the end.
    const before = cls === "bot" ? app.interimEl : null;
    ui.transcript.insertBefore(bubble, before);
    return bubble;
  }

  function removeInterim() {
    if (app.interimEl) app.interimEl.remove();
    app.interimEl = null;
  }

  function addDivider(text) {
    removeInterim();
    ui.transcript.append(el("div", "divider", text));
    app.botEl = app.botTextEl = null;
    app.lastKind = null;
    scrollToEnd(ui.transcript);
  }

  function onTranscript(msg) {
    const text = String(msg.text || "").trim();
    if (!text) return msg.final ? removeInterim() : undefined;
    if (!msg.final) {
      if (!app.interimEl) app.interimEl = addBubble("user interim");
      app.interimEl.textContent = text;
    } else {
      // A whole-turn transcript replaces the words shown for the caller's open turn.
      const open = msg.whole_turn && app.lastKind === "user" ? app.userTurnEl : null;
      const bubble = open || app.interimEl || addBubble("user");
      if (open) removeInterim();
      bubble.className = "msg user";
      bubble.textContent = text;
      app.interimEl = null;
      app.userTurnEl = bubble;
      app.lastKind = "user";
    }
    scrollToEnd(ui.transcript);
  }

  function onBotText(msg) {
    if (!msg.text) return;
    const needNew = !app.botEl || app.lastKind !== "bot" || app.botEl.classList.contains("interrupted");
    if (needNew) {
      app.botEl = addBubble("bot");
      app.botTextEl = el("span", "text", "");
      app.botEl.append(app.botTextEl);
      app.botStopped = false;
    }
    app.botTextEl.textContent += msg.text;
    app.lastKind = "bot";
    scrollToEnd(ui.transcript);
  }

  function onInterrupt() {
    const wasActive = isPlaying() || (app.lastKind === "bot" && !app.botStopped);
    stopPlayback();
    setActivity("listening…");
    const bubble = app.botEl;
    if (!wasActive || !bubble || bubble.classList.contains("interrupted")) return;
    bubble.classList.add("interrupted");
    bubble.append(el("span", "note", " (interrupted)"));
    app.botStopped = true;
  }

  // ----------------------------------------------------------------- latency

  function onTurn(msg) {
    const report = msg.report;
    if (!report || report.turn == null) return;
    const i = va.turns.findIndex((t) => t.turn === report.turn);
    if (i >= 0) va.turns[i] = report;
    else va.turns.push(report);
    renderLatency();
    if (msg.session) renderStats(msg.session);
  }

  function renderStats(s) {
    const answered = Number(s.count) || 0;
    const turns = Number(s.turns) || answered;
    ui.stats.textContent =
      `answer p50 ${fmtMs(s.p50_ms)} · p95 ${fmtMs(s.p95_ms)} · ${answered} of ${turns} turn${turns === 1 ? "" : "s"} answered`;
  }

  function clearLatency() {
    va.turns.length = 0;
    ui.latency.replaceChildren();
    renderStats({ count: 0 });
  }

  function stageEntries(report) {
    return Object.entries(report.stages_ms || {})
      .map(([name, ms]) => [name, Number(ms)])
      .filter(([, ms]) => Number.isFinite(ms) && ms > 0);
  }

  // Common scale: budget plus headroom, widened to fit the slowest turn.
  function scaleMs() {
    let max = app.budgetMs * 1.25;
    for (const t of va.turns) {
      const sum = stageEntries(t).reduce((acc, [, ms]) => acc + ms, 0);
      max = Math.max(max, sum, Number(t.answer_ms) || 0);
    }
    return Math.ceil(max / 100) * 100;
  }

  function renderLatency() {
    const scale = scaleMs();
    const rows = [...va.turns].sort((a, b) => b.turn - a.turn).map((t) => turnRow(t, scale));
    ui.latency.replaceChildren(...rows);
  }

  function turnRow(t, scale) {
    const verdict = t.verdict || {};
    const budget = Number(verdict.budget_ms) || app.budgetMs;
    const row = el("div", "turn");
    row.dataset.turn = String(t.turn);

    const head = el("div", "turn-head");
    const said = el("span", "turn-text", t.user_text ? `“${t.user_text}”` : "");
    said.title = t.user_text || "";
    const total = t.answer_ms != null ? fmtMs(t.heard_ms != null ? t.heard_ms : t.answer_ms) : OUTCOME_TEXT[t.outcome];
    head.append(el("span", "turn-no", `#${t.turn}`), said, el("span", "total", total || "—"));

    row.append(head, waterfall(t, budget, scale), turnFoot(t, verdict));
    return row;
  }

  function waterfall(t, budget, scale) {
    const overran = (t.verdict && t.verdict.overran) || [];
    const track = el("div", "track");
    const bar = el("div", "bar");
    for (const [name, ms] of stageEntries(t)) {
      const seg = el("span", "seg");
      seg.dataset.stage = name;
      seg.style.width = `${(ms / scale) * 100}%`;
      seg.style.background = STAGE_COLORS[name] || UNKNOWN_STAGE_COLOR;
      seg.title = `${name}: ${Math.round(ms)} ms`;
      if (overran.includes(name)) seg.classList.add("overran");
      if (ms / scale > 0.08) seg.textContent = String(Math.round(ms));
      bar.append(seg);
    }
    const line = el("div", "budget-line");
    line.style.left = `${Math.min(100, (budget / scale) * 100)}%`;
    line.title = `budget ${budget} ms`;
    track.append(bar, line);
    return track;
  }

  // The verdict judges the answer: a turn without one (cut off, failed, nothing came) is never within budget, nor
  // one whose answer began while the caller was only pausing (a false start), however fast it came.
  function turnFoot(t, verdict) {
    const within = !!verdict.within_budget;
    const overran = verdict.overran || [];
    const text = within
      ? "✓ answer within budget"
      : t.false_start
        ? "✗ false start: the answer began in the caller's pause"
        : t.outcome !== "answered"
        ? `✗ ${OUTCOME_TEXT[t.outcome] || "no answer"}`
        : `✗ answer over budget${overran.length ? ` (${overran.join(", ")})` : ""}`;
    const foot = el("div", "turn-foot");
    foot.append(el("span", `verdict ${within ? "ok" : "over"}`, text));
    if (t.filler_ms != null) foot.append(el("span", "tag", `filler at ${fmtMs(t.filler_ms)}`));
    if (t.cut && !t.false_start) foot.append(el("span", "tag", "cut off"));
    if (t.backchannels) {  // the caller's "yeah" (or a noise) stopped the answer, and it went on
      const times = t.backchannels === 1 ? "a back-channel" : `${t.backchannels} back-channels`;
      foot.append(el("span", "tag", `went on after ${times}`));
    }
    return foot;
  }

  function renderLegend() {
    const items = Object.entries(STAGE_COLORS).map(([name, color]) => {
      const item = el("span", "legend-item");
      const swatch = el("span", "swatch");
      swatch.style.background = color;
      item.append(swatch, name);
      return item;
    });
    const budget = el("span", "legend-item");
    budget.append(el("span", "swatch line"), `budget ${app.budgetMs} ms`);
    ui.legend.replaceChildren(...items, budget);
  }

  // -------------------------------------------------------------------- init

  function resetViews() {
    ui.transcript.replaceChildren();
    Object.assign(app, { interimEl: null, userTurnEl: null, botEl: null, botTextEl: null, lastKind: null, hadSession: false, botStopped: true });
    ui.provider.textContent = "—";
    clearLatency();
  }

  ui.start.addEventListener("click", () => (app.running ? stop() : start()));
  ui.access.addEventListener("submit", (e) => {
    e.preventDefault();
    rememberToken(ui["access-token"].value.trim());
    ui["access-token"].value = "";
    ui.access.hidden = true;
    start();
  });
  takeTokenFromUrl();
  window.addEventListener("pagehide", () => { if (app.running) teardown("idle"); });
  setState("idle");
  updateButton();
  renderLegend();
  renderStats({ count: 0 });
})();
