/*
 * chat: the web page.  Plain JavaScript, no build step.
 *
 * It speaks the JSON protocol of docs/protocol.rst over the WebSocket at /ws
 * of the page's own origin.  User text only ever goes into the page through
 * textContent (and links are built as <a> elements for http: and https: URLs
 * only).  The session token is kept in sessionStorage, the latest only.
 *
 * Presence follows the person: while someone uses the page (keys, the
 * pointer, the wheel, touch, the window's focus, the tab coming back) it
 * tells the server now and then ("active"), so a reader is never logged out;
 * a page left alone is, after the server's idle timeout, and then offers to
 * resume with one click.  Stored messages (those of "offline", and live ones
 * marked "stored") are acknowledged ("ack") once shown.
 *
 * Everything shown belongs to one conversation (docs/protocol.rst,
 * "Conversations"): everyone, a room, or the one with a person.  The sidebar
 * lists them with the unread counts the server keeps; the timeline holds the
 * messages of all of them and shows those of the open one only, so that a
 * message arriving elsewhere raises a count without moving the view.  Each
 * conversation's history is paged in from the server, older pages as the
 * reader scrolls up, and what is shown is marked read on the server ("read"),
 * so the counts are the same after a reload or on another device.  On a
 * phone the list and the open conversation are two screens.
 *
 * Announcements (notices from the server to everyone) show in every
 * conversation, in a box of their own.  For an admin (the server's welcome
 * says "admin": true) the page builds an Admin panel: the sessions on every
 * server, with a Kick button each, and a form to announce; for anyone else
 * none of it exists in the page.
 */
"use strict";

(() => {
  const PROTOCOL = 1;
  const TITLE = "chat";
  const TOKEN_KEY = "chat.session";
  // Until the server's hello says otherwise (hello.limits).
  const RECENT_MINUTES = 60;
  const DEFAULT_MAX_FRAME = 4096;
  const SENT_KEEP = 50;
  // "active" at most this often (seconds): a third of the server's idle
  // timeout, between these bounds.
  const ACTIVE_MAX = 60;
  const ACTIVE_MIN = 1;
  // Acknowledgements of live stored messages are sent together, this long
  // (milliseconds) after the first of them.
  const ACK_DELAY = 250;
  // Messages asked for in one page of a conversation's history.
  const PAGE = 50;
  // "read" requests are gathered for this long (milliseconds).
  const READ_DELAY = 300;
  const EVERYONE = "everyone";
  const OPEN_KEY = "chat.open";
  const PHONE = window.matchMedia("(max-width: 760px)");
  // A touch screen's keyboard has no Shift+Enter: there Enter is a new line,
  // and the Send button sends.
  const TOUCH = window.matchMedia("(hover: none) and (pointer: coarse)");
  // Lines in one message (docs/protocol.rst: a message may hold line breaks).
  const MAX_LINES = 50;
  // "typing" at most this often (milliseconds), and how long a notice shows.
  const TYPING_EVERY = 3000;
  const TYPING_SHOWN = 6000;
  // Hits asked for in one page of search results, and older pages of a
  // conversation loaded at most to reach a hit.
  const HITS = 20;
  const SEEK_PAGES = 20;

  const $ = (id) => document.getElementById(id);
  const ui = {
    banner: $("banner"),
    bannerText: $("banner-text"),
    bannerAction: $("banner-action"),
    loginView: $("login-view"),
    login: $("login"),
    username: $("username"),
    password: $("password"),
    loginButton: $("login-button"),
    loginError: $("login-error"),
    loginStatus: $("login-status"),
    resume: $("resume"),
    resumeText: $("resume-text"),
    resumeWhen: $("resume-when"),
    resumeName: $("resume-name"),
    resumeStatus: $("resume-status"),
    resumeButton: $("resume-button"),
    resumeOther: $("resume-other"),
    chat: $("chat"),
    me: $("me"),
    toggleRoster: $("toggle-roster"),
    setIntro: $("set-intro"),
    notify: $("notify"),
    help: $("help"),
    logout: $("logout"),
    sidebar: $("sidebar"),
    roster: $("roster"),
    rosterEmpty: $("roster-empty"),
    onlineCount: $("online-count"),
    recent: $("recent"),
    recentEmpty: $("recent-empty"),
    showRecent: $("show-recent"),
    timeline: $("timeline"),
    timelineEmpty: $("timeline-empty"),
    jump: $("jump"),
    composer: $("composer"),
    composerError: $("composer-error"),
    composerNote: $("composer-note"),
    to: $("to"),
    toHint: $("to-hint"),
    clearTo: $("clear-to"),
    message: $("message"),
    counter: $("counter"),
    send: $("send"),
    names: $("names"),
    introForm: $("intro-form"),
    introText: $("intro-text"),
    introError: $("intro-error"),
    introSave: $("intro-save"),
    introCancel: $("intro-cancel"),
    helpPanel: $("help-panel"),
    helpClose: $("help-close"),
    helpCommands: $("help-commands"),
    everyoneList: $("everyone-list"),
    roomList: $("room-list"),
    roomsEmpty: $("rooms-empty"),
    directList: $("direct-list"),
    directEmpty: $("direct-empty"),
    browseRooms: $("browse-rooms"),
    conversation: $("conversation"),
    back: $("back"),
    backCount: $("back-count"),
    convTitle: $("conv-title"),
    convSub: $("conv-sub"),
    roomMembers: $("room-members"),
    leaveRoom: $("leave-room"),
    older: $("older"),
    loadOlder: $("load-older"),
    olderStart: $("older-start"),
    roomsPanel: $("rooms-panel"),
    roomName: $("room-name"),
    roomJoin: $("room-join"),
    roomsError: $("rooms-error"),
    roomDirectory: $("room-directory"),
    roomsClose: $("rooms-close"),
    search: $("search"),
    searchText: $("search-text"),
    searchResults: $("search-results"),
    searchStatus: $("search-status"),
    searchHits: $("search-hits"),
    searchMore: $("search-more"),
    searchClose: $("search-close"),
    typing: $("typing"),
    rosterStale: $("roster-stale"),
    topbar: document.querySelector(".topbar"),
    main: document.querySelector(".main"),
  };

  const state = {
    ws: null,
    // idle | connecting | prompt | authenticating | refused | chat
    phase: "idle",
    me: null,
    inChat: false,
    // What to send at the next login prompt: {kind: "login", username, password} or {kind: "resume", token}.
    auth: null,
    autoReconnect: false,
    attempt: 0,
    reconnectTimer: 0,
    reconnectAt: 0,
    bannerTimer: 0,
    blockTimer: 0,
    // Requests sent and not answered yet, oldest first: the server answers in order.
    pending: [],
    byId: new Map(),
    roster: new Map(),
    recent: null,
    recentMinutes: RECENT_MINUTES,
    sent: [],
    recall: -1,
    maxMessage: 500,
    // Bytes of one request; the server closes on anything longer.
    maxFrame: DEFAULT_MAX_FRAME,
    // The largest N of wholast N.
    lastHour: RECENT_MINUTES,
    unread: 0,
    notify: false,
    intro: null,
    introDraft: null,
    introMode: "intro",
    helpLoaded: false,
    localIds: 0,
    noteTimer: 0,
    protocolWarning: null,
    // The server's idle timeout (seconds, from hello), or null if it did not say.
    idleTimeout: null,
    // performance.now() of the last request the server counts as activity,
    // and of the last activity of the person at the page.
    lastRequestAt: 0,
    lastActivityAt: 0,
    activeTimer: 0,
    pointerX: null,
    pointerY: null,
    // Ids of live stored messages shown and not acknowledged yet.
    ackIds: [],
    ackTimer: 0,
    // The resume offer is showing (after a session ended for being idle).
    offering: false,
    // The server does not know "active" and "ack".
    legacy: false,
    // The Admin button and panel, for an admin only (see buildAdmin), else null.
    admin: null,
    // The conversations, by id ("everyone", "#room" in lower case, "@name"):
    // {id, kind, name, unread, last, joined, loaded, loading, more, oldest, members}.
    convs: new Map(),
    // The id of the open conversation.
    open: EVERYONE,
    // On a phone: the list of conversations is the screen, not the open one.
    listOpen: false,
    // Conversations to mark read with the next "read", and its timer.
    readIds: new Set(),
    readTimer: 0,
    // Who is typing where: conversation id -> Map(name -> timer).
    typing: new Map(),
    // When this page last said its user types, and in which conversation.
    typingSentAt: 0,
    typingSentIn: null,
    // The search shown: {text, hits, more}; a hit being opened: {conv, id, pages}.
    search: null,
    seek: null,
    // When the connection was lost (seconds), while the roster is as of then.
    staleSince: null,
  };

  // --- small helpers ----------------------------------------------------------

  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function icon(name) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("aria-hidden", "true");
    const use = document.createElementNS(ns, "use");
    use.setAttribute("href", "#i-" + name);
    svg.append(use);
    return svg;
  }

  const pad = (n) => String(n).padStart(2, "0");

  function asDate(seconds) {
    return new Date((typeof seconds === "number" && isFinite(seconds) ? seconds : Date.now() / 1000) * 1000);
  }

  function hhmm(date) {
    return pad(date.getHours()) + ":" + pad(date.getMinutes());
  }

  function fullTime(date) {
    try {
      return date.toLocaleString(undefined, { dateStyle: "full", timeStyle: "medium" });
    } catch (e) {
      return date.toString();
    }
  }

  function dayKey(date) {
    return date.getFullYear() + "-" + (date.getMonth() + 1) + "-" + date.getDate();
  }

  function dayLabel(date) {
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (dayKey(date) === dayKey(today)) return "Today";
    if (dayKey(date) === dayKey(yesterday)) return "Yesterday";
    return date.toLocaleDateString(undefined, { weekday: "long", year: "numeric", month: "long", day: "numeric" });
  }

  function ago(seconds) {
    const mins = Math.max(0, Math.round((Date.now() / 1000 - seconds) / 60));
    if (mins < 1) return "just now";
    if (mins < 60) return mins + " min ago";
    const hours = Math.floor(mins / 60);
    return hours + " h " + (mins % 60) + " min ago";
  }

  function colorOf(name) {
    let h = 0;
    for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return "c" + (h % 8);
  }

  function avatar(name, online) {
    const a = make("span", "avatar " + colorOf(name) + (online ? " online" : ""), Array.from(String(name))[0] || "?");
    a.setAttribute("aria-hidden", "true");
    return a;
  }

  function plural(n, one, many) {
    return n + " " + (n === 1 ? one : many);
  }

  // Text with http: and https: URLs made into links; everything else stays text.
  const URL_RE = /(?<![\w@/.])https?:\/\/[^\s<>"'`\u00a0]+/gi;

  function appendLinkified(parent, text) {
    let last = 0;
    for (const match of text.matchAll(URL_RE)) {
      let url = match[0];
      // Punctuation that ends a sentence is not part of the address, nor is
      // a closing bracket without its opening one.
      for (;;) {
        const end = url.slice(-1);
        if (/[.,;:!?'"*]/.test(end)) {
          url = url.slice(0, -1);
        } else if (end === ")" && url.split("(").length <= url.split(")").length - 1) {
          url = url.slice(0, -1);
        } else if ((end === "]" || end === "}") && !url.includes(end === "]" ? "[" : "{")) {
          url = url.slice(0, -1);
        } else {
          break;
        }
      }
      let parsed = null;
      try {
        parsed = new URL(url);
      } catch (e) {
        parsed = null;
      }
      if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:") || !parsed.hostname) continue;
      if (match.index > last) parent.append(document.createTextNode(text.slice(last, match.index)));
      const a = make("a", "", url);
      a.href = parsed.href;
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      parent.append(a);
      last = match.index + url.length;
    }
    if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
  }

  // A message's text: its lines as sent, and what is between ``` as code (a
  // block, or inline on one line); the rest with its links.
  const FENCE = "```";

  function appendMessageText(parent, text) {
    let at = 0;
    for (;;) {
      const open = text.indexOf(FENCE, at);
      const close = open < 0 ? -1 : text.indexOf(FENCE, open + FENCE.length);
      if (close < 0) {
        if (at < text.length) appendLinkified(parent, text.slice(at));
        return;
      }
      let code = text.slice(open + FENCE.length, close);
      const block = code.includes("\n");
      let before = text.slice(at, open);
      at = close + FENCE.length;
      if (block) {
        // The fences stand on lines of their own (the first may name a language).
        code = code.replace(/^[\w+#.-]*[ \t]*\n/, "").replace(/\n[ \t]*$/, "");
        before = before.replace(/\n[ \t]*$/, "");
        if (text[at] === "\n") at += 1;
      }
      if (before) appendLinkified(parent, before);
      if (block) {
        const pre = make("pre", "code");
        pre.dir = "ltr";
        pre.append(make("code", "", code));
        parent.append(pre);
      } else {
        parent.append(make("code", "inline-code", code));
      }
    }
  }

  // The text a message node was made from (its .text shows it without the fences).
  const rawText = new WeakMap();

  // --- the session token ------------------------------------------------------

  function loadToken() {
    try {
      const raw = sessionStorage.getItem(TOKEN_KEY);
      if (!raw) return null;
      const value = JSON.parse(raw);
      return value && typeof value.token === "string" && value.token ? value : null;
    } catch (e) {
      return null;
    }
  }

  // extra: {idle: true, name, text} for the token that resumes a session
  // ended for being idle; a reload then offers to resume rather than doing it.
  function saveToken(token, expires, extra) {
    try {
      sessionStorage.setItem(TOKEN_KEY, JSON.stringify(Object.assign({ token: token, expires: expires }, extra || {})));
    } catch (e) {
      /* storage full or disabled: a reconnection will ask for the password */
    }
  }

  function forgetToken() {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      /* nothing to forget */
    }
  }

  // --- the connection ---------------------------------------------------------

  function socketURL() {
    return (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/ws";
  }

  function connect() {
    if (state.ws) return;
    let ws;
    try {
      ws = new WebSocket(socketURL());
    } catch (e) {
      state.phase = "idle";
      setTimeout(onSocketClosed, 0);
      return;
    }
    state.ws = ws;
    state.phase = "connecting";
    ws.addEventListener("message", (event) => {
      if (ws === state.ws && typeof event.data === "string") onFrame(event.data);
    });
    ws.addEventListener("close", () => {
      if (ws === state.ws) onSocketClosed();
    });
  }

  function connected() {
    return !!state.ws && state.ws.readyState === WebSocket.OPEN && state.phase === "chat";
  }

  function rawSend(obj) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(obj));
    // Every request but "ack" restarts the server's idle timer.
    if (obj.type !== "ack") state.lastRequestAt = performance.now();
    return true;
  }

  // --- presence: activity and "active" ------------------------------------------

  // Seconds between two "active" at most: a third of the idle timeout, so
  // that two may be lost (or late) before the server gives up.
  function activeInterval() {
    const idle = state.idleTimeout;
    const every = idle ? Math.min(ACTIVE_MAX, idle / 3) : ACTIVE_MAX;
    return Math.max(ACTIVE_MIN, every);
  }

  function noteActivity() {
    state.lastActivityAt = performance.now();
    scheduleActive();
  }

  // Moves of the pointer only: the browser may report one when the page
  // moves under a pointer that stays where it is.
  function onPointerMove(event) {
    if (event.clientX === state.pointerX && event.clientY === state.pointerY) return;
    state.pointerX = event.clientX;
    state.pointerY = event.clientY;
    noteActivity();
  }

  // "active" once the interval since the last request has passed, if there
  // was activity since that request (any request tells the server as much).
  function scheduleActive() {
    if (state.activeTimer || state.legacy || !connected() || state.lastActivityAt <= state.lastRequestAt) return;
    const wait = Math.max(0, state.lastRequestAt + activeInterval() * 1000 - performance.now());
    state.activeTimer = setTimeout(sendActive, wait);
  }

  function sendActive() {
    state.activeTimer = 0;
    if (!connected() || state.lastActivityAt <= state.lastRequestAt) return;
    // No answer comes: it is not a pending request.
    rawSend({ type: "active" });
  }

  // --- acknowledging stored messages --------------------------------------------

  // "ack" frames for these ids, as few as fit in a frame each.
  function sendAcks(ids) {
    if (state.legacy) return;
    let batch = [];
    let size = 0;
    for (const id of ids) {
      const cost = utf8Length(JSON.stringify(id)) + 1;
      if (batch.length && size + cost > state.maxFrame - 64) {
        rawSend({ type: "ack", ids: batch });
        batch = [];
        size = 0;
      }
      batch.push(id);
      size += cost;
    }
    if (batch.length) rawSend({ type: "ack", ids: batch });
  }

  function storedIds(messages) {
    return messages.filter((m) => m && typeof m.id === "string" && m.id).map((m) => m.id);
  }

  // A live stored message was shown: acknowledged with the others of the next ACK_DELAY.
  function queueAck(id) {
    state.ackIds.push(id);
    if (!state.ackTimer) state.ackTimer = setTimeout(flushAcks, ACK_DELAY);
  }

  function flushAcks() {
    clearTimeout(state.ackTimer);
    state.ackTimer = 0;
    const ids = state.ackIds;
    state.ackIds = [];
    // Not connected: this session is over, and the server gives them again
    // at the next login (or resume), where they are acknowledged.
    if (ids.length && connected()) sendAcks(ids);
  }

  function dropAcks() {
    clearTimeout(state.ackTimer);
    state.ackTimer = 0;
    state.ackIds = [];
  }

  // A request of a logged-in user; its answer is matched to it by order.
  function request(obj, kind, extra) {
    if (!connected()) return false;
    if (!rawSend(obj)) return false;
    state.pending.push(Object.assign({ kind: kind }, extra || {}));
    return true;
  }

  function takePending(kinds) {
    const i = state.pending.findIndex((r) => kinds.includes(r.kind));
    return i < 0 ? null : state.pending.splice(i, 1)[0];
  }

  function sendAuth() {
    const auth = state.auth;
    if (!auth || state.phase !== "prompt") return;
    if (auth.kind === "login") {
      if (!rawSend({ type: "login", username: auth.username, password: auth.password })) return;
      auth.password = null;
    } else if (!rawSend({ type: "resume", token: auth.token })) {
      return;
    }
    state.phase = "authenticating";
  }

  function onSocketClosed() {
    const phase = state.phase;
    const unanswered = state.pending.filter((r) => r.display);
    state.ws = null;
    state.phase = "idle";
    state.pending = [];
    dropAcks();
    clearAllTyping();
    // Who is online is as of now, until the connection is back.
    if (state.inChat) setStale(true);
    setLoginBusy(false);
    setResumeBusy(false);
    const auth = state.auth;
    state.auth = null;
    if (auth && auth.kind === "resume" && !state.inChat) setLoginStatus("");
    if (auth && auth.kind === "login" && phase !== "refused") {
      setLoginStatus("");
      showLoginError("Could not reach the chat server. Check your connection and try again.");
    }
    if (unanswered.length) {
      const last = unanswered[unanswered.length - 1].display.text;
      showNote("The connection dropped before “" + shorten(last, 60) + "” was confirmed; it may not have been sent.", 0);
    }
    if (!state.autoReconnect) return;
    if (loadToken()) {
      scheduleReconnect();
      return;
    }
    state.autoReconnect = false;
    hideBanner();
    if (state.inChat) {
      leaveChat();
      showLoginError("The connection was lost. Please log in again.");
    }
  }

  function scheduleReconnect() {
    clearTimeout(state.reconnectTimer);
    const base = Math.min(30, Math.pow(2, state.attempt));
    state.attempt += 1;
    // Jitter, so that browsers cut off together do not all come back at once.
    const delay = Math.min(30, base * (0.8 + Math.random() * 0.4));
    state.reconnectAt = Date.now() + delay * 1000;
    state.reconnectTimer = setTimeout(reconnectNow, delay * 1000);
    clearInterval(state.bannerTimer);
    const tick = () => {
      const left = Math.max(1, Math.ceil((state.reconnectAt - Date.now()) / 1000));
      const lead = state.inChat ? "Connection lost" : "Cannot reach the chat server";
      showBanner(lead + "; reconnecting in " + left + "s…", "Retry now", reconnectNow);
    };
    tick();
    state.bannerTimer = setInterval(tick, 1000);
  }

  function cancelReconnect() {
    clearTimeout(state.reconnectTimer);
    clearInterval(state.bannerTimer);
    state.reconnectTimer = 0;
    state.bannerTimer = 0;
  }

  function reconnectNow() {
    cancelReconnect();
    if (state.ws) return;
    const token = loadToken();
    if (!token) {
      state.autoReconnect = false;
      hideBanner();
      leaveChat();
      showLoginError("The connection was lost. Please log in again.");
      return;
    }
    showBanner(state.inChat ? "Reconnecting…" : "Connecting…");
    state.auth = { kind: "resume", token: token.token };
    connect();
  }

  // --- the banner -------------------------------------------------------------

  let bannerHandler = null;

  function showBanner(text, action, handler, final) {
    ui.bannerText.textContent = text;
    ui.banner.classList.toggle("final", !!final);
    if (action) {
      ui.bannerAction.textContent = action;
      ui.bannerAction.hidden = false;
      bannerHandler = handler;
    } else {
      ui.bannerAction.hidden = true;
      bannerHandler = null;
    }
    ui.banner.hidden = false;
  }

  function hideBanner() {
    clearInterval(state.bannerTimer);
    state.bannerTimer = 0;
    ui.banner.hidden = true;
    ui.bannerText.textContent = "";
    bannerHandler = null;
  }

  // --- events from the server -------------------------------------------------

  function onFrame(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (!msg || typeof msg !== "object" || typeof msg.type !== "string") return;
    const handler = HANDLERS[msg.type];
    if (handler) handler(msg);
  }

  const HANDLERS = {
    hello(msg) {
      state.legacy = false;
      const idle = msg.idle_timeout;
      state.idleTimeout = typeof idle === "number" && isFinite(idle) && idle > 0 ? idle : null;
      const limits = msg.limits && typeof msg.limits === "object" ? msg.limits : {};
      const whole = (n, fallback) => (Number.isInteger(n) && n >= 0 ? n : fallback);
      state.maxMessage = whole(limits.max_message, state.maxMessage);
      state.maxFrame = whole(limits.max_frame, DEFAULT_MAX_FRAME);
      state.lastHour = whole(limits.last_hour, RECENT_MINUTES);
      ui.introText.maxLength = state.maxMessage;
      updateCounter();
      state.protocolWarning =
        msg.protocol === PROTOCOL
          ? null
          : "This page was written for version " + PROTOCOL + " of the chat protocol; the server speaks version " +
            msg.protocol + ". Some things may not work.";
    },

    prompt(msg) {
      if (msg.for !== "login") return;
      state.phase = "prompt";
      sendAuth();
    },

    welcome(msg) {
      state.auth = null;
      state.phase = "chat";
      state.attempt = 0;
      state.autoReconnect = true;
      state.pending = [];
      dropAcks();
      cancelReconnect();
      hideBanner();
      hideResumeOffer();
      stopBlockCountdown();
      setLoginBusy(false);
      showLoginError("");
      setLoginStatus("");
      ui.password.value = "";
      const name = String(msg.name || "");
      if (state.me !== null && state.me !== name) resetChatData();
      state.me = name;
      ui.me.textContent = name;
      ui.me.title = state.intro ? "Your intro: " + state.intro : "";
      setComposerEnabled(true);
      const fresh = !state.inChat;
      enterChat(fresh);
      request({ type: "whoelse" }, "whoelse");
      request({ type: "history" }, "history");
      request({ type: "conversations" }, "conversations");
      // Back after a lost connection: what was said meanwhile comes with the pages again.
      for (const c of state.convs.values()) c.loaded = false;
      if (fresh) {
        const saved = loadOpen();
        openConversation(saved && /^(everyone|#[a-z0-9_-]{1,32}|@\S+)$/.test(saved) && saved !== "@" + name ? saved : EVERYONE, { bottom: true });
        // A phone starts on its list of conversations.
        if (PHONE.matches) showList(true);
      } else {
        openConversation(state.open, { keepTo: true, stay: true });
      }
      if (state.recent) requestRecent(state.recentMinutes);
      if (!ui.helpPanel.hidden && !state.helpLoaded) request({ type: "help" }, "help");
      // The Admin panel for an admin, and none of it for anyone else.
      setAdmin(msg.admin === true);
      if (state.admin) adminConnected();
      if (state.protocolWarning) showNote(state.protocolWarning, 0);
    },

    login_refused(msg) {
      const auth = state.auth;
      state.auth = null;
      state.phase = "refused";
      setLoginBusy(false);
      setLoginStatus("");
      if (auth && auth.kind === "resume") {
        resumeRefused(msg.text || "Your session has ended. Please log in again.");
        return;
      }
      if (msg.reason === "blocked") {
        startBlockCountdown((auth && auth.username) || ui.username.value.trim(), Number(msg.seconds) || 0, msg.text);
        return;
      }
      showLoginError(msg.text || "The login was refused.");
      if (msg.reason === "invalid") {
        ui.password.value = "";
        ui.password.focus();
      }
    },

    session(msg) {
      if (typeof msg.token === "string" && msg.token) saveToken(msg.token, msg.expires, { name: state.me });
    },

    offline(msg) {
      const messages = Array.isArray(msg.messages) ? msg.messages : [];
      addMessages(messages, { away: true, fresh: true });
      // Shown: they may leave the server's store (until then they would come
      // again at the next login).
      const ids = storedIds(messages);
      if (ids.length) sendAcks(ids);
    },

    message(msg) {
      addMessages([msg], { fresh: true });
      // It came through the store (from another server of a cluster): it
      // stays there until acknowledged.
      if (msg.stored === true) for (const id of storedIds([msg])) queueAck(id);
    },

    history(msg) {
      const req = takePending(["history", "page", "line"]);
      if (req && req.kind === "page") {
        gotPage(req, msg);
        return;
      }
      const messages = Array.isArray(msg.messages) ? msg.messages : [];
      addMessages(messages, { page: typeof msg.conversation === "string" ? msg.conversation : null, history: true });
      // Typed as "/history": the answer shows, whether or not its messages are on screen already.
      if (req && req.kind === "line") showHistoryNote(msg, messages);
    },

    conversations(msg) {
      takePending(["conversations"]);
      setConversations(Array.isArray(msg.conversations) ? msg.conversations : []);
    },

    joined(msg) {
      const req = takePending(["join", "line"]);
      if (typeof msg.room !== "string") return;
      const c = conversation(roomId(msg.room));
      c.joined = true;
      c.name = msg.room;
      if (Number.isInteger(msg.members)) c.members = msg.members;
      closeRooms(false);
      ui.roomName.value = "";
      openConversation(c.id, { focus: !!req });
      showNote(msg.text || "You joined " + msg.room + ".");
    },

    left(msg) {
      takePending(["leave", "line"]);
      if (typeof msg.room !== "string") return;
      const c = conversation(roomId(msg.room));
      c.joined = false;
      c.unread = 0;
      c.counted = [];
      // Rejoined later: what was said meanwhile comes with a fresh page.
      c.loaded = false;
      if (state.open === c.id) openConversation(EVERYONE, {});
      else renderConversations();
      showNote(msg.text || "You left " + msg.room + ".");
    },

    rooms(msg) {
      const req = takePending(["rooms", "line"]);
      const rooms = Array.isArray(msg.rooms) ? msg.rooms : [];
      for (const r of rooms) {
        if (!r || typeof r.room !== "string") continue;
        const c = state.convs.get(roomId(r.room));
        if (c && Number.isInteger(r.members)) c.members = r.members;
      }
      renderRoomDirectory(rooms);
      renderConvHead();
      if (req && req.kind === "line" && ui.roomsPanel.hidden) {
        ui.roomsPanel.hidden = false;
        ui.browseRooms.setAttribute("aria-expanded", "true");
      }
    },

    members(msg) {
      takePending(["members", "line"]);
      const list = (Array.isArray(msg.members) ? msg.members : []).filter((m) => m && typeof m.name === "string");
      if (typeof msg.room === "string") {
        const c = state.convs.get(roomId(msg.room));
        if (c) {
          c.members = list.length;
          renderConvHead();
        }
      }
      showNote(null, 0, (box) => {
        box.append(make("strong", "", "Members of " + String(msg.room || "the room") + ": "));
        list.forEach((m, i) => {
          if (i) box.append(", ");
          box.append(make("span", m.online ? "member online" : "member", m.name + (m.online ? " (online)" : "")));
        });
      });
    },

    receipt(msg) {
      const req = takePending(["send", "line"]);
      hideComposerError();
      const display = req && req.display;
      if (!display) {
        // Kept until dismissed when it did not reach everyone.
        if (msg.text) showNote(msg.text, deliveryOf(msg) === "partial" || deliveryOf(msg) === "failed" ? 0 : undefined);
        return;
      }
      const id = typeof msg.id === "string" && msg.id ? msg.id : "local-" + ++state.localIds;
      const own = {
        id: id,
        from: state.me,
        kind: display.room ? "room" : display.to.length === 1 ? "private" : "broadcast",
        text: display.text,
        time: typeof msg.time === "number" ? msg.time : Date.now() / 1000,
        to: display.to,
      };
      if (display.room) own.room = typeof msg.room === "string" && msg.room ? msg.room : display.room;
      // What is sent shows where it went: that conversation opens.
      const target = conversationsOf(own)[0];
      if (target !== state.open) openConversation(target, { keepTo: true });
      const node = addMessages([own], { mine: true });
      if (node) describeReceipt(node, msg);
    },

    roster(msg) {
      const req = takePending(["whoelse", "wholast", "line"]);
      const users = Array.isArray(msg.users) ? msg.users : [];
      if (req && req.kind === "line") showRosterNote(msg, users);
      if (msg.view === "recent") {
        showRecent(msg.minutes, users);
      } else {
        // Fresh from the server: no longer as of a lost connection.
        setStale(false);
        state.roster.clear();
        for (const u of users) {
          if (u && typeof u.name === "string" && u.name !== state.me) state.roster.set(u.name, { intro: u.intro || null });
        }
        renderRoster();
      }
    },

    presence(msg) {
      const name = msg.name;
      if (typeof name !== "string" || name === state.me) return;
      if (msg.online) {
        state.roster.set(name, { intro: msg.intro || null });
      } else {
        state.roster.delete(name);
        // Gone: not typing any more.
        clearTypingOf(name);
      }
      renderRoster();
      if (state.recent) {
        const entry = state.recent.users.get(name) || { name: name };
        entry.online = !!msg.online;
        entry.intro = msg.intro || entry.intro || null;
        if (msg.online) entry.last_seen = null;
        else entry.last_seen = typeof msg.time === "number" ? msg.time : Date.now() / 1000;
        state.recent.users.set(name, entry);
        renderRecent();
      }
    },

    typing(msg) {
      if (typeof msg.from !== "string" || typeof msg.conversation !== "string" || msg.from === state.me) return;
      setTyping(convKey(msg.conversation), msg.from, true);
    },

    found(msg) {
      takePending(["search", "line"]);
      gotHits(msg);
    },

    help(msg) {
      const req = takePending(["help", "line"]);
      const commands = Array.isArray(msg.commands) ? msg.commands : [];
      if (msg.command && commands.length === 1) {
        showNote(null, 0, (box) => {
          box.append(make("code", "", commands[0].usage));
          if (commands[0].summary) box.append(make("span", "", commands[0].summary));
        });
        return;
      }
      renderHelp(commands);
      if (req && req.kind === "line") openHelp();
    },

    announcement(msg) {
      addAnnouncement(msg);
    },

    sessions(msg) {
      const req = takePending(["sessions", "line"]);
      if (!state.admin) return;
      renderSessions(msg);
      // Typed as "/sessions": the panel shows them.
      if (req && req.kind === "line") openAdmin(false, true);
    },

    kicked(msg) {
      const req = takePending(["kick", "line"]);
      if (state.admin) adminKicked(msg);
      if (!state.admin || (req && req.kind === "line")) showNote(msg.text || "Kicked " + msg.user + ".", 0);
    },

    announced(msg) {
      const req = takePending(["announce", "line"]);
      if (state.admin && req && req.kind === "announce") {
        state.admin.announceText.value = "";
        state.admin.announcing = false;
        setAdminLine(state.admin.announceStatus, msg.text || "Announced.", false);
      } else if (msg.text) {
        showNote(msg.text);
      }
    },

    notice(msg) {
      switch (msg.code) {
        case "intro_saved":
          takePending(["intro", "line"]);
          state.intro = state.introDraft;
          ui.me.title = state.intro ? "Your intro: " + state.intro : "";
          closeIntro(true);
          showNote(msg.text || "Personal introduction saved.");
          break;
        case "intro_unchanged":
          takePending(["intro", "line"]);
          closeIntro(true);
          showNote(msg.text || "Your introduction was not changed.");
          break;
        case "ask_intro": {
          const req = takePending(["line"]);
          // The form, opened as "/personalintro" was sent, was closed (or saved) meanwhile.
          if (!(req && req.askIntro && req.done)) openIntro("line");
          break;
        }
        default:
          if (msg.text) showNote(msg.text, 0);
      }
    },

    goodbye(msg) {
      const text = msg.text || "The session is over.";
      switch (msg.reason) {
        case "logout":
          state.autoReconnect = false;
          forgetToken();
          finishLogout(text);
          break;
        case "login_timeout":
          // Only before a login: the form stays as it is; the next try reconnects.
          break;
        case "replaced":
          state.autoReconnect = false;
          forgetToken();
          cancelReconnect();
          setComposerEnabled(false);
          closeIntro(false);
          showBanner(text, "Log in again", () => {
            hideBanner();
            leaveChat();
          }, true);
          break;
        case "idle":
          // Not a logout: the token that came just before is kept, and the
          // reader comes back with one click.
          sessionEnded();
          if (!offerResume(text)) {
            forgetToken();
            leaveChat();
            setLoginStatus(text);
          }
          break;
        case "removed":
        case "kicked":
          // The user no longer exists on this server, or an admin ended the
          // session (and revoked its tokens): nothing to resume.  The login
          // form says why.
          sessionEnded();
          forgetToken();
          hideBanner();
          resetChatData();
          state.me = null;
          leaveChat();
          setLoginStatus("");
          showLoginError(text);
          ui.password.value = "";
          break;
        case "flood":
          state.autoReconnect = false;
          forgetToken();
          leaveChat();
          showLoginError(text);
          break;
        default:
          // shutdown, server_error: the connection closes, and the page comes
          // back with its token when it can.
          if (!state.inChat) setLoginStatus(text);
      }
    },

    error(msg) {
      if (msg.code === "unknown_type") {
        // Only "active" or "ack" can be unknown (to a server older than this
        // page); they are not pending requests, and are not sent again.
        state.legacy = true;
        return;
      }
      const req = state.pending.shift() || null;
      if (state.phase !== "chat") {
        if (state.auth && state.auth.kind === "resume" && state.phase === "authenticating") {
          // A server without sessions to resume: log in instead (on this connection).
          state.auth = null;
          state.phase = "prompt";
          resumeRefused("Please log in again.");
          return;
        }
        if (!state.inChat) {
          setLoginBusy(false);
          showLoginError(msg.text || "The server refused that.");
          return;
        }
      }
      if (
        req && req.kind === "wholast" && msg.code === "bad_usage" && msg.problem === "too_many_minutes" &&
        Number.isInteger(msg.limit) && msg.limit >= 0 && msg.limit < req.minutes
      ) {
        requestRecent(msg.limit);
        return;
      }
      if ((msg.code === "too_long" || msg.code === "intro_too_long") && Number.isInteger(msg.limit)) {
        state.maxMessage = msg.limit;
        ui.introText.maxLength = msg.limit;
        updateCounter();
      }
      if (req && ADMIN_KINDS.includes(req.kind) && state.admin) {
        adminError(req, msg);
        return;
      }
      if (req && req.kind === "page") {
        const c = conversation(req.conversation);
        c.loading = false;
        renderOlder();
        showNote(msg.text || "The history could not be read now.", 0);
        return;
      }
      if (req && req.kind === "conversations") return;
      if (req && req.kind === "search") {
        showSearch();
        ui.searchStatus.textContent = msg.text || "The search failed.";
        ui.searchMore.disabled = false;
        return;
      }
      if (req && (req.kind === "join" || req.kind === "rooms") && !ui.roomsPanel.hidden) {
        ui.roomsError.textContent = msg.text || "The server refused that.";
        ui.roomName.focus();
        return;
      }
      if (req && req.restore && !ui.message.value.trim()) {
        ui.message.value = req.restore.text;
        if (req.kind === "send") ui.to.value = req.restore.to;
        recipientsChanged();
        updateCounter();
      }
      if (req && req.askIntro) {
        // The server did not ask for the intro after all.
        state.introMode = "intro";
        closeIntro(true);
      }
      if (req && (req.kind === "intro" || (req.kind === "line" && req.intro))) {
        ui.introSave.disabled = false;
        if (!ui.introForm.hidden) {
          ui.introError.textContent = msg.text || "The intro was not saved.";
          return;
        }
      }
      showComposerError(msg, req);
    },
  };

  // The server ended the session and closes the connection: nothing more is
  // sent on it, and nothing reconnects by itself.
  function sessionEnded() {
    state.autoReconnect = false;
    cancelReconnect();
    dropAcks();
    clearTimeout(state.activeTimer);
    state.activeTimer = 0;
    const ws = state.ws;
    state.ws = null;
    state.phase = "idle";
    state.pending = [];
    state.auth = null;
    if (ws) ws.close();
  }

  function resumeRefused(text) {
    const saved = loadToken();
    if (!ui.username.value) ui.username.value = (saved && saved.name) || state.me || "";
    forgetToken();
    hideResumeOffer();
    setLoginStatus("");
    state.autoReconnect = false;
    cancelReconnect();
    hideBanner();
    leaveChat();
    showLoginError(text);
  }

  // --- the resume offer, after a session ended for being idle -------------------

  // Keeps the token (just received) for a resume, and offers it in the login
  // view.  False if there is no token to offer.
  function offerResume(text) {
    const saved = loadToken();
    const name = state.me || (saved && saved.name) || "";
    if (!saved || !name) return false;
    const at = Date.now() / 1000;
    saveToken(saved.token, saved.expires, { idle: true, name: name, text: text, at: at });
    leaveChat();
    showResumeOffer(name, text, at);
    return true;
  }

  function showResumeOffer(name, text, at) {
    state.offering = true;
    stopBlockCountdown();
    showLoginError("");
    setLoginStatus("");
    ui.password.value = "";
    ui.resumeName.textContent = name;
    ui.resumeText.textContent = text || "You were logged out after a while without activity.";
    let when = "";
    if (typeof at === "number" && isFinite(at)) {
      const date = asDate(at);
      when = (dayKey(date) === dayKey(new Date()) ? "That was at " : "That was " + dayLabel(date) + ", at ") + hhmm(date) + ".";
      ui.resumeWhen.title = fullTime(date);
    }
    ui.resumeWhen.textContent = when;
    ui.resumeStatus.textContent = "";
    setResumeBusy(false);
    ui.login.hidden = true;
    ui.resume.hidden = false;
    ui.resumeButton.focus();
  }

  function hideResumeOffer() {
    if (!state.offering) return;
    state.offering = false;
    ui.resume.hidden = true;
    ui.login.hidden = false;
    ui.resumeStatus.textContent = "";
    setResumeBusy(false);
  }

  function setResumeBusy(busy) {
    ui.resumeButton.disabled = busy;
    ui.resume.setAttribute("aria-busy", busy ? "true" : "false");
    if (!busy && state.offering) ui.resumeStatus.textContent = "";
  }

  function resumeFromOffer() {
    if (state.phase === "authenticating") return;
    const saved = loadToken();
    if (!saved) {
      resumeRefused("Your session has ended. Please log in again.");
      return;
    }
    cancelReconnect();
    hideBanner();
    setResumeBusy(true);
    ui.resumeStatus.textContent = "Resuming…";
    // If the server cannot be reached, try again as after a lost connection.
    state.autoReconnect = true;
    state.auth = { kind: "resume", token: saved.token };
    if (!state.ws) connect();
    else if (state.phase === "prompt") sendAuth();
  }

  // The login form instead: the token is not needed any more.
  function declineResume() {
    const saved = loadToken();
    forgetToken();
    cancelReconnect();
    hideBanner();
    state.autoReconnect = false;
    state.auth = null;
    hideResumeOffer();
    if (saved && saved.name && !ui.username.value) ui.username.value = saved.name;
    setLoginBusy(false);
    (ui.username.value ? ui.password : ui.username).focus();
  }

  // --- login ------------------------------------------------------------------

  function showLoginError(text) {
    ui.loginError.setAttribute("aria-live", "assertive");
    ui.loginError.textContent = text || "";
  }

  function setLoginStatus(text) {
    ui.loginStatus.textContent = text || "";
  }

  function setLoginBusy(busy) {
    ui.loginButton.disabled = busy;
    ui.login.setAttribute("aria-busy", busy ? "true" : "false");
  }

  function stopBlockCountdown() {
    clearInterval(state.blockTimer);
    state.blockTimer = 0;
  }

  function startBlockCountdown(name, seconds, serverText) {
    stopBlockCountdown();
    const until = Date.now() + seconds * 1000;
    const who = name || "This user";
    const tick = (first) => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) {
        stopBlockCountdown();
        showLoginError("");
        setLoginStatus("The block on " + who + " is over; you can try again now.");
        return;
      }
      // Announced once; the seconds then count down quietly.
      if (!first) ui.loginError.setAttribute("aria-live", "off");
      ui.loginError.textContent =
        "Too many failed logins: " + who + " is blocked from your address for " + plural(left, "more second", "more seconds") + ".";
    };
    if (!seconds && serverText) {
      showLoginError(serverText);
      return;
    }
    showLoginError("");
    tick(true);
    state.blockTimer = setInterval(() => tick(false), 1000);
  }

  function onLoginSubmit(event) {
    event.preventDefault();
    if (state.phase === "authenticating") return;
    const username = ui.username.value.trim();
    const password = ui.password.value;
    if (!username || !password) {
      showLoginError(username ? "Enter your password." : "Enter your username and password.");
      (username ? ui.password : ui.username).focus();
      return;
    }
    stopBlockCountdown();
    showLoginError("");
    setLoginStatus("Logging in…");
    // A fresh login replaces any session this tab was trying to resume.
    cancelReconnect();
    state.autoReconnect = false;
    hideBanner();
    state.auth = { kind: "login", username: username, password: password };
    setLoginBusy(true);
    if (!state.ws) connect();
    else if (state.phase === "prompt") sendAuth();
    // Otherwise the prompt is on its way, and sendAuth answers it.
  }

  // --- entering and leaving the chat view --------------------------------------

  function enterChat(focusComposer) {
    state.inChat = true;
    ui.loginView.hidden = true;
    ui.chat.hidden = false;
    updateEmpty();
    scrollToBottom();
    if (focusComposer) ui.message.focus();
  }

  function leaveChat() {
    const wasInChat = state.inChat;
    state.inChat = false;
    closeIntro(false);
    closeHelp(false);
    closeAdmin(false);
    closeRooms(false);
    ui.chat.hidden = true;
    ui.loginView.hidden = false;
    setLoginBusy(false);
    clearUnread();
    if (wasInChat || document.activeElement === document.body) {
      (ui.username.value ? ui.password : ui.username).focus();
    }
  }

  function resetChatData() {
    ui.timeline.replaceChildren(ui.older);
    state.byId.clear();
    state.convs.clear();
    state.open = EVERYONE;
    state.readIds.clear();
    clearTimeout(state.readTimer);
    state.readTimer = 0;
    closeRooms(false);
    closeSearch(false);
    ui.searchText.value = "";
    state.seek = null;
    clearAllTyping();
    setStale(false);
    showList(false);
    state.roster.clear();
    state.recent = null;
    state.sent = [];
    state.recall = -1;
    state.pending = [];
    state.intro = null;
    state.helpLoaded = false;
    setAdmin(false);
    ui.recent.replaceChildren();
    ui.recent.hidden = true;
    ui.recentEmpty.hidden = false;
    ui.recentEmpty.textContent = "See who was online in the last hour.";
    ui.recentEmpty.classList.add("hint");
    ui.showRecent.textContent = "Last 60 min";
    ui.showRecent.removeAttribute("title");
    ui.message.value = "";
    ui.to.value = "";
    ui.me.textContent = "";
    ui.me.title = "";
    ui.jump.hidden = true;
    hideComposerError();
    hideNote();
    recipientsChanged();
    updateCounter();
    renderRoster();
    renderConversations();
    renderConvHead();
    renderOlder();
    updateEmpty();
  }

  function logout() {
    state.autoReconnect = false;
    forgetToken();
    cancelReconnect();
    if (connected() && request({ type: "logout" }, "logout")) return; // goodbye follows
    finishLogout("You have logged out.");
    if (state.ws) state.ws.close();
  }

  function finishLogout(text) {
    try {
      sessionStorage.removeItem(OPEN_KEY);
    } catch (e) {
      /* nothing to forget */
    }
    hideBanner();
    resetChatData();
    state.me = null;
    leaveChat();
    showLoginError("");
    setLoginStatus(text);
    ui.password.value = "";
  }

  // --- the timeline -----------------------------------------------------------

  function nearBottom() {
    const t = ui.timeline;
    return t.scrollHeight - t.scrollTop - t.clientHeight < 48;
  }

  function scrollToBottom() {
    ui.timeline.scrollTop = ui.timeline.scrollHeight;
    ui.jump.hidden = true;
  }

  function updateEmpty() {
    ui.timelineEmpty.hidden = ui.timeline.querySelector(".message:not([hidden]), .announcement") !== null;
    const c = conversation(state.open);
    let text = "No messages yet. Write to everyone online, or pick a room or a person from the list.";
    if (c.kind === "room") text = "No messages in " + c.name + " yet. Say hello to its members.";
    else if (c.kind === "direct") text = "No messages with " + c.name + " yet. What you write here goes to " + c.name + " alone.";
    if (c.loading) text = "Loading…";
    ui.timelineEmpty.textContent = text;
  }

  function kindOf(m) {
    return m.kind === "private" || m.kind === "room" ? m.kind : "broadcast";
  }

  // Whom a message to several people went to: "to seas, google" (this user: "you").
  function recipientsLabel(m) {
    return "to " + nameList(m.to).map((n) => (n === state.me ? "you" : n)).join(", ");
  }

  function renderMessage(m, flags) {
    const date = asDate(m.time);
    const kind = kindOf(m);
    const from = String(m.from == null ? "" : m.from);
    const node = make("article", "message " + kind);
    if (flags.mine) node.classList.add("mine");
    if (flags.away) node.classList.add("away");
    node.dataset.id = m.id;
    node.dataset.kind = kind;
    node.dataset.time = String(date.getTime() / 1000);
    node.dataset.day = dayKey(date);
    if (flags.mine && Array.isArray(m.to)) node.dataset.to = m.to.join(" ");
    node.dataset.conv = flags.convs.join(" ");
    node.hidden = !flags.convs.includes(state.open);

    const body = make("div", "message-body");
    const meta = make("div", "meta");
    const sender = make("button", "sender " + colorOf(from), from);
    sender.type = "button";
    sender.dataset.name = from;
    // A mouse shortcut; from the keyboard, the list of people (or To) does it,
    // and the timeline is not a long row of tab stops.
    sender.tabIndex = -1;
    sender.title = flags.mine ? "Write to the same people again" : "Open your conversation with " + from;
    const time = make("time", "time", hhmm(date));
    time.dateTime = date.toISOString();
    time.title = fullTime(date);
    meta.append(sender, time);
    // The view says where a message is; a tag only says who a message to several went to.
    if (kind === "broadcast" && nameList(m.to).length) {
      const tag = make("span", "tag recipients", recipientsLabel(m));
      tag.title = "A message to " + nameList(m.to).join(", ") + ", not to everyone";
      meta.append(tag);
    }
    if (flags.away) meta.append(make("span", "tag away-tag", "while you were away"));
    const raw = String(m.text == null ? "" : m.text);
    const text = make("div", "text");
    // Right to left where the text is.
    text.dir = "auto";
    appendMessageText(text, raw);
    rawText.set(node, raw);
    body.append(meta, text);
    node.append(avatar(from), body);
    return node;
  }

  function daySeparator(date) {
    const sep = make("div", "day");
    sep.dataset.day = dayKey(date);
    sep.setAttribute("role", "separator");
    sep.append(make("span", "", dayLabel(date)));
    return sep;
  }

  // Messages and announcements are kept in the order of their times (history
  // comes above what is shown already), with a separator at the start of each
  // day.  BATCH: the nodes of the page of history NODE comes with, or null
  // for a live one; a page's message goes after those of its page of the
  // same time, and before the others (sent together, messages may have the
  // same time).
  function insertByTime(node, batch) {
    const t = Number(node.dataset.time);
    const day = node.dataset.day;
    let prev = null;
    for (let c = ui.timeline.lastElementChild; c; c = c.previousElementSibling) {
      if (c.dataset.time === undefined) continue;
      const ct = Number(c.dataset.time);
      if (ct < t || (ct === t && (!batch || batch.has(c)))) {
        prev = c;
        break;
      }
    }
    if (prev && prev.dataset.day === day) {
      prev.after(node);
      return;
    }
    // Nothing earlier: after the bar that loads older messages, which stays first.
    const at = prev ? prev.nextElementSibling : ui.older.nextElementSibling;
    if (at && at.classList.contains("day") && at.dataset.day === day) {
      at.after(node);
      return;
    }
    const sep = daySeparator(asDate(t));
    if (at) at.before(sep);
    else ui.timeline.append(sep);
    sep.after(node);
  }

  // Adds the messages not shown yet, each in its conversations (flags.page:
  // a page of that conversation's history, where each of them belongs);
  // returns the last node added.
  function addMessages(list, flags) {
    const stick = nearBottom();
    let added = null;
    let fresh = 0;
    let shown = 0;
    const batch = flags.page || flags.history ? new Set() : null;
    for (const m of list) {
      if (!m || typeof m !== "object") continue;
      const id = typeof m.id === "string" && m.id ? m.id : "local-" + ++state.localIds;
      if (state.byId.has(id)) continue;
      const mine = !!flags.mine || (state.me !== null && m.from === state.me);
      const convs = conversationsOf(m);
      if (flags.page && !convs.includes(flags.page)) convs.push(flags.page);
      for (const cid of convs) noteMessage(conversation(cid), m, flags, mine);
      // Their message came: they are no longer typing it.
      if (flags.fresh && typeof m.from === "string") for (const cid of convs) if (state.typing.has(cid)) setTyping(cid, m.from, false);
      const node = renderMessage(Object.assign({}, m, { id: id }), { mine: mine, away: !!flags.away, convs: convs });
      insertByTime(node, batch);
      if (batch) batch.add(node);
      state.byId.set(id, node);
      added = node;
      if (!node.hidden) shown += 1;
      if (flags.fresh && !mine) {
        if (!node.hidden) fresh += 1;
        alertNewMessage(m);
      }
    }
    if (!added) return null;
    fixDays();
    updateEmpty();
    renderConversations();
    if (shown && !flags.page && (stick || flags.mine)) scrollToBottom();
    else if (fresh && !stick) ui.jump.hidden = false;
    return added;
  }

  // A notice from the server to everyone (an admin's "announce"): not a
  // message from a user, so it has no sender, no id and no receipt.
  function addAnnouncement(msg) {
    const date = asDate(msg.time);
    const stick = nearBottom();
    const node = make("div", "announcement");
    node.dataset.time = String(date.getTime() / 1000);
    node.dataset.day = dayKey(date);
    const mark = make("span", "announcement-icon");
    mark.setAttribute("aria-hidden", "true");
    mark.append(icon("megaphone"));
    const meta = make("div", "meta");
    const time = make("time", "time", hhmm(date));
    time.dateTime = date.toISOString();
    time.title = fullTime(date);
    // Read as "Announcement: TEXT".
    const label = make("strong", "announcement-label", "Announcement");
    label.append(make("span", "sr-only", ":"));
    meta.append(label, time, make("span", "tag announcement-tag", "from the server"));
    const text = make("div", "text");
    text.dir = "auto";
    appendLinkified(text, String(msg.text == null ? "" : msg.text));
    const body = make("div", "announcement-body");
    body.append(meta, text);
    node.append(mark, body);
    insertByTime(node, null);
    updateEmpty();
    if (stick) scrollToBottom();
    else ui.jump.hidden = false;
    alertNewMessage({ kind: "announcement" });
    return node;
  }

  const nameList = (value) => (Array.isArray(value) ? value.filter((n) => typeof n === "string") : []);

  // What became of a message, from its receipt: "delivered" (everyone has
  // it), "stored" (kept for some who are offline), "nobody" (a broadcast with
  // nobody else online), "partial" (some did not get it: "failed" names them,
  // or "unreachable" counts them) or "failed" (nobody got it).
  function deliveryOf(receipt) {
    const failed = nameList(receipt.failed);
    const unreachable = Number(receipt.unreachable) > 0 ? Number(receipt.unreachable) : 0;
    const reached =
      nameList(receipt.delivered).length + nameList(receipt.stored).length + (Number(receipt.broadcast) > 0 ? 1 : 0);
    if (failed.length || unreachable) return reached ? "partial" : "failed";
    if (nameList(receipt.stored).length) return "stored";
    if (receipt.broadcast === 0) return "nobody";
    return "delivered";
  }

  function describeReceipt(node, receipt) {
    const stored = nameList(receipt.stored);
    const failed = nameList(receipt.failed);
    const delivery = deliveryOf(receipt);
    node.dataset.delivery = delivery;
    const tag = node.querySelector(".tag") || node.querySelector(".time");
    if (receipt.text && tag) tag.title = receipt.text;
    if (delivery === "delivered") return;
    const status = make("div", "status " + delivery, receipt.text || "");
    if (!receipt.text) {
      if (delivery === "partial" || delivery === "failed") {
        status.textContent = failed.length
          ? "Not sent to " + failed.join(", ") + "; send it to them again."
          : "Some users on other servers of this chat could not be reached and did not get it.";
      } else if (stored.length) {
        status.textContent =
          stored.join(", ") + (stored.length === 1 ? " is" : " are") + " offline; it will be delivered at their next login.";
      } else {
        status.textContent = "Nobody else is online to receive it.";
      }
    }
    if (failed.length) {
      // The text back in the composer, to those who did not get it; sent
      // only when the person says so.
      const again = make("button", "again", "Send again to " + failed.join(", "));
      again.type = "button";
      again.addEventListener("click", () => {
        ui.to.value = failed.join(", ");
        ui.message.value = rawText.get(node) || node.querySelector(".text").textContent;
        recipientsChanged();
        updateCounter();
        hideComposerError();
        ui.message.focus();
      });
      status.append(" ", again);
    }
    if (delivery === "partial" || delivery === "failed") status.setAttribute("role", "alert");
    node.querySelector(".message-body").append(status);
  }

  // --- unread count and notifications --------------------------------------------

  // The title counts every unread message (the conversations' counts) and
  // the announcements that came while the tab was in the background.
  function alertNewMessage(m) {
    if (m.kind === "announcement" && document.hidden) state.unread += 1;
    updateTitle();
    if (!document.hidden) return;
    if (state.notify && m.kind === "private" && "Notification" in window && Notification.permission === "granted") {
      try {
        const n = new Notification(String(m.from) + " (private message)", {
          body: shorten(String(m.text || ""), 180),
          tag: "chat-" + m.id,
          icon: "icon.svg",
        });
        n.onclick = () => {
          window.focus();
          ui.message.focus();
          if (typeof m.from === "string") openConversation("@" + m.from, {});
          n.close();
        };
      } catch (e) {
        /* some browsers allow notifications only from a service worker */
      }
    }
  }

  function clearUnread() {
    state.unread = 0;
    updateTitle();
  }

  function shorten(text, n) {
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }

  function updateNotifyButton() {
    ui.notify.setAttribute("aria-pressed", state.notify ? "true" : "false");
    ui.notify.title = state.notify
      ? "Notifications are on: private messages show up while this tab is in the background. Click to turn them off."
      : "Show a desktop notification for private messages while this tab is in the background";
  }

  async function toggleNotify() {
    if (!("Notification" in window)) {
      showNote("This browser cannot show notifications for this page (they need https).");
      return;
    }
    if (state.notify) {
      state.notify = false;
      updateNotifyButton();
      showNote("Notifications are off.");
      return;
    }
    let permission = Notification.permission;
    if (permission === "default") {
      try {
        permission = await Notification.requestPermission();
      } catch (e) {
        permission = Notification.permission;
      }
    }
    if (permission === "granted") {
      state.notify = true;
      showNote("Notifications are on: private messages show up while this tab is in the background.");
    } else {
      showNote("Notifications are blocked for this site; they can be allowed in the browser's site settings.", 0);
    }
    updateNotifyButton();
  }

  // --- conversations ----------------------------------------------------------

  // The id of a room's conversation: its name with "#", in lower case (rooms
  // are the same whatever the case).
  function roomId(name) {
    const s = String(name);
    return (s.startsWith("#") ? s : "#" + s).toLowerCase();
  }

  function conversation(id) {
    let c = state.convs.get(id);
    if (!c) {
      let kind = "direct";
      let name = id.slice(1);
      if (id === EVERYONE) {
        kind = "everyone";
        name = "Everyone";
      } else if (id.startsWith("#")) {
        kind = "room";
        name = id;
      }
      c = { id: id, kind: kind, name: name, unread: 0, last: 0, joined: false, loaded: false, loading: false,
        more: true, oldest: null, members: null, counted: [] };
      state.convs.set(id, c);
    }
    return c;
  }

  // The conversations a message belongs to, from this user's side: a message
  // this user sent to several people is in the conversation with each.
  function conversationsOf(m) {
    if (m.kind === "room" && typeof m.room === "string" && m.room) return [roomId(m.room)];
    const to = nameList(m.to);
    if (state.me !== null && m.from === state.me) {
      if (m.kind === "broadcast" && to.length === 0) return [EVERYONE];
      const others = to.filter((n) => n !== state.me);
      return others.length ? others.map((n) => "@" + n) : [EVERYONE];
    }
    if (m.kind === "broadcast" && to.length === 0) return [EVERYONE];
    return ["@" + String(m.from)];
  }

  // Where the open conversation is read: the tab shown, the chat on screen,
  // and on a phone the conversation (not the list).
  function reading() {
    return state.inChat && !document.hidden && !(PHONE.matches && state.listOpen);
  }

  // A message, live or from history, in conversation C: its time, and its
  // count if it is new and not read where it shows.
  function noteMessage(c, m, flags, mine) {
    const t = typeof m.time === "number" && isFinite(m.time) ? m.time : 0;
    if (t > c.last) c.last = t;
    if (c.kind === "room" && typeof m.room === "string" && m.room) c.name = m.room;
    // Only a member gets a room's messages as they come.
    if (c.kind === "room" && flags.fresh) c.joined = true;
    if (!flags.fresh || mine) return;
    if (c.id === state.open && reading()) {
      markRead(c);
    } else {
      c.unread += 1;
      c.counted.push(t);
    }
  }

  // The server keeps how far each conversation was read; counts start again from there.
  function markRead(c) {
    c.unread = 0;
    c.counted = [];
    if (state.legacy) return;
    state.readIds.add(c.id);
    if (!state.readTimer) state.readTimer = setTimeout(flushReads, READ_DELAY);
  }

  function flushReads() {
    clearTimeout(state.readTimer);
    state.readTimer = 0;
    const ids = Array.from(state.readIds);
    state.readIds.clear();
    // No answer comes: it is not a pending request.
    if (ids.length && connected() && !state.legacy) rawSend(ids.length === 1 ? { type: "read", conversation: ids[0] } : { type: "read", conversations: ids });
  }

  function totalUnread() {
    let n = 0;
    for (const c of state.convs.values()) if (c.kind !== "room" || c.joined) n += c.unread;
    return n;
  }

  function updateTitle() {
    const n = state.inChat ? totalUnread() + state.unread : 0;
    document.title = n ? "(" + n + ") " + TITLE : TITLE;
    const others = n - (state.convs.has(state.open) ? state.convs.get(state.open).unread : 0);
    ui.backCount.textContent = others > 0 ? String(others) : "";
    ui.backCount.hidden = others <= 0;
  }

  function saveOpen() {
    try {
      sessionStorage.setItem(OPEN_KEY, state.open);
    } catch (e) {
      /* the first conversation again after a reload */
    }
  }

  function loadOpen() {
    try {
      return sessionStorage.getItem(OPEN_KEY);
    } catch (e) {
      return null;
    }
  }

  // The answer to "conversations": the server's counts replace the page's.
  function setConversations(list) {
    const seen = new Set();
    for (const item of list) {
      if (!item || typeof item.id !== "string" || !item.id) continue;
      const c = conversation(item.id);
      seen.add(c.id);
      if (typeof item.name === "string" && item.name) c.name = item.name;
      const last = typeof item.last === "number" ? item.last : 0;
      if (Number.isInteger(item.unread) && item.unread >= 0) {
        // The server counted up to its newest message then; what came after
        // it, and was counted here, is added.
        c.counted = c.counted.filter((t) => t > last);
        c.unread = item.unread + c.counted.length;
      }
      if (last > c.last) c.last = last;
      if (c.kind === "room") c.joined = true;
    }
    // Rooms left elsewhere meanwhile.
    for (const c of state.convs.values()) if (c.kind === "room" && !seen.has(c.id)) c.joined = false;
    const open = conversation(state.open);
    if (open.kind === "room" && !open.joined) {
      openConversation(EVERYONE, { stay: true });
      return;
    }
    if (open.unread && reading()) markRead(open);
    renderConversations();
  }

  function convItem(c) {
    const li = make("li", "");
    const button = make("button", "conv conv-" + c.kind);
    button.type = "button";
    button.dataset.conv = c.id;
    if (c.id === state.open) button.setAttribute("aria-current", "true");
    if (c.kind === "direct") {
      button.append(avatar(c.name, state.roster.has(c.name)));
    } else {
      const mark = make("span", "conv-icon", c.kind === "room" ? "#" : "");
      mark.setAttribute("aria-hidden", "true");
      if (c.kind === "everyone") mark.append(icon("everyone"));
      button.append(mark);
    }
    const label = c.kind === "room" ? c.name.replace(/^#/, "") : c.name;
    button.append(make("span", "conv-name", label));
    if (state.typing.has(c.id) && c.id !== state.open) {
      const typing = make("span", "conv-typing", "typing…");
      typing.title = typingText(Array.from(state.typing.get(c.id).keys()));
      button.append(typing);
    }
    const badge = make("span", "badge", c.unread > 0 ? String(c.unread) : "");
    badge.hidden = !(c.unread > 0);
    button.append(badge);
    if (c.unread > 0) button.classList.add("unread");
    button.title = c.name + (c.unread > 0 ? " · " + plural(c.unread, "unread message", "unread messages") : "");
    if (c.unread > 0) button.setAttribute("aria-label", c.name + ", " + plural(c.unread, "unread message", "unread messages"));
    li.append(button);
    return li;
  }

  const newestFirst = (a, b) => b.last - a.last || byName(a.name, b.name);

  function renderConversations() {
    const everyone = conversation(EVERYONE);
    const rooms = [];
    const direct = [];
    for (const c of state.convs.values()) {
      if (c.kind === "room" && c.joined) rooms.push(c);
      else if (c.kind === "direct" && (c.last > 0 || c.id === state.open)) direct.push(c);
    }
    rooms.sort(newestFirst);
    direct.sort(newestFirst);
    // Drawn again: the entry that had the keyboard's focus keeps it.
    const active = document.activeElement;
    const focused = active && active.classList.contains("conv") ? active.dataset.conv : null;
    ui.everyoneList.replaceChildren(convItem(everyone));
    ui.roomList.replaceChildren(...rooms.map(convItem));
    ui.directList.replaceChildren(...direct.map(convItem));
    if (focused !== null) {
      for (const b of ui.sidebar.querySelectorAll(".conv")) if (b.dataset.conv === focused) b.focus();
    }
    ui.roomsEmpty.hidden = rooms.length > 0;
    ui.directEmpty.hidden = direct.length > 0;
    updateTitle();
  }

  function renderConvHead() {
    const c = conversation(state.open);
    ui.convTitle.textContent = c.name;
    let sub = "";
    if (c.kind === "everyone") sub = "Broadcasts to everyone online";
    else if (c.kind === "room") sub = c.members === null ? "Room" : plural(c.members, "member", "members");
    else if (state.roster.has(c.name)) sub = (state.roster.get(c.name).intro ? state.roster.get(c.name).intro + " · " : "") + "online" + (state.staleSince !== null ? " as of " + hhmm(asDate(state.staleSince)) : "");
    else sub = "Direct messages";
    ui.convSub.textContent = sub;
    ui.convSub.title = sub;
    ui.roomMembers.hidden = c.kind !== "room";
    ui.leaveRoom.hidden = c.kind !== "room";
    ui.timeline.setAttribute("aria-label", "Messages in " + (c.kind === "everyone" ? "the conversation with everyone" : c.name));
  }

  // Shows conversation ID: its messages only, its history loaded, its count read.
  // opts.keepTo leaves To as typed (a message just sent to several people);
  // opts.stay leaves a phone on the screen it shows.
  function openConversation(id, opts) {
    const c = conversation(id);
    const changed = state.open !== id;
    state.open = id;
    saveOpen();
    if (!opts.keepTo) {
      ui.to.value = c.kind === "everyone" ? "" : c.name;
      recipientsChanged();
    }
    applyFilter();
    renderConvHead();
    if (PHONE.matches && !opts.stay) showList(false);
    if (!c.loaded && !c.loading) loadPage(c, false);
    // The room's member count, as of now (the list of rooms has it).
    if (c.kind === "room") request({ type: "rooms" }, "rooms");
    if (c.unread && reading()) markRead(c);
    renderConversations();
    renderOlder();
    renderTypingLine();
    if (changed || opts.bottom) scrollToBottom();
    if (opts.focus) ui.message.focus();
  }

  // A phone's two screens: the list of conversations, or the open one.
  function showList(on) {
    state.listOpen = on;
    ui.chat.classList.toggle("list-open", on);
    if (!on) {
      const c = conversation(state.open);
      if (c.unread && reading()) {
        markRead(c);
        renderConversations();
      }
    }
  }

  function inOpen(node) {
    return (node.dataset.conv || "").split(" ").includes(state.open);
  }

  // Only the open conversation's messages show, and the days they are in.
  function applyFilter() {
    for (const node of ui.timeline.querySelectorAll(".message")) node.hidden = !inOpen(node);
    fixDays();
    updateEmpty();
  }

  function fixDays() {
    let sep = null;
    let seen = false;
    for (const node of ui.timeline.children) {
      if (node.classList.contains("day")) {
        if (sep) sep.hidden = !seen;
        sep = node;
        seen = false;
      } else if (node.dataset.time !== undefined && !node.hidden) {
        seen = true;
      }
    }
    if (sep) sep.hidden = !seen;
  }

  // One page of history of conversation C: the newest, or the one before its oldest shown.
  function loadPage(c, older) {
    if (c.loading || (older && (!c.more || !c.oldest))) return;
    const obj = { type: "history", conversation: c.id, count: PAGE };
    if (older) obj.before = c.oldest;
    if (!request(obj, "page", { conversation: c.id, older: older })) return;
    c.loading = true;
    renderOlder();
    if (c.id === state.open) updateEmpty();
  }

  function gotPage(req, msg) {
    const c = conversation(req.conversation);
    const messages = Array.isArray(msg.messages) ? msg.messages : [];
    c.loading = false;
    c.loaded = true;
    c.more = msg.more === true && messages.length > 0;
    if (messages.length && typeof messages[0].id === "string") c.oldest = messages[0].id;
    if (c.kind === "room" && typeof msg.name === "string" && msg.name) c.name = msg.name;
    const t = ui.timeline;
    const fromBottom = t.scrollHeight - t.scrollTop;
    addMessages(messages, { page: c.id });
    if (c.id === state.open) {
      updateEmpty();
      // An older page goes above what is read now, which stays where it is.
      if (req.older) t.scrollTop = t.scrollHeight - fromBottom;
      else scrollToBottom();
      renderConvHead();
    }
    renderOlder();
    renderConversations();
    if (state.seek && state.seek.conv === c.id) {
      seekHit();
      return;
    }
    // Not enough to scroll: the next page at once.
    if (c.id === state.open && c.more && t.scrollHeight <= t.clientHeight + 8) loadPage(c, true);
  }

  function renderOlder() {
    const c = conversation(state.open);
    const start = c.loaded && !c.more;
    ui.loadOlder.hidden = start;
    ui.loadOlder.disabled = c.loading;
    ui.loadOlder.textContent = c.loading ? "Loading…" : "Load older messages";
    ui.olderStart.hidden = !start;
    ui.olderStart.textContent = c.kind === "room" ? "The start of " + c.name + " (as far as it is kept)" : "The start of this conversation (as far as it is kept)";
  }

  function onTimelineScroll() {
    if (!ui.jump.hidden && nearBottom()) ui.jump.hidden = true;
    if (ui.timeline.scrollTop < 40) {
      const c = conversation(state.open);
      if (c.loaded && c.more && !c.loading) loadPage(c, true);
    }
  }

  // --- who is typing -------------------------------------------------------------

  // The page's id of a conversation the server names (rooms in lower case).
  function convKey(id) {
    return id.startsWith("#") ? roomId(id) : id;
  }

  // Where what is typed now goes (To says), or null for several people.
  function typingTarget() {
    const to = parseRecipients(ui.to.value);
    if (to.length === 0) return EVERYONE;
    if (to.length > 1) return null;
    return to[0].startsWith("#") ? roomId(to[0]) : "@" + to[0];
  }

  // The user types a message: the others in its conversation are told, at
  // most every TYPING_EVERY (the server drops more).  No answer comes.
  function sendTyping() {
    const value = ui.message.value;
    if (!value.trim() || isCommand(value) || !connected() || state.legacy) return;
    const conv = typingTarget();
    if (!conv || conv === "@" + state.me) return;
    const now = performance.now();
    if (state.typingSentIn === conv && state.typingSentAt && now - state.typingSentAt < TYPING_EVERY) return;
    state.typingSentAt = now;
    state.typingSentIn = conv;
    rawSend({ type: "typing", conversation: conv });
  }

  function typingText(names) {
    if (names.length === 1) return names[0] + " is typing…";
    if (names.length === 2) return names[0] + " and " + names[1] + " are typing…";
    return names.length + " people are typing…";
  }

  // NAME types in conversation CID (shown for TYPING_SHOWN), or no longer.
  function setTyping(cid, name, on) {
    let who = state.typing.get(cid);
    if (!on && !(who && who.has(name))) return;
    if (who && who.has(name)) clearTimeout(who.get(name));
    if (on) {
      if (!who) {
        who = new Map();
        state.typing.set(cid, who);
      }
      who.set(name, setTimeout(() => setTyping(cid, name, false), TYPING_SHOWN));
    } else {
      who.delete(name);
      if (!who.size) state.typing.delete(cid);
    }
    renderTypingLine();
    renderConversations();
  }

  function clearTypingOf(name) {
    for (const cid of Array.from(state.typing.keys())) setTyping(cid, name, false);
  }

  function clearAllTyping() {
    for (const who of state.typing.values()) for (const timer of who.values()) clearTimeout(timer);
    state.typing.clear();
    renderTypingLine();
  }

  function renderTypingLine() {
    const who = state.typing.get(state.open);
    ui.typing.textContent = who ? typingText(Array.from(who.keys())) : "";
  }

  // --- a roster as of a lost connection ---------------------------------------------

  function setStale(on) {
    if (on && state.staleSince === null) state.staleSince = Date.now() / 1000;
    if (!on) state.staleSince = null;
    const stale = state.staleSince !== null;
    const at = stale ? hhmm(asDate(state.staleSince)) : "";
    ui.sidebar.classList.toggle("stale", stale);
    ui.rosterStale.hidden = !stale;
    ui.rosterStale.textContent = stale ? "as of " + at : "";
    ui.rosterStale.title = stale ? "Not connected: who was online at " + at + "; it is brought up to date once the connection is back." : "";
    renderConvHead();
  }

  // --- search -------------------------------------------------------------------

  function startSearch(text, before) {
    const words = String(text).trim();
    if (!words) return;
    const obj = { type: "search", text: words, count: HITS };
    if (before) obj.before = before;
    showSearch();
    if (!request(obj, "search", { more: !!before })) {
      ui.searchStatus.textContent = "Not connected; search once the connection is back.";
      return;
    }
    if (!before) {
      state.search = { text: words, hits: [], more: false };
      ui.searchHits.replaceChildren();
      ui.searchMore.hidden = true;
    }
    ui.searchMore.disabled = true;
    ui.searchStatus.textContent = "Searching…";
  }

  function showSearch() {
    ui.searchResults.hidden = false;
    ui.sidebar.classList.add("searching");
  }

  function closeSearch(restoreFocus) {
    if (ui.searchResults.hidden) return;
    ui.searchResults.hidden = true;
    ui.sidebar.classList.remove("searching");
    state.search = null;
    ui.searchHits.replaceChildren();
    for (const node of ui.timeline.querySelectorAll(".message.found")) node.classList.remove("found");
    if (restoreFocus) ui.searchText.focus();
  }

  // The answer to "search" (or a typed "/search"): a page of hits.
  function gotHits(msg) {
    const hits = (Array.isArray(msg.hits) ? msg.hits : []).filter((h) => h && typeof h.id === "string" && typeof h.conversation === "string");
    const query = typeof msg.query === "string" ? msg.query : "";
    if (!state.search || state.search.text !== query) {
      state.search = { text: query, hits: [], more: false };
      ui.searchHits.replaceChildren();
      if (ui.searchText.value.trim() !== query) ui.searchText.value = query;
    }
    showSearch();
    const words = nameList(msg.words);
    state.search.hits = state.search.hits.concat(hits);
    state.search.more = msg.more === true && hits.length > 0;
    ui.searchHits.append(...hits.map((h) => hitItem(h, words)));
    const n = state.search.hits.length;
    ui.searchStatus.textContent = n
      ? plural(n, "message", "messages") + " with “" + query + "”" + (state.search.more ? ", newest first" : ".")
      : "Nothing found for “" + query + "”.";
    ui.searchMore.hidden = !state.search.more;
    ui.searchMore.disabled = false;
  }

  function hitItem(h, words) {
    const li = make("li", "");
    const button = make("button", "hit");
    button.type = "button";
    button.dataset.id = h.id;
    button.dataset.conv = convKey(h.conversation);
    const date = asDate(h.time);
    const head = make("span", "hit-head");
    const where = typeof h.name === "string" && h.name ? h.name : h.conversation;
    head.append(make("span", "hit-conv", h.conversation === EVERYONE ? "Everyone" : h.conversation.startsWith("@") ? "with " + where : where));
    head.append(make("span", "hit-from " + colorOf(String(h.from)), String(h.from)));
    const time = make("time", "hit-time", (dayKey(date) === dayKey(new Date()) ? "" : date.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + ", ") + hhmm(date));
    time.dateTime = date.toISOString();
    time.title = fullTime(date);
    head.append(time);
    const text = make("span", "hit-text");
    text.dir = "auto";
    appendMarked(text, String(h.text == null ? "" : h.text).replace(/\n+/g, " ⏎ "), words);
    button.append(head, text);
    li.append(button);
    return li;
  }

  // Folded for matching: lower case, without accents (as the server's search).
  function fold(ch) {
    return ch.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();
  }

  // TEXT with the words found marked (<mark>), whatever their case and accents.
  function appendMarked(parent, text, words) {
    const chars = Array.from(text);
    let folded = "";
    const from = [];
    chars.forEach((ch, i) => {
      const f = fold(ch);
      for (let k = 0; k < f.length; k += 1) from.push(i);
      folded += f;
    });
    const marked = new Array(chars.length).fill(false);
    const letter = /[\p{L}\p{N}]/u;
    for (const word of words) {
      const w = fold(word);
      if (!w) continue;
      for (let at = folded.indexOf(w); at >= 0; at = folded.indexOf(w, at + 1)) {
        const end = at + w.length;
        if ((at > 0 && letter.test(folded[at - 1])) || (end < folded.length && letter.test(folded[end]))) continue;
        for (let k = from[at]; k <= from[end - 1]; k += 1) marked[k] = true;
      }
    }
    let run = "";
    let on = false;
    const flush = () => {
      if (run) parent.append(on ? make("mark", "", run) : document.createTextNode(run));
      run = "";
    };
    chars.forEach((ch, i) => {
      if (marked[i] !== on) {
        flush();
        on = marked[i];
      }
      run += ch;
    });
    flush();
  }

  // A hit opens its conversation at that message: older pages are loaded
  // until it shows (at most SEEK_PAGES), and it is highlighted.
  function openHit(cid, id) {
    for (const node of ui.timeline.querySelectorAll(".message.found")) node.classList.remove("found");
    state.seek = { conv: cid, id: id, pages: 0 };
    openConversation(cid, { focus: false });
    seekHit();
  }

  function seekHit() {
    const seek = state.seek;
    if (!seek || seek.conv !== state.open) {
      state.seek = null;
      return;
    }
    const node = state.byId.get(seek.id);
    if (node && !node.hidden) {
      state.seek = null;
      node.classList.add("found");
      node.scrollIntoView({ block: "center" });
      return;
    }
    const c = conversation(seek.conv);
    if (c.loading) return;
    if (c.loaded && c.more && seek.pages < SEEK_PAGES) {
      seek.pages += 1;
      loadPage(c, true);
      return;
    }
    if (c.loaded) {
      state.seek = null;
      showNote("That message is no longer kept in this conversation.");
    }
  }

  // --- rooms ------------------------------------------------------------------

  function openRooms() {
    closeIntro(false);
    ui.roomsPanel.hidden = false;
    ui.browseRooms.setAttribute("aria-expanded", "true");
    ui.roomsError.textContent = "";
    request({ type: "rooms" }, "rooms");
    ui.roomName.focus();
  }

  function closeRooms(restoreFocus) {
    if (ui.roomsPanel.hidden) return;
    ui.roomsPanel.hidden = true;
    ui.browseRooms.setAttribute("aria-expanded", "false");
    if (restoreFocus) ui.browseRooms.focus();
  }

  function joinRoom(name) {
    const room = String(name).trim();
    if (!room) {
      ui.roomsError.textContent = "Write the room's name first.";
      ui.roomName.focus();
      return;
    }
    const full = room.startsWith("#") ? room : "#" + room;
    if (!request({ type: "join", room: full }, "join", { room: full })) {
      ui.roomsError.textContent = "Not connected; try again once the connection is back.";
      return;
    }
    ui.roomsError.textContent = "";
  }

  function renderRoomDirectory(rooms) {
    const items = rooms
      .filter((r) => r && typeof r.room === "string")
      .sort((a, b) => (b.members || 0) - (a.members || 0) || byName(a.room, b.room))
      .map((r) => {
        const li = make("li", "room-entry");
        li.dataset.room = r.room;
        const text = make("span", "room-entry-text");
        text.append(make("span", "room-entry-name", r.room), make("span", "room-entry-count", plural(Number(r.members) || 0, "member", "members")));
        const go = make("button", "small-button" + (r.joined ? "" : " primary"), r.joined ? "Open" : "Join");
        go.type = "button";
        go.dataset.room = r.room;
        go.dataset.joined = r.joined ? "true" : "false";
        go.setAttribute("aria-label", (r.joined ? "Open " : "Join ") + r.room);
        li.append(text, go);
        return li;
      });
    if (!items.length) items.push(make("li", "side-empty", "No rooms yet: make the first one."));
    ui.roomDirectory.replaceChildren(...items);
  }

  // --- people ---------------------------------------------------------------

  function personItem(name, info, opts) {
    const li = make("li", "");
    li.dataset.name = name;
    const button = make("button", "person");
    button.type = "button";
    button.dataset.name = name;
    button.title = "Open your conversation with " + name + " (Shift-click adds " + name + " to the recipients)";
    const text = make("span", "person-text");
    text.append(make("span", "person-name", name));
    const intro = info.intro ? String(info.intro) : "";
    const introNode = make("span", "person-intro" + (intro ? "" : " none"), intro || "no intro yet");
    if (intro) introNode.title = intro;
    text.append(introNode);
    if (opts.recent) {
      let seen = "online now";
      if (!info.online && typeof info.last_seen === "number") {
        seen = "last seen " + hhmm(asDate(info.last_seen)) + " · " + ago(info.last_seen);
      }
      const seenNode = make("span", "person-seen", seen);
      if (!info.online && typeof info.last_seen === "number") seenNode.title = fullTime(asDate(info.last_seen));
      text.append(seenNode);
    }
    button.append(avatar(name, opts.online), text);
    li.append(button);
    return li;
  }

  const byName = (a, b) => a.localeCompare(b, undefined, { sensitivity: "base" });

  function renderRoster() {
    const names = Array.from(state.roster.keys()).sort(byName);
    ui.roster.replaceChildren(...names.map((n) => personItem(n, state.roster.get(n), { online: true })));
    ui.onlineCount.textContent = names.length ? String(names.length) : "";
    renderConversations();
    renderConvHead();
    ui.rosterEmpty.hidden = names.length > 0;
    const known = new Set(names);
    if (state.recent) for (const n of state.recent.users.keys()) known.add(n);
    ui.names.replaceChildren(...Array.from(known).sort(byName).map((n) => {
      const option = document.createElement("option");
      option.value = n;
      return option;
    }));
    markSelected();
  }

  function requestRecent(minutes) {
    state.recentMinutes = minutes;
    return request({ type: "wholast", minutes: minutes }, "wholast", { minutes: minutes });
  }

  function showRecent(minutes, users) {
    const map = new Map();
    for (const u of users) {
      if (u && typeof u.name === "string" && u.name !== state.me) map.set(u.name, Object.assign({}, u));
    }
    state.recent = { minutes: Number.isInteger(minutes) ? minutes : state.recentMinutes, users: map };
    renderRecent();
    renderRoster();
  }

  function renderRecent() {
    const recent = state.recent;
    if (!recent) return;
    const users = Array.from(recent.users.values()).sort((a, b) => {
      if (!!a.online !== !!b.online) return a.online ? -1 : 1;
      if (!a.online && (b.last_seen || 0) !== (a.last_seen || 0)) return (b.last_seen || 0) - (a.last_seen || 0);
      return byName(a.name, b.name);
    });
    ui.recent.replaceChildren(...users.map((u) => personItem(u.name, u, { online: !!u.online, recent: true })));
    ui.recent.hidden = users.length === 0;
    ui.recentEmpty.hidden = users.length > 0;
    ui.recentEmpty.classList.remove("hint");
    ui.recentEmpty.textContent = "Nobody else was online in the last " + plural(recent.minutes, "minute", "minutes") + ".";
    ui.showRecent.textContent = "Refresh";
    ui.showRecent.title = "Who was online in the last " + plural(recent.minutes, "minute", "minutes");
    markSelected();
  }

  // People picked as recipients of one message (Shift-click); one person is
  // the open conversation, shown as such in the list of conversations.
  function markSelected() {
    const to = parseRecipients(ui.to.value);
    const chosen = new Set(to.length > 1 ? to : []);
    for (const b of ui.sidebar.querySelectorAll(".person")) {
      const on = chosen.has(b.dataset.name);
      b.classList.toggle("selected", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    }
  }

  // --- showing and hiding the people ------------------------------------------

  // A side column on a wide screen, a band under the top bar on a narrow one;
  // either way it can be folded away.
  function toggleRoster(force) {
    const show = typeof force === "boolean" ? force : ui.chat.classList.contains("roster-collapsed");
    ui.chat.classList.toggle("roster-collapsed", !show);
    ui.toggleRoster.setAttribute("aria-expanded", show ? "true" : "false");
  }

  // --- the composer -----------------------------------------------------------

  function parseRecipients(value) {
    const names = [];
    for (const part of String(value).split(/[\s,;]+/)) {
      const name = part.replace(/^@/, "");
      if (name && !names.includes(name)) names.push(name);
    }
    return names;
  }

  function recipientsChanged() {
    const to = parseRecipients(ui.to.value);
    const room = to.length === 1 && to[0].startsWith("#");
    let placeholder = "Message everyone";
    if (room) placeholder = "Message " + to[0];
    else if (to.length === 1) placeholder = "Private message to " + to[0];
    else if (to.length > 1) placeholder = "Message " + to.join(", ");
    ui.message.placeholder = placeholder;
    ui.to.classList.toggle("private", to.length === 1 && !room);
    ui.clearTo.hidden = ui.to.value.length === 0;
    ui.toHint.hidden = ui.to.value.length > 0;
    markSelected();
  }

  function setRecipients(name, add) {
    const current = parseRecipients(ui.to.value);
    let next;
    if (add) {
      next = current.includes(name) ? current.filter((n) => n !== name) : current.concat([name]);
    } else {
      next = [name];
    }
    ui.to.value = next.join(", ");
    recipientsChanged();
    ui.message.focus();
  }

  // The display of what a typed command sends, to show it once it is receipted.
  function parseLine(line) {
    let m = /^message\s+(\S+)\s+([\s\S]+)$/i.exec(line);
    if (m && m[1].startsWith("#")) return { to: [], room: m[1], text: m[2].trim() };
    if (m) return { to: [m[1]], text: m[2].trim() };
    m = /^broadcast\s+message\s+([\s\S]+)$/i.exec(line);
    if (m) return { to: [], text: m[1].trim() };
    m = /^broadcast\s+user\s+([\s\S]+?)\s+message\s+([\s\S]+)$/i.exec(line);
    if (m) return { to: m[1].split(/\s+/).filter(Boolean), text: m[2].trim() };
    return null;
  }

  function utf8Length(text) {
    return new TextEncoder().encode(text).length;
  }

  // A message as it is sent: its lines (at most MAX_LINES), with no spaces at
  // their ends, nor blank lines at its ends; the indentation of code stays.
  function messageText(typed) {
    const text = typed
      .replace(/\r\n?|[\u2028\u2029]/g, "\n")
      .replace(/[ \t]+$/gm, "")
      .replace(/^\n+|\n+$/g, "");
    return text.includes("\n") ? text : text.trim();
  }

  // A command is one line, as typed at a terminal.
  function isCommand(typed) {
    const start = typed.trimStart();
    return start.startsWith("/") && !start.startsWith("//");
  }

  function onComposerSubmit(event) {
    event.preventDefault();
    const typed = ui.message.value;
    let text = isCommand(typed) ? typed.replace(/\s*[\r\n]+\s*/g, " ").trim() : messageText(typed);
    if (!text.trim()) {
      ui.message.focus();
      return;
    }
    if (!connected()) {
      showComposerError({
        text: state.autoReconnect
          ? "Not connected, so nothing was sent; the message is still here. Send it again once the connection is back."
          : "Not connected, so nothing was sent.",
      });
      ui.message.focus();
      return;
    }
    let obj;
    let kind;
    let display;
    let extra = {};
    if (isCommand(text)) {
      const line = text.slice(1).trim();
      if (!line) return;
      obj = { type: "line", text: line };
      kind = "line";
      display = parseLine(line);
      // The server asks for the intro as the next line: the intro form owns the keyboard at once.
      if (/^personalintro$/i.test(line)) extra = { askIntro: true };
    } else {
      const lines = text.split("\n").length;
      if (lines > MAX_LINES) {
        showComposerError({ text: "A message can have at most " + MAX_LINES + " lines; this one has " + lines + ". Nothing was sent." });
        return;
      }
      if (text.trimStart().startsWith("//")) text = text.replace("/", "");
      const to = parseRecipients(ui.to.value);
      const rooms = to.filter((n) => n.startsWith("#"));
      kind = "send";
      if (rooms.length && to.length > 1) {
        showComposerError({ text: "A message goes to one room, or to people: To has " + to.join(", ") + "." });
        return;
      } else if (rooms.length) {
        obj = { type: "message", room: rooms[0], text: text };
        display = { text: text, to: [], room: rooms[0] };
      } else {
        obj = to.length === 0 ? { type: "broadcast", text: text } : { type: "message", to: to.length === 1 ? to[0] : to, text: text };
        display = { text: text, to: to };
      }
    }
    if (utf8Length(JSON.stringify(obj)) > state.maxFrame) {
      showComposerError({
        text: "That message is too long to send (" + text.length + " characters; the limit is " + state.maxMessage + ").",
      });
      return;
    }
    if (!request(obj, kind, Object.assign({ display: display, restore: { text: typed, to: ui.to.value } }, extra))) return;
    if (state.sent[state.sent.length - 1] !== typed) state.sent.push(typed);
    if (state.sent.length > SENT_KEEP) state.sent.shift();
    state.recall = -1;
    ui.message.value = "";
    // Sent: the next "typing" may go at once, and no old note stays above the composer.
    state.typingSentAt = 0;
    updateCounter();
    fitComposer();
    hideComposerError();
    hideNote();
    if (extra.askIntro) openIntro("line");
    else ui.message.focus();
  }

  function recallTo(index) {
    state.recall = index;
    ui.message.value = index >= 0 ? state.sent[index] : "";
    const end = ui.message.value.length;
    ui.message.setSelectionRange(end, end);
    updateCounter();
  }

  function onMessageKey(event) {
    // Enter sends (Ctrl+Enter too, and only it on a touch screen); Shift+Enter
    // is a new line (the textarea's own).
    const sends = event.ctrlKey || event.metaKey || !TOUCH.matches;
    if (event.key === "Enter" && sends && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      ui.composer.requestSubmit();
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const value = ui.message.value;
    const sent = state.sent;
    const recalling = state.recall >= 0 && value === sent[state.recall];
    // Up and Down move between the lines of a message; only from its first
    // (or last) line do they step through what was sent.
    const caret = ui.message.selectionStart;
    if (event.key === "ArrowUp" && value.slice(0, caret).includes("\n")) return;
    if (event.key === "ArrowDown" && value.slice(ui.message.selectionEnd).includes("\n")) return;
    if (event.key === "ArrowUp") {
      if (!sent.length) return;
      let index = -1;
      if (recalling) index = Math.max(0, state.recall - 1);
      else if (value === "") index = sent.length - 1;
      else if (value === sent[sent.length - 1]) index = Math.max(0, sent.length - 2);
      if (index < 0) return;
      event.preventDefault();
      recallTo(index);
    } else if (event.key === "ArrowDown" && recalling) {
      event.preventDefault();
      recallTo(state.recall + 1 < sent.length ? state.recall + 1 : -1);
    } else if (event.key === "Escape") {
      hideComposerError();
    }
  }

  function updateCounter() {
    const n = ui.message.value.length;
    const max = state.maxMessage;
    if (n >= max * 0.8) {
      ui.counter.hidden = false;
      ui.counter.textContent = n + " / " + max;
      ui.counter.classList.toggle("over", n > max);
    } else {
      ui.counter.hidden = true;
    }
  }

  function setComposerEnabled(on) {
    ui.message.disabled = !on;
    ui.to.disabled = !on;
    ui.send.disabled = !on;
  }

  // Errors and hints of the server, next to the composer.
  function showComposerError(msg, req) {
    const box = ui.composerError;
    box.replaceChildren();
    box.append(make("span", "", msg.text || "The server refused that."));
    if (msg.code === "unknown_command" && msg.suggestion) {
      const fix = make("button", "", "Use " + msg.suggestion);
      fix.type = "button";
      fix.addEventListener("click", () => {
        const line = req && req.restore ? req.restore.text : ui.message.value;
        const word = typeof msg.word === "string" ? msg.word : "";
        let value = line;
        const m = /^(\s*\/?\s*)(\S+)/.exec(line);
        if (m && (!word || m[2].toLowerCase() === word.toLowerCase())) {
          value = m[1] + msg.suggestion + line.slice(m[0].length);
        } else if (!line.trim()) {
          value = "/" + msg.suggestion + " ";
        }
        ui.message.value = value;
        hideComposerError();
        updateCounter();
        ui.message.focus();
      });
      box.append(fix);
    }
    if (msg.code === "unknown_user" && Array.isArray(msg.names)) {
      const suggestions = Array.isArray(msg.suggestions) ? msg.suggestions : [];
      msg.names.forEach((name, i) => {
        const better = suggestions[i];
        if (typeof better !== "string" || !better) return;
        const fix = make("button", "", "Use " + better + " for " + name);
        fix.type = "button";
        fix.addEventListener("click", () => {
          const to = parseRecipients(ui.to.value);
          if (to.includes(name)) {
            ui.to.value = to.map((n) => (n === name ? better : n)).join(", ");
            recipientsChanged();
          } else if (ui.message.value.trim().startsWith("/")) {
            ui.message.value = ui.message.value.replace(new RegExp("(^|\\s)" + name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "(?=\\s|$)"), "$1" + better);
          }
          hideComposerError();
          ui.message.focus();
        });
        box.append(fix);
      });
    }
    if (msg.usage && !String(msg.text || "").includes(msg.usage)) {
      box.append(make("code", "", msg.usage));
    } else if (msg.suggestion && msg.code !== "unknown_command") {
      box.append(make("span", "", "Did you mean " + msg.suggestion + "?"));
    }
    const dismiss = make("button", "dismiss");
    dismiss.type = "button";
    dismiss.setAttribute("aria-label", "Dismiss");
    dismiss.append(icon("close"));
    dismiss.addEventListener("click", () => {
      hideComposerError();
      ui.message.focus();
    });
    box.append(dismiss);
    box.hidden = false;
  }

  function hideComposerError() {
    ui.composerError.hidden = true;
    ui.composerError.replaceChildren();
  }

  // A passing note next to the composer (not an error); seconds 0 keeps it.
  function showNote(text, seconds, fill) {
    clearTimeout(state.noteTimer);
    const box = ui.composerNote;
    box.replaceChildren();
    if (text) box.append(make("span", "", text));
    if (fill) fill(box);
    const close = make("button", "dismiss");
    close.type = "button";
    close.setAttribute("aria-label", "Dismiss");
    close.append(icon("close"));
    close.addEventListener("click", hideNote);
    box.append(close);
    box.hidden = false;
    const keep = seconds === undefined ? 6 : seconds;
    if (keep > 0) state.noteTimer = setTimeout(hideNote, keep * 1000);
  }

  // A list in the note: a title, then one line per item (each filled by FILL).
  function showListNote(title, items, fill, empty) {
    showNote(null, 0, (box) => {
      box.append(make("strong", "note-title", title));
      if (!items.length) {
        box.append(make("span", "", empty));
        return;
      }
      const list = make("ul", "note-list");
      for (const item of items) {
        const li = make("li", "");
        fill(li, item);
        list.append(li);
      }
      box.append(list);
    });
  }

  // The answer to a typed "/whoelse" or "/wholast N".
  function showRosterNote(msg, users) {
    const others = users.filter((u) => u && typeof u.name === "string");
    const recent = msg.view === "recent";
    const title = recent ? "Online in the last " + plural(Number(msg.minutes) || 0, "minute", "minutes") + ":" : "Online now:";
    showListNote(title, others, (li, u) => {
      li.append(make("b", "", u.name));
      if (u.intro) li.append(" ", make("span", "", "<" + u.intro + ">"));
      if (recent && !u.online && typeof u.last_seen === "number") li.append(" ", make("span", "note-when", "last seen " + hhmm(asDate(u.last_seen))));
    }, "Nobody else.");
  }

  // The answer to a typed "/history [N]": the messages, one line each.
  function showHistoryNote(msg, messages) {
    const list = messages.filter((m) => m && typeof m === "object");
    const title = (typeof msg.name === "string" && msg.name ? "Last messages in " + msg.name : "Your last messages") + " (" + list.length + "):";
    showListNote(title, list, (li, m) => {
      li.append(make("span", "note-when", hhmm(asDate(m.time))), " ", make("b", "", String(m.from)));
      const where = m.kind === "room" && m.room ? " in " + m.room : nameList(m.to).length ? " " + recipientsLabel(m) : "";
      if (where) li.append(make("span", "note-when", where));
      const text = make("span", "note-text", ": " + String(m.text == null ? "" : m.text).replace(/\n+/g, " ⏎ "));
      text.dir = "auto";
      li.append(text);
    }, "No messages yet.");
  }

  function hideNote() {
    clearTimeout(state.noteTimer);
    ui.composerNote.hidden = true;
    ui.composerNote.replaceChildren();
  }

  // --- the intro form ---------------------------------------------------------

  // The form owns the keyboard while it is open: the rest of the page is
  // inert, so nothing typed meanwhile goes to the composer (where the server,
  // waiting for the intro as the next line, would take it as the intro).
  function openIntro(mode) {
    const line = mode === "line";
    // Opened as the command was sent, and now the server's ask: as it is.
    if (!ui.introForm.hidden && line && state.introMode === "line") return;
    state.introMode = line ? "line" : "intro";
    closeRooms(false);
    closeSearch(false);
    ui.introForm.hidden = false;
    ui.topbar.inert = true;
    ui.main.inert = true;
    ui.setIntro.setAttribute("aria-expanded", "true");
    ui.introError.textContent = "";
    ui.introSave.disabled = false;
    ui.introText.value = state.intro || "";
    ui.introText.focus();
    ui.introText.select();
  }

  function closeIntro(restoreFocus) {
    if (ui.introForm.hidden) return;
    ui.introForm.hidden = true;
    ui.topbar.inert = false;
    ui.main.inert = false;
    ui.setIntro.setAttribute("aria-expanded", "false");
    ui.introSave.disabled = false;
    if (restoreFocus) ui.message.focus();
  }

  // The "/personalintro" sent is answered: its ask must not open the form again.
  function introAnswered() {
    for (const r of state.pending) if (r.askIntro) r.done = true;
  }

  function cancelIntro() {
    // The server asked for the intro as the next line: an empty one leaves it unchanged.
    if (state.introMode === "line") {
      introAnswered();
      state.introMode = "intro";
      request({ type: "line", text: "" }, "line", { intro: true });
    }
    closeIntro(true);
  }

  function onIntroSubmit(event) {
    event.preventDefault();
    const text = ui.introText.value.replace(/\s+/g, " ").trim();
    if (!text) {
      ui.introError.textContent = "Write a few words about yourself first.";
      ui.introText.focus();
      return;
    }
    if (text.length > state.maxMessage) {
      ui.introError.textContent =
        "That is " + text.length + " characters; an intro can be at most " + state.maxMessage + ".";
      return;
    }
    state.introDraft = text;
    if (state.introMode === "line") introAnswered();
    const ok =
      state.introMode === "line"
        ? request({ type: "line", text: text }, "line", { intro: true })
        : request({ type: "intro", text: text }, "intro");
    if (!ok) {
      ui.introError.textContent = "Not connected; try again once the connection is back.";
      return;
    }
    state.introMode = "intro";
    ui.introError.textContent = "";
    ui.introSave.disabled = true;
  }

  // --- help -----------------------------------------------------------------

  function renderHelp(commands) {
    state.helpLoaded = true;
    const items = [];
    for (const c of commands) {
      const dt = make("dt", "");
      dt.append(make("code", "", c.usage || c.name));
      items.push(dt, make("dd", "", c.summary || ""));
    }
    ui.helpCommands.replaceChildren(...items);
  }

  function openHelp() {
    closeAdmin(false);
    ui.helpPanel.hidden = false;
    ui.help.setAttribute("aria-expanded", "true");
    if (!state.helpLoaded) request({ type: "help" }, "help");
    ui.helpClose.focus();
  }

  function closeHelp(restoreFocus) {
    if (ui.helpPanel.hidden) return;
    ui.helpPanel.hidden = true;
    ui.help.setAttribute("aria-expanded", "false");
    if (restoreFocus) ui.help.focus();
  }

  // --- the admins' panel --------------------------------------------------------

  // Built when the server's welcome says this user is an admin, and taken
  // down for anyone else: no other user's page has any of it.  Its requests
  // ("sessions", "kick", "announce") are answered in order like the others.
  const ADMIN_KINDS = ["sessions", "kick", "announce"];
  const SESSION_COLUMNS = ["User", "Edge", "Address", "Node", "Since", "Idle"];

  function setAdmin(on) {
    if (on && !state.admin) {
      state.admin = buildAdmin();
    } else if (!on && state.admin) {
      closeAdmin(false);
      state.admin.button.remove();
      state.admin.panel.remove();
      state.admin = null;
    }
  }

  function buildAdmin() {
    const button = make("button", "icon-button");
    button.type = "button";
    button.id = "admin";
    button.title = "Sessions on every server, kicks and announcements";
    button.setAttribute("aria-haspopup", "dialog");
    button.setAttribute("aria-expanded", "false");
    button.setAttribute("aria-controls", "admin-panel");
    button.append(icon("shield"), make("span", "label", "Admin"));

    const panel = make("aside", "sheet admin-sheet");
    panel.id = "admin-panel";
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-labelledby", "admin-title");
    const head = make("div", "sheet-head");
    const title = make("h2", "", "Admin");
    title.id = "admin-title";
    const close = make("button", "icon-button");
    close.type = "button";
    close.id = "admin-close";
    close.setAttribute("aria-label", "Close the admin panel");
    close.append(icon("close"));
    head.append(title, close);

    // Who is logged in, on every server of the chat.
    const sessions = make("section", "admin-section");
    sessions.setAttribute("aria-labelledby", "sessions-title");
    const sessionsHead = make("div", "admin-head");
    const sessionsTitle = make("h3", "", "Sessions");
    sessionsTitle.id = "sessions-title";
    const refresh = make("button", "small-button", "Refresh");
    refresh.type = "button";
    refresh.id = "sessions-refresh";
    sessionsHead.append(sessionsTitle, refresh);
    const summary = make("p", "admin-line", "Loading…");
    summary.id = "sessions-summary";
    summary.setAttribute("role", "status");
    const unanswered = make("p", "admin-warning");
    unanswered.id = "sessions-unanswered";
    unanswered.hidden = true;
    const kickResult = make("p", "admin-line admin-result");
    kickResult.id = "kick-result";
    kickResult.setAttribute("role", "status");
    const table = make("table", "sessions");
    table.id = "sessions-table";
    table.setAttribute("aria-labelledby", "sessions-title");
    const headRow = make("tr");
    for (const name of SESSION_COLUMNS) {
      const th = make("th", "", name);
      th.scope = "col";
      headRow.append(th);
    }
    const actions = make("th");
    actions.scope = "col";
    actions.append(make("span", "sr-only", "Kick"));
    headRow.append(actions);
    const thead = make("thead");
    thead.append(headRow);
    const tbody = make("tbody");
    table.append(thead, tbody);
    sessions.append(sessionsHead, summary, unanswered, kickResult, table);

    // A notice from the server to everyone.
    const announce = make("section", "admin-section");
    announce.setAttribute("aria-labelledby", "announce-title");
    const announceTitle = make("h3", "", "Announce");
    announceTitle.id = "announce-title";
    const form = make("form", "announce-form");
    form.id = "announce-form";
    const label = make("label", "admin-sub", "A notice from the server to everyone online, on every server of this chat.");
    label.htmlFor = "announce-text";
    const announceText = make("input");
    announceText.id = "announce-text";
    announceText.type = "text";
    announceText.autocomplete = "off";
    announceText.maxLength = state.maxMessage;
    announceText.placeholder = "The server restarts at 17:00";
    const announceSend = make("button", "primary", "Announce");
    announceSend.type = "submit";
    announceSend.id = "announce-send";
    const row = make("div", "announce-row");
    row.append(announceText, announceSend);
    const announceStatus = make("p", "admin-line admin-result");
    announceStatus.id = "announce-status";
    announceStatus.setAttribute("role", "status");
    form.append(label, row, announceStatus);
    announce.append(announceTitle, form);

    const body = make("div", "sheet-body");
    body.append(sessions, announce);
    panel.append(head, body);

    ui.help.before(button);
    ui.helpPanel.after(panel);

    const admin = {
      button: button,
      panel: panel,
      close: close,
      refresh: refresh,
      summary: summary,
      unanswered: unanswered,
      kickResult: kickResult,
      table: table,
      tbody: tbody,
      announceText: announceText,
      announceSend: announceSend,
      announceStatus: announceStatus,
      // The last list of sessions, and the open kick form ({user, row, ...}) if any.
      list: [],
      at: null,
      kick: null,
      // An "announce" waits for its answer (a second one is not sent meanwhile).
      announcing: false,
    };
    button.addEventListener("click", () => (panel.hidden ? openAdmin(true, false) : closeAdmin(true)));
    close.addEventListener("click", () => closeAdmin(true));
    refresh.addEventListener("click", () => {
      setAdminLine(kickResult, "", false);
      requestSessions();
    });
    tbody.addEventListener("click", (event) => {
      const kick = event.target.closest(".kick-button");
      if (kick) openKick(kick.closest("tr"), kick.dataset.user, kick);
    });
    form.addEventListener("submit", onAnnounceSubmit);
    return admin;
  }

  // Opening the panel asks for the sessions, unless they just came (typed "/sessions").
  function openAdmin(focus, fresh) {
    const a = state.admin;
    if (!a) return;
    closeHelp(false);
    a.panel.hidden = false;
    a.button.setAttribute("aria-expanded", "true");
    if (!fresh) requestSessions();
    if (focus) a.close.focus();
  }

  function closeAdmin(restoreFocus) {
    const a = state.admin;
    if (!a || a.panel.hidden) return;
    closeKick(false);
    a.panel.hidden = true;
    a.button.setAttribute("aria-expanded", "false");
    if (restoreFocus) a.button.focus();
  }

  // Back after a (re)connection: what waited for an answer will not get one.
  function adminConnected() {
    const a = state.admin;
    a.announcing = false;
    a.announceText.maxLength = state.maxMessage;
    a.table.setAttribute("aria-busy", "false");
    if (a.kick) a.kick.sending = false;
    if (!a.panel.hidden) requestSessions();
  }

  function setAdminLine(node, text, error) {
    node.textContent = text || "";
    node.classList.toggle("error", !!error);
  }

  function requestSessions() {
    const a = state.admin;
    if (!request({ type: "sessions" }, "sessions")) {
      setAdminLine(a.summary, "Not connected; try again once the connection is back.", true);
      return;
    }
    a.table.setAttribute("aria-busy", "true");
    if (!a.list.length) setAdminLine(a.summary, "Loading…", false);
  }

  function idleText(seconds) {
    const s = Math.max(0, Math.round(Number(seconds) || 0));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " m";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " m";
  }

  function renderSessions(msg) {
    const a = state.admin;
    a.table.setAttribute("aria-busy", "false");
    a.list = (Array.isArray(msg.sessions) ? msg.sessions : []).filter((s) => s && typeof s.user === "string");
    a.at = asDate(msg.time);
    const missing = Number.isInteger(msg.unanswered) && msg.unanswered > 0 ? msg.unanswered : 0;
    a.unanswered.hidden = !missing;
    a.unanswered.textContent = missing
      ? plural(missing, "node", "nodes") + " did not answer in time; " + (missing === 1 ? "its" : "their") +
        " sessions are not listed."
      : "";
    renderSessionRows();
  }

  function renderSessionRows() {
    const a = state.admin;
    const hadFocus = a.tbody.contains(document.activeElement);
    closeKick(false);
    a.tbody.replaceChildren(...a.list.map(sessionRow));
    const at = a.at ? pad(a.at.getHours()) + ":" + pad(a.at.getMinutes()) + ":" + pad(a.at.getSeconds()) : "";
    setAdminLine(a.summary, plural(a.list.length, "session", "sessions") + (at ? ", as of " + at : "") + ".", false);
    if (hadFocus || document.activeElement === document.body) {
      if (!a.panel.hidden) a.refresh.focus();
    }
  }

  function sessionRow(s) {
    const tr = make("tr", "session");
    tr.dataset.user = s.user;
    const cell = (label, text, className) => {
      const td = make("td", className || "", text);
      td.dataset.label = label;
      return td;
    };
    const user = make("th", "session-user");
    user.scope = "row";
    user.append(make("span", "session-name", s.user));
    const mine = s.user === state.me;
    if (mine) user.append(" ", make("span", "tag", "you"));
    const edge = cell("Edge", s.edge === "web" ? "web" : "tcp");
    edge.title = s.edge === "web" ? "a web page" : "a terminal, over TCP";
    const node = cell("Node", s.node ? String(s.node) : "—");
    if (!s.node) node.title = "this server (not a cluster)";
    const sinceDate = asDate(s.since);
    const since = cell("Since", "", "num");
    const day = dayKey(sinceDate) === dayKey(new Date()) ? "" : sinceDate.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + ", ";
    const time = make("time", "", day + hhmm(sinceDate));
    time.dateTime = sinceDate.toISOString();
    time.title = fullTime(sinceDate);
    since.append(time);
    const actions = cell("", "", "session-actions");
    if (!mine) {
      const kick = make("button", "small-button kick-button", "Kick");
      kick.type = "button";
      kick.dataset.user = s.user;
      kick.setAttribute("aria-label", "Kick " + s.user);
      kick.setAttribute("aria-expanded", "false");
      actions.append(kick);
    }
    tr.append(user, edge, cell("Address", String(s.address == null ? "" : s.address)), node, since,
      cell("Idle", idleText(s.idle), "num"), actions);
    return tr;
  }

  // A small form under the row: the reason (optional), then Kick or Cancel.
  function openKick(row, user, trigger) {
    const a = state.admin;
    if (!row || !user) return;
    if (a.kick && a.kick.user === user) {
      a.kick.input.focus();
      return;
    }
    closeKick(false);
    const tr = make("tr", "kick-row");
    const td = make("td");
    td.colSpan = SESSION_COLUMNS.length + 1;
    const form = make("form", "kick-form");
    form.id = "kick-form";
    const label = make("label", "kick-label", "Reason, shown to " + user + " (optional)");
    label.htmlFor = "kick-reason";
    const input = make("input");
    input.id = "kick-reason";
    input.type = "text";
    input.autocomplete = "off";
    input.maxLength = state.maxMessage;
    const go = make("button", "danger", "Kick " + user);
    go.type = "submit";
    go.id = "kick-confirm";
    const cancel = make("button", "", "Cancel");
    cancel.type = "button";
    const error = make("p", "admin-line error");
    error.setAttribute("role", "alert");
    const buttons = make("div", "kick-buttons");
    buttons.append(input, go, cancel);
    form.append(label, buttons, error);
    td.append(form);
    tr.append(td);
    row.after(tr);
    trigger.setAttribute("aria-expanded", "true");
    trigger.setAttribute("aria-controls", "kick-form");
    a.kick = { user: user, row: tr, input: input, error: error, trigger: trigger, sending: false };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sendKick();
    });
    cancel.addEventListener("click", () => closeKick(true));
    form.addEventListener("keydown", (event) => {
      if (event.key !== "Escape") return;
      event.preventDefault();
      event.stopPropagation();
      closeKick(true);
    });
    input.focus();
  }

  function closeKick(restoreFocus) {
    const a = state.admin;
    const kick = a && a.kick;
    if (!kick) return;
    a.kick = null;
    kick.row.remove();
    kick.trigger.setAttribute("aria-expanded", "false");
    kick.trigger.removeAttribute("aria-controls");
    if (restoreFocus && kick.trigger.isConnected) kick.trigger.focus();
  }

  function sendKick() {
    const kick = state.admin.kick;
    if (kick.sending) return;
    const reason = kick.input.value.replace(/\s+/g, " ").trim();
    const obj = { type: "kick", user: kick.user };
    if (reason) obj.reason = reason;
    if (!request(obj, "kick", { user: kick.user })) {
      kick.error.textContent = "Not connected; try again once the connection is back.";
      return;
    }
    kick.error.textContent = "";
    kick.sending = true;
  }

  function adminKicked(msg) {
    const a = state.admin;
    const user = String(msg.user || "");
    const hadFocus = a.panel.contains(document.activeElement);
    if (a.kick && a.kick.user === user) closeKick(false);
    if (msg.here > 0 || msg.elsewhere) {
      a.list = a.list.filter((s) => s.user !== user);
      renderSessionRows();
    }
    setAdminLine(a.kickResult, msg.text || "Kicked " + user + ".", false);
    if (!a.panel.hidden && (hadFocus || document.activeElement === document.body) && !a.panel.contains(document.activeElement)) {
      a.refresh.focus();
    }
  }

  function adminError(req, msg) {
    const a = state.admin;
    const text = msg.text || "The server refused that.";
    if (req.kind === "kick") {
      if (a.kick && a.kick.user === req.user) {
        a.kick.error.textContent = text;
        a.kick.sending = false;
        a.kick.input.focus();
      } else {
        setAdminLine(a.kickResult, text, true);
      }
    } else if (req.kind === "announce") {
      a.announcing = false;
      setAdminLine(a.announceStatus, text, true);
    } else {
      a.table.setAttribute("aria-busy", "false");
      setAdminLine(a.summary, text, true);
    }
  }

  function onAnnounceSubmit(event) {
    event.preventDefault();
    const a = state.admin;
    if (a.announcing) return;
    const text = a.announceText.value.replace(/\s+/g, " ").trim();
    if (!text) {
      setAdminLine(a.announceStatus, "Write the announcement first.", true);
      a.announceText.focus();
      return;
    }
    if (text.length > state.maxMessage) {
      setAdminLine(a.announceStatus, "That is " + text.length + " characters; the limit is " + state.maxMessage + ".", true);
      return;
    }
    if (!request({ type: "announce", text: text }, "announce")) {
      setAdminLine(a.announceStatus, "Not connected; try again once the connection is back.", true);
      return;
    }
    a.announcing = true;
    setAdminLine(a.announceStatus, "Announcing…", false);
  }

  // --- wiring -----------------------------------------------------------------

  ui.login.addEventListener("submit", onLoginSubmit);
  ui.composer.addEventListener("submit", onComposerSubmit);
  ui.message.addEventListener("keydown", onMessageKey);
  const enterHint = () => (ui.message.enterKeyHint = TOUCH.matches ? "enter" : "send");
  TOUCH.addEventListener("change", enterHint);
  enterHint();
  // The composer grows with its lines (up to its max-height), where CSS cannot say so.
  const GROWS = window.CSS && CSS.supports && CSS.supports("field-sizing", "content");
  function fitComposer() {
    if (GROWS) return;
    ui.message.style.height = "auto";
    ui.message.style.height = ui.message.scrollHeight + 2 + "px";
  }
  ui.message.addEventListener("input", () => {
    updateCounter();
    fitComposer();
    sendTyping();
  });
  ui.to.addEventListener("input", recipientsChanged);
  ui.to.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      ui.message.focus();
    }
  });
  ui.clearTo.addEventListener("click", () => {
    ui.to.value = "";
    recipientsChanged();
    ui.message.focus();
  });
  ui.bannerAction.addEventListener("click", () => {
    if (bannerHandler) bannerHandler();
  });
  ui.logout.addEventListener("click", logout);
  ui.resumeButton.addEventListener("click", resumeFromOffer);
  ui.resumeOther.addEventListener("click", declineResume);
  ui.notify.addEventListener("click", toggleNotify);
  ui.help.addEventListener("click", () => (ui.helpPanel.hidden ? openHelp() : closeHelp(true)));
  ui.helpClose.addEventListener("click", () => closeHelp(true));
  ui.setIntro.addEventListener("click", () => (ui.introForm.hidden ? openIntro("intro") : cancelIntro()));
  ui.introForm.addEventListener("submit", onIntroSubmit);
  ui.introCancel.addEventListener("click", cancelIntro);
  ui.toggleRoster.addEventListener("click", () => toggleRoster());
  ui.showRecent.addEventListener("click", () => {
    if (!requestRecent(Math.min(RECENT_MINUTES, state.lastHour))) showComposerError({ text: "Not connected; try again once the connection is back." });
  });
  ui.sidebar.addEventListener("click", (event) => {
    const conv = event.target.closest(".conv");
    if (conv) {
      openConversation(conv.dataset.conv, { bottom: true, focus: !PHONE.matches });
      return;
    }
    const person = event.target.closest(".person");
    if (!person) return;
    // Shift-click adds the person to To; a click opens the conversation with them.
    if (event.shiftKey || event.ctrlKey || event.metaKey) setRecipients(person.dataset.name, true);
    else openConversation("@" + person.dataset.name, { bottom: true, focus: !PHONE.matches });
  });
  ui.search.addEventListener("submit", (event) => {
    event.preventDefault();
    startSearch(ui.searchText.value);
  });
  ui.searchText.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || ui.searchResults.hidden) return;
    event.preventDefault();
    event.stopPropagation();
    ui.searchText.value = "";
    closeSearch(true);
  });
  ui.searchClose.addEventListener("click", () => {
    ui.searchText.value = "";
    closeSearch(true);
  });
  ui.searchMore.addEventListener("click", () => {
    const s = state.search;
    if (s && s.hits.length) startSearch(s.text, s.hits[s.hits.length - 1].id);
  });
  ui.searchHits.addEventListener("click", (event) => {
    const hit = event.target.closest(".hit");
    if (!hit) return;
    for (const b of ui.searchHits.querySelectorAll(".hit")) b.removeAttribute("aria-current");
    hit.setAttribute("aria-current", "true");
    openHit(hit.dataset.conv, hit.dataset.id);
  });
  ui.browseRooms.addEventListener("click", () => (ui.roomsPanel.hidden ? openRooms() : closeRooms(true)));
  ui.roomsClose.addEventListener("click", () => closeRooms(true));
  ui.roomsPanel.addEventListener("submit", (event) => {
    event.preventDefault();
    joinRoom(ui.roomName.value);
  });
  ui.roomDirectory.addEventListener("click", (event) => {
    const go = event.target.closest("button[data-room]");
    if (!go) return;
    if (go.dataset.joined === "true") {
      closeRooms(false);
      openConversation(roomId(go.dataset.room), { bottom: true, focus: !PHONE.matches });
    } else {
      joinRoom(go.dataset.room);
    }
  });
  ui.leaveRoom.addEventListener("click", () => {
    const c = conversation(state.open);
    if (c.kind === "room" && !request({ type: "leave", room: c.name }, "leave")) showComposerError({ text: "Not connected; try again once the connection is back." });
  });
  ui.roomMembers.addEventListener("click", () => {
    const c = conversation(state.open);
    if (c.kind === "room" && !request({ type: "members", room: c.name }, "members")) showComposerError({ text: "Not connected; try again once the connection is back." });
  });
  ui.back.addEventListener("click", () => showList(true));
  ui.loadOlder.addEventListener("click", () => loadPage(conversation(state.open), true));
  PHONE.addEventListener("change", () => {
    if (!PHONE.matches && state.listOpen) showList(false);
  });
  ui.timeline.addEventListener("click", (event) => {
    const sender = event.target.closest(".sender");
    if (!sender) return;
    const message = sender.closest(".message");
    if (message && message.classList.contains("mine")) {
      if (message.dataset.to !== undefined) {
        ui.to.value = message.dataset.to.split(" ").filter(Boolean).join(", ");
        recipientsChanged();
      }
      ui.message.focus();
      return;
    }
    if (event.shiftKey || event.ctrlKey || event.metaKey) setRecipients(sender.dataset.name, true);
    else openConversation("@" + sender.dataset.name, { bottom: true, focus: true });
  });
  ui.timeline.addEventListener("scroll", onTimelineScroll);
  ui.jump.addEventListener("click", () => {
    scrollToBottom();
    ui.message.focus();
  });

  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    if (!ui.introForm.hidden) {
      event.preventDefault();
      cancelIntro();
    } else if (!ui.roomsPanel.hidden) {
      event.preventDefault();
      closeRooms(true);
    } else if (!ui.helpPanel.hidden) {
      event.preventDefault();
      closeHelp(true);
    } else if (state.admin && !state.admin.panel.hidden) {
      event.preventDefault();
      closeAdmin(true);
    }
  });

  // What a person at the page does.  Not "scroll": the page scrolls by
  // itself when messages arrive; a person scrolls with the wheel, a touch,
  // the keys or the scroll bar (a pointer press), which are here.
  for (const type of ["keydown", "pointerdown", "wheel", "touchstart", "touchmove", "input"]) {
    window.addEventListener(type, noteActivity, { capture: true, passive: true });
  }
  window.addEventListener("pointermove", onPointerMove, { capture: true, passive: true });
  window.addEventListener("focus", noteActivity);

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) {
      noteActivity();
      // Back to the tab: what came meanwhile in the open conversation is read now.
      const c = state.inChat ? conversation(state.open) : null;
      if (c && c.unread && reading()) {
        markRead(c);
        renderConversations();
      }
      clearUnread();
      // Back to the tab while waiting to reconnect: try now.
      if (state.reconnectTimer && state.reconnectAt - Date.now() > 1500) reconnectNow();
    }
  });

  window.addEventListener("online", () => {
    if (state.reconnectTimer) reconnectNow();
  });

  // --- start ------------------------------------------------------------------

  document.title = TITLE;
  updateNotifyButton();
  recipientsChanged();
  renderRoster();
  renderConvHead();
  renderOlder();
  updateEmpty();
  const saved = loadToken();
  if (saved && saved.idle) {
    // A reload after the session ended for being idle: the offer again (the
    // reload may be the browser's, with nobody there).
    showResumeOffer(String(saved.name || ""), typeof saved.text === "string" ? saved.text : "", saved.at);
  } else if (saved) {
    // A reload, or a tab that lost its connection: carry on without the password.
    state.autoReconnect = true;
    state.auth = { kind: "resume", token: saved.token };
    setLoginStatus("Resuming your session…");
    setLoginBusy(true);
    connect();
  } else {
    ui.username.focus();
  }
})();
