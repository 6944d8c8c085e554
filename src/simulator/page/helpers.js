// @ts-check
/*
 * The page's pure helpers: HTML escaping, mrkdwn and Block Kit rendering. A classic
 * script, not a module: the page inlines it (with its CSP nonce) before app.js, and the
 * tests run exactly this text in node:vm to check that agent text cannot become markup.
 * Plain ES2022, no globals beyond Date and Intl. Type-checked by ./tsconfig.json.
 */

function esc(s) {
  return String(s)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/** Slack's three entities, already HTML-escaped once, back to what they stand for (one pass, so &amp;lt; stays literal). */
function decodeSlack(escaped) {
  return escaped.replace(/&amp;(lt|gt|amp);/g, "&$1;");
}

/** Raw Slack text (entities and all) to safe HTML text. */
function show(raw) {
  return decodeSlack(esc(raw));
}

function plainHtml(s) {
  return esc(s).replace(/\n/g, "<br>");
}

function pad2(n) {
  return (n < 10 ? "0" : "") + n;
}

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

/** Slack's date token formats, in the viewer's own time zone. */
function formatSlackDate(seconds, format, now) {
  const d = new Date(seconds * 1000);
  const today = now || new Date();
  const yesterday = new Date(today.getTime() - 86400000);
  const tomorrow = new Date(today.getTime() + 86400000);
  function pretty(fallback) {
    if (sameDay(d, today)) return "today";
    if (sameDay(d, yesterday)) return "yesterday";
    if (sameDay(d, tomorrow)) return "tomorrow";
    return fallback;
  }
  const parts = {
    date_num: d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()),
    date: d.toLocaleDateString("en-US", { month: "long", day: "numeric", year: "numeric" }),
    date_short: d.toLocaleDateString("en-US", { month: "short", day: "numeric", year: "numeric" }),
    date_long: d.toLocaleDateString("en-US", {
      weekday: "long",
      month: "long",
      day: "numeric",
      year: "numeric",
    }),
    time: pad2(d.getHours()) + ":" + pad2(d.getMinutes()),
    time_secs: pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds()),
  };
  parts.date_pretty = pretty(parts.date);
  parts.date_short_pretty = pretty(parts.date_short);
  parts.date_long_pretty = pretty(parts.date_long);
  return String(format).replace(/\{([a-z_]+)\}/g, (m, k) => (Object.hasOwn(parts, k) ? parts[k] : m));
}

/** One <...> token of Slack mrkdwn, as HTML. Anything not recognised is shown as the text it is. */
function renderToken(body, names, now) {
  const bar = body.indexOf("|");
  const head = bar === -1 ? body : body.slice(0, bar);
  const label = bar === -1 ? "" : body.slice(bar + 1);
  if (/^@[UWB][A-Z0-9]+$/.test(head)) {
    const id = head.slice(1);
    const known = names && Object.hasOwn(names, id);
    return (
      '<span class="mention" data-user="' +
      esc(id) +
      '">@' +
      (known ? esc(names[id]) : show(label || id)) +
      "</span>"
    );
  }
  if (/^#[CG][A-Z0-9]+$/.test(head)) {
    return '<span class="mention">#' + show(label || head.slice(1)) + "</span>";
  }
  if (head.indexOf("!date^") === 0) {
    const p = head.split("^");
    const secs = Number(p[1]);
    if (p.length >= 3 && /^\d{1,12}$/.test(p[1])) {
      const iso = new Date(secs * 1000).toISOString();
      return (
        '<time class="date" datetime="' +
        esc(iso) +
        '" title="' +
        esc(iso) +
        '">' +
        esc(formatSlackDate(secs, p[2], now)) +
        "</time>"
      );
    }
    return show(label || body);
  }
  if (head.indexOf("!subteam^") === 0) {
    return '<span class="mention">@' + show(label || head.slice(9)) + "</span>";
  }
  if (/^!(here|channel|everyone)$/.test(head)) {
    return '<span class="mention">@' + head.slice(1) + "</span>";
  }
  if (/^(https?:\/\/|mailto:)[^\s"]+$/i.test(head)) {
    return (
      '<a href="' + show(head) + '" target="_blank" rel="noopener noreferrer">' + show(label || head) + "</a>"
    );
  }
  return show("<" + body + ">");
}

/**
 * Slack mrkdwn to safe HTML. Order matters: the <...> tokens are cut out of the raw text
 * first (agent text cannot contain a raw < since the app escapes it), then everything is
 * HTML-escaped, quotes are found on the escaped text (a raw > is escaped to &gt;, an
 * agent's &gt; to &amp;gt;, so they cannot be confused), and only then are Slack's
 * entities decoded for display and emphasis applied.
 */
function renderMrkdwn(raw, names, now) {
  const held = [];
  function hold(html) {
    held.push(html);
    return "\u0001" + (held.length - 1) + "\u0002";
  }
  let s = String(raw == null ? "" : raw).replace(/[\u0001\u0002]/g, "");
  s = s.replace(/<([^<>\n]{1,1000})>/g, (_m, body) => hold(renderToken(body, names, now)));
  const lines = esc(s).split("\n");
  const out = [];
  let quote = [];
  function flushQuote() {
    if (quote.length) {
      out.push("<blockquote>" + quote.join("<br>") + "</blockquote>");
      quote = [];
    }
  }
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i];
    const isQuote = line.indexOf("&gt;") === 0;
    if (isQuote) line = line.slice(4).replace(/^ /, "");
    line = decodeSlack(line);
    line = line.replace(/\u0060([^\u0060\n]+)\u0060/g, (_m, code) => hold("<code>" + code + "</code>"));
    line = line.replace(/(^|[^\w*])\*(?=\S)([^*\n]*?\S)?\*(?![\w*])/g, (m, pre, inner, _off, _all) =>
      inner === undefined ? m : pre + "<b>" + inner + "</b>",
    );
    line = line.replace(/(^|[^\w])_(?=\S)([^_\n]*?\S)?_(?!\w)/g, (m, pre, inner) =>
      inner === undefined ? m : pre + "<i>" + inner + "</i>",
    );
    line = line.replace(/(^|[^\w~])~(?=\S)([^~\n]*?\S)?~(?![\w~])/g, (m, pre, inner) =>
      inner === undefined ? m : pre + "<s>" + inner + "</s>",
    );
    if (isQuote) {
      quote.push(line);
      continue;
    }
    flushQuote();
    out.push(line);
  }
  flushQuote();
  let html = out.join("<br>").replace(/<\/blockquote><br>/g, "</blockquote>");
  // Tokens may have been held inside held code spans; resolve until none are left.
  for (let guard = 0; guard < 3 && /\u0001\d+\u0002/.test(html); guard++) {
    html = html.replace(/\u0001(\d+)\u0002/g, (_m, n) => held[Number(n)]);
  }
  return html;
}

function textObject(t, names, now) {
  if (!t || typeof t !== "object") return "";
  return t.type === "mrkdwn" ? renderMrkdwn(t.text, names, now) : plainHtml(t.text == null ? "" : t.text);
}

/** An interactive element. ctx: {channel, ts} for message buttons, {view} for App Home's; null in modals. */
function renderElement(el, blockId, ctx) {
  if (!el || typeof el !== "object") return "";
  if (el.type === "button") {
    const cls = "btn" + (el.style === "primary" ? " primary" : el.style === "danger" ? " danger" : "");
    let attrs =
      ' data-testid="button-' +
      esc(el.action_id || "") +
      '"' +
      ' data-action-id="' +
      esc(el.action_id || "") +
      '"' +
      ' data-block-id="' +
      esc(blockId || "") +
      '"';
    if (ctx?.view) attrs += ' data-view="' + esc(ctx.view) + '"';
    else if (ctx) attrs += ' data-channel="' + esc(ctx.channel) + '" data-ts="' + esc(ctx.ts) + '"';
    if (el.confirm?.text) attrs += ' data-confirm="' + esc(el.confirm.text.text || "") + '"';
    if (el.url)
      return (
        '<a class="' +
        cls +
        '" href="' +
        esc(el.url) +
        '" target="_blank" rel="noopener noreferrer">' +
        plainHtml(el.text?.text || "") +
        "</a>"
      );
    return (
      '<button type="button" class="' + cls + '"' + attrs + ">" + plainHtml(el.text?.text || "") + "</button>"
    );
  }
  if (el.type === "image") return '<span class="b-unknown">[image: ' + esc(el.alt_text || "") + "]</span>";
  return '<span class="b-unknown">[' + esc(el.type) + " element]</span>";
}

function renderInput(b) {
  const el = b.element || {};
  const bid = String(b.block_id || "");
  const aid = String(el.action_id || "");
  const common =
    ' data-testid="modal-input-' +
    esc(bid) +
    '" data-block-id="' +
    esc(bid) +
    '" data-action-id="' +
    esc(aid) +
    '"' +
    (el.max_length ? ' maxlength="' + Number(el.max_length) + '"' : "") +
    (el.placeholder?.text ? ' placeholder="' + esc(el.placeholder.text) + '"' : "");
  let control;
  if (el.type === "plain_text_input") {
    control = el.multiline
      ? "<textarea" + common + ">" + esc(el.initial_value || "") + "</textarea>"
      : '<input type="text"' + common + ' value="' + esc(el.initial_value || "") + '">';
  } else if (el.type === "number_input") {
    // Slack's number input: decimals only when is_decimal_allowed; the value goes back as text.
    control =
      '<input type="number"' +
      common +
      ' step="' +
      (el.is_decimal_allowed ? "any" : "1") +
      '" value="' +
      esc(el.initial_value || "") +
      '">';
  } else if (el.type === "static_select") {
    const chosen = el.initial_option ? String(el.initial_option.value) : "";
    control =
      "<select" +
      common +
      ">" +
      (chosen === "" ? '<option value="">Choose…</option>' : "") +
      (el.options || [])
        .map(
          (o) =>
            '<option value="' +
            esc(String(o.value)) +
            '"' +
            (String(o.value) === chosen ? " selected" : "") +
            ">" +
            plainHtml(o.text?.text || "") +
            "</option>",
        )
        .join("") +
      "</select>";
  } else {
    control = '<span class="b-unknown">[' + esc(el.type) + " input]</span>";
  }
  return (
    '<div class="b-input"><label>' +
    plainHtml(b.label?.text || "") +
    (b.optional ? ' <span class="hint">(optional)</span>' : "") +
    "</label>" +
    control +
    (b.hint ? '<div class="hint">' + plainHtml(b.hint.text || "") + "</div>" : "") +
    '<div class="ferr" data-testid="modal-error-' +
    esc(bid) +
    '" data-error-for="' +
    esc(bid) +
    '"></div></div>'
  );
}

/** Block Kit to HTML: header, section (text, fields, accessory), context, actions, divider, input. */
// biome-ignore lint/correctness/noUnusedVariables: a classic script's global, called by app.js and the tests
function renderBlocks(blocks, names, ctx, now) {
  let html = "";
  for (let i = 0; i < (blocks || []).length; i++) {
    const b = blocks[i];
    if (!b || typeof b !== "object") continue;
    const bid = b.block_id || "";
    switch (b.type) {
      case "header":
        html += '<div class="b-header">' + plainHtml(b.text?.text || "") + "</div>";
        break;
      case "section":
        html +=
          '<div class="b-section"><div class="b-main">' +
          (b.text ? '<div class="b-text">' + textObject(b.text, names, now) + "</div>" : "") +
          (Array.isArray(b.fields)
            ? '<div class="b-fields">' +
              b.fields.map((f) => "<div>" + textObject(f, names, now) + "</div>").join("") +
              "</div>"
            : "") +
          "</div>" +
          (b.accessory ? renderElement(b.accessory, bid, ctx) : "") +
          "</div>";
        break;
      case "divider":
        html += '<hr class="b-divider">';
        break;
      case "context":
        html +=
          '<div class="b-context">' +
          (b.elements || [])
            .map((e) =>
              e && e.type === "image"
                ? renderElement(e, bid, ctx)
                : "<span>" + textObject(e, names, now) + "</span>",
            )
            .join("") +
          "</div>";
        break;
      case "actions":
        html +=
          '<div class="b-actions" data-block-id="' +
          esc(bid) +
          '">' +
          (b.elements || []).map((e) => renderElement(e, bid, ctx)).join("") +
          "</div>";
        break;
      case "input":
        html += renderInput(b);
        break;
      case "markdown":
        html += '<div class="b-section">' + renderMrkdwn(b.text, names, now) + "</div>";
        break;
      default:
        html += '<div class="b-unknown">[' + esc(b.type) + " block]</div>";
    }
  }
  return html;
}
