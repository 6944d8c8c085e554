/**
 * The passkey pages' stylesheet and script, served from this server under a strict CSP
 * (`script-src 'self'`, no inline code). Kept as strings in a module so the build (tsc
 * only) ships them with the code. The look follows the simulator page's (Slack's
 * aubergine bar, its font stack). No framework: the script converts WebAuthn options
 * from JSON (base64url) to buffers, calls navigator.credentials, and POSTs the result.
 */

export const PAGE_CSS = `*{box-sizing:border-box}
body{margin:0;font:15px/1.46 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d1c1d;background:#f8f8f8}
.topbar{display:flex;align-items:center;background:#350d36;color:#fff;padding:8px 16px}
.brand{font-weight:700}.brand .logo{display:inline-block;background:#2bac76;border-radius:4px;width:22px;text-align:center;margin-right:6px}
.brand .sub{font-weight:400;opacity:.7;margin-left:8px;font-size:13px}
main{max-width:640px;margin:24px auto;background:#fff;border:1px solid #ddd;border-radius:8px;padding:20px 24px}
h1{font-size:20px;margin:0 0 12px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 12px;margin:12px 0}
dt{color:#616061;font-size:13px}dd{margin:0;white-space:pre-wrap;word-break:break-word}
pre{background:#f4f4f4;border:1px solid #e2e2e2;border-radius:4px;padding:8px;overflow:auto;font-size:13px;white-space:pre-wrap;word-break:break-word}
button{background:#007a5a;color:#fff;border:0;border-radius:4px;padding:8px 16px;font-size:15px;font-weight:700;cursor:pointer}
button:disabled{opacity:.5;cursor:default}
input[type=text]{font-size:15px;padding:6px 8px;border:1px solid #bbb;border-radius:4px;width:100%;max-width:320px}
label{display:block;margin:12px 0 4px;font-size:13px;color:#616061}
.status{margin-top:16px;padding:10px 12px;border-radius:4px;display:none}
.status.ok{display:block;background:#e8f5ee;border:1px solid #2bac76}
.status.err{display:block;background:#fdecea;border:1px solid #e01e5a}
.status.busy{display:block;background:#f4f4f4;border:1px solid #ddd}
.muted{color:#616061;font-size:13px}
ul.keys{padding-left:20px}
`;

export const PAGE_JS = `"use strict";
(function () {
  var data = JSON.parse(document.getElementById("cs-data").textContent);
  var button = document.getElementById("cs-go");
  var status = document.getElementById("cs-status");
  function show(kind, text) { status.className = "status " + kind; status.textContent = text; }
  function toBuf(s) {
    var b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
    var u = new Uint8Array(b.length);
    for (var i = 0; i < b.length; i++) u[i] = b.charCodeAt(i);
    return u.buffer;
  }
  function toB64u(buf) {
    var u = new Uint8Array(buf), s = "";
    for (var i = 0; i < u.length; i++) s += String.fromCharCode(u[i]);
    return btoa(s).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  }
  function ids(list) {
    return (list || []).map(function (c) { return { type: "public-key", id: toBuf(c.id), transports: c.transports }; });
  }
  function get(o) {
    return navigator.credentials.get({ publicKey: {
      challenge: toBuf(o.challenge), rpId: o.rpId, timeout: o.timeout,
      userVerification: o.userVerification, allowCredentials: ids(o.allowCredentials)
    } }).then(function (c) {
      return { id: c.id, rawId: toB64u(c.rawId), type: c.type,
        authenticatorAttachment: c.authenticatorAttachment || undefined,
        clientExtensionResults: c.getClientExtensionResults(),
        response: { clientDataJSON: toB64u(c.response.clientDataJSON),
          authenticatorData: toB64u(c.response.authenticatorData),
          signature: toB64u(c.response.signature),
          userHandle: c.response.userHandle ? toB64u(c.response.userHandle) : undefined } };
    });
  }
  function create(o) {
    return navigator.credentials.create({ publicKey: {
      challenge: toBuf(o.challenge), rp: o.rp, timeout: o.timeout,
      user: { id: toBuf(o.user.id), name: o.user.name, displayName: o.user.displayName },
      pubKeyCredParams: o.pubKeyCredParams, attestation: o.attestation,
      authenticatorSelection: o.authenticatorSelection, excludeCredentials: ids(o.excludeCredentials)
    } }).then(function (c) {
      return { id: c.id, rawId: toB64u(c.rawId), type: c.type,
        authenticatorAttachment: c.authenticatorAttachment || undefined,
        clientExtensionResults: c.getClientExtensionResults(),
        response: { clientDataJSON: toB64u(c.response.clientDataJSON),
          attestationObject: toB64u(c.response.attestationObject),
          transports: c.response.getTransports ? c.response.getTransports() : [] } };
    });
  }
  function post(body) {
    body.t = data.t; body.csrf = data.csrf;
    return fetch(location.pathname, { method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json" }, body: JSON.stringify(body)
    }).then(function (r) { return r.json(); });
  }
  button.addEventListener("click", function () {
    button.disabled = true;
    var work;
    if (data.page === "register") {
      var label = document.getElementById("cs-label");
      show("busy", data.confirm ? "First confirm with a passkey you already have…" : "Follow your browser's prompt…");
      work = (data.confirm ? get(data.confirm) : Promise.resolve(null)).then(function (confirmation) {
        if (data.confirm) show("busy", "Now create the new passkey…");
        return create(data.creation).then(function (credential) {
          return post({ credential: credential, confirmation: confirmation, label: label ? label.value : "" });
        });
      });
    } else {
      show("busy", "Confirm with your passkey…");
      work = get(data.options).then(function (assertion) { return post({ assertion: assertion }); });
    }
    work.then(function (r) {
      show(r.ok ? "ok" : "err", r.message);
    }, function (e) {
      show("err", "The browser gave no passkey (" + (e && e.name ? e.name : "error") + "). Nothing was recorded; reload this page to try again.");
    });
  });
})();
`;
