// Search as you type: fetch the same page with the new query and swap the results in place.
// Without JavaScript the form still works with Enter or the Search button.
(() => {
  const form = document.querySelector("form[data-live-search]");
  if (!form || !window.fetch || !window.DOMParser) return;
  const input = form.querySelector("input[type=search]");
  let timer = null;
  let controller = null;

  async function refresh() {
    const url = `${form.action}?${new URLSearchParams(new FormData(form))}`;
    if (controller) controller.abort();
    controller = new AbortController();
    try {
      const response = await fetch(url, { signal: controller.signal, credentials: "same-origin" });
      if (!response.ok || response.redirected) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("results");
      const current = document.getElementById("results");
      if (fresh && current) current.replaceWith(fresh);
      history.replaceState(null, "", url);
    } catch (error) {
      if (error.name !== "AbortError") form.submit();
    }
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
})();
