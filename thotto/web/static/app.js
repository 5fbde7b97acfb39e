"use strict";
// Thotto's pages. No build step, no dependencies:
// - thotto.api(method, path, body): fetch the JSON API with the session's CSRF token (pages are
//   signed in with a cookie; every change must carry the token), answering the decoded JSON or
//   throwing a thotto.ApiError that holds the API's {error, detail, field};
// - thotto.showError(form, error): the message beside the field whose name or data-field is the
//   error's field (else in the form's [data-form-error], else in the page's banner area);
// - forms with data-api="METHOD /path" are sent as JSON through thotto.api, and
//   data-then="reload" or a path says where to go after success;
// - buttons with data-copy="ID" copy that element's text; [data-browser-zone] shows (or, on a
//   select, picks) the browser's time zone; forms with data-confirm ask first.
(function () {
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  class ApiError extends Error {
    constructor(status, body, retryAfter) {
      super(body.detail || body.error || "HTTP " + status);
      this.status = status;
      this.body = body;
      this.field = body.field || null;
      this.retryAfter = retryAfter;
    }
  }

  async function api(method, path, body) {
    const headers = { "X-CSRF-Token": csrfToken(), Accept: "application/json" };
    let payload = body;
    if (body !== undefined && !(body instanceof FormData) && !(body instanceof Blob)) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (ignored) {
      data = { error: "Unexpected answer", detail: text.slice(0, 200) };
    }
    if (!response.ok) {
      throw new ApiError(response.status, data || {}, response.headers.get("Retry-After"));
    }
    return data;
  }

  function fieldElement(form, field) {
    if (!form || !field) return null;
    const candidates = [field, field.split(".").pop(), field.replace(/\[\d+\]/g, "")];
    for (const name of candidates) {
      const escaped = CSS.escape(name);
      const found = form.querySelector(`[name="${escaped}"], [data-field="${escaped}"]`);
      if (found) return found;
    }
    return null;
  }

  function errorElementFor(input) {
    const id = input.id || (input.id = "f-" + Math.random().toString(36).slice(2));
    let element = document.getElementById(id + "-error");
    if (!element) {
      element = document.createElement("p");
      element.className = "field-error";
      element.id = id + "-error";
      input.insertAdjacentElement("afterend", element);
      const described = (input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
      input.setAttribute("aria-describedby", [...described, element.id].join(" "));
    }
    return element;
  }

  function clearErrors(form) {
    if (!form) return;
    for (const input of form.querySelectorAll('[aria-invalid="true"]')) input.removeAttribute("aria-invalid");
    for (const element of form.querySelectorAll(".field-error, [data-form-error]")) {
      element.textContent = "";
      element.hidden = true;
    }
    for (const wrapper of form.querySelectorAll(".has-error")) wrapper.classList.remove("has-error");
  }

  function showBanner(text, kind) {
    const banners = document.getElementById("banners");
    if (!banners) return;
    const banner = document.createElement("p");
    banner.className = "banner banner-" + (kind || "error");
    banner.setAttribute("role", kind === "error" ? "alert" : "status");
    banner.textContent = text;
    banners.replaceChildren(banner);
  }

  function showError(form, error) {
    clearErrors(form);
    const message = error.body && error.body.detail ? error.body.detail : error.message;
    const input = fieldElement(form, error.field);
    if (input) {
      const element = errorElementFor(input);
      element.textContent = message;
      element.hidden = false;
      input.setAttribute("aria-invalid", "true");
      const wrapper = input.closest(".field");
      if (wrapper) wrapper.classList.add("has-error");
      input.focus();
      return;
    }
    const formError = form ? form.querySelector("[data-form-error]") : null;
    if (formError) {
      formError.textContent = message;
      formError.hidden = false;
    } else {
      showBanner(message, "error");
    }
  }

  function formBody(form) {
    const body = {};
    for (const [name, value] of new FormData(form)) {
      if (name === "csrf" || value === "") continue;
      const input = form.elements[name];
      body[name] = input && input.dataset && input.dataset.json === "number" ? Number(value) : value;
    }
    return body;
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    if (!form.dataset.api) return;
    event.preventDefault();
    const [method, path] = form.dataset.api.split(" ");
    try {
      const answer = await api(method, path, formBody(form));
      clearErrors(form);
      form.dispatchEvent(new CustomEvent("thotto:done", { detail: answer, bubbles: true }));
      const then = form.dataset.then;
      if (then === "reload") window.location.reload();
      else if (then && then.startsWith("/")) window.location.assign(then);
    } catch (error) {
      if (error instanceof ApiError) showError(form, error);
      else showBanner(String(error.message || error), "error");
    }
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const text = (source.value !== undefined ? source.value : source.textContent).trim();
    const status = document.getElementById(button.dataset.copy + "-copied");
    try {
      await navigator.clipboard.writeText(text);
      if (status) status.textContent = "Copied.";
    } catch (ignored) {
      // No clipboard (an insecure origin): select the text so Ctrl+C copies it.
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      if (status) status.textContent = "Selected: press Ctrl+C (or Cmd+C) to copy.";
    }
  });

  function browserZone() {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (ignored) {
      return "";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const zone = browserZone();
    for (const element of document.querySelectorAll("[data-browser-zone]")) {
      if (element.tagName === "BUTTON") {
        element.hidden = !zone;
        element.textContent = element.textContent.replace("{zone}", zone);
        element.value = zone;
      } else if (element.tagName === "INPUT") {
        element.value = zone;
      } else {
        element.textContent = zone;
      }
    }
  });

  window.thotto = { api, ApiError, showError, clearErrors, showBanner, csrfToken, browserZone };
})();
