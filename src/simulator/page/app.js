// @ts-check
/*
 * The page's wiring: state fetches, the live stream, rendering, clicks and modals. A
 * classic script that runs after helpers.js (whose functions it calls) in the same
 * inline <script>. Type-checked by ./tsconfig.json against the DOM.
 */
(() => {
  const params = new URLSearchParams(location.search);
  let me = params.get("as") || "";
  let channel = params.get("channel") || "";
  let flashTs = params.get("ts") || "";
  // App Home shown instead of a channel (the sidebar's "Home" under Apps).
  let home = params.get("home") === "1";
  let state = null;
  const expanded = {};
  let shownModal = "";
  let lastMessagesHtml = "";
  let fetching = false,
    again = false;

  const $ = (id) => document.getElementById(id);

  function setStatus(text, isError) {
    const el = $("status");
    el.textContent = text;
    el.className = "status" + (isError ? " err" : "");
  }

  function remember() {
    const q = new URLSearchParams();
    if (me) q.set("as", me);
    if (channel) q.set("channel", channel);
    if (home) q.set("home", "1");
    history.replaceState(null, "", "?" + q.toString());
  }

  function refresh() {
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    const asked = me;
    fetch("/page/state?user=" + encodeURIComponent(asked), { cache: "no-store" })
      .then((r) => r.json())
      .then((s) => {
        // The person was changed while this was on its way: its state is the previous
        // person's, and rendering it would put the picker back to them. Ask again instead.
        if (asked !== me) {
          again = true;
          return;
        }
        state = s;
        render();
      })
      .catch((e) => {
        setStatus("Could not reach the simulator: " + e.message, true);
      })
      .then(() => {
        fetching = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  function personName(id) {
    return state?.names[id] || id;
  }

  function renderPicker() {
    const sel = /** @type {HTMLSelectElement} */ ($("user-picker"));
    const key = state.people.map((p) => p.id).join(",");
    if (sel.getAttribute("data-key") !== key) {
      sel.innerHTML = state.people
        .map((p) => '<option value="' + esc(p.id) + '">' + esc(p.name) + " — " + esc(p.role) + "</option>")
        .join("");
      sel.setAttribute("data-key", key);
    }
    sel.value = state.me;
    me = state.me;
  }

  function renderChannels() {
    if (!state.channels.some((c) => c.id === channel))
      channel = state.channels[0] ? state.channels[0].id : "";
    function row(c) {
      return (
        '<button type="button" class="chan' +
        (c.id === channel && !home ? " active" : "") +
        '" data-testid="channel-' +
        esc(c.id) +
        '" data-channel="' +
        esc(c.id) +
        '"><span>' +
        (c.kind === "dm" ? "● " : "# ") +
        esc(c.name) +
        "</span>" +
        (c.count ? '<span class="count">' + c.count + "</span>" : "") +
        "</button>"
      );
    }
    $("channels").innerHTML = state.channels
      .filter((c) => c.kind === "channel")
      .map(row)
      .join("");
    $("dms").innerHTML = state.channels
      .filter((c) => c.kind === "dm")
      .map(row)
      .join("");
    const current = state.channels.filter((c) => c.id === channel)[0];
    $("channel-title").textContent = current
      ? current.kind === "dm"
        ? current.name
        : "# " + current.name
      : "";
    $("channel-topic").textContent = current ? current.topic : "";
    renderHomeEntry();
  }

  // ---- App Home -----------------------------------------------------------------

  /** The sidebar's entry for the app's Home tab; the title bar while it is shown. */
  function renderHomeEntry() {
    $("apps").innerHTML =
      '<button type="button" class="chan' +
      (home ? " active" : "") +
      '" data-testid="app-home" data-home-open="true"><span>⌂ Countersign · Home</span></button>';
    if (home) {
      $("channel-title").textContent = "Countersign · Home";
      $("channel-topic").textContent =
        "Your App Home: what waits for your vote, what you decided, your passkeys";
    }
  }

  /** What the app last published as this person's Home tab, its buttons clickable as in Slack. */
  function renderHomeView() {
    const h = state.home;
    const html =
      '<div class="home" data-testid="app-home-view"' +
      (h ? ' data-view-id="' + esc(h.id) + '"' : "") +
      ">" +
      (h
        ? renderBlocks(h.view?.blocks || [], state.names, { view: h.id })
        : '<div class="empty">' +
          (state.connected ? "Opening App Home…" : "The app is starting…") +
          "</div>") +
      "</div>";
    if (html === lastMessagesHtml) return;
    $("messages").innerHTML = html;
    lastMessagesHtml = html;
  }

  /** Opens the Home tab as Slack does each time: the app gets a signed app_home_opened and publishes. */
  function openHome() {
    post("/page/home", { user: me })
      .then((r) => {
        setStatus(personName(me) + " opened App Home: app_home_opened, " + describe(r), r.status !== 200);
      })
      .catch((err) => {
        setStatus(err.message, true);
      })
      .then(refresh);
  }

  /**
   * Presses a button: asks for its confirmation if it has one, posts the click to the page
   * server (which sends Slack's signed block_actions) and says what the app answered.
   */
  function press(t, path, body, where) {
    const confirmText = t.getAttribute("data-confirm");
    if (confirmText && !window.confirm(confirmText)) return;
    t.disabled = true;
    const label = t.textContent;
    post(path, body)
      .then((r) => {
        setStatus(
          personName(me) + " clicked “" + label + "”" + where + ": block_actions, " + describe(r),
          r.status !== 200,
        );
      })
      .catch((err) => {
        setStatus(err.message, true);
      })
      .then(() => {
        t.disabled = false;
        refresh();
      });
  }

  /** A button on App Home: a signed block_actions whose view is the Home tab. */
  function clickHome(t) {
    press(
      t,
      "/page/click-view",
      {
        user: me,
        viewId: t.getAttribute("data-view"),
        actionId: t.getAttribute("data-action-id"),
        blockId: t.getAttribute("data-block-id"),
      },
      " on App Home",
    );
  }

  function timeOf(ts) {
    return formatSlackDate(Number(String(ts).split(".")[0]), "{time}");
  }

  function messageHtml(m, inThread) {
    const bot = m.user && m.user === state.botUserId;
    const who = bot ? "Countersign" : personName(m.user || "");
    const initials = bot
      ? "CS"
      : who
          .split(/\s+/)
          .map((w) => w.charAt(0))
          .join("")
          .slice(0, 2)
          .toUpperCase();
    const ctx = { channel: channel, ts: m.ts };
    const body = m.blocks?.length
      ? renderBlocks(m.blocks, state.names, ctx)
      : '<div class="b-text">' + renderMrkdwn(m.text, state.names) + "</div>";
    let html =
      '<article class="msg' +
      (m.ephemeral ? " ephemeral" : "") +
      (m.ts === flashTs ? " flash" : "") +
      '" data-testid="message" data-ts="' +
      esc(m.ts) +
      '" data-channel="' +
      esc(channel) +
      '"' +
      (m.ephemeral ? ' data-ephemeral="true"' : "") +
      (inThread ? ' data-reply="true"' : "") +
      ">" +
      '<div class="avatar' +
      (bot ? "" : " person") +
      '">' +
      esc(initials) +
      "</div>" +
      '<div class="mbody"><div class="meta"><b>' +
      esc(who) +
      "</b>" +
      (bot ? '<span class="badge">APP</span>' : "") +
      "<span>" +
      esc(timeOf(m.ts)) +
      "</span>" +
      (m.edited ? ' <span class="edited">(edited)</span>' : "") +
      "</div>" +
      (m.ephemeral
        ? '<div class="only-you" data-testid="only-visible-to-you">Only visible to you</div>'
        : "") +
      '<div class="blocks">' +
      body +
      "</div>";
    if (m.replies?.length) {
      const open = !!expanded[channel + "/" + m.ts];
      html +=
        '<button type="button" class="thread-toggle" data-testid="thread-toggle" data-thread="' +
        esc(m.ts) +
        '">' +
        (open ? "Hide replies" : m.replies.length + (m.replies.length === 1 ? " reply" : " replies")) +
        "</button>";
      if (open) {
        html +=
          '<div class="thread" data-testid="thread">' +
          m.replies.map((r) => messageHtml(r, true)).join("") +
          "</div>";
      }
    }
    return html + "</div></article>";
  }

  function renderMessages() {
    if (home) return renderHomeView();
    const list = state.messages[channel] || [];
    const html = list.length
      ? list.map((m) => messageHtml(m, false)).join("")
      : '<div class="empty">' +
        (!state.connected
          ? "The app is starting…"
          : channel.charAt(0) === "D"
            ? "Nothing here yet. Verdicts on requests an agent made for you, and the app's notes to you, arrive here."
            : "Nothing here yet. Cards appear as soon as an agent asks.") +
        "</div>";
    if (html === lastMessagesHtml) return;
    const box = $("messages");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
    const keep = box.scrollTop;
    box.innerHTML = html;
    lastMessagesHtml = html;
    if (flashTs) {
      const target = box.querySelector('[data-ts="' + CSS.escape(flashTs) + '"]');
      if (target) {
        target.scrollIntoView({ block: "center" });
        flashTs = "";
        return;
      }
    }
    box.scrollTop = atBottom ? box.scrollHeight : keep;
  }

  function renderModal() {
    const m = state.modal;
    const key = m ? m.id + ":" + m.hash : "";
    if (key === shownModal) return;
    shownModal = key;
    const root = $("modal-root");
    if (!m) {
      root.innerHTML = "";
      return;
    }
    const v = m.view || {};
    root.innerHTML =
      '<div class="overlay" data-testid="modal-overlay"><div class="modal" role="dialog" aria-modal="true" data-testid="modal" data-view-id="' +
      esc(m.id) +
      '">' +
      "<header>" +
      plainHtml(v.title?.text || "") +
      "</header>" +
      '<div class="mb">' +
      renderBlocks(v.blocks || [], state.names, null) +
      "</div>" +
      '<footer><button type="button" class="btn" data-testid="modal-cancel" data-modal="cancel">' +
      plainHtml(v.close?.text || "Cancel") +
      "</button>" +
      (v.submit
        ? '<button type="button" class="btn primary" data-testid="modal-submit" data-modal="submit">' +
          plainHtml(v.submit.text || "Submit") +
          "</button>"
        : "") +
      "</footer></div></div>";
    const first = /** @type {HTMLElement | null} */ (root.querySelector("textarea, input"));
    if (first) first.focus();
  }

  function render() {
    renderPicker();
    renderChannels();
    renderMessages();
    renderModal();
    remember();
  }

  function post(path, body) {
    return fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    }).then((r) =>
      r.json().then((j) => {
        if (!r.ok) throw new Error(j.error || "HTTP " + r.status);
        return j;
      }),
    );
  }

  function describe(r) {
    // Over HTTP or over Socket Mode alike: the app's answer (a body, or an ack's payload).
    return "the app answered " + r.status + (r.body ? " " + String(r.body).slice(0, 120) : "");
  }

  document.addEventListener("click", (e) => {
    const target = /** @type {Element} */ (e.target);
    const t = target.closest ? target.closest("button") : null;
    if (!t) return;
    if (t.hasAttribute("data-home-open")) {
      home = true;
      lastMessagesHtml = "";
      render();
      openHome();
      return;
    }
    if (t.hasAttribute("data-action-id") && t.hasAttribute("data-view")) {
      clickHome(t);
      return;
    }
    if (t.hasAttribute("data-channel") && t.classList.contains("chan")) {
      home = false;
      channel = t.getAttribute("data-channel");
      lastMessagesHtml = "";
      render();
      return;
    }
    if (t.hasAttribute("data-thread")) {
      const k = channel + "/" + t.getAttribute("data-thread");
      expanded[k] = !expanded[k];
      lastMessagesHtml = "";
      renderMessages();
      return;
    }
    if (t.hasAttribute("data-action-id") && t.hasAttribute("data-ts")) {
      press(
        t,
        "/page/click",
        {
          user: me,
          channel: t.getAttribute("data-channel"),
          ts: t.getAttribute("data-ts"),
          actionId: t.getAttribute("data-action-id"),
          blockId: t.getAttribute("data-block-id"),
        },
        "",
      );
      return;
    }
    const what = t.getAttribute("data-modal");
    if (what && state?.modal) {
      const viewId = state.modal.id;
      if (what === "cancel") {
        post("/page/dismiss", { user: me, viewId: viewId }).then(refresh, (err) => {
          setStatus(err.message, true);
        });
        return;
      }
      const values = {};
      document.querySelectorAll("#modal-root [data-block-id][data-action-id]").forEach((el) => {
        if (el.tagName !== "TEXTAREA" && el.tagName !== "INPUT" && el.tagName !== "SELECT") return;
        const b = el.getAttribute("data-block-id");
        values[b] = values[b] || {};
        values[b][el.getAttribute("data-action-id")] = /** @type {HTMLInputElement} */ (el).value;
      });
      t.disabled = true;
      post("/page/submit", { user: me, viewId: viewId, values: values })
        .then((r) => {
          let errors = null;
          try {
            const a = JSON.parse(r.body || "{}");
            if (a.response_action === "errors") errors = a.errors || {};
          } catch {}
          document.querySelectorAll("#modal-root [data-error-for]").forEach((el) => {
            el.textContent = errors?.[el.getAttribute("data-error-for")] || "";
          });
          setStatus(
            personName(me) + " submitted the modal: view_submission, " + describe(r),
            r.status !== 200 || !!errors,
          );
        })
        .catch((err) => {
          setStatus(err.message, true);
        })
        .then(() => {
          t.disabled = false;
          refresh();
        });
    }
  });

  // As in Slack, an error shown under an input goes away once the person edits that input.
  document.addEventListener("input", (e) => {
    const target = /** @type {Element} */ (e.target);
    const b = target.getAttribute?.("data-block-id");
    if (!b) return;
    document.querySelectorAll("#modal-root [data-error-for]").forEach((el) => {
      if (el.getAttribute("data-error-for") === b) el.textContent = "";
    });
  });

  $("user-picker").addEventListener("change", (e) => {
    me = /** @type {HTMLSelectElement} */ (e.target).value;
    shownModal = "";
    lastMessagesHtml = "";
    setStatus("Now acting as " + personName(me) + ".");
    if (home) openHome();
    else refresh();
  });

  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = /** @type {HTMLInputElement} */ ($("composer-input"));
    const text = input.value.trim();
    if (!text) return;
    post("/page/command", { user: me, channel: channel, text: text })
      .then((r) => {
        input.value = "";
        setStatus(
          personName(me) + " ran " + text.split(/\s/)[0] + ": slash command, " + describe(r),
          r.status !== 200,
        );
        refresh();
      })
      .catch((err) => {
        setStatus(err.message, true);
      });
  });

  const events = new EventSource("/page/events");
  events.addEventListener("change", refresh);
  events.onerror = () => {
    setStatus("Lost the live connection to the simulator; retrying…", true);
  };
  events.onopen = () => {
    if ($("status").className.indexOf("err") !== -1) setStatus("");
  };
  refresh();
  if (home && me) openHome();
})();
