// Page "drive" for the flight site (the technique of Hotwire Turbo Drive): link clicks and
// form submissions fetch the next page from the server and swap the <body> in place, with
// the address bar updated through the History API. The server still renders every page; the
// browser skips tearing down and rebuilding the document, which makes a page change several
// times cheaper. Without JavaScript the site works the same through plain navigation.
(() => {
  const sameOrigin = (url) => new URL(url, location.href).origin === location.origin;

  async function visit(url, options = {}) {
    const response = await fetch(url, {
      method: options.method || "GET",
      body: options.body,
      headers: options.body ? {"Content-Type": "application/x-www-form-urlencoded"} : {},
      credentials: "same-origin",
      redirect: "follow",
      signal: AbortSignal.timeout(15000),
    });
    const html = await response.text();
    const doc = new DOMParser().parseFromString(html, "text/html");
    document.title = doc.title;
    document.body.replaceWith(document.adoptNode(doc.body));
    const target = new URL(response.url);
    if (options.replace) history.replaceState({drive: true}, "", target.pathname + target.search);
    else history.pushState({drive: true}, "", target.pathname + target.search);
    window.scrollTo(0, 0);
    document.dispatchEvent(new CustomEvent("drive:load"));
    return target.pathname + target.search;
  }

  function formRequest(form, submitter) {
    const data = new URLSearchParams(new FormData(form, submitter || undefined));
    const action = new URL(form.getAttribute("action") || location.href, location.href);
    if ((form.getAttribute("method") || "get").toLowerCase() === "post") {
      return [action.pathname + action.search, {method: "POST", body: data.toString()}];
    }
    action.search = data.toString();
    return [action.pathname + action.search, {}];
  }

  function go(url, options) {
    window.drivePending = visit(url, options).catch(() => {
      location.href = url; // fall back to a plain navigation
    });
  }

  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a[href]");
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey) return;
    if (link.target || !sameOrigin(link.href)) return;
    event.preventDefault();
    go(link.href, {});
  });

  document.addEventListener("submit", (event) => {
    if (event.defaultPrevented) return;
    event.preventDefault();
    const [url, options] = formRequest(event.target, event.submitter);
    go(url, options);
  });

  window.addEventListener("popstate", () => {
    window.drivePending = visit(location.pathname + location.search, {replace: true});
  });

  window.drive = {visit};
})();
