"""The browser snippet served at ``GET /v1/snippet.js``: page views (also on single-page navigation)
and element clicks with what a click heatmap needs (CSS selector, text, page and viewport position,
viewport and page size, the click's offset inside the element), plus ``huiyuan.track/identify/page``
for code events.

Install with one tag (the write key of a ``web`` source; it is public by nature)::

    <script async src="https://crm.example.com/v1/snippet.js" data-write-key="hyw_…"></script>

Messages are queued and sent as Segment batches to ``/v1/batch`` with the write key in the body
(``fetch`` with ``keepalive``, ``text/plain`` so browsers send no CORS preflight; ``sendBeacon``
when the page is hidden). No input values are ever read; ``data-hy-ignore`` on an element (or an
ancestor) keeps its clicks out, ``data-clicks="false"`` on the tag turns click collection off.
"""

from __future__ import annotations

import hashlib

VERSION = "1.0.0"

SNIPPET_JS = r"""/* huiyuan.js __VERSION__ — page views and clicks to a Segment-compatible /v1/batch */
(function (w, d) {
  "use strict";
  if (w.huiyuan && w.huiyuan.loaded) return;
  var tag = d.currentScript || d.querySelector("script[data-write-key]");
  if (!tag) return;
  var key = tag.getAttribute("data-write-key");
  var host = tag.getAttribute("data-host") || new URL(tag.src, w.location.href).origin;
  var clicks = tag.getAttribute("data-clicks") !== "false";
  var endpoint = host.replace(/\/$/, "") + "/v1/batch";
  var queue = [], timer = null, LIB = { name: "huiyuan.js", version: "__VERSION__" };

  function uuid() {
    if (w.crypto && w.crypto.randomUUID) return w.crypto.randomUUID();
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = (Math.random() * 16) | 0;
      return (c === "x" ? r : (r & 3) | 8).toString(16);
    });
  }
  function stored(name, make) {
    try {
      var v = w.localStorage.getItem(name);
      if (!v && make) { v = make(); w.localStorage.setItem(name, v); }
      return v;
    } catch (e) { return make ? make() : null; }
  }
  var anonymousId = stored("hy_aid", uuid);
  var userId = stored("hy_uid", null);

  function pageInfo() {
    return { path: w.location.pathname, url: w.location.href, search: w.location.search,
             title: d.title, referrer: d.referrer };
  }
  function send(messages, beacon) {
    var body = JSON.stringify({ writeKey: key, sentAt: new Date().toISOString(), batch: messages });
    if (beacon && w.navigator.sendBeacon) {
      if (w.navigator.sendBeacon(endpoint, new Blob([body], { type: "text/plain" }))) return;
    }
    try {
      w.fetch(endpoint, { method: "POST", body: body, keepalive: body.length < 60000,
                          headers: { "Content-Type": "text/plain" } })
        .catch(function () { queue = messages.concat(queue).slice(0, 500); });
    } catch (e) { /* the page is going away */ }
  }
  function flush(beacon) {
    if (timer) { clearTimeout(timer); timer = null; }
    while (queue.length) send(queue.splice(0, 50), beacon);
  }
  function enqueue(message) {
    message.messageId = uuid();
    message.anonymousId = anonymousId;
    if (userId) message.userId = userId;
    message.timestamp = new Date().toISOString();
    message.context = { library: LIB, page: pageInfo(), userAgent: w.navigator.userAgent,
                        locale: w.navigator.language,
                        screen: { width: w.screen.width, height: w.screen.height } };
    queue.push(message);
    if (queue.length >= 20) flush(false);
    else if (!timer) timer = setTimeout(function () { flush(false); }, 1000);
  }
  function page(name, properties) {
    var p = pageInfo(), props = properties || {};
    for (var k in p) if (!(k in props)) props[k] = p[k];
    enqueue({ type: "page", name: name || d.title, properties: props });
  }

  function selector(el) {
    var parts = [];
    for (var depth = 0; el && el.nodeType === 1 && depth < 6; depth++) {
      if (el.id) { parts.unshift("#" + CSS.escape(el.id)); break; }
      if (el === d.body) { parts.unshift("body"); break; }
      var part = el.tagName.toLowerCase(), parent = el.parentElement;
      if (parent) {
        var same = Array.prototype.filter.call(parent.children, function (c) {
          return c.tagName === el.tagName;
        });
        if (same.length > 1) part += ":nth-of-type(" + (same.indexOf(el) + 1) + ")";
      }
      parts.unshift(part);
      el = parent;
    }
    return parts.join(" > ");
  }
  function onClick(e) {
    var el = e.target && e.target.closest ? e.target : null;
    if (!el || el.closest("[data-hy-ignore]")) return;
    el = el.closest("a,button,[role=button],input,select,textarea,label,[data-hy-track]") || el;
    var field = /^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName);
    var rect = el.getBoundingClientRect(), doc = d.documentElement;
    enqueue({ type: "track", event: "Element Clicked", properties: {
      selector: selector(el), tag: el.tagName.toLowerCase(),
      text: field ? "" : (el.innerText || el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 100),
      href: el.getAttribute("href") || undefined, path: w.location.pathname,
      x: Math.round(e.pageX), y: Math.round(e.pageY),
      client_x: Math.round(e.clientX), client_y: Math.round(e.clientY),
      offset_x: Math.round(e.clientX - rect.left), offset_y: Math.round(e.clientY - rect.top),
      element_width: Math.round(rect.width), element_height: Math.round(rect.height),
      viewport_width: w.innerWidth, viewport_height: w.innerHeight,
      page_width: doc.scrollWidth, page_height: doc.scrollHeight } });
  }

  var api = w.huiyuan = {
    loaded: true,
    page: page,
    track: function (event, properties) {
      enqueue({ type: "track", event: event, properties: properties || {} });
    },
    identify: function (id, traits) {
      userId = id ? String(id) : null;
      try { if (userId) w.localStorage.setItem("hy_uid", userId); } catch (e) {}
      enqueue({ type: "identify", traits: traits || {} });
    },
    reset: function () {
      userId = null; anonymousId = uuid();
      try { w.localStorage.removeItem("hy_uid"); w.localStorage.setItem("hy_aid", anonymousId); } catch (e) {}
    },
    flush: function () { flush(false); },
    anonymousId: function () { return anonymousId; }
  };

  ["pushState", "replaceState"].forEach(function (name) {
    var original = w.history[name];
    w.history[name] = function () {
      var before = w.location.href, out = original.apply(this, arguments);
      if (w.location.href !== before) page();
      return out;
    };
  });
  w.addEventListener("popstate", function () { page(); });
  if (clicks) d.addEventListener("click", onClick, true);
  w.addEventListener("pagehide", function () { flush(true); });
  d.addEventListener("visibilitychange", function () { if (d.visibilityState === "hidden") flush(true); });
  api.page();
})(window, document);
""".replace("__VERSION__", VERSION)

ETAG = '"' + hashlib.sha256(SNIPPET_JS.encode()).hexdigest()[:20] + '"'
